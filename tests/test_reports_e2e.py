"""Reports from real state: compliance figures that match Vault, the demo's pages in Chromium,
and a planted canary password and `<script>` that never reach an output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotate.models import Credential, Secret
from tests.plugins.scene import ROOT, World, cli, sync
from tests.test_report import figures_of
from tests.test_report_browser import chromium, chromium_path

CANARY = "Canary-Passw0rd-7f3e91"


def test_compliance_figures_match_seeded_vault_ages(world: World) -> None:
    """Ten rows seeded with known ages (max age 90 d): every status and percentage exact."""
    now = datetime.now(UTC)
    # Ten rows of ten different accounts (one secret each).
    firsts = {r.account: r for r in reversed(world.rows)}
    rows = sorted(firsts.values(), key=lambda r: r.line)[:10]
    ages = {0: 1, 1: 8, 2: 45, 3: 80, 4: 95, 5: 200}  # row index -> days; 6..9 never rotated
    for i, days in ages.items():
        row = rows[i]
        when = now - timedelta(days=days)
        sync(world.store).promote(
            row.vault_path, Credential(row.username, Secret("x" * 16), row.domain), None, when
        )
    # Row 6: rotated 5 days ago, but the latest attempt after that failed.
    sync(world.store).promote(
        rows[6].vault_path,
        Credential(rows[6].username, Secret("y" * 16), rows[6].domain),
        None,
        now - timedelta(days=5),
    )
    sync(world.store).record_failure(rows[6].vault_path, "later-run", now - timedelta(days=1))
    # A secret under the prefix that no row names (drift).
    stray = f"{world.settings.vault.prefix}/old-endpoint/server/gone"
    sync(world.store).promote(stray, Credential("u", Secret("z" * 16)), None)
    subset = world.out.parent / "ten.csv"
    lines = world.inventory.read_text().splitlines()
    subset.write_text("\n".join([lines[0], *(lines[r.line - 1] for r in rows)]) + "\n")
    json_path = world.out.parent / "c.json"
    code = cli_on(world, subset, "report", "--json", str(json_path), "--schedule-days", "20")
    assert code == 0
    record = json.loads(json_path.read_text())
    by_target = {(i["endpoint"], i["target"], i["protocol"], i["port"]): i for i in record["items"]}
    statuses = [by_target[(r.endpoint, r.target, r.protocol, r.port)]["status"] for r in rows]
    max_ages = [r.max_age_days or 90 for r in rows]
    expected = []
    for i in range(len(rows)):
        if i == 6:
            expected.append("last_attempt_failed")
        elif i in ages:
            expected.append("overdue" if ages[i] > max_ages[i] else "compliant")
        else:
            expected.append("never_rotated")
    assert statuses == expected
    counts = {s: expected.count(s) for s in set(expected)}
    for status, n in counts.items():
        assert record["percentages"][status] == pytest.approx(100 * n / 10, abs=0.05)
    assert record["drift"]["secrets_without_row"] == [stray]
    assert len(record["drift"]["rows_without_secret"]) == 3
    # Overdue by the next run (in 20 days): compliant rows older than max age - 20 days, plus
    # those already overdue or never rotated.
    soon = [
        by_target[(r.endpoint, r.target, r.protocol, r.port)]["due_before_next_run"] for r in rows
    ]
    for i, flag in enumerate(soon):
        if i in ages and i != 6:
            assert flag is (ages[i] + 20 > max_ages[i])
    html = next(world.out.glob("report-*.html")).read_text()
    figures = figures_of(html)
    for status, n in counts.items():
        assert figures[status][0] == n


def cli_on(world: World, inventory: Path, *args: str) -> int:
    from rotate.cli import main

    return main(
        [
            args[0],
            str(inventory),
            "--config",
            str(world.config),
            "--out-dir",
            str(world.out),
            *args[1:],
        ]
    )


def test_planted_canary_and_script_never_reach_an_output_or_run(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    binary = chromium_path()
    # A copy-only account: its password is checked nowhere but in the copies.
    row = next(r for r in world.rows if r.authority == "none")
    # The canary is the credential's current password in Vault.
    sync(world.store).promote(
        row.vault_path,
        Credential(row.username, Secret(CANARY), row.domain),
        None,
        datetime.now(UTC) - timedelta(days=400),
    )
    lines = world.inventory.read_text().splitlines()
    cells = lines[1].split(",")
    cells[-1] = "\"<script>document.title='PWNED'</script>\""
    lines[1] = ",".join(cells)
    world.inventory.write_text("\n".join(lines) + "\n")
    for mode in ("plan", "run", "report"):
        assert cli(world, mode) == 0
    text = capsys.readouterr().out + caplog.text
    for path in world.out.iterdir():
        text += path.read_text()
    assert CANARY not in text
    for html in world.out.glob("*.html"):
        dom = chromium(
            binary,
            world.out.parent / f"profile-{html.stem}",
            html.as_uri(),
            "--dump-dom",
            "--virtual-time-budget=2000",
        ).stdout
        title = dom.split("<title>", 1)[1].split("</title>", 1)[0]
        assert "PWNED" not in title
        assert CANARY not in dom


def test_make_demo_reports_render_in_chromium(tmp_path: Path) -> None:
    """`rotate demo` as a user runs it; its three reports open in Chromium with their figures."""
    binary = chromium_path()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "rotate", "demo", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = len((ROOT / "inventories" / "demo.csv").read_text().strip().splitlines()) - 1
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    expected = {"plan": ("due", total), "run": ("rotated", total), "report": ("compliant", total)}
    for mode, (status, count) in expected.items():
        (html,) = out.glob(f"{mode}-*.html")
        png = artifacts / f"demo-{mode}.png"
        chromium(
            binary,
            tmp_path / f"shot-{mode}",
            html.as_uri(),
            f"--screenshot={png}",
            "--window-size=1400,1800",
            "--virtual-time-budget=2000",
        )
        assert png.stat().st_size > 10_000
        dom = chromium(
            binary,
            tmp_path / f"dom-{mode}",
            html.as_uri(),
            "--dump-dom",
            "--virtual-time-budget=2000",
        ).stdout
        figures = figures_of(dom)
        assert figures["total"][0] == total
        assert figures[status][0] == count
