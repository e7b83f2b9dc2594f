"""The report writers: JSON contract, CSV safety, HTML content and escaping, atomic files."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest

from rotate.models import (
    Drift,
    EndpointProbe,
    ItemResult,
    Row,
    RunRecord,
    Stage,
    Status,
)
from rotate.report import (
    ReportPaths,
    _files,
    csv_report,
    html_report,
    json_record,
    render_html,
    report_paths,
    stats,
    write_json,
    write_reports,
)

STARTED = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
VAULT_ADDR = "https://vault.example.net:8200"
HOSTILE = "<script>alert(1)</script>"


def row(
    target: str,
    *,
    endpoint: str = "office-mac",
    kind: str = "connection",
    username: str = "admin",
    protocol: str = "RDP",
    port: int | None = None,
    line: int = 2,
    **kw: object,
) -> Row:
    return Row(
        line=line,
        endpoint=endpoint,
        kind=kind,
        target=target,
        username=username,
        protocol=protocol,
        port=port,
        **kw,
    )


def item(r: Row, status: Status, **kw: object) -> ItemResult:
    return ItemResult(row=r, status=status, vault_path=f"rotate/{r.endpoint}/{r.target}", **kw)


def record(
    items: list[ItemResult],
    *,
    mode: str = "run",
    run_id: str = "20250304T050607Z-ab12",
    aborted: str = "",
    probes: tuple[EndpointProbe, ...] = (),
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        mode=mode,
        dry_run=mode != "run",
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=83.5),
        inventory="inventories/prod.csv",
        config="rotate.toml",
        items=tuple(items),
        probes=probes,
        vault_addr=VAULT_ADDR,
        vault_mount="secret",
        aborted=aborted,
    )


@pytest.fixture
def mixed() -> RunRecord:
    """A run with every kind and the run-mode outcomes, listed rotated-first on purpose."""
    items = [
        item(
            row("conn-ok-1", line=2),
            Status.ROTATED,
            stage=Stage.PROMOTED,
            verified=True,
            vault_version=3,
            duration_s=0.4,
            last_rotated=STARTED,
        ),
        item(
            row("comp-ok-2", kind="computer", protocol="VNC", port=5901, line=3),
            Status.ROTATED,
            stage=Stage.PROMOTED,
            verified=True,
            vault_version=1,
        ),
        item(
            row("srv-ok-3", endpoint="gw1", kind="server", domain="CORP", line=4),
            Status.ROTATED,
            stage=Stage.PROMOTED,
            verified=True,
            vault_version=7,
        ),
        item(
            row("conn-failed-4", line=5),
            Status.FAILED,
            stage=Stage.STAGED,
            error="HTTP 500 from target",
        ),
        item(
            row("srv-doubt-5", endpoint="gw1", kind="server", line=6),
            Status.IN_DOUBT,
            stage=Stage.PUSHED,
            verified=False,
            error="timed out after push",
        ),
        item(
            row("comp-na-6", kind="computer", protocol="NEAR", line=7),
            Status.NOT_ATTEMPTED,
            reason="failure threshold crossed",
        ),
        item(
            row("conn-skip-7", protocol="APPLE", line=8),
            Status.SKIPPED,
            reason="lease held by another run",
        ),
    ]
    probes = (
        EndpointProbe("office-mac", "remotix", True, "v4.2"),
        EndpointProbe("gw1", "sparkview", False, "HTTP 503"),
    )
    return record(items, probes=probes)


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def table_body(html: str) -> str:
    return html.split('<table id="items"', 1)[1].split("</table>", 1)[0]


# --- JSON ---------------------------------------------------------------------------------


def test_json_record_has_contract_keys_and_summary(mixed: RunRecord) -> None:
    data = json_record(mixed)
    for key in (
        "run_id",
        "mode",
        "dry_run",
        "started_at",
        "finished_at",
        "summary",
        "items",
        "probes",
        "inventory",
        "config",
        "vault_addr",
        "vault_mount",
        "aborted",
    ):
        assert key in data, key
    assert data["run_id"] == "20250304T050607Z-ab12"
    assert data["mode"] == "run"
    assert data["dry_run"] is False
    assert datetime.fromisoformat(str(data["started_at"])) == STARTED
    assert datetime.fromisoformat(str(data["finished_at"])) == STARTED + timedelta(seconds=83.5)
    assert data["summary"] == {
        "total": 7,
        "rotated": 3,
        "failed": 1,
        "skipped": 1,
        "in_doubt": 1,
        "not_attempted": 1,
    }
    assert data["probes"] == [
        {"endpoint": "office-mac", "system": "remotix", "ok": True, "detail": "v4.2"},
        {"endpoint": "gw1", "system": "sparkview", "ok": False, "detail": "HTTP 503"},
    ]


def test_json_items_are_the_item_records_in_order(mixed: RunRecord) -> None:
    items = json_record(mixed)["items"]
    assert isinstance(items, list)
    assert len(items) == len(mixed.items)
    assert items == [i.as_record() for i in mixed.items]
    for rec in items:
        for key in (
            "endpoint",
            "kind",
            "target",
            "protocol",
            "port",
            "username",
            "status",
            "verified",
            "vault_path",
            "vault_version",
            "error",
        ):
            assert key in rec, key


def test_write_json_writes_the_record(tmp_path: Path, mixed: RunRecord) -> None:
    path = write_json(mixed, tmp_path / "out.json")
    assert json.loads(path.read_text("utf-8")) == json_record(mixed)


# --- CSV ----------------------------------------------------------------------------------


def test_csv_has_header_and_one_line_per_item(mixed: RunRecord) -> None:
    lines = read_csv(csv_report.dumps(mixed))
    assert lines[0] == list(csv_report.COLUMNS)
    assert len(lines) == 1 + len(mixed.items)
    col = {name: i for i, name in enumerate(lines[0])}
    assert [line[col["target"]] for line in lines[1:]] == [i.row.target for i in mixed.items]
    first = lines[1]
    assert first[col["status"]] == "rotated"
    assert first[col["verified"]] == "true"
    assert first[col["vault_version"]] == "3"
    assert first[col["port"]] == ""


def test_csv_columns_cover_every_item_field(mixed: RunRecord) -> None:
    # A field added to as_record() must not silently go missing from the CSV.
    assert set(csv_report.COLUMNS) == set(mixed.items[0].as_record())


@pytest.mark.parametrize(
    "hostile",
    ["=cmd|' /C calc'!A0", "+1", "-1", "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "\uff1d1+1"],
)
def test_csv_neutralises_formula_cells(hostile: str) -> None:
    rec = record(
        [
            item(row(hostile, username=hostile, owner=hostile), Status.FAILED, error=hostile),
            item(row("plain-target", line=3, username="alice"), Status.ROTATED),
        ]
    )
    lines = read_csv(csv_report.dumps(rec))
    col = {name: i for i, name in enumerate(lines[0])}
    for name in ("target", "username", "owner", "error"):
        assert lines[1][col[name]] == "'" + hostile, name
    assert lines[2][col["target"]] == "plain-target"
    assert lines[2][col["username"]] == "alice"


# --- HTML ---------------------------------------------------------------------------------


def test_html_shows_summary_figures_and_every_target(mixed: RunRecord) -> None:
    html = render_html(mixed)
    figures = {
        what: n
        for n, what in re.findall(r'<span class="n">(\d+)</span> <span class="what">([^<]+)<', html)
    }
    assert figures == {
        "total": "7",
        "rotated": "3",
        "failed": "1",
        "in doubt": "1",
        "not attempted": "1",
        "skipped": "1",
    }
    for it in mixed.items:
        assert it.row.target in table_body(html)
    assert "20250304T050607Z-ab12" in html
    assert "<title>Rotation run 20250304T050607Z-ab12</title>" in html
    assert VAULT_ADDR in html
    assert "1 min 24 s" in html  # duration in the manifest
    assert "pushed only" in html  # the in-doubt item was pushed, not verified
    assert "HTTP 503" in html  # the failed probe's detail


def test_html_figures_of_each_mode_then_any_other_non_zero() -> None:
    def shown(rec: RunRecord) -> list[str]:
        return re.findall(r'<span class="what">([^<]+)</span>', render_html(rec))

    report = record(
        [item(row("a"), Status.OVERDUE), item(row("b", line=3), Status.COMPLIANT)], mode="report"
    )
    # A compliance report always shows its four statuses, with their shares.
    assert shown(report) == [
        "total",
        "compliant",
        "overdue",
        "never rotated",
        "last attempt failed",
    ]
    plan = record([item(row("a"), Status.DUE), item(row("b", line=3), Status.FAILED)], mode="plan")
    assert shown(plan) == ["total", "due", "not due", "not attempted", "failed"]
    run = record([item(row("a"), Status.ROTATED)])
    assert shown(run) == ["total", "rotated", "failed", "in doubt", "not attempted", "skipped"]


def test_html_lists_failures_first_then_by_endpoint_and_target(mixed: RunRecord) -> None:
    body = table_body(render_html(mixed))
    order = re.findall(r'<tr data-status="([a-z_]+)"', body)
    assert order[:3] == ["failed", "in_doubt", "not_attempted"]
    assert set(order[3:]) == {"rotated", "skipped"}
    targets = [t for t in re.findall(r'<td class="mono wrap target">([^ <]+) <span', body)]
    # The rest, by endpoint then target: gw1 before office-mac.
    assert targets[3:] == ["srv-ok-3", "comp-ok-2", "conn-ok-1", "conn-skip-7"]
    assert body.index("conn-failed-4") < body.index("conn-ok-1")


def test_html_orders_numbered_targets_naturally() -> None:
    rec = record([item(row(f"host-{n}", line=n), Status.ROTATED) for n in (10, 2, 1)])
    body = table_body(render_html(rec))
    assert body.index("host-1 ") < body.index("host-2 ") < body.index("host-10 ")


@pytest.mark.parametrize(
    ("mode", "title"),
    [("run", "Rotation run"), ("plan", "Dry-run plan"), ("report", "Compliance report")],
)
def test_html_title_names_the_mode(mode: str, title: str) -> None:
    html = render_html(record([item(row("a"), Status.DUE)], mode=mode, run_id="r-1"))
    assert f'<h1>{title} <span class="run-id">r-1</span></h1>' in html


@pytest.mark.parametrize("mode", ["run", "plan", "report"])
def test_html_escapes_hostile_inventory_text(mode: str) -> None:
    hostile_row = row(
        f"t{HOSTILE}",
        username=HOSTILE,
        notes=HOSTILE,
        domain=HOSTILE,
        endpoint=f"e{HOSTILE}",
        owner=HOSTILE,
        policy=HOSTILE,
    )
    rec = record(
        [
            item(hostile_row, Status.FAILED, reason=HOSTILE, error='x" onmouseover="alert(1)'),
            item(replace(hostile_row, line=3, target="t2"), Status.OVERDUE, age_days=200.0),
        ],
        mode=mode,
        probes=(EndpointProbe(f"e{HOSTILE}", "remotix", False, HOSTILE),),
        aborted=HOSTILE,
    )
    rec = replace(
        rec,
        identity=HOSTILE,
        inventory=HOSTILE,
        config=HOSTILE,
        plan_hash=HOSTILE,
        drift=Drift((HOSTILE,), (HOSTILE,)),
    )
    html = render_html(rec)
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'onmouseover="alert' not in html
    # The page's one script is its own: the CSP hash is the hash of that script.
    assert html.count("<script>") == 1
    # the endpoint's name as drawn in the chart (SVG text) is escaped too
    assert '<text class="name" x="192" y="22.5" text-anchor="end">e&lt;script&gt;' in html


def test_html_references_no_external_asset(mixed: RunRecord) -> None:
    html = render_html(mixed)
    assert "<link" not in html
    assert not re.search(r"\ssrc\s*=", html)
    assert "@import" not in html
    assert "url(" not in html
    assert not re.search(r"href\s*=", html)
    # The only URL in the page is the record's Vault address, shown as text.
    assert re.findall(r"https?://[^\s<\"']+", html) == [VAULT_ADDR]


def test_html_content_security_policy_matches_inline_style_and_script(mixed: RunRecord) -> None:
    # A mismatched hash would make the browser drop the page's own style and script.
    html = render_html(mixed)
    found = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert found is not None
    csp = unescape(found.group(1))
    assert "default-src 'none'" in csp
    for tag in ("style", "script"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        assert body is not None
        digest = base64.b64encode(hashlib.sha256(body.group(1).encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in csp


def test_html_has_print_stylesheet_and_reads_without_script(mixed: RunRecord) -> None:
    html = render_html(mixed)
    assert "@media print" in html
    assert '<html lang="en">' in html
    # The filter controls appear only when the script runs.
    assert '<div id="item-tools" class="tools" hidden>' in html
    assert html.count('<th scope="col"') >= 13


def test_html_shows_aborted_reason_prominently() -> None:
    html = render_html(record([], aborted="failure threshold crossed (5 of 10)"))
    assert '<section class="aborted"' in html
    assert "failure threshold crossed (5 of 10)" in html.split("Summary", 1)[0]
    assert '<section class="aborted"' not in render_html(record([]))


def _many(n_ok: int, n_bad: int) -> RunRecord:
    items = [item(row(f"ok-{i:05d}", line=i + 2), Status.ROTATED) for i in range(n_ok)]
    items += [
        item(row(f"bad-{i:05d}", line=n_ok + i + 2), Status.FAILED, error="boom")
        for i in range(n_bad)
    ]
    return record(items)


def test_html_large_run_lists_only_items_needing_attention() -> None:
    html = render_html(_many(5900, 300), csv_name="run-x.csv", json_name="run-x.json")
    body = table_body(html)
    assert body.count('<tr data-status="failed"') == 300
    assert 'data-status="rotated"' not in body
    assert "run-x.csv" in html
    assert "run-x.json" in html
    assert '<span class="n">6200</span> <span class="what">total</span>' in html
    assert '<span class="n">5900</span> <span class="what">rotated</span>' in html


def test_html_large_run_caps_the_table() -> None:
    html = render_html(_many(0, html_report.MAX_TABLE_ITEMS + 50))
    body = table_body(html)
    assert body.count("<tr data-status=") == html_report.MAX_TABLE_ITEMS
    assert f"the first {html_report.MAX_TABLE_ITEMS} of the " in html


def test_html_small_run_lists_every_item() -> None:
    html = render_html(_many(html_report.MAX_TABLE_ITEMS - 10, 10))
    assert table_body(html).count("<tr data-status=") == html_report.MAX_TABLE_ITEMS
    assert "too many for one page" not in html


# --- files --------------------------------------------------------------------------------


def test_write_reports_names_files_by_mode_and_run_id(tmp_path: Path, mixed: RunRecord) -> None:
    out = tmp_path / "new" / "dir"
    paths = write_reports(mixed, out)
    stem = "run-20250304T050607Z-ab12"
    assert paths == ReportPaths(
        html=out / f"{stem}.html",
        json=out / f"{stem}.json",
        csv=out / f"{stem}.csv",
        accounts_csv=out / f"{stem}-accounts.csv",
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(f"{stem}.{e}" for e in ("csv", "html", "json")), f"{stem}-accounts.csv"]
    )
    assert json.loads(paths.json.read_text("utf-8"))["run_id"] == mixed.run_id
    assert len(read_csv(paths.csv.read_text("utf-8"))) == 1 + len(mixed.items)
    assert "conn-failed-4" in paths.html.read_text("utf-8")


def test_write_reports_replaces_earlier_files_leaving_no_temp_files(
    tmp_path: Path, mixed: RunRecord
) -> None:
    write_reports(record([]), tmp_path)
    paths = write_reports(mixed, tmp_path)
    assert len(json.loads(paths.json.read_text("utf-8"))["items"]) == len(mixed.items)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (paths.html, paths.json, paths.csv, paths.accounts_csv)
    )


def test_failed_atomic_write_keeps_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _files.write_atomic(target, b"new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "a\\b", "a\0b", ""])
def test_report_paths_refuse_a_run_id_that_leaves_out_dir(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        report_paths(record([], run_id=run_id), tmp_path)


def test_all_names_the_public_api() -> None:
    import rotate.report

    assert {"ReportPaths", "json_record", "write_json", "write_reports"} <= set(
        rotate.report.__all__
    )
    for name in rotate.report.__all__:
        assert callable(getattr(rotate.report, name)), name


# --- hand-built records of each mode, with known figures (also used by the browser test) ----

#: planted in inventory text: were it to run, the page's title and body would show it
PLANTED = (
    '<script>document.title="PWNED";'
    'document.body.insertAdjacentHTML("beforeend",\'<p id="pwned">PWNED</p>\')</script>'
)
PLANTED_IMG = "<img src=x onerror=\"document.title='PWNED'\">"
PLAN_HASH = "3f9a1c0d5e7b2a48"
SHA_INV = "9b2e" * 16
SHA_CONF = "41c7" * 16


def _manifest(mode: str, items: list[ItemResult], **kw: object) -> RunRecord:
    fields: dict[str, object] = {
        "run_id": f"20250304T050607Z-{mode[:2]}12",
        "mode": mode,
        "dry_run": mode != "run",
        "started_at": STARTED,
        "finished_at": STARTED + timedelta(seconds=83.5),
        "inventory": "inventories/prod.csv",
        "config": "rotate.toml",
        "items": tuple(items),
        "vault_addr": VAULT_ADDR,
        "vault_mount": "secret",
        "identity": "token-ops-rotation",
        "tool_version": "1.4.2",
        "inventory_sha256": SHA_INV,
        "config_sha256": SHA_CONF,
    }
    fields.update(kw)
    return RunRecord(**fields)  # type: ignore[arg-type]


def sample_run() -> RunRecord:
    """18 items on 4 endpoints: 12 rotated, 2 failed, 1 in doubt, 2 not attempted, 1 skipped."""
    items: list[ItemResult] = []
    line = iter(range(2, 100))

    def add(endpoint: str, kind: str, target: str, status: Status, **kw: object) -> None:
        protocol = {"connection": "RDP", "computer": "VNC", "server": "RDP"}[kind]
        r = row(target, endpoint=endpoint, kind=kind, protocol=protocol, line=next(line))
        items.append(item(r, status, **kw))

    ok = {"stage": Stage.PROMOTED, "last_rotated": STARTED, "duration_s": 0.8}
    for n in range(1, 6):  # address-book connections are write-only: pushed, not verified
        add(
            "office-mac",
            "connection",
            f"conn-{n}",
            Status.ROTATED,
            verified=False,
            vault_version=n + 1,
            **ok,
        )
    add(
        "office-mac",
        "connection",
        f"conn-6{PLANTED}",
        Status.FAILED,
        stage=Stage.STAGED,
        error="HTTP 422 from target: password rejected; candidate discarded",
        duration_s=1.2,
    )
    add("office-mac", "connection", "conn-7", Status.SKIPPED, reason="age 3.0 d within max 90 d")
    for n in range(1, 5):
        add("cloud", "computer", f"mac-{n}", Status.ROTATED, verified=True, vault_version=3, **ok)
    add(
        "cloud",
        "computer",
        "mac-5",
        Status.IN_DOUBT,
        stage=Stage.PUSHED,
        verified=False,
        error="timed out after push; candidate kept pending, the next run settles it",
        duration_s=10.4,
    )
    for n in range(1, 4):
        add("gw1", "server", f"srv-{n}", Status.ROTATED, verified=True, vault_version=7, **ok)
    add(
        "gw1",
        "server",
        "srv-4",
        Status.FAILED,
        stage=Stage.STAGED,
        error="HTTP 500 from target",
        duration_s=3.1,
    )
    for n in range(1, 3):
        add(
            "edge",
            "server",
            f"edge-{n}",
            Status.NOT_ATTEMPTED,
            reason="age 120.0 d reached max 90 d; not attempted: endpoint failed its probe",
        )
    probes = (
        EndpointProbe("office-mac", "remotix", True, "Remotix Cloud API 4.2"),
        EndpointProbe("cloud", "remotix", True, "Remotix Cloud API 4.2"),
        EndpointProbe("gw1", "sparkview", True, "Spark View 7.1"),
        EndpointProbe("edge", "sparkview", False, "connection refused"),
    )
    return _manifest("run", items, probes=probes)


def sample_plan() -> RunRecord:
    """16 items: 8 due (3 never rotated, 4 over max age, 1 unfinished), 6 not due,
    2 not attempted (endpoint edge failed its probe)."""
    items: list[ItemResult] = []
    line = iter(range(2, 100))

    def add(
        endpoint: str,
        target: str,
        status: Status,
        reason: str,
        age: float | None,
        policy: str = "default",
        kind: str = "computer",
        **kw: object,
    ) -> None:
        protocol = "VNC" if policy == "vnc" else "RDP"
        r = row(
            target, endpoint=endpoint, kind=kind, protocol=protocol, line=next(line), policy=policy
        )
        rotated = None if age is None else STARTED - timedelta(days=age)
        items.append(
            item(
                r,
                status,
                reason=reason,
                age_days=age,
                max_age_days=90,
                last_rotated=rotated,
                vault_version=None if age is None else 2,
                **kw,
            )
        )

    for n in range(1, 4):
        add(
            "cloud",
            f"new-{n}",
            Status.DUE,
            "never rotated",
            None,
            policy="vnc" if n == 1 else "default",
        )
    for n, age in enumerate((91.0, 120.5, 200.0, 95.2), 1):
        add(
            "office-mac",
            f"old-{n}",
            Status.DUE,
            f"age {age:.1f} d reached max 90 d",
            age,
            kind="connection",
            policy="strict" if n == 2 else "default",
        )
    add(
        "cloud",
        f"half-1{PLANTED}",
        Status.DUE,
        "unfinished rotation from run 20250301T000000Z-aa00: resume it",
        12.0,
    )
    for n, age in enumerate((1.0, 5.5, 30.0, 44.4, 60.0, 89.9), 1):
        add(
            "gw1",
            f"srv-{n}",
            Status.NOT_DUE,
            f"age {age:.1f} d within max 90 d",
            age,
            kind="server",
        )
    for n in range(1, 3):
        add(
            "edge",
            f"edge-{n}",
            Status.NOT_ATTEMPTED,
            "never rotated; endpoint edge failed its probe: connection refused",
            None,
            kind="server",
        )
    probes = (
        EndpointProbe("cloud", "remotix", True, "Remotix Cloud API 4.2"),
        EndpointProbe("office-mac", "remotix", True, "Remotix Cloud API 4.2"),
        EndpointProbe("gw1", "sparkview", True, "Spark View 7.1"),
        EndpointProbe("edge", "sparkview", False, f"connection refused {PLANTED_IMG}"),
    )
    return _manifest("plan", items, probes=probes, plan_hash=PLAN_HASH)


#: the compliance sample: (endpoint, age in days, max age, status, overdue by the next run)
COMPLIANCE_ROWS: tuple[tuple[str, float | None, int, Status], ...] = (
    ("office-mac", 0.5, 90, Status.COMPLIANT),  # 0-7
    ("office-mac", 7.9, 90, Status.COMPLIANT),  # 0-7: 7 whole days
    ("office-mac", 12.0, 90, Status.COMPLIANT),  # 8-30
    ("office-mac", 40.0, 90, Status.COMPLIANT),  # 31-60
    ("office-mac", 70.0, 90, Status.COMPLIANT),  # 61-90
    ("office-mac", 95.0, 90, Status.OVERDUE),  # 91-180
    ("office-mac", None, 90, Status.NEVER_ROTATED),  # never
    ("cloud", 8.0, 90, Status.COMPLIANT),  # 8-30
    ("cloud", 5.0, 90, Status.COMPLIANT),  # 0-7
    ("cloud", 85.0, 90, Status.COMPLIANT),  # 61-90, overdue within 7 days
    ("cloud", 200.0, 90, Status.OVERDUE),  # > 180
    ("cloud", 150.0, 90, Status.LAST_ATTEMPT_FAILED),  # 91-180
    ("gw1", 31.0, 60, Status.COMPLIANT),  # 31-60
    ("gw1", 60.5, 60, Status.OVERDUE),  # 31-60: 60 whole days, over a max of 60
    ("gw1", 61.0, 90, Status.COMPLIANT),  # 61-90
    ("gw1", 181.0, 365, Status.COMPLIANT),  # > 180
    ("gw1", None, 90, Status.NEVER_ROTATED),  # never
    ("gw1", None, 90, Status.LAST_ATTEMPT_FAILED),  # never: the first attempt failed
    ("gw1", 3.0, 90, Status.COMPLIANT),  # 0-7
    ("gw1", 100.0, 90, Status.OVERDUE),  # 91-180
)
SCHEDULE_DAYS = 7.0
DRIFT = Drift(
    secrets_without_row=("rotate/old-host/connection/c-9/RDP", "rotate/gw1/server/retired-2/RDP"),
    rows_without_secret=(
        "office-mac/connection/cred-7/RDP",
        "gw1/server/cred-17/RDP",
        "gw1/server/cred-18/RDP",
    ),
)


def sample_compliance() -> RunRecord:
    """20 credentials: 12 compliant (60 %), 4 overdue (20 %), 2 never rotated (10 %),
    2 whose last attempt failed (10 %); 9 overdue by the next run, 7 days away."""
    items = []
    for n, (endpoint, age, max_age, status) in enumerate(COMPLIANCE_ROWS, 1):
        kind = {"office-mac": "connection", "cloud": "computer", "gw1": "server"}[endpoint]
        r = row(
            f"cred-{n}",
            endpoint=endpoint,
            kind=kind,
            line=n + 1,
            max_age_days=max_age,
            owner=PLANTED if n == 4 else "it-ops",
        )
        rotated = None if age is None else STARTED - timedelta(days=age)
        failed = STARTED - timedelta(days=1) if status is Status.LAST_ATTEMPT_FAILED else None
        items.append(
            item(
                r,
                status,
                age_days=age,
                max_age_days=max_age,
                last_rotated=rotated,
                vault_version=None if age is None else 4,
                last_failure_at=failed,
                due_before_next_run=age is None or age + SCHEDULE_DAYS > max_age,
                reason="" if age is None else f"age {age:.1f} d, max {max_age} d",
            )
        )
    return _manifest("report", items, schedule_days=SCHEDULE_DAYS, drift=DRIFT)


def figures_of(html: str) -> dict[str, tuple[int, str | None]]:
    """The summary figures of a page: status -> (count, share shown or None)."""
    found = re.findall(
        r'<li class="figure f-([a-z_]+)[^"]*"><span class="n">(\d+)</span> '
        r'<span class="what">[^<]+</span>(?: <span class="share">([\d.]+ %)</span>)?',
        html,
    )
    return {key: (int(n), share or None) for key, n, share in found}


def histogram_of(html: str) -> dict[str, int]:
    """The age histogram's columns as drawn: bucket -> the count written above it."""
    found = re.findall(
        r'<g class="bar" data-bucket="([^"]+)">.*?<text class="count"[^>]*>(\d+)</text>', html, re.S
    )
    return {bucket: int(n) for bucket, n in found}


