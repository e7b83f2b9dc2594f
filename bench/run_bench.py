"""`make bench`: how `rotate` copes with a fleet, on a real OpenBao and the vendor simulators.

A benchmark, never a test: it prints figures and PASS/FAIL against the targets of the
"Fleet scale" issue, and asserts nothing. Each scenario builds its own world on loopback:

* an inventory of N credentials spread evenly over E endpoints (3/4 Remotix: half address-
  book connections, write-only; half cloud-computer RDP and NEAR connections, read back;
  1/4 Spark View servers, read back) and a config allowing C requests in flight per endpoint
  and E x C items in flight in all;
* an OpenBao dev server (`rotate.devvault.DevVault`, its own `bao` process);
* the simulators in their own process (`python -m rotate simulate ... --latency-ms L
  --free-ports`), each vendor request delayed by L ms;
* `python -m rotate run` as a separate process, measured from the outside: wall time, peak
  RSS and CPU seconds (`os.wait4` on its pid), the simulators' request counters
  (`GET /_sim/state`), the `stats` of its `--json` record when it has them;
* the sequential peer (`bench/peer.py`), the script a user would write, on the same world.

Scenarios (default: all three):

  latency     10,000 credentials, 20 endpoints x 8 in flight, 50 ms per vendor request
  throughput  5,000 credentials, 0 ms latency
  large       100,000 rows: `rotate plan` and `rotate report` against an empty Vault prefix,
              then `rotate report` again once every row has a secret (as after a rotation)

    .venv/bin/python bench/run_bench.py [--scenario NAME ...] [--quick]
        [--rows N] [--endpoints E] [--latency-ms L] [--concurrency C] [--timeout S]

Only 127.0.0.1 is used; every process started here is stopped on the way out (Ctrl-C too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import http.client
import json
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from rotate.devvault import DevVault
from rotate.inventory import load_inventory
from rotate.settings import load_settings
from rotate.stores.kv import fan_out
from rotate.stores.kvhttp import HttpKV

PEER = Path(__file__).resolve().with_name("peer.py")
LOOPBACK = "127.0.0.1"
MOUNT = "secret"
PREFIX = "bench"
_MEASURED = Path(__file__).resolve().with_name("measured.py")
USERNAMES = ("administrator", "svc-backup", "svc-scan", "jdoe", "asmith", "kiosk", "ops")
CSV_HEADER = ("endpoint", "kind", "target", "protocol", "port", "username", "domain", "policy")
_PLACEHOLDER_URL = "http://127.0.0.1:9"  # the simulators pick free ports (--free-ports)
_SIM_START_S = 300.0  # seeding 100,000 rows takes a while on two cores
_PEER_SAMPLE = 500  # with latency, the peer is timed on the first rows and extrapolated

Say = Any  # Callable[[str], None]; kept loose so a plain print works too


# --- scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One world to measure and the issue's targets for it."""

    name: str
    rows: int
    endpoints: int = 20
    concurrency: int = 8  # per endpoint
    latency_ms: float = 50.0
    kind: str = "run"  # run: `rotate run` + the peer; inventory: `rotate plan` + `report`
    max_wall_s: float | None = None
    min_rate: float | None = None
    max_rss_mb: float | None = None
    peer_sample: int | None = None  # None: _PEER_SAMPLE with latency, all rows without
    custom: bool = False  # parameters differ from the issue's: targets are not judged

    def describe(self) -> str:
        what = "rotate plan + report" if self.kind == "inventory" else "rotate run"
        return (
            f"{self.name}: {what}, {self.rows:,} credentials over {self.endpoints} endpoints, "
            f"{self.concurrency} in flight per endpoint, {self.latency_ms:g} ms per vendor request"
        )


SCENARIOS = {
    "latency": Scenario("latency", 10_000, latency_ms=50.0, max_wall_s=30.0),
    "throughput": Scenario("throughput", 5_000, latency_ms=0.0, min_rate=400.0),
    "large": Scenario(
        "large", 100_000, latency_ms=0.0, kind="inventory", max_wall_s=60.0, max_rss_mb=300.0
    ),
}
QUICK = Scenario("quick", 1_000, latency_ms=50.0, peer_sample=200, custom=True)


