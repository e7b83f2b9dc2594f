"""How the report writers cope with a large record: wall time and peak memory, per mode.

A measurement, never a test: it prints figures against the targets and asserts nothing.
For each mode (plan, run, report) it builds, in a fresh child process, a synthetic
`RunRecord` of N items (default 100,000) over 20 endpoints with realistic statuses, then
calls `write_reports` and `write_json` into a temporary directory, as `rotate` does at the
end of a command, and prints:

* the wall time of the writers (each, and in all);
* the peak RSS (`ru_maxrss`) above the baseline taken once the record was built, and the
  baseline itself (the interpreter, the imports and the record);
* the files written and their sizes.

Targets (per mode): under about 10 s and under about 100 MB above the record.

    .venv/bin/python bench/report_bench.py [--items N] [--mode plan|run|report ...]
        [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

MODES = ("plan", "run", "report")
TARGET_S = 10.0
TARGET_MB = 100.0
ENDPOINTS = 20
STARTED = datetime(2026, 11, 24, 2, 0, 0, tzinfo=UTC)


def _rss_mb() -> float:
    """Peak RSS of this process so far, in MB (10^6 bytes); Linux reports KiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024) / 1e6


def _current_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


def build_record(mode: str, n: int) -> object:
    """A `RunRecord` of `n` items in `mode`, over 20 endpoints (15 Remotix, 5 Spark View)."""
    from rotate.models import (
        Drift,
        EndpointProbe,
        ItemResult,
        Row,
        RunRecord,
        Stage,
        Status,
    )

    names = [f"rx{e:02d}" for e in range(1, 16)] + [f"sv{e:02d}" for e in range(1, 6)]
    down = "rx07"  # one endpoint failed its probe: its rows are not attempted
    probes = tuple(
        EndpointProbe(
            name,
            "sparkview" if name.startswith("sv") else "remotix",
            name != down,
            "connection refused" if name == down else "API 4.2",
        )
        for name in names
    )
    users = ("administrator", "svc-backup", "svc-scan", "jdoe", "asmith", "kiosk", "ops")
    items = []
    for i in range(n):
        endpoint = names[i % ENDPOINTS]
        k = i // ENDPOINTS
        if endpoint.startswith("sv"):
            kind, protocol, port = "server", "RDP", None
            target = f"srv-{k:06d}"
        elif k % 2:
            kind, protocol, port = "connection", ("RDP", "NEAR", "APPLE")[k % 3], None
            target = f"9f{k:06x}-5c1e-4a7b-9d2e-{i:012x}"
        else:
            kind, protocol = "computer", ("RDP", "NEAR", "VNC")[k % 3]
            port = 3390 if k % 10 == 0 and protocol == "RDP" else None
            target = f"host-{k:06d}.corp.example.net"
        path = f"rotate/{endpoint}/{kind}/{target}/{protocol}"
        row = Row(
            line=i + 2,
            endpoint=endpoint,
            kind=kind,
            target=target,
            username=users[i % len(users)],
            protocol=protocol,
            port=port,
            domain="CORP" if i % 4 == 0 else None,
            policy="vnc" if protocol == "VNC" else "default",
            max_age_days=90,
            vault_path=path,
            owner=f"team-{i % 13}",
            notes="",
        )
        age = (i * 7919 % 2000) / 10.0  # 0..200 days, spread
        never = i % 37 == 0
        rotated = None if never else STARTED - timedelta(days=age)
        common: dict[str, object] = {
            "vault_path": path,
            "max_age_days": 90,
            "age_days": None if never else age,
            "last_rotated": rotated,
        }
        if mode == "run":
            if endpoint == down:
                status, extra = (
                    Status.NOT_ATTEMPTED,
                    {"reason": "age reached max; not attempted: endpoint failed its probe"},
                )
            elif i % 97 == 0:
                status, extra = (
                    Status.FAILED,
                    {
                        "stage": Stage.STAGED,
                        "error": "HTTP 422 from target: password rejected; candidate discarded",
                        "duration_s": 1.2,
                    },
                )
            elif i % 211 == 0:
                status, extra = (
                    Status.IN_DOUBT,
                    {
                        "stage": Stage.PUSHED,
                        "verified": False,
                        "error": "timed out after push; candidate kept pending",
                        "duration_s": 10.4,
                    },
                )
            elif i % 53 == 0:
                status, extra = Status.SKIPPED, {"reason": "lease held by another run"}
            else:
                status, extra = (
                    Status.ROTATED,
                    {
                        "stage": Stage.PROMOTED,
                        "verified": kind != "connection",
                        "vault_version": 1 + i % 9,
                        "duration_s": 0.05 + (i % 100) / 1000,
                        "last_rotated": STARTED + timedelta(seconds=i % 600),
                        "age_days": 0.0,
                        "followups": ("access link 5e0c1a9b updated",)
                        if kind == "server" and i % 3 == 0
                        else (),
                    },
                )
        elif mode == "plan":
            if endpoint == down:
                status = Status.NOT_ATTEMPTED
                reason = "never rotated; endpoint rx07 failed its probe: connection refused"
            elif never:
                status, reason = Status.DUE, "never rotated"
            elif age >= 90:
                status, reason = Status.DUE, f"age {age:.1f} d reached max 90 d"
            else:
                status, reason = Status.NOT_DUE, f"age {age:.1f} d within max 90 d"
            extra = {"reason": reason, "vault_version": None if never else 1 + i % 9}
        else:
            soon = never or age + 7 > 90
            if i % 101 == 0:
                status = Status.LAST_ATTEMPT_FAILED
            elif never:
                status = Status.NEVER_ROTATED
            elif age > 90:
                status = Status.OVERDUE
            else:
                status = Status.COMPLIANT
            extra = {
                "reason": "" if never else f"age {age:.1f} d, max 90 d",
                "vault_version": None if never else 1 + i % 9,
                "due_before_next_run": soon,
                "last_failure_at": STARTED - timedelta(days=1)
                if status is Status.LAST_ATTEMPT_FAILED
                else None,
            }
        items.append(ItemResult(row=row, status=status, **{**common, **extra}))  # type: ignore[arg-type]
    drift = None
    if mode == "report":
        drift = Drift(
            secrets_without_row=tuple(f"rotate/retired/server/old-{j}" for j in range(1500)),
            rows_without_secret=tuple(f"rx01/computer/gone-{j}/RDP" for j in range(40)),
        )
    return RunRecord(
        run_id="20261124T020000Z-be01",
        mode=mode,
        dry_run=mode != "run",
        started_at=STARTED,
        finished_at=STARTED + timedelta(minutes=12, seconds=3),
        inventory="inventories/fleet.csv",
        config="rotate.toml",
        items=tuple(items),
        probes=probes,
        vault_addr="https://vault.example.net:8200",
        vault_mount="secret",
        identity="token-ops-rotation",
        tool_version="bench",
        inventory_sha256="9b2e" * 16,
        config_sha256="41c7" * 16,
        plan_hash="3f9a1c0d5e7b2a48" if mode == "plan" else "",
        schedule_days=7.0 if mode == "report" else None,
        drift=drift,
        stats={"vault_requests": n, "vendor_requests": n * 2},
    )


