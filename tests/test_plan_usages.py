"""`rotate plan` looks at every usage on its endpoint (reads only) and names, row by row, a
target that is missing and a stored username that is not the account's; `rotate run` skips
the missing ones (`not_attempted`, the reason named) and rotates the rest.

The scene is the demo inventory on a real OpenBao and the simulators, with three things
wrong behind rotate's back: a Remotix cloud computer gone from the Hub, a Spark View server
gone from its gateway, and a Spark View server storing another username than its account's.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import hvac
import pytest

from rotate.vendors.remotix.simulator import RemotixState
from rotate.vendors.sparkview.simulator import SparkViewState
from tests.plugins.scene import (
    World,
    all_secrets,
    cli,
    converged,
    outputs,
    snapshot,
    sync,
)
from tests.test_report_browser import ARTIFACTS, WINDOW, chromium, chromium_path

GONE_COMPUTER = "branch-office/computer/234504/RDP"  # BRANCH\administrator: more usages
GONE_SERVER = "gw1/server/dev-rdp-01/RDP"  # `developer`, a host's local account: its only usage
OTHER_USER = "gw2/server/ops-rdp-01/RDP"  # EXAMPLE\svc-ops
PROBLEMS = (GONE_COMPUTER, GONE_SERVER, OTHER_USER)


@pytest.fixture
def scene(world: World) -> World:
    """The three things wrong, made on the simulators' state before any call."""
    branch = world.states["branch-office"]
    assert isinstance(branch, RemotixState)
    del branch.computers["234504"]
    gw1 = world.states["gw1"]
    assert isinstance(gw1, SparkViewState)
    del gw1.servers["dev-rdp-01"]
    gw2 = world.states["gw2"]
    assert isinstance(gw2, SparkViewState)
    gw2.servers["ops-rdp-01"].rdp["username"] = "svc-ops-old"
    return world


def _line(world: World, label: str) -> int:
    return world.row(label).line