# --- the inventory and config --------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    system: str  # remotix | sparkview

    @property
    def gateway_env(self) -> str:
        return f"BENCH_{self.name.upper()}_PASSWORD"


def fleet(count: int) -> list[Endpoint]:
    """`count` endpoints: a quarter Spark View gateways (at least one from two up), the rest
    Remotix apps."""
    spark = count // 4 if count >= 4 else (1 if count >= 2 else 0)
    remotix = count - spark
    return [Endpoint(f"rx{i:02d}", "remotix") for i in range(1, remotix + 1)] + [
        Endpoint(f"sv{i:02d}", "sparkview") for i in range(1, spark + 1)
    ]


def make_inventory(rows: int, endpoints: Sequence[Endpoint]) -> list[tuple[str, ...]]:
    """`rows` distinct credentials, round-robin over `endpoints` so each gets its share.

    On a Remotix endpoint every fourth-row cycle holds two address-book connections
    (RDP/NEAR/APPLE, write-only) and one cloud computer with an RDP and a NEAR connection
    (read back); on a Spark View endpoint every row is a server (read back).
    """
    out: list[tuple[str, ...]] = []
    for i in range(rows):
        e = endpoints[i % len(endpoints)]
        k = i // len(endpoints)  # this row's index on its endpoint
        user = USERNAMES[i % len(USERNAMES)]
        domain = "EXAMPLE" if i % 2 else ""
        if e.system == "sparkview":
            out.append((e.name, "server", f"srv-{i:06d}", "RDP", "", user, domain, ""))
        elif k % 4 in (0, 2):
            protocol = ("RDP", "NEAR", "APPLE")[i % 3]
            uid = f"{(i >> 16) & 0xFFFF:04X}-{i & 0xFFFF:04X}"
            out.append(
                (e.name, "connection", uid, protocol, "", user, domain * (protocol == "RDP"), "")
            )
        else:
            computer = f"cmp-{e.name}-{k // 4:06d}"
            protocol = "RDP" if k % 4 == 1 else "NEAR"
            out.append(
                (e.name, "computer", computer, protocol, "", user, domain * (protocol == "RDP"), "")
            )
    return out


def write_inventory(path: Path, rows: Sequence[tuple[str, ...]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
    return path


def vendor_trips(row: tuple[str, ...]) -> int:
    """Vendor round trips the full protocol needs for a row: the write, plus the read-back
    where the API has one (everything but an address-book connection)."""
    return 1 if row[1] == "connection" else 2


def config_text(
    vault_addr: str,
    prefix: str,
    endpoints: Sequence[Endpoint],
    urls: Mapping[str, str],
    per_endpoint: int,
) -> str:
    """rotate's TOML config for the scenario: E x C items in flight, C per endpoint."""
    out = [
        "# generated by bench/run_bench.py",
        "[vault]",
        f'addr = "{vault_addr}"',
        f'mount = "{MOUNT}"',
        f'prefix = "{prefix}"',
        'auth = "token"',
        "",
        "[run]",
        f"concurrency = {per_endpoint * len(endpoints)}",
        f"per_endpoint_concurrency = {per_endpoint}",
        "timeout_s = 10",
        "retries = 3",
        "max_age_days = 90",
        'lease_name = "bench"',
        "",
        "[policies.default]",
        "length = 20",
        "",
    ]
    for e in endpoints:
        out += [
            f"[endpoints.{e.name}]",
            f'system = "{e.system}"',
            f'url = "{urls.get(e.name, _PLACEHOLDER_URL)}"',
        ]
        if e.system == "sparkview":
            out.append(f'gateway_password_env = "{e.gateway_env}"')
        out.append("")
    return "\n".join(out)


# --- measuring a process -------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """A child process measured from the outside."""

    exit_code: int | None  # None: killed at the timeout
    wall_s: float
    cpu_s: float  # user + system
    max_rss_mb: float  # peak resident set, 10^6 bytes
    log: Path

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


def _reap(pid: int, deadline: float | None) -> tuple[int, Any] | None:
    """(wait status, rusage) of child `pid` once it ends, or None at `deadline`."""
    fd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    try:
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return status, usage
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return None
            if fd is not None:
                select.select([fd], [], [], left)
            else:
                time.sleep(0.01 if left is None else min(0.01, left))
    finally:
        if fd is not None:
            os.close(fd)


def measure(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path, timeout_s: float
) -> Measured:
    """Run `argv` to its end (SIGKILL after `timeout_s`): wall time, CPU, peak RSS."""
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed argv
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches the bench only, which stops it
        )
    reaped: tuple[int, Any] | None = None
    timed_out = False
    try:
        reaped = _reap(proc.pid, started + timeout_s)
        if reaped is None:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            reaped = _reap(proc.pid, None)
        wall = time.perf_counter() - started
    finally:
        if reaped is None:  # interrupted: stop it and collect it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
    assert reaped is not None
    status, usage = reaped
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        exit_code=None if timed_out else proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss * 1024 / 1e6,  # Linux reports KiB
        log=log,
    )