# --- compliance: exact figures ------------------------------------------------------------

#: what COMPLIANCE_ROWS add up to, worked out by hand
EXPECTED_PERCENTAGES = {
    "compliant": 60.0,
    "overdue": 20.0,
    "never_rotated": 10.0,
    "last_attempt_failed": 10.0,
}
EXPECTED_BUCKETS = {
    "0-7": 4,
    "8-30": 2,
    "31-60": 3,
    "61-90": 3,
    "91-180": 3,
    "over_180": 2,
    "never": 3,
}


def test_compliance_json_percentages_histogram_and_endpoints_are_exact() -> None:
    data = json_record(sample_compliance())
    assert data["percentages"] == EXPECTED_PERCENTAGES
    assert data["due_before_next_run"] == 9
    buckets = data["age_histogram"]
    assert isinstance(buckets, list)
    assert {b["bucket"]: b["count"] for b in buckets} == EXPECTED_BUCKETS
    assert [b["bucket"] for b in buckets] == list(EXPECTED_BUCKETS)  # youngest first
    by_bucket = {b["bucket"]: b for b in buckets}
    assert by_bucket["31-60"] == {
        "bucket": "31-60",
        "min_days": 31,
        "max_days": 60,
        "count": 3,
        "by_status": {"compliant": 2, "overdue": 1},
    }
    assert by_bucket["over_180"]["min_days"] == 181
    assert by_bucket["over_180"]["max_days"] is None
    assert by_bucket["never"]["by_status"] == {"never_rotated": 2, "last_attempt_failed": 1}
    assert data["endpoint_compliance"] == [
        {
            "endpoint": "cloud",
            "total": 5,
            "compliant": 3,
            "overdue": 1,
            "never_rotated": 0,
            "last_attempt_failed": 1,
            "percent_compliant": 60.0,
        },
        {
            "endpoint": "gw1",
            "total": 8,
            "compliant": 4,
            "overdue": 2,
            "never_rotated": 1,
            "last_attempt_failed": 1,
            "percent_compliant": 50.0,
        },
        {
            "endpoint": "office-mac",
            "total": 7,
            "compliant": 5,
            "overdue": 1,
            "never_rotated": 1,
            "last_attempt_failed": 0,
            "percent_compliant": 71.43,
        },
    ]


