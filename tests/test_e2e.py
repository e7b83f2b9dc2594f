"""The CLI end to end: a real OpenBao, the simulators over loopback HTTP, the demo inventory."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import hvac
import pytest

from rotate.cli import main
from rotate.demo import sim_password
from rotate.sim.faults import Faults
from tests.plugins.scene import (
    DEMO_CSV,
    ROOT,
    World,
    all_secrets,
    assert_no_secret_in_outputs,
    cli,
    converged,
    outputs,
    snapshot,
    sync,
    write_config,
)


def test_run_rotates_every_row_and_converges(
    world: World, openbao_client: hvac.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    initial = {row.label: sim_password(world.states[row.endpoint], row) for row in world.rows}
    json_path = world.out / "record.json"
    world.out.mkdir()
    assert cli(world, "run", "--json", str(json_path)) == 0
    captured = capsys.readouterr()
    record = json.loads(json_path.read_text())
    assert record["mode"] == "run"
    assert record["dry_run"] is False
    assert record["summary"]["total"] == len(world.rows) >= 30
    assert record["summary"]["rotated"] == len(world.rows)
    assert {i["status"] for i in record["items"]} == {"rotated"}
    # Readable targets were verified; address-book connections are pushed only.
    for item in record["items"]:
        assert item["verified"] is (item["kind"] != "connection")
        assert item["vault_version"] == 1
    # Every target now holds Vault's current password, a new one, and nothing is pending.
    assert converged(world) == []
    for row in world.rows:
        assert sim_password(world.states[row.endpoint], row) != initial[row.label]
    # The rotation time is the version's own: one write per credential, no metadata write.
    meta = openbao_client.secrets.kv.v2.read_secret_metadata(
        path=world.rows[0].vault_path, mount_point="secret"
    )["data"]
    assert meta["custom_metadata"] is None
    assert meta["current_version"] == 1
    created = datetime.fromisoformat(meta["versions"]["1"]["created_time"])
    assert created >= datetime.fromisoformat(record["started_at"])
    # Per credential: its metadata read and its promotion. Besides: health, token, mount and
    # capability checks, the lease (4), the journal's LIST, its record written and deleted.
    assert record["stats"]["vault_requests"] <= 2 * len(world.rows) + 12
    text = outputs(world, captured) + json.dumps(meta)
    assert "report:" in captured.out
    for secret in all_secrets(world):
        assert secret not in text
    # No forbidden call (a delete of a computer, connection or server) was ever sent.
    for name in world.states:
        assert world.host.simulator(name).counters.forbidden_calls == []


def test_second_rotation_keeps_previous_version_readable(
    world: World, openbao_client: hvac.Client
) -> None:
    assert cli(world, "run") == 0
    row = world.rows[0]
    first = sync(world.store).read_current(row.vault_path)
    assert cli(world, "run", "--force") == 0
    second = sync(world.store).read_current(row.vault_path)
    assert first is not None
    assert second is not None
    assert first.password != second.password
    v1 = openbao_client.secrets.kv.v2.read_secret_version(
        path=row.vault_path, version=1, mount_point="secret", raise_on_deleted_version=True
    )
    assert v1["data"]["data"]["password"] == first.password.reveal()
    assert sim_password(world.states[row.endpoint], row) == second.password.reveal()


def test_plan_changes_nothing(
    world: World, openbao_client: hvac.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    # Half rotated, so the plan sees both due and not-due rows.
    half = world.out.parent / "half.csv"
    lines = world.inventory.read_text().splitlines()
    half.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    assert main(["run", str(half), "--config", str(world.config), "--out-dir", str(world.out)]) == 0
    before = snapshot(world, openbao_client)
    for name in world.states:
        world.host.reset_counters(name)
    json_path = world.out / "plan.json"
    assert cli(world, "plan", "--json", str(json_path)) == 0
    assert snapshot(world, openbao_client) == before
    assert sum(world.host.simulator(n).counters.writes for n in world.states) == 0
    record = json.loads(json_path.read_text())
    statuses = {i["status"] for i in record["items"]}
    assert statuses == {"due", "not_due"}
    assert record["dry_run"] is True
    assert "plan" in capsys.readouterr().out


def test_bad_inventory_exit_2_names_every_problem_changes_nothing(
    world: World, openbao_client: hvac.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = world.out.parent / "bad.csv"
    lines = world.inventory.read_text().splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["endpoint", "kind", "target"]
    lines[1] = "nowhere," + lines[1].split(",", 1)[1]  # unknown endpoint, line 2
    lines[3] = lines[3].replace(",connection,", ",gadget,", 1)  # unknown kind, line 4
    bad.write_text("\n".join(lines) + "\n")
    before = snapshot(world, openbao_client)
    code = main(["run", str(bad), "--config", str(world.config), "--out-dir", str(world.out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "row 2" in err
    assert "'endpoint'" in err
    assert "row 4" in err
    assert "'kind'" in err
    assert snapshot(world, openbao_client) == before
    assert sum(world.host.simulator(n).counters.requests for n in world.states) == 0
    assert not world.out.exists()


def test_per_endpoint_concurrency_limit_holds(world: World, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "limited.toml",
        world.settings.vault,
        dict(world.host.urls),
        {**world.wiring, "per_endpoint_concurrency = 8": "per_endpoint_concurrency = 3"},
        world.ca_file,
    )
    for name in world.states:
        world.host.set_faults(name, Faults(latency_ms=40))
        world.host.reset_counters(name)
    code = main(["run", str(world.inventory), "--config", str(config), "--out-dir", str(world.out)])
    assert code == 0
    peaks = {n: world.host.simulator(n).counters.max_in_flight for n in world.states}
    assert max(peaks.values()) == 3, peaks


def test_wrong_gateway_password_endpoint_not_attempted(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GW1_PASSWORD", "wrong-gateway-pass")
    wrong_md5 = hashlib.md5(b"wrong-gateway-pass", usedforsecurity=False).hexdigest()
    world.extra_secrets += ["wrong-gateway-pass", wrong_md5]
    json_path = world.out.parent / "r.json"
    assert cli(world, "run", "--json", str(json_path)) == 1
    record = json.loads(json_path.read_text())
    gw1 = [i for i in record["items"] if i["endpoint"] == "gw1"]
    assert gw1
    # An account whose usages all live on gw1 is not attempted; one with a usage elsewhere
    # (EXAMPLE\svc-hr: hr-rdp-01 on gw1, hr-rdp-02 on gw2) is changed, and its gw1 usage
    # recorded stale for the next run.
    elsewhere = {r.account for r in world.rows if r.endpoint != "gw1"}
    for item in gw1:
        expected = "stale" if item["account"] in elsewhere else "not_attempted"
        assert item["status"] == expected, item
        assert "gateway password" in item["error"]
    assert {i["status"] for i in gw1} == {"stale", "not_attempted"}
    others = [i for i in record["items"] if i["endpoint"] != "gw1"]
    assert {i["status"] for i in others} == {"rotated"}
    assert world.host.simulator("gw1").counters.writes == 0
    for row in world.rows_of("gw1"):
        assert world.pending(row) is None
        assert world.held(row) == world.initial[row.label]
        if row.account not in elsewhere:
            assert world.version(row) is None
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog, json_path)


def test_vault_unreachable_at_start_exit_3_nothing_touched(
    world: World,
    openbao_client: hvac.Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{port}")
    before = snapshot(world, openbao_client)
    json_path = world.out.parent / "r.json"
    assert cli(world, "run", "--json", str(json_path)) == 3
    captured = capsys.readouterr()
    assert "unreachable" in captured.err
    assert sum(world.host.simulator(n).counters.requests for n in world.states) == 0
    assert snapshot(world, openbao_client) == before
    assert not world.out.exists()  # no report: nothing happened
    # ... but the refusal is recorded, with its reason (a scheduler's record of the night).
    record = json.loads(json_path.read_text())
    assert record["aborted"].startswith("refused before any change: ")
    assert "unreachable" in record["aborted"]
    assert record["items"] == []
    assert_no_secret_in_outputs(world, captured, caplog, json_path)


def test_report_after_run_is_compliant(world: World) -> None:
    json_path = world.out.parent / "c.json"
    assert cli(world, "report", "--json", str(json_path)) == 0
    before = json.loads(json_path.read_text())
    assert {i["status"] for i in before["items"]} == {"never_rotated"}
    assert cli(world, "run") == 0
    assert cli(world, "report", "--json", str(json_path)) == 0
    after = json.loads(json_path.read_text())
    assert after["mode"] == "report"
    assert {i["status"] for i in after["items"]} == {"compliant"}
    assert all(i["last_rotated"] for i in after["items"])


@pytest.mark.integration  # a socket of its own on loopback
def test_make_demo_equivalent_subprocess(tmp_path: Path) -> None:
    """`rotate demo` as a user runs it: exit 0, reports listed, every row rotated, no server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "rotate", "demo", "--out-dir", str(tmp_path / "reports")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every account's usages hold the one password Vault has as current" in proc.stdout
    assert "EXAMPLE\\administrator: 4 usage(s) hold one password; it logs in at corp-ad" in (
        proc.stdout
    )
    # a host's local account, changed at its SSH host stand-in, with both of its usages
    assert "demo: SSH host stand-ins: local-hosts 127.0.0.1:" in proc.stdout
    assert "br-disp-01\\display: 2 usage(s) hold one password; it logs in at local-hosts" in (
        proc.stdout
    )
    runs = list((tmp_path / "reports").glob("run-*.json"))
    assert len(runs) == 1
    record = json.loads(runs[0].read_text())
    rows = DEMO_CSV.read_text().strip().splitlines()[1:]
    assert record["summary"]["rotated"] == len(rows)
    assert f"report: {tmp_path / 'reports'}" in proc.stdout.replace("  report:", "report:")
    for mode in ("plan", "run", "report"):
        assert len(list((tmp_path / "reports").glob(f"{mode}-*.html"))) == 1
    # The OpenBao it started is gone: its port refuses connections.
    line = next(ln for ln in proc.stdout.splitlines() if "OpenBao dev server at" in ln)
    port = int(line.split("http://127.0.0.1:")[1].split(";")[0])
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))