def where_cpu_goes(samples: Path, top: int = 25) -> str:
    """py-spy's collapsed stacks summarised: the share of samples by library (where the
    innermost frame is) and the functions with the most samples, self and inclusive."""
    by_library: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        leaf = frames[-1] if frames else "?"
        by_library[_library(leaf)] += n
        own[_function(leaf)] += n
        for name in {_function(f) for f in frames}:
            inclusive[name] += n
    if not total:
        return "no samples\n"

    def table(title: str, counts: Counter[str], limit: int) -> list[str]:
        rows = [f"{title}:"]
        rows += [f"  {100 * n / total:5.1f} %  {name}" for name, n in counts.most_common(limit)]
        return rows

    out = [f"{total} samples"]
    out += table("by library (innermost frame)", by_library, 15)
    out += table("functions, self", own, top)
    out += table("functions, inclusive", inclusive, top)
    return "\n".join(out) + "\n"


def _function(frame: str) -> str:
    """`name (path:line)` -> `name (file)`: lines of one function counted together."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def _library(frame: str) -> str:
    path = frame.partition(" (")[2]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            rest = path.split(marker, 1)[1].lstrip("/0123456789.")
            return rest.split("/", 1)[0].removesuffix(".py") or "?"
    return "rotate" if "/rotate/" in path else path.split(":", 1)[0] or "?"


def proc_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command name: state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float | None:
    """CPU seconds all cores together have spent busy since boot (/proc/stat), or None."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds used so far: the machine's, the bench's, OpenBao's, the simulators'."""

    machine: float | None
    bench: float
    vault: float | None
    sims: float | None


@dataclass(frozen=True)
class CpuShare:
    """Who else used the cores while one measured process ran."""

    wall_s: float
    vault: float | None
    sims: float | None
    foreign: float | None  # jobs that are not this benchmark's

    def describe(self, cores: int) -> str:
        parts = []
        if self.vault is not None:
            parts.append(f"OpenBao {self.vault:.1f} s")
        if self.sims is not None:
            parts.append(f"simulators {self.sims:.1f} s")
        if self.foreign is not None:
            parts.append(f"other jobs {self.foreign:.1f} s")
        return f"{', '.join(parts) or 'n/a'} (of {cores} x {self.wall_s:.1f} s)"

    def busy(self, cores: int) -> bool:
        """Other jobs took more than 5 % of the machine: the figures are low."""
        return self.foreign is not None and self.foreign > 0.05 * cores * self.wall_s