def test_compliance_html_shows_the_same_percentages_histogram_and_endpoints() -> None:
    html = render_html(sample_compliance())
    assert figures_of(html) == {
        "total": (20, None),
        "compliant": (12, "60.0 %"),
        "overdue": (4, "20.0 %"),
        "never_rotated": (2, "10.0 %"),
        "last_attempt_failed": (2, "10.0 %"),
        "soon": (9, None),
    }
    assert histogram_of(html) == EXPECTED_BUCKETS
    endpoints = html.split('<table class="endpoints">', 1)[1].split("</table>", 1)[0]
    shares = re.findall(r'<th scope="row">([^ ]+) .*?</svg> ([\d.]+ %)</td>', endpoints, re.S)
    assert shares == [("cloud", "60.0 %"), ("gw1", "50.0 %"), ("office-mac", "71.4 %")]
    assert "overdue by the next run, in 7 d" in html
    assert "<dt>Next run in</dt><dd>7 days</dd>" in html


def test_compliance_lists_drift_with_counts() -> None:
    html = render_html(sample_compliance())
    drift = html.split('id="drift-h"', 1)[1].split("</section>", 1)[0]
    assert re.search(r'no account uses <span class="count-pill bad">2</span>', drift)
    assert "Secrets under the prefix that no account uses" in drift
    assert re.search(r'no secret in Vault <span class="count-pill bad">3</span>', drift)
    assert "Usages whose account has no secret in Vault" in drift
    for path in (*DRIFT.secrets_without_row, *DRIFT.rows_without_secret):
        assert f"<li><code>{path}</code></li>" in drift
    data = json_record(sample_compliance())
    assert data["drift"] == {
        "secrets_without_row": list(DRIFT.secrets_without_row),
        "rows_without_secret": list(DRIFT.rows_without_secret),
    }


