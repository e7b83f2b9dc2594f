"""`rotate discover`: an inventory from what the simulators hold, fed to `rotate plan`."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock

from rotate.cli import main
from rotate.discover import discover, to_csv
from rotate.inventory import COLUMNS
from rotate.settings import PolicySettings, RunSettings, Settings
from rotate.vendors.remotix import RemotixSettings
from rotate.vendors.remotix.simulator import RemotixState
from rotate.vendors.sparkview.simulator import SparkViewState
from tests.plugins.scene import (
    GATEWAYS,
    World,
    all_secrets,
    assert_no_secret_in_outputs,
    log_text,
    reconfigure,
)

Key = tuple[
    str, str, str, str, str, str, str
]  # endpoint, kind, target, protocol, port, user, domain


def computers_config(world: World) -> Path:
    """The world's config, with each Remotix endpoint naming its cloud computers."""
    replace_ = {}
    for name in ("office-mac", "branch-office"):
        state = world.states[name]
        assert isinstance(state, RemotixState)
        ids = ", ".join(f'"{c}"' for c in sorted(state.computers))
        head = f'[endpoints.{name}]\nsystem = "remotix"'
        replace_[head] = f"{head}\ncomputers = [{ids}]"
    return reconfigure(world, replace_)


def read_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == list(COLUMNS)
    return list(reader)


def key(cells: dict[str, str]) -> Key:
    return (
        cells["endpoint"],
        cells["kind"],
        cells["target"],
        cells["protocol"],
        cells["port"],
        cells["username"],
        cells["domain"],
    )


def seeded(world: World, kinds: set[str]) -> set[Key]:
    """What the simulators were seeded with (the demo inventory's rows of these kinds)."""
    return {
        (
            r.endpoint,
            r.kind,
            r.target,
            r.protocol,
            "" if r.port is None else str(r.port),
            r.username,
            r.domain or "",
        )
        for r in world.rows
        if r.kind in kinds
    }