def cpu_share(before: CpuClock, after: CpuClock, measured: Measured) -> CpuShare:
    def spent(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    vault, sims = spent(before.vault, after.vault), spent(before.sims, after.sims)
    machine = spent(before.machine, after.machine)
    foreign = None
    if machine is not None:
        ours = measured.cpu_s + (vault or 0.0) + (sims or 0.0) + after.bench - before.bench
        foreign = max(0.0, machine - ours)
    return CpuShare(measured.wall_s, vault, sims, foreign)


# --- the simulators in their own process ---------------------------------------------------


class Simulators:
    """`rotate simulate` in a process of its own, on free loopback ports."""

    def __init__(self, inventory: Path, config: Path, latency_ms: float, env: Mapping[str, str]):
        self.inventory = inventory
        self.config = config
        self.latency_ms = latency_ms
        self.env = dict(env)
        self.urls: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._out = config.with_name("simulate.out")
        self._log = config.with_name("simulate.log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, expected: int, timeout_s: float = _SIM_START_S) -> dict[str, str]:
        """Start serving; return each endpoint's URL once all `expected` listen."""
        argv = [
            sys.executable,
            "-m",
            "rotate",
            "simulate",
            str(self.inventory),
            "--config",
            str(self.config),
            "--latency-ms",
            f"{self.latency_ms:g}",
            "--free-ports",
        ]
        with self._out.open("wb") as out, self._log.open("wb") as err:
            self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed argv
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=self.config.parent,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            # `rotate simulate` prints "<name> <system> <url>" per endpoint once it listens
            lines = [ln.split() for ln in self._out.read_text().splitlines()]
            self.urls = {p[0]: p[2] for p in lines if len(p) == 3}
            if len(self.urls) >= expected:
                return self.urls
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the simulators did not start; {self._log}:\n{tail}")
            time.sleep(0.1)

    def _call(self, url: str, method: str = "GET") -> dict[str, Any]:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port, timeout=60)
        try:
            conn.request(method, parts.path)
            answer = conn.getresponse()
            body = answer.read()
        finally:
            conn.close()
        if answer.status != 200:
            raise RuntimeError(f"{method} {url}: HTTP {answer.status}")
        data: dict[str, Any] = json.loads(body)
        return data

    def reset_counters(self) -> None:
        for url in self.urls.values():
            self._call(f"{url}/_sim/reset-counters", "POST")

    def counters(self) -> dict[str, dict[str, int]]:
        """Each simulator's `requests`, `writes` and `max_in_flight` since the last reset."""
        out = {}
        for name, url in self.urls.items():
            state = self._call(f"{url}/_sim/state")
            out[name] = {k: int(state[k]) for k in ("requests", "writes", "max_in_flight")}
            out[name]["forbidden"] = len(state.get("forbidden_calls", []))
        return out

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # `rotate simulate` closes its servers on SIGTERM
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- results -------------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the final table."""

    figure: str
    value: str
    target: str = ""
    verdict: str = ""


@dataclass
class Outcome:
    scenario: Scenario
    figures: list[Figure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # measurements other jobs disturbed

    def note_cpu(self, what: str, share: CpuShare) -> None:
        if share.busy(_cores()):
            self.busy.append(
                f"{what}: other jobs used {share.foreign or 0.0:.1f} CPU-s of "
                f"{_cores()} x {share.wall_s:.1f} s: its figures are low"
            )

    def add(
        self,
        figure: str,
        value: str,
        target: str = "",
        ok: bool | None = None,
        *,
        check: bool = False,
    ) -> None:
        """A figure; with a target, its verdict (a `check` is judged whatever the
        parameters, a performance target only for the issue's own)."""
        verdict = ""
        if target and ok is not None:
            custom = self.scenario.custom and not check
            verdict = "n/a (custom)" if custom else ("PASS" if ok else "FAIL")
        self.figures.append(Figure(figure, value, target, verdict))


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _per(count: float | None, n: int) -> str:
    return "n/a" if count is None or n == 0 else f"{count / n:.2f}"


def _stats(record: Mapping[str, Any] | None, key: str) -> int | None:
    stats = (record or {}).get("stats")
    value = stats.get(key) if isinstance(stats, dict) else None
    return value if isinstance(value, int) else None


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])[:600] or "(empty log)"


# --- the scenarios -------------------------------------------------------------------------