def test_compliance_drift_not_checked_or_none() -> None:
    unchecked = replace(sample_compliance(), drift=None)
    assert "Drift was not checked" in render_html(unchecked)
    assert json_record(unchecked)["drift"] is None
    clean = replace(sample_compliance(), drift=Drift())
    assert "No drift:" in render_html(clean)


def test_compliance_drift_list_is_capped_on_the_page() -> None:
    many = tuple(f"rotate/ghost/{n}" for n in range(html_report.MAX_DRIFT_LISTED + 5))
    rec = replace(sample_compliance(), drift=Drift(secrets_without_row=many))
    html = render_html(rec)
    assert f'<span class="count-pill bad">{len(many)}</span>' in html
    assert html.count("<li><code>rotate/ghost/") == html_report.MAX_DRIFT_LISTED
    assert "and 5 more, listed in the JSON report" in html
    assert len(json_record(rec)["drift"]["secrets_without_row"]) == len(many)  # type: ignore[index]


def test_compliance_table_shows_age_max_age_and_next_run_flag() -> None:
    body = table_body(render_html(sample_compliance()))
    # cred-10: 85 days old, max 90, overdue within the 7 days to the next run.
    line = body.split("cred-10 ", 1)[1].split("</tr>", 1)[0]
    assert ">85.0</td>" in line
    assert ">90</td>" in line
    assert '<span class="badge s-soon">yes</span>' in line
    assert "2024-12-09" in line  # last rotated, 85 days before STARTED
    # Failures to act on first: the last attempt failed, then overdue, then never rotated.
    order = re.findall(r'<tr data-status="([a-z_]+)"', body)
    assert order[:2] == ["last_attempt_failed", "last_attempt_failed"]
    assert order[2:6] == ["overdue"] * 4
    assert order[6:8] == ["never_rotated"] * 2
    # Among the compliant, the one overdue by the next run comes first.
    assert body.index("cred-10 ") < body.index("cred-1 ")