def test_discover_then_plan(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = computers_config(world)
    out = world.out.parent / "discovered.csv"
    assert main(["discover", "--config", str(config), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    text = out.read_text()
    rows = read_csv(text)
    # Servers and computers, with the usernames the APIs give; connections (whose username
    # the API never gives) are left out by default, and a warning says so.
    assert {key(r) for r in rows} == seeded(world, {"server", "computer"})
    assert len(rows) == len({key(r) for r in rows})
    for endpoint in ("office-mac", "branch-office"):
        count = len([r for r in world.rows_of(endpoint) if r.kind == "connection"])
        warning = f"endpoint {endpoint}: {count} connection row(s) have no username"
        assert warning in log_text(caplog)
    assert "without a username left out" in captured.err
    # A VNC-type row names a policy that can make its password.
    assert {r["policy"] for r in rows if r["protocol"] == "VNC"} == {"vnc"}
    assert "password" not in text.splitlines()[0]

    # Rows of one domain account (same domain and user name) share a proposed `account`;
    # local accounts (no domain) are never grouped.
    shared = [r for r in rows if (r["domain"], r["username"]) == ("EXAMPLE", "administrator")]
    assert len(shared) == 2  # the cloud computers 123456 and 123458 (servers: svc-* accounts)
    assert {r["account"] for r in shared} == {"EXAMPLE\\administrator"}
    assert all(r["account"] == "" for r in rows if not r["domain"])
    assert "domain account(s) are stored in several places" in captured.err
    # The authority is not discovered: `rotate plan` says what to add, and changes nothing.
    assert all(r["authority"] == "" for r in rows)
    assert "the `authority` column is empty" in captured.err
    plan_json = world.out.parent / "plan.json"
    args = ["--out-dir", str(world.out), "--json", str(plan_json)]
    assert main(["plan", str(out), "--config", str(config), *args]) == 2
    assert "[run] authority" in capsys.readouterr().err
    # With a default authority, the discovered file feeds `rotate plan` unchanged: every
    # discovered row planned (and due).
    config.write_text(config.read_text().replace("[run]\n", '[run]\nauthority = "none"\n', 1))
    code = main(["plan", str(out), "--config", str(config), *args])
    assert code == 0
    record = json.loads(plan_json.read_text())
    planned = {
        (i["endpoint"], i["kind"], i["target"], i["protocol"], i["port"]) for i in record["items"]
    }
    assert len(record["items"]) == len(rows)
    assert planned == {
        (
            r["endpoint"],
            r["kind"],
            r["target"],
            r["protocol"],
            int(r["port"]) if r["port"] else None,
        )
        for r in rows
    }
    assert {i["status"] for i in record["items"]} == {"due"}
    # No secret anywhere: not in the file, the terminal, the log or the plan's reports.
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog, out)
    for name in world.states:
        assert world.host.simulator(name).counters.writes == 0


def test_discover_incomplete_lists_every_seeded_object(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = computers_config(world)
    assert main(["discover", "--config", str(config), "--incomplete"]) == 0
    captured = capsys.readouterr()
    rows = read_csv(captured.out)  # stdout is the CSV, nothing else
    found = {key(r) for r in rows}
    # Every seeded object; connections with an empty username and a note saying so.
    connections = {
        (e, k, t, p, port, "", "") for e, k, t, p, port, _, _ in seeded(world, {"connection"})
    }
    assert found == seeded(world, {"server", "computer"}) | connections
    for r in rows:
        assert ("fill it in" in r["notes"]) is (r["kind"] == "connection")
    for secret in all_secrets(world):
        assert secret not in captured.out + captured.err + log_text(caplog)
    # Such a file is refused by `rotate plan` until the usernames are filled in.
    path = world.out.parent / "incomplete.csv"
    path.write_text(captured.out)
    code = main(["plan", str(path), "--config", str(config), "--out-dir", str(world.out)])
    assert code == 2
    assert "'username': required value is empty" in capsys.readouterr().err


def test_discover_skips_a_failing_endpoint_and_never_overwrites(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = computers_config(world)
    out = world.out.parent / "discovered.csv"
    out.write_text("keep me\n")
    # An existing file is refused (exit 2) before any endpoint is asked.
    assert main(["discover", "--config", str(config), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    assert sum(world.host.simulator(n).counters.requests for n in world.states) == 0
    # A gateway that refuses our password is skipped with a warning: exit 1, the rest written.
    monkeypatch.setenv("GW2_PASSWORD", "wrong-gateway-pass")
    world.extra_secrets.append("wrong-gateway-pass")
    code = main(["discover", "--config", str(config), "--out", str(out), "--force"])
    assert code == 1
    captured = capsys.readouterr()
    assert "endpoint gw2 skipped: failed its probe" in log_text(caplog)
    assert "skipped: gw2" in captured.err
    rows = read_csv(out.read_text())
    assert {r["endpoint"] for r in rows} == {"gw1", "office-mac", "branch-office"}
    assert_no_secret_in_outputs(world, captured, caplog, out)


def test_discover_reads_each_logon_and_reports_gaps(world: World) -> None:
    """A server without a stored logon is incomplete; an unknown address-book type skipped."""
    gw1 = world.states["gw1"]
    assert isinstance(gw1, SparkViewState)
    gw1.add_server("kiosk-01", "Kiosk", "kiosk.example.test")  # no logon stored
    rx = world.states["branch-office"]
    assert isinstance(rx, RemotixState)
    rx.connections["B10C-0001"].protocol = "SSH"  # a type the inventory has no protocol for
    found = discover(replace(world.settings, env={**world.settings.env, **GATEWAYS}))
    assert found.exit_code == 0
    assert [r.target for r in found.incomplete if r.kind == "server"] == ["kiosk-01"]
    assert all(r.target != "B10C-0001" for r in found.rows + found.incomplete)
    assert any("'B10C-0001'" in w and "'SSH'" in w for w in found.warnings)
    # No computers named in the config: none discovered (the API cannot list them).
    assert not [r for r in found.rows if r.kind == "computer"]


# -- unit: what the Remotix answers map to (pytest-httpx) --------------------------------------

RX_URL = "http://127.0.0.1:9001"


def test_remotix_types_ports_and_credentials(httpx_mock: HTTPXMock) -> None:
    settings = Settings(
        run=RunSettings(retries=0, timeout_s=1.0),
        policies={
            "default": PolicySettings(name="default"),
            "short": PolicySettings(name="short", length=8),
        },
        endpoints={
            "rx": RemotixSettings(name="rx", system="remotix", url=RX_URL, computers=("42",))
        },
    )
    groups = [{"group_uid": "G1", "name": "All"}]
    httpx_mock.add_response(url=f"{RX_URL}/groups", json=groups, is_reusable=True)
    httpx_mock.add_response(
        url=f"{RX_URL}/group/G1",
        json=[
            {"uid": "c1", "name": "a", "type": "RDP"},
            {"uid": "c2", "name": "b", "type": "Screen Sharing"},
            {"uid": "c3", "name": "c", "type": "vnc"},
            {"uid": "c4", "name": "d", "type": "Remotix"},
            {"uid": "c5", "name": "e", "type": "Telnet"},
        ],
    )
    httpx_mock.add_response(
        url=f"{RX_URL}/computer/42/connections",
        json=["RDP_3390", {"id": "VNC"}, {"type": "NEAR", "port": None}, "SSH_22"],
    )
    httpx_mock.add_response(
        url=f"{RX_URL}/computer/42/RDP_3390/credentials",
        json={"rdp.username": "admin", "rdp.password": "S3cret-RDP-pw", "rdp.domain": "CORP"},
    )
    httpx_mock.add_response(
        url=f"{RX_URL}/computer/42/VNC/credentials",
        json={"apple.username": "viewer", "apple.password": "vncpw123"},
    )
    httpx_mock.add_response(
        url=f"{RX_URL}/computer/42/NEAR/credentials", status_code=404, json={"error": "nope"}
    )
    found = discover(settings)
    rows = {(r.kind, r.target, r.protocol, r.port): r for r in found.rows}
    assert set(rows) == {("computer", "42", "RDP", 3390), ("computer", "42", "VNC", None)}
    assert rows["computer", "42", "RDP", 3390].domain == "CORP"
    assert rows["computer", "42", "VNC", None].policy == "short"
    incomplete = {(r.kind, r.target, r.protocol) for r in found.incomplete}
    assert incomplete == {
        ("connection", "c1", "RDP"),
        ("connection", "c2", "APPLE"),
        ("connection", "c3", "APPLE"),
        ("connection", "c4", "NEAR"),
        ("computer", "42", "NEAR"),  # its credentials could not be read
    }
    assert any("'Telnet'" in w for w in found.warnings)
    assert any("'SSH_22'" in w for w in found.warnings)
    assert found.partial_endpoints == ["rx"]
    assert found.exit_code == 1
    text = to_csv(found.rows + found.incomplete)
    assert "S3cret-RDP-pw" not in text
    assert "vncpw123" not in text