@dataclass
class World:
    """What one scenario runs against: files, OpenBao, the simulators, the environment."""

    scenario: Scenario
    workdir: Path
    vault: DevVault
    endpoints: list[Endpoint]
    rows: list[tuple[str, ...]]
    inventory: Path
    config: Path
    env: dict[str, str]
    sims: Simulators
    timeout_s: float
    profile: bool = False  # sample the rotate process with py-spy (figures then include it)

    def clock(self) -> CpuClock:
        return CpuClock(
            machine_busy_s(), own_cpu_s(), proc_cpu_s(self.vault.pid), proc_cpu_s(self.sims.pid)
        )

    def measure(self, argv: Sequence[str], tag: str) -> tuple[Measured, CpuShare]:
        """Run one process of the scenario to its end; its figures and who shared the cores."""
        before = self.clock()
        m = measure(argv, self.env, self.workdir, self.workdir / f"{tag}.log", self.timeout_s)
        return m, cpu_share(before, self.clock(), m)

    def rotate(
        self, command: str, tag: str, *extra: str
    ) -> tuple[Measured, CpuShare, dict[str, Any] | None]:
        record = self.workdir / f"{tag}.json"
        high_water = self.workdir / f"{tag}.hwm"
        high_water.unlink(missing_ok=True)
        argv = [
            sys.executable,
            str(_MEASURED),
            str(high_water),
            command,
            str(self.inventory),
            "--config",
            str(self.config),
            "--out-dir",
            str(self.workdir / "reports"),
            "--json",
            str(record),
            "-q",
            *extra,
        ]
        samples = self.workdir / f"{tag}.pyspy"
        if self.profile:
            spy = Path(sys.executable).with_name("py-spy")
            argv = [str(spy), "record", "--rate", "200", "--format", "raw", "-o", str(samples),
                    "--", *argv]  # fmt: skip
        m, share = self.measure(argv, tag)
        if high_water.exists():  # the program's own peak (see bench/measured.py)
            m = replace(m, max_rss_mb=int(high_water.read_text()) * 1024 / 1e6)
        if self.profile and samples.exists():
            (self.workdir / f"{tag}.profile.txt").write_text(where_cpu_goes(samples))
        return m, share, _load_json(record)


@contextlib.contextmanager
def world(
    scenario: Scenario, root: Path, timeout_s: float, say: Say, profile: bool = False
) -> Iterator[World]:
    """Build the scenario's files, start OpenBao and the simulators; stop both afterwards."""
    workdir = root / scenario.name
    workdir.mkdir(parents=True, exist_ok=True)
    endpoints = fleet(scenario.endpoints)
    rows = make_inventory(scenario.rows, endpoints)
    inventory = write_inventory(workdir / "inventory.csv", rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "ROTATE_"))}
    env.update({e.gateway_env: secrets.token_urlsafe(12) for e in endpoints})
    with DevVault() as vault:
        env.update(VAULT_ADDR=vault.addr, VAULT_TOKEN=vault.token.reveal())
        config = workdir / "rotate.toml"
        config.write_text(config_text(vault.addr, PREFIX, endpoints, {}, scenario.concurrency))
        sims = Simulators(inventory, config, scenario.latency_ms, env)
        try:
            say(f"OpenBao at {vault.addr}; starting {len(endpoints)} simulators")
            urls = sims.start(len(endpoints))
            config.write_text(
                config_text(vault.addr, PREFIX, endpoints, urls, scenario.concurrency)
            )
            yield World(
                scenario,
                workdir,
                vault,
                endpoints,
                rows,
                inventory,
                config,
                env,
                sims,
                timeout_s,
                profile,
            )
        finally:
            sims.stop()