@pytest.mark.parametrize(
    ("age", "bucket"),
    [
        (0.0, "0-7"),
        (7.99, "0-7"),
        (8.0, "8-30"),
        (30.9, "8-30"),
        (31.0, "31-60"),
        (90.5, "61-90"),
        (91.0, "91-180"),
        (180.99, "91-180"),
        (181.0, "over_180"),
        (5000.0, "over_180"),
        (None, "never"),
    ],
)
def test_age_buckets_count_whole_days(age: float | None, bucket: str) -> None:
    status = Status.NEVER_ROTATED if age is None else Status.COMPLIANT
    assert stats.age_bucket(item(row("a"), status, age_days=age)) == bucket


def test_age_histogram_has_unknown_only_for_unreadable_secrets() -> None:
    items = [item(row("a"), Status.COMPLIANT, age_days=2.0)]
    assert [b.key for b in stats.age_histogram(items)][-1] == "never"
    items.append(item(row("b", line=3), Status.FAILED, error="Vault not read"))
    buckets = stats.age_histogram(items)
    assert (buckets[-1].key, buckets[-1].count) == ("unknown", 1)


def test_percentages_of_nothing_are_zero() -> None:
    assert stats.percentages([]) == dict.fromkeys(EXPECTED_PERCENTAGES, 0.0)
    data = json_record(record([], mode="report"))
    assert data["percentages"] == dict.fromkeys(EXPECTED_PERCENTAGES, 0.0)
    assert "percentages" not in json_record(record([]))  # a run has no compliance figures