def test_plan_hash_approves_the_run_and_a_changed_inventory_is_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = world.out.parent / "plan.json"
    assert cli(world, "plan", "--json", str(json_path)) == 0
    plan_hash = json.loads(json_path.read_text())["plan_hash"]
    assert f"--plan-hash {plan_hash}" in capsys.readouterr().out
    # The inventory changes after approval (a row is dropped): refused, nothing written.
    lines = world.inventory.read_text().splitlines()
    world.inventory.write_text("\n".join(lines[:-1]) + "\n")
    assert cli(world, "run", "--plan-hash", plan_hash) == 3
    err = capsys.readouterr().err
    assert "plan changed since it was approved" in err
    assert sum(world.host.simulator(n).counters.writes for n in world.states) == 0
    # Back to the approved inventory: the run goes ahead.
    world.inventory.write_text("\n".join(lines) + "\n")
    assert cli(world, "run", "--plan-hash", plan_hash) == 0


def test_shards_each_rotate_their_part_under_their_own_lease(world: World) -> None:
    records = []
    for k in range(3):
        json_path = world.out.parent / f"shard{k}.json"
        assert cli(world, "run", "--shard", f"{k}/3", "--json", str(json_path)) == 0
        records.append(json.loads(json_path.read_text()))
    rotated = [
        (i["endpoint"], i["kind"], i["target"], i["protocol"], i["port"])
        for r in records
        for i in r["items"]
        if i["status"] == "rotated"
    ]
    assert len(rotated) == len(set(rotated)) == len(world.rows)
    assert all(0 < len(r["items"]) < len(world.rows) for r in records)
    assert converged(world) == []