def run_scenario(w: World, peer: bool, say: Say) -> Outcome:
    """`rotate run` on every row (all due: the Vault prefix is empty), then the peer."""
    s = w.scenario
    o = Outcome(s)
    n = len(w.rows)
    cores = _cores()
    w.sims.reset_counters()
    say(f"rotate run: {n:,} credentials")
    m, share, record = w.rotate("run", "run")
    o.note_cpu("rotate run", share)
    counters = w.sims.counters()

    summary = (record or {}).get("summary") or {}
    items = (record or {}).get("items") or []
    rotated = sum(1 for i in items if i.get("status") == "rotated")
    ok_run = m.exit_code == 0 and rotated == n and len(items) == n
    if m.timed_out:
        o.problems.append(f"rotate run killed after {w.timeout_s:g} s")
    elif not ok_run:
        o.problems.append(
            f"rotate run exited {m.exit_code}, {rotated}/{n} rotated, summary {summary}; "
            f"log {m.log}: {_tail(m.log)}"
        )
    rate = n / m.wall_s
    trips = sum(vendor_trips(r) for r in w.rows)
    ideal = trips * s.latency_ms / 1000 / (s.endpoints * s.concurrency)
    sim_requests = sum(c["requests"] for c in counters.values())
    peak = max((c["max_in_flight"] for c in counters.values()), default=0)
    forbidden = sum(c["forbidden"] for c in counters.values())

    wall = f"{m.wall_s:.1f} s" + (" (killed at the timeout)" if m.timed_out else "")
    if s.max_wall_s is not None:
        o.add("wall time", wall, f"<= {s.max_wall_s:g} s", m.wall_s <= s.max_wall_s)
    else:
        o.add("wall time", wall)
    if s.min_rate is not None:
        o.add("credentials/s", f"{rate:,.0f}", f">= {s.min_rate:g}", rate >= s.min_rate)
    else:
        o.add("credentials/s", f"{rate:,.0f}")
    o.add(
        "exit code, items rotated",
        f"{m.exit_code}, {rotated:,}/{n:,}",
        "0, all",
        ok_run,
        check=True,
    )
    o.add("peak RSS (rotate)", f"{m.max_rss_mb:.0f} MB")
    o.add(
        "CPU s / 1,000 credentials",
        f"{m.cpu_s * 1000 / n:.2f} s (total {m.cpu_s:.1f} s: {m.cpu_s / m.wall_s:.2f} of a core)",
    )
    o.add("CPU of the others during the run", share.describe(cores))
    o.add("Vault requests / credential", f"{_per(_stats(record, 'vault_requests'), n)} (record)")
    o.add(
        "vendor requests / credential",
        f"{_per(sim_requests, n)} (simulators), "
        f"{_per(_stats(record, 'vendor_requests'), n)} (record), "
        f"protocol minimum {trips / n:.2f}",
    )
    o.add(
        "max in flight per endpoint",
        f"{peak} (limit {s.concurrency})",
        f"<= {s.concurrency}",
        peak <= s.concurrency,
        check=True,
    )
    if forbidden:
        o.problems.append(f"{forbidden} forbidden vendor call(s) recorded by the simulators")
    if s.latency_ms > 0:
        o.add(
            "ideal (latency bound)",
            f"{ideal:.2f} s = {trips / n:.2f} trips x {s.latency_ms:g} ms x {n:,} "
            f"/ ({s.endpoints} x {s.concurrency})",
        )
        o.add("wall / ideal", f"{m.wall_s / ideal:.1f}")
    else:
        o.add("ideal (latency bound)", "0 s (no latency): CPU-bound")

    if peer:
        run_peer(w, o, m.wall_s, say)
    return o


def run_peer(w: World, o: Outcome, rotate_wall_s: float, say: Say) -> None:
    """The sequential peer on the same world (another Vault prefix), timed on a sample when
    latency would make the whole inventory take minutes."""
    s = w.scenario
    n = len(w.rows)
    sample = s.peer_sample if s.peer_sample is not None else (_PEER_SAMPLE if s.latency_ms else 0)
    limit = sample if 0 < sample < n else n
    say(f"sequential peer: {limit:,} credentials" + (" (a sample)" if limit < n else ""))
    w.sims.reset_counters()
    argv = [sys.executable, str(PEER), str(w.inventory), "--config", str(w.config)]
    argv += ["--limit", str(limit), "--prefix", "peer"]
    m, share = w.measure(argv, "peer")
    o.note_cpu("the peer", share)
    log = m.log
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    done = int(result.get("credentials", 0))
    loop_s = float(result.get("elapsed_s", 0.0))
    if m.exit_code != 0 or not done or result.get("failed"):
        o.problems.append(f"the peer exited {m.exit_code}: {_tail(log)}")
        o.add("peer (sequential)", "failed")
        return
    peer_rate = done / loop_s
    # start-up once, then the loop's pace over the whole inventory
    peer_wall = (m.wall_s - loop_s) + n / peer_rate
    how = f"extrapolated from the first {done:,}" if done < n else "all rows"
    o.add(
        "peer (sequential)",
        f"{peer_rate:,.1f} credentials/s, {peer_wall:,.1f} s for {n:,} ({how})",
    )
    o.add("speed-up over the peer", f"{peer_wall / rotate_wall_s:.1f}x")