# --- plan -----------------------------------------------------------------------------------


def test_plan_shows_hash_and_the_command_that_runs_it() -> None:
    html = render_html(sample_plan())
    head = html.split('id="summary-h"', 1)[0]  # before the summary: prominent
    assert f'<code id="plan-hash">{PLAN_HASH}</code>' in head
    assert (
        f'<code id="run-command">rotate run inventories/prod.csv --plan-hash {PLAN_HASH} '
        "--config rotate.toml</code>"
    ) in head
    assert json_record(sample_plan())["plan_hash"] == PLAN_HASH


def test_plan_command_quotes_paths_for_the_shell() -> None:
    rec = replace(sample_plan(), inventory="my inv;rm -rf ~.csv", config="")
    assert html_report.run_command(rec) == (
        f"rotate run 'my inv;rm -rf ~.csv' --plan-hash {PLAN_HASH}"
    )


def test_plan_without_hash_says_so() -> None:
    html = render_html(replace(sample_plan(), plan_hash=""))
    assert "No plan hash was recorded" in html
    assert "--plan-hash" not in html


def test_plan_says_what_would_rotate_and_why() -> None:
    html = render_html(sample_plan())
    assert figures_of(html) == {
        "total": (16, None),
        "due": (8, None),
        "not_due": (6, None),
        "not_attempted": (2, None),
    }
    why = html.split('id="why-h"', 1)[1].split("</table>", 1)[0]
    found = re.findall(
        r'<tr class="why-([a-z_]+)"><td>.*?</td><td>([^<]+?)(?: <span[^>]*>[^<]*</span>)?</td>'
        r'<td class="num">(\d+)</td>',
        why,
    )
    assert found == [
        ("due", "unfinished rotation", "1"),
        ("due", "never rotated", "3"),
        ("due", "age over max age", "4"),
        ("not_attempted", "never rotated", "2"),
        ("not_due", "within max age", "6"),
    ]