def test_plan_names_each_problem_row_by_row_and_changes_nothing(
    scene: World, openbao_client: hvac.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    world = scene
    before = snapshot(world, openbao_client)
    for name in world.states:
        world.host.reset_counters(name)
    json_path = world.out.parent / "plan.json"
    # A plan that finds problems exits 1, as one finding drift does.
    assert cli(world, "plan", "--json", str(json_path)) == 1
    captured = capsys.readouterr()

    # Nothing changed: Vault, the journal, every target; not one write was sent.
    assert snapshot(world, openbao_client) == before
    assert sum(world.host.simulator(n).counters.writes for n in world.states) == 0
    assert world.states["gw2"].servers["ops-rdp-01"].rdp["username"] == "svc-ops-old"  # type: ignore[attr-defined]

    # The console: one line per problem row, with its inventory line.
    out = captured.out
    assert "3 usage problem(s):" in out
    for label in PROBLEMS:
        assert f"line {_line(world, label)} {label}: " in out
    assert "target missing at its endpoint" in out
    assert "stored username 'svc-ops-old' differs from the account's 'svc-ops'" in out

    # The JSON record: the same three, no other; the missing ones would be skipped.
    record = json.loads(json_path.read_text())
    assert record["usage_problems"] == 3
    items = {
        f"{i['endpoint']}/{i['kind']}/{i['target']}/{i['protocol']}": i for i in record["items"]
    }
    with_problem = {label for label, i in items.items() if i["problem"]}
    assert with_problem == set(PROBLEMS)
    assert items[GONE_COMPUTER]["status"] == "not_attempted"
    assert "computer not found" in items[GONE_COMPUTER]["problem"]
    assert items[GONE_SERVER]["status"] == "not_attempted"
    assert "not found" in items[GONE_SERVER]["problem"]
    assert items[OTHER_USER]["status"] == "due"
    assert "svc-ops-old" in items[OTHER_USER]["problem"]
    assert {i["status"] for label, i in items.items() if label not in PROBLEMS} == {"due"}

    # The CSV: a `problem` column, filled on exactly those rows.
    (csv_path,) = [p for p in world.out.glob("plan-*.csv") if not p.stem.endswith("-accounts")]
    rows = list(csv.DictReader(csv_path.open(newline="")))
    assert {
        f"{r['endpoint']}/{r['kind']}/{r['target']}/{r['protocol']}" for r in rows if r["problem"]
    } == set(PROBLEMS)

    # The HTML page: its problems section lists them, with their lines.
    html = _plan_page(world).read_text()
    assert 'id="problems"' in html
    for label in PROBLEMS:
        assert f'<tr data-line="{_line(world, label)}">' in html
    for secret in all_secrets(world):
        assert secret not in outputs(world, captured)


def test_plan_without_usage_checks_reads_no_usage(
    scene: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--no-usage-checks` (a huge fleet's quick preview): the probes and Vault only, so the
    three problems go unseen; every request an endpoint got is its probe's."""
    world = scene
    requests = {}
    for checks in (True, False):
        for name in world.states:
            world.host.reset_counters(name)
        json_path = world.out.parent / f"plan-{checks}.json"
        flag = () if checks else ("--no-usage-checks",)
        code = cli(world, "plan", "--json", str(json_path), *flag)
        record = json.loads(json_path.read_text())
        requests[checks] = sum(world.host.simulator(n).counters.requests for n in world.states)
        assert (code, record["usage_problems"]) == ((1, 3) if checks else (0, 0))
    capsys.readouterr()
    # with the checks: a read per computer connection and server (the address book is
    # listed once per endpoint); without: the probes alone (one or two per endpoint)
    one_read_each = [r for r in world.rows if r.kind != "connection"]
    assert requests[True] - requests[False] >= len(one_read_each)
    assert requests[False] <= 2 * len(world.states)


def test_run_skips_the_missing_targets_and_rotates_the_rest(
    scene: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = scene
    json_path = world.out.parent / "run.json"
    # Usages not attempted make a run exit 1 (DESIGN.md, README).
    assert cli(world, "run", "--json", str(json_path)) == 1
    captured = capsys.readouterr()
    record = json.loads(json_path.read_text())
    items = {
        f"{i['endpoint']}/{i['kind']}/{i['target']}/{i['protocol']}": i for i in record["items"]
    }
    for label in (GONE_COMPUTER, GONE_SERVER):
        assert items[label]["status"] == "not_attempted"
        assert items[label]["error"].startswith(f"target missing at {label.split('/')[0]}:")
    assert {i["status"] for label, i in items.items() if label not in PROBLEMS[:2]} == {"rotated"}
    # The disagreeing username was overwritten with the account's by the rotation.
    assert world.states["gw2"].servers["ops-rdp-01"].rdp["username"] == "svc-ops"  # type: ignore[attr-defined]

    accounts = {a["account"]: a for a in record["accounts"]}
    # BRANCH\administrator went on with its other usages; the missing one is not stale.
    branch = accounts["BRANCH\\administrator"]
    assert branch["status"] == "rotated"
    assert "1 usage(s) not attempted: target missing" in branch["error"]
    assert branch["stale"] == 0
    # `developer` (a local account of its host, this missing server its only usage) was
    # changed at its host, which holds the new password: promoted, nothing stale or pending.
    # (A copy-only account with no usage left drops its candidate: tests/test_missing.py.)
    developer_row = world.row(GONE_SERVER)
    developer = accounts[developer_row.account]
    assert developer["status"] == "rotated"
    assert "1 usage(s) not attempted: target missing" in developer["error"]
    assert developer["stale"] == 0
    assert world.version(developer_row) == 1
    assert world.pending(developer_row) is None
    assert record["summary"]["failed"] == 0
    assert sync(world.store).stale() == {}

    # Every other usage holds its account's current password, and it logs in.
    present = [r for r in world.rows if r.label not in PROBLEMS[:2]]
    assert converged(world, present) == []
    text = outputs(world, captured)
    for secret in all_secrets(world):
        assert secret not in text


def test_plan_report_shows_the_three_problems_in_chromium(
    scene: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    binary = chromium_path()
    world = scene
    assert cli(world, "plan") == 1
    page = _plan_page(world)
    work = tmp_path_factory.mktemp("browser-plan-problems")
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "report-plan-problems.png"
    png.unlink(missing_ok=True)
    chromium(
        binary,
        work / "profile-shot",
        page.as_uri(),
        f"--screenshot={png}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=2000",
    )
    assert png.is_file()
    shutil.copyfile(page, ARTIFACTS / "report-plan-problems.html")
    dom = chromium(
        binary, work / "profile-dom", page.as_uri(), "--dump-dom", "--virtual-time-budget=2000"
    ).stdout
    assert '<li class="figure f-problems"><span class="n">3</span>' in dom  # in the summary
    section = dom.split('id="problems-h"', 1)[1].split("</section>", 1)[0]
    assert 'count-pill bad">3</span>' in section
    for label in PROBLEMS:
        assert label in section
        assert f'<tr data-line="{_line(world, label)}">' in section
    assert "computer not found" in section
    assert "stored username 'svc-ops-old' differs from the account's 'svc-ops'" in section.replace(
        "&#39;", "'"
    )


def _plan_page(world: World) -> Path:
    """The plan's main page (a small plan has only that one)."""
    (page,) = world.out.glob("plan-*.html")
    return page