def inventory_scenario(w: World, say: Say) -> Outcome:
    """`rotate plan` and `rotate report` over the whole inventory with the prefix empty, then
    `rotate report` once more with a secret for every row (the common case in production:
    each row's metadata read finds a version, and the drift check lists every folder)."""
    s = w.scenario
    o = Outcome(s)
    n = len(w.rows)
    for command, tag in (("plan", "plan"), ("report", "report"), ("report", "report-full")):
        if tag == "report-full":
            say(f"writing a secret for each of the {n:,} rows (not measured)")
            populate(w)
        w.sims.reset_counters()
        say(f"rotate {command}: {n:,} rows" + (", every secret present" if tag != command else ""))
        m, share, record = w.rotate(command, tag)
        o.note_cpu(f"rotate {tag}", share)
        counters = w.sims.counters()
        items = (record or {}).get("items") or []
        if m.timed_out:
            o.problems.append(f"rotate {tag} killed after {w.timeout_s:g} s")
        elif m.exit_code != 0 or len(items) != n:
            o.problems.append(
                f"rotate {tag} exited {m.exit_code} with {len(items):,}/{n:,} items; "
                f"log {m.log}: {_tail(m.log)}"
            )
        wall = f"{m.wall_s:.1f} s" + (" (killed at the timeout)" if m.timed_out else "")
        if s.max_wall_s is not None:
            o.add(f"{tag}: wall time", wall, f"<= {s.max_wall_s:g} s", m.wall_s <= s.max_wall_s)
        else:
            o.add(f"{tag}: wall time", wall)
        o.add(f"{tag}: rows/s", f"{n / m.wall_s:,.0f}")
        rss = f"{m.max_rss_mb:.0f} MB"
        if s.max_rss_mb is not None:
            o.add(f"{tag}: peak RSS", rss, f"<= {s.max_rss_mb:g} MB", m.max_rss_mb <= s.max_rss_mb)
        else:
            o.add(f"{tag}: peak RSS", rss)
        o.add(
            f"{tag}: CPU s / 1,000 rows",
            f"{m.cpu_s * 1000 / n:.2f} s ({m.cpu_s / m.wall_s:.2f} of a core)",
        )
        o.add(f"{tag}: CPU of the others", share.describe(_cores()))
        o.add(
            f"{tag}: requests / row",
            f"Vault {_per(_stats(record, 'vault_requests'), n)} (record), vendor "
            f"{sum(c['requests'] for c in counters.values())} in all (probes)",
        )
    return o


def populate(w: World) -> None:
    """Give every row of the inventory a current secret in Vault, as a rotation would."""
    settings = load_settings(w.config, {})
    rows = load_inventory(w.inventory, settings)
    kv = HttpKV(w.vault.settings(), w.vault.token.reveal)

    async def fill() -> None:
        try:
            await fan_out(
                lambda r: kv.write(
                    r.vault_path, {"username": r.username, "password": secrets.token_urlsafe(15)}, 0
                ),
                rows,
                48,
            )
        finally:
            await kv.aclose()

    asyncio.run(fill())


# --- the command ---------------------------------------------------------------------------