def measure(mode: str, n: int, keep: Path | None) -> dict[str, object]:
    """Build the record, then time the writers; the figures as a dict (run in a child)."""
    t0 = time.perf_counter()
    record = build_record(mode, n)
    built_s = time.perf_counter() - t0
    gc.collect()
    import rotate.report  # imported before the baseline: its import is not the writers' cost

    base_peak = _rss_mb()
    base_now = _current_mb()
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        out = keep / mode if keep else Path(tmp)
        t1 = time.perf_counter()
        paths = rotate.report.write_reports(record, out)  # type: ignore[arg-type]
        t2 = time.perf_counter()
        rotate.report.write_json(record, out / "elsewhere.json")  # type: ignore[arg-type]
        t3 = time.perf_counter()
        files = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
        html = paths.html.stat().st_size
    peak = _rss_mb()
    return {
        "mode": mode,
        "items": n,
        "build_s": built_s,
        "baseline_mb": base_now,
        "baseline_peak_mb": base_peak,
        "write_reports_s": t2 - t1,
        "write_json_s": t3 - t2,
        "total_s": t3 - t1,
        "peak_mb": peak,
        "above_mb": peak - base_peak,
        "files": len(files),
        "bytes": sum(files.values()),
        "main_html_bytes": html,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--mode", action="append", choices=MODES)
    parser.add_argument("--keep", type=Path, help="write the reports here and keep them")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = args.mode or list(MODES)
    if args.child:  # one mode, in a process of its own, figures on stdout as JSON
        print(json.dumps(measure(modes[0], args.items, args.keep)))
        return 0
    python = sys.version.split()[0]
    print(f"report writers, {args.items:,} items, {ENDPOINTS} endpoints, Python {python}")
    head = (
        f"{'mode':<7}{'record':>10}{'build':>8}{'reports':>9}{'json':>8}{'total':>8}"
        f"{'peak':>9}{'above':>9}{'files':>7}{'MB out':>8}  verdict"
    )
    print(head)
    print("-" * len(head))
    for mode in modes:
        cmd = [sys.executable, __file__, "--child", "--items", str(args.items), "--mode", mode]
        if args.keep:
            cmd += ["--keep", str(args.keep)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode:
            print(f"{mode:<7}FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
            continue
        f = json.loads(proc.stdout.strip().splitlines()[-1])
        ok = f["total_s"] <= TARGET_S and f["above_mb"] <= TARGET_MB
        print(
            f"{mode:<7}{f['baseline_mb']:>8.0f}MB{f['build_s']:>7.1f}s{f['write_reports_s']:>8.2f}s"
            f"{f['write_json_s']:>7.2f}s{f['total_s']:>7.2f}s{f['peak_mb']:>7.0f}MB"
            f"{f['above_mb']:>7.0f}MB{f['files']:>7}{f['bytes'] / 1e6:>8.1f}  "
            f"{'PASS' if ok else 'FAIL'} (<= {TARGET_S:g} s, <= {TARGET_MB:g} MB above)"
        )
    print(
        "\nrecord: RSS once the record is built (interpreter, imports, record); build: time to"
        "\nbuild it; reports: write_reports (JSON, CSV, HTML pages); json: write_json again"
        "\n(--json FILE); peak: ru_maxrss at the end; above: peak minus the peak before writing."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