def test_plan_table_shows_policy_and_why_per_item() -> None:
    body = table_body(render_html(sample_plan()))
    old2 = body.split("old-2 ", 1)[1].split("</tr>", 1)[0]
    assert '<td class="mono">strict</td>' in old2
    assert "<td>age over max age</td>" in old2
    new1 = body.split("new-1 ", 1)[1].split("</tr>", 1)[0]
    assert '<td class="mono">vnc</td>' in new1
    assert "<td>never rotated</td>" in new1
    assert body.count('<td class="mono">default</td>') == 14
    # Probe results: the unreachable endpoint and its (escaped) detail.
    html = render_html(sample_plan())
    assert '<span class="badge s-failed">unreachable</span>' in html
    assert "connection refused &lt;img src=x" in html


@pytest.mark.parametrize(
    ("status", "reason", "age", "expected"),
    [
        (Status.DUE, "never rotated", None, stats.NEVER_ROTATED),
        (Status.DUE, "forced (age 3.0 d, max 90 d)", 3.0, stats.FORCED),
        (Status.DUE, "unfinished rotation from run r-1: resume it", 3.0, stats.UNFINISHED),
        (Status.DUE, "age 91.0 d reached max 90 d", 91.0, stats.OVER_MAX_AGE),
        (Status.DUE, "", 91.0, stats.OVER_MAX_AGE),  # from the age fields
        (Status.DUE, "", None, stats.NEVER_ROTATED),
        (Status.NOT_DUE, "age 3.0 d within max 90 d", 3.0, stats.WITHIN_MAX_AGE),
        (Status.NOT_ATTEMPTED, "never rotated; endpoint e failed its probe", None, "never rotated"),
        (Status.DUE, "something new", 3.0, stats.OTHER),
    ],
)
def test_why_names_the_planners_reason(
    status: Status, reason: str, age: float | None, expected: str
) -> None:
    it = item(row("a"), status, reason=reason, age_days=age, max_age_days=90)
    assert stats.why(it) == expected