def print_table(outcomes: Sequence[Outcome], out: IO[str]) -> None:
    head = ("scenario", "figure", "value", "target", "verdict")
    rows: list[tuple[str, ...]] = []
    for o in outcomes:
        for i, f in enumerate(o.figures):
            rows.append((o.scenario.name if i == 0 else "", f.figure, f.value, f.target, f.verdict))
        for p in o.problems:
            rows.append(("", "PROBLEM", p, "", "FAIL"))
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    widths[2] = min(widths[2], 70)

    def line(r: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r)).rstrip()

    print(line(head), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    previous = None
    for r in rows:
        if r[0] and previous is not None:
            print(file=out)
        print(line(r), file=out)
        previous = r
    for o in outcomes:
        print(f"\n{o.scenario.describe()}", file=out)
        for note in o.busy:
            print(f"  BUSY MACHINE: {note}", file=out)


def choose(args: argparse.Namespace) -> list[Scenario]:
    overrides = {
        k: v
        for k, v in (
            ("rows", args.rows),
            ("endpoints", args.endpoints),
            ("latency_ms", args.latency_ms),
            ("concurrency", args.concurrency),
            ("peer_sample", args.peer_sample),
        )
        if v is not None
    }
    judged = {k for k in overrides if k != "peer_sample"}
    if args.quick:
        chosen = [QUICK]
    elif args.scenario:
        names = list(SCENARIOS) if "all" in args.scenario else list(dict.fromkeys(args.scenario))
        chosen = [SCENARIOS[name] for name in names]
    elif judged:
        chosen = [replace(SCENARIOS["latency"], name="custom", custom=True)]
    else:
        chosen = list(SCENARIOS.values())
    return [replace(s, **overrides, custom=s.custom or bool(judged)) for s in chosen]


def code_version() -> str:
    """The commit the figures belong to (`+dirty`: uncommitted changes), when git can say."""
    repo = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(repo), "describe", "--always", "--dirty=+dirty"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        help="a scenario to run (repeatable; default: all three)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 credentials, 50 ms: a smoke check"
    )
    parser.add_argument("--rows", type=int, default=None, help="credentials in the inventory")
    parser.add_argument("--endpoints", type=int, default=None, help="endpoints (default 20)")
    parser.add_argument(
        "--latency-ms", type=float, default=None, help="added to each vendor request"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="requests in flight per endpoint (8)"
    )
    parser.add_argument(
        "--peer-sample",
        type=int,
        default=None,
        help=f"time the peer on the first N rows (default {_PEER_SAMPLE} with latency; 0: all)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the sequential peer")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample rotate with py-spy; where its CPU goes lands in <tag>.profile.txt "
        "(use with --workdir; the timings then include the sampler)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="kill a measured process after S seconds"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep inventories, configs, logs here"
    )
    args = parser.parse_args(argv)
    if (args.rows is not None and args.rows < 1) or (
        args.endpoints is not None and args.endpoints < 1
    ):
        parser.error("--rows and --endpoints must be at least 1")
    scenarios = choose(args)
    version = code_version()

    signal.signal(signal.SIGTERM, _terminate)  # unwinds like Ctrl-C: everything is stopped
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    root = args.workdir or Path(tempfile.mkdtemp(prefix="rotate-bench-"))
    outcomes: list[Outcome] = []
    try:
        for s in scenarios:
            say(s.describe())
            try:
                with world(s, root, args.timeout, say, args.profile) as w:
                    if s.kind == "inventory":
                        outcome = inventory_scenario(w, say)
                    else:
                        outcome = run_scenario(w, not args.no_peer, say)
            except (RuntimeError, OSError) as exc:
                outcome = Outcome(s)
                outcome.problems.append(f"could not run: {exc}")
            outcomes.append(outcome)
    except KeyboardInterrupt:
        say("interrupted: every process started here is stopped")
        if outcomes:
            print_table(outcomes, sys.stdout)
        return 130
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(file=sys.stdout)
    print_table(outcomes, sys.stdout)
    print(
        f"\nrotate at {version}, {time.strftime('%Y-%m-%d')}; "
        f"{_cores()} cores; OpenBao, the simulators and rotate share them."
        " Figures drift between runs: compare ratios measured side by side.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