# --- run --------------------------------------------------------------------------------------


def test_run_manifest_names_who_what_and_the_input_hashes() -> None:
    html = render_html(sample_run())
    manifest = html.split('id="manifest-h"', 1)[1].split("</section>", 1)[0]
    assert "<dt>Run by</dt><dd>token-ops-rotation</dd>" in manifest
    assert "<dt>Tool version</dt><dd>rotate 1.4.2</dd>" in manifest
    assert (
        f'<code>inventories/prod.csv</code><span class="hash">SHA-256 <code>{SHA_INV}' in manifest
    )
    assert f'<code>rotate.toml</code><span class="hash">SHA-256 <code>{SHA_CONF}' in manifest
    assert "<dt>Dry run</dt><dd>no</dd>" in manifest
    assert '<meta name="generator" content="rotate 1.4.2">' in html


def test_run_chart_has_one_bar_per_endpoint_with_counts_in_words() -> None:
    html = render_html(sample_run())
    chart = html.split('id="endpoint-chart"', 1)[1].split("</figure>", 1)[0]
    words = re.findall(r'<text class="words"[^>]*>([^<]+)</text>', chart)
    assert words == [
        "5: 4 rotated · 1 in doubt",
        "2: 2 not attempted",
        "4: 3 rotated · 1 failed",
        "7: 5 rotated · 1 skipped · 1 failed",
    ]
    legend = re.findall(r'<rect class="fill-([a-z_]+)" width="12"', chart)
    assert legend == ["rotated", "skipped", "not_attempted", "in_doubt", "failed"]
    assert figures_of(html) == {
        "total": (18, None),
        "rotated": (12, None),
        "failed": (2, None),
        "in_doubt": (1, None),
        "not_attempted": (2, None),
        "skipped": (1, None),
    }


def test_run_table_shows_stage_verification_and_the_proving_version() -> None:
    body = table_body(render_html(sample_run()))
    mac = body.split("mac-1 ", 1)[1].split("</tr>", 1)[0]
    assert "<td>promoted</td><td>verified</td>" in mac.replace("\n", "")
    assert 'rotate/cloud/mac-1 <span class="ver">v3</span>' in mac
    conn = body.split("conn-2 ", 1)[1].split("</tr>", 1)[0]
    assert "pushed only" in conn
    assert "0.80 s" in conn


def test_chart_draws_the_endpoints_needing_most_attention_when_there_are_many() -> None:
    n = html_report.MAX_CHART_ENDPOINTS + 10
    items = [
        item(row(f"t{i}", endpoint=f"ep-{i:03d}", line=i + 2), Status.ROTATED) for i in range(n)
    ]
    items.append(item(row("bad", endpoint="ep-099", line=999), Status.FAILED))
    html = render_html(record(items))
    chart = html.split('id="endpoint-chart"', 1)[1].split("</figure>", 1)[0]
    names = re.findall(r'<text class="name"[^>]*>([^<]+)</text>', chart)
    assert len(names) == html_report.MAX_CHART_ENDPOINTS
    assert "ep-099" in names  # the one with a failure is drawn
    assert names == sorted(names)
    assert "the 11 others are in the endpoint table" in chart  # ep-000..ep-049 and ep-099
    assert table_body(html).count("<tr data-status=") == n + 1


def test_json_record_adds_the_new_manifest_fields() -> None:
    data = json_record(sample_plan())
    assert data["identity"] == "token-ops-rotation"
    assert data["tool_version"] == "1.4.2"
    assert data["inventory_sha256"] == SHA_INV
    assert data["config_sha256"] == SHA_CONF
    assert data["plan_hash"] == PLAN_HASH
    assert data["schedule_days"] is None
    assert data["drift"] is None
    assert data["stats"] == {}
    assert json_record(sample_compliance())["schedule_days"] == SCHEDULE_DAYS


def test_request_counts_show_in_json_and_manifest() -> None:
    rec = replace(sample_run(), stats={"vault_requests": 31, "vendor_requests": 40})
    assert json_record(rec)["stats"] == {"vault_requests": 31, "vendor_requests": 40}
    html = render_html(rec)
    assert "<dt>Round trips</dt><dd>31 vault requests · 40 vendor requests</dd>" in html
    assert "Round trips" not in render_html(sample_run())


def test_csv_carries_the_compliance_fields() -> None:
    lines = read_csv(csv_report.dumps(sample_compliance()))
    col = {name: i for i, name in enumerate(lines[0])}
    tenth = lines[10]  # cred-10
    assert tenth[col["target"]] == "cred-10"
    assert tenth[col["age_days"]] == "85.0"
    assert tenth[col["max_age_days"]] == "90"
    assert tenth[col["due_before_next_run"]] == "true"
    assert tenth[col["policy"]] == "default"
    assert lines[12][col["last_failure_at"]] == "2025-03-03T05:06:07+00:00"


@pytest.mark.parametrize("sample", [sample_run, sample_plan, sample_compliance])
def test_every_page_escapes_the_planted_script(sample: object) -> None:
    assert callable(sample)
    html = render_html(sample())
    assert PLANTED not in html
    assert PLANTED_IMG not in html
    assert '<p id="pwned">' not in html
    assert "&lt;script&gt;document.title=&#34;PWNED&#34;" in html
    assert html.count("<script>") == 1
