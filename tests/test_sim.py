"""The vendor simulators, driven over loopback HTTP with httpx: API, state, auth and faults."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import httpx
import pytest

from rotate.models import Row
from rotate.sim.faults import Faults
from rotate.sim.host import AsyncSimulatorHost, SimulatorHost
from rotate.sim.seed import seed_states
from rotate.vendors.remotix import RemotixSettings
from rotate.vendors.remotix.simulator import RemotixSimulator, RemotixState
from rotate.vendors.sparkview import SparkViewSettings
from rotate.vendors.sparkview.simulator import (
    SparkViewSimulator,
    SparkViewState,
    gateway_password_hash,
)

GW_PASSWORD = "gateway-secret"
GW_MD5 = hashlib.md5(GW_PASSWORD.encode(), usedforsecurity=False).hexdigest()

pytestmark = pytest.mark.integration  # simulators served on loopback


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture
def remotix(sim_host: SimulatorHost) -> Iterator[tuple[httpx.Client, RemotixState]]:
    """A Remotix simulator with one RDP connection and one computer; a client bound to it."""
    state = RemotixState()
    group = state.add_group("Servers", uid="G-1")
    state.add_connection("C-1", "web01", "RDP", group, "admin", "old-pass", "CORP")
    state.add_computer(
        "123456",
        "mac-mini",
        {
            "RDP_3390": {"rdp.username": "admin", "rdp.password": "old-pass", "quality": "high"},
            "VNC": {"username": "viewer", "password": "vncpass1"},
        },
        os="macOS",
    )
    url = sim_host.add_simulator("rx", RemotixSimulator(state))
    with httpx.Client(base_url=url, timeout=5) as client:
        yield client, state


@pytest.fixture
def sparkview(sim_host: SimulatorHost) -> Iterator[tuple[httpx.Client, SparkViewState]]:
    """A Spark View simulator with one server; a client bound to it."""
    state = SparkViewState()
    state.add_server("ATPlus", "AT Plus", "10.0.0.5", "demo", "old-pass", "CORP")
    url = sim_host.add_simulator("sv", SparkViewSimulator(state, GW_PASSWORD))
    with httpx.Client(base_url=url, timeout=5) as client:
        yield client, state


def sv(client: httpx.Client, path: str, **params: str) -> httpx.Response:
    """A Spark View call with the right gatewayPwd."""
    return client.get(path, params={**params, "gatewayPwd": GW_MD5})


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- Remotix: address book -------------------------------------------------------------------
def test_remotix_groups_and_connections_round_trip(remotix: tuple[httpx.Client, RemotixState]):
    client, state = remotix
    r = client.put("/group/", json={"name": "Branch"})
    assert r.status_code == 200
    group = r.json()["group_uid"]
    assert {"group_uid": group, "name": "Branch"} in client.get("/groups").json()

    r = client.put("/connection/", json={"name": "db01", "category_uid": group})
    assert r.status_code == 200
    uid = r.json()["uid"]
    assert client.get(f"/group/{group}").json() == [{"uid": uid, "name": "db01", "type": "RDP"}]

    assert client.put(f"/connection/{uid}", json={"name": "db02"}).status_code == 200
    assert state.connections[uid].name == "db02"
    assert client.get("/group/G-1").json() == [{"uid": "C-1", "name": "web01", "type": "RDP"}]
    assert client.get("/group/nope").status_code == 404


def test_remotix_connection_credentials_put_and_delete(
    remotix: tuple[httpx.Client, RemotixState],
):
    client, state = remotix
    r = client.put(
        "/connection/C-1/credentials", json={"rdp.username": "root", "rdp.password": "N3w!pass"}
    )
    assert r.status_code == 200
    assert state.connection_credentials("C-1") == {
        "username": "root",
        "password": "N3w!pass",
        "domain": "CORP",  # keys not sent are kept
    }
    assert state.connection_password("C-1") == "N3w!pass"
    assert client.delete("/connection/C-1/credentials").status_code == 200
    assert state.connection_credentials("C-1") == {}
    assert state.forbidden_calls == []  # removing credentials is not a forbidden call
    assert state.writes == 2


def test_remotix_rejects_bad_bodies_and_unknown_ids(remotix: tuple[httpx.Client, RemotixState]):
    client, state = remotix
    r = client.put("/connection/C-1/credentials", json={"rxp.password": "x"})
    assert r.status_code == 400
    assert "does not belong" in r.json()["error"]
    r = client.put(
        "/connection/C-1/credentials",
        content=b"{rdp.password: 'x',}",  # the manual's JavaScript-like notation
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json() == {"error": "malformed JSON body"}
    assert client.put("/connection/C-1/credentials", json={"rdp.password": 5}).status_code == 400
    assert client.put("/connection/NOPE/credentials", json={}).status_code == 404
    assert client.get("/computer/999").status_code == 404
    assert client.get("/computer/123456/SSH").status_code == 404
    assert client.get("/computer/123456/RDP").status_code == 404  # only RDP_3390 exists
    assert client.get("/no/such/path").json() == {"error": "not found"}
    assert state.connection_password("C-1") == "old-pass"
    assert state.writes == 0


# -- Remotix: cloud computers ----------------------------------------------------------------
def test_remotix_computer_partial_update_and_read_back(
    remotix: tuple[httpx.Client, RemotixState],
):
    client, state = remotix
    assert client.get("/computer/123456").json() == {
        "os": "macOS",
        "id": "123456",
        "name": "mac-mini",
    }
    assert client.get("/computer/123456/connections").json() == [
        {"id": "RDP_3390", "type": "RDP", "port": 3390},
        {"id": "VNC", "type": "VNC", "port": None},
    ]
    settings = client.get("/computer/123456/RDP_3390").json()
    assert settings == {"type": "RDP", "port": 3390, "quality": "high", "rdp.username": "admin"}

    r = client.put("/computer/123456/RDP_3390", json={"rdp.password": "Fresh-1", "quality": "low"})
    assert r.status_code == 200
    creds = client.get("/computer/123456/RDP_3390/credentials").json()
    assert creds == {"rdp.username": "admin", "rdp.password": "Fresh-1"}
    assert state.computer_password("123456", "RDP_3390") == "Fresh-1"

    # null resets: a setting to its default, a credential key to absent
    r = client.put("/computer/123456/RDP_3390", json={"quality": None, "rdp.username": None})
    assert r.status_code == 200
    assert client.get("/computer/123456/RDP_3390").json()["quality"] == "high"
    assert "rdp.username" not in client.get("/computer/123456/RDP_3390/credentials").json()

    assert client.put("/computer/123456/RDP_3390", json={"apple.password": "x"}).status_code == 400
    assert client.delete("/computer/123456/RDP_3390/credentials").status_code == 200
    assert client.get("/computer/123456/RDP_3390/credentials").json() == {}


def test_remotix_vnc_password_is_at_most_8_characters(
    remotix: tuple[httpx.Client, RemotixState],
):
    client, state = remotix
    r = client.put("/computer/123456/VNC", json={"apple.password": "123456789"})
    assert r.status_code == 400
    assert "8 characters" in r.json()["error"]
    assert state.computer_password("123456", "VNC") == "vncpass1"
    assert (
        client.put("/computer/123456/VNC", json={"apple.password": "12345678"}).status_code == 200
    )
    assert client.get("/computer/123456/VNC/credentials").json()["apple.password"] == "12345678"


def test_remotix_key_prefixes_are_settings(sim_host: SimulatorHost):
    state = RemotixState()
    state.add_computer("1", "pc", {"VNC": {"username": "u", "password": "p"}})
    url = sim_host.add_simulator("rx", RemotixSimulator(state, vnc_key="vnc", vnc_max_password=6))
    with httpx.Client(base_url=url) as client:
        assert client.put("/computer/1/VNC", json={"apple.password": "abc"}).status_code == 400
        assert client.put("/computer/1/VNC", json={"vnc.password": "abcdefg"}).status_code == 400
        assert client.put("/computer/1/VNC", json={"vnc.password": "abcdef"}).status_code == 200
        assert client.get("/computer/1/VNC/credentials").json() == {
            "vnc.username": "u",
            "vnc.password": "abcdef",
        }


def test_remotix_bearer_token(sim_host: SimulatorHost):
    url = sim_host.add_simulator("rx", RemotixSimulator(RemotixState(), token="t0ken"))
    with httpx.Client(base_url=url) as client:
        r = client.get("/groups")
        assert r.status_code == 401
        assert r.json() == {"error": "unauthorized"}
        assert client.get("/groups", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/groups", headers={"Authorization": "Bearer t0ken"}).status_code == 200


def test_remotix_deletes_are_applied_and_recorded_as_forbidden(
    remotix: tuple[httpx.Client, RemotixState], sim_host: SimulatorHost
):
    client, state = remotix
    assert client.delete("/computer/123456").status_code == 200
    assert client.delete("/connection/C-1").status_code == 200
    assert "123456" not in state.computers
    assert "C-1" not in state.connections
    assert state.forbidden_calls == ["DELETE /computer/123456", "DELETE /connection/C-1"]
    # a delete of an unknown computer, or one answered by an injected fault, is recorded too:
    # the tool did send it
    assert client.delete("/computer/777").status_code == 404
    sim_host.set_faults("rx", Faults(error_rate=1.0))
    assert client.delete("/connection/C-2").status_code == 503
    assert state.forbidden_calls[2:] == ["DELETE /computer/777", "DELETE /connection/C-2"]


# -- Spark View ------------------------------------------------------------------------------
def test_sparkview_auth(sparkview: tuple[httpx.Client, SparkViewState]):
    client, _ = sparkview
    assert gateway_password_hash(GW_PASSWORD) == GW_MD5
    for params in ({}, {"gatewayPwd": "0" * 32}, {"gatewayPwd": GW_MD5.upper()}):
        r = client.get("/SERVER", params={"action": "list", **params})
        assert r.status_code == 500
        assert r.json() == {"error:": "invalid gateway password"}
    assert sv(client, "/SERVER", action="list").status_code == 200
    r = client.get("/CONTROL", params={"target": "gateway"})  # the probe needs no password
    assert r.status_code == 200
    assert set(r.json()) == {"version", "buildNumber", "buildTime", "startTime"}
    assert isinstance(r.json()["startTime"], int)


def test_sparkview_trust_local(sim_host: SimulatorHost):
    url = sim_host.add_simulator(
        "sv", SparkViewSimulator(SparkViewState(), GW_PASSWORD, trust_local=True)
    )
    r = httpx.get(f"{url}/SERVER", params={"action": "list"})
    assert r.status_code == 200


def test_sparkview_server_create_update_read_back(
    sparkview: tuple[httpx.Client, SparkViewState],
):
    client, state = sparkview
    r = sv(client, "/SERVER", id="srv2", displayName="Server 2", server="10.0.0.6")
    assert r.status_code == 200
    assert sv(client, "/SERVER", id="srv2", server="x").json() == {"error:": "already exists"}

    r = sv(client, "/SERVER", action="update", id="ATPlus", user="demo", pwd="n3w&p=ss")
    assert r.status_code == 200
    one = sv(client, "/SERVER", action="list", id="ATPlus").json()
    assert one == {
        "id": "ATPlus",
        "displayName": "AT Plus",  # merged, not replaced
        "server": "10.0.0.5",
        "protocols": "rdp",
        "rdp": {"username": "demo", "password": "n3w&p=ss", "domain": "CORP"},
    }
    assert state.server_password("ATPlus") == "n3w&p=ss"
    assert "rdp" not in sv(client, "/SERVER", action="list", id="srv2").json()

    table = sv(client, "/SERVER", action="list").json()
    assert table == {
        "display": True,
        "type": "NORMALLIST",
        "cols": [
            {"name": "id"},
            {"name": "displayName"},
            {"name": "server"},
            {"name": "remoteProgram"},
            {"name": "command"},
        ],
        "rows": [
            ["ATPlus", "AT Plus", "10.0.0.5", "", ""],
            ["srv2", "Server 2", "10.0.0.6", "", ""],
        ],
    }
    r = sv(client, "/SERVER", action="update", id="nope", pwd="x")
    assert (r.status_code, r.json()) == (500, {"error:": "not found"})
    r = sv(client, "/SERVER", action="list", id="nope")
    assert (r.status_code, r.json()) == (500, {"error:": "not found"})
    assert state.writes == 2


def test_sparkview_credential_param_names_are_settings(sim_host: SimulatorHost):
    state = SparkViewState()
    state.add_server("s1", "s1", "h1", "u", "old")
    url = sim_host.add_simulator(
        "sv", SparkViewSimulator(state, GW_PASSWORD, password_param="password")
    )
    with httpx.Client(base_url=url) as client:
        assert sv(client, "/SERVER", action="update", id="s1", password="new").status_code == 200
        assert state.server_password("s1") == "new"
        sv(client, "/SERVER", action="update", id="s1", pwd="other")
        assert state.server_password("s1") == "new"
        assert state.servers["s1"].params["pwd"] == "other"  # an ordinary parameter now


def test_sparkview_server_delete_is_recorded_as_forbidden(
    sparkview: tuple[httpx.Client, SparkViewState],
):
    client, state = sparkview
    assert sv(client, "/SERVER", action="delete", id="ATPlus").status_code == 200
    assert "ATPlus" not in state.servers
    assert state.forbidden_calls == ["GET /SERVER?action=delete&id=ATPlus"]


def test_sparkview_symlinks(sparkview: tuple[httpx.Client, SparkViewState]):
    client, state = sparkview
    inner = urlencode({"user": "demo", "pwd": "old&pass"})
    r = sv(client, "/SYMLINK", symlink="L1", server="ATPlus", validTime="8h", parameters=inner)
    assert r.status_code == 200
    link = sv(client, "/SYMLINK", action="list", symlink="L1").json()
    assert link["parameters"] == "user=demo&pwd=old%26pass"  # stored as the query it is
    assert link["resourceId"] == "ATPlus"
    assert link["validTo"] - link["validFrom"] == 8 * 3600 * 1000

    new_inner = urlencode({"user": "demo", "pwd": "new"})
    r = sv(client, "/SYMLINK", action="update", symlink="L1", parameters=new_inner)
    assert r.status_code == 200
    assert state.symlinks["L1"].parameters == "user=demo&pwd=new"

    table = sv(client, "/SYMLINK", action="list").json()
    assert [c["name"] for c in table["cols"]] == [
        "id",
        "resourceId",
        "password",
        "validFrom",
        "validTime",
        "validTo",
        "parameters",
        "comment",
    ]
    assert table["rows"][0][0] == "L1"
    assert table["rows"][0][6] == "user=demo&pwd=new"
    r = sv(client, "/SYMLINK", symlink="L2", server="nope")
    assert r.json() == {"error:": "not found"}
    assert sv(client, "/SYMLINK", action="delete", symlink="L1").status_code == 200
    assert state.symlinks == {}
    assert state.forbidden_calls == []


def test_sparkview_sessions_and_control(sparkview: tuple[httpx.Client, SparkViewState]):
    client, state = sparkview
    state.add_session("ATPlus", "demo", "CORP", id="S1")
    state.add_session("ATPlus", "alice", id="S2")
    state.add_session("other", "demo", id="S3")
    rows = sv(client, "/SESSION", action="list", user="demo").json()["rows"]
    assert sorted(r[0] for r in rows) == ["S1", "S3"]
    rows = sv(client, "/SESSION", action="list", server="ATPlus", user="demo").json()["rows"]
    assert [r[0] for r in rows] == ["S1"]
    rows = sv(client, "/SESSION", action="list", ids="S2,S3").json()["rows"]
    assert sorted(r[0] for r in rows) == ["S2", "S3"]

    assert sv(client, "/CONTROL", target="twofa", user="CORP\\demo").status_code == 200
    assert state.twofa_resets == ["CORP\\demo"]
    r = sv(client, "/CONTROL", licenseFile=".")
    assert r.status_code == 200
    assert r.json()["uploaded"] is False
    assert client.get("/CONTROL", params={"target": "twofa", "user": "x"}).status_code == 500
    assert state.twofa_resets == ["CORP\\demo"]


def test_the_server_logs_no_url(
    sparkview: tuple[httpx.Client, SparkViewState], caplog: pytest.LogCaptureFixture
):
    # (the httpx client itself logs full URLs at INFO: a client must keep that logger quiet)
    client, _ = sparkview
    with caplog.at_level(logging.DEBUG, logger="aiohttp"):
        sv(client, "/SERVER", action="update", id="ATPlus", pwd="leaky-pass")
        client.get("/SERVER", params={"action": "list", "gatewayPwd": "bad"})
        client.put("/SERVER")  # a 405, which aiohttp might otherwise log
    server_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("aiohttp"))
    assert "leaky-pass" not in server_log
    assert "gatewayPwd" not in server_log
    assert "/SERVER" not in server_log


# -- faults ----------------------------------------------------------------------------------
def test_fault_rolls_are_reproducible_from_the_seed():
    a, b = Faults(error_rate=0.5, seed=7), Faults(error_rate=0.5, seed=7)
    rolls = [a.roll(0.5) for _ in range(50)]
    assert rolls == [b.roll(0.5) for _ in range(50)]
    assert 5 < sum(rolls) < 45
    with pytest.raises(ValueError, match="error_rate"):
        Faults(error_rate=1.5)


def test_fault_latency_is_added(remotix: tuple[httpx.Client, RemotixState], sim_host):
    client, _ = remotix
    sim_host.set_faults("rx", Faults(latency_ms=250))
    start = time.perf_counter()
    assert client.get("/groups").status_code == 200
    assert time.perf_counter() - start >= 0.25


def test_fault_error_is_answered_before_applying(
    remotix: tuple[httpx.Client, RemotixState], sim_host
):
    client, state = remotix
    sim_host.set_faults("rx", Faults(error_rate=1.0))
    r = client.put("/connection/C-1/credentials", json={"rdp.password": "never"})
    assert r.status_code == 503
    assert state.connection_password("C-1") == "old-pass"
    sim_host.set_faults("rx", Faults(error_rate=1.0, error_status=502))
    assert client.get("/groups").status_code == 502


def test_fault_rate_limit(sparkview: tuple[httpx.Client, SparkViewState], sim_host):
    client, _ = sparkview
    sim_host.set_faults("sv", Faults(rate_limit_rate=1.0, retry_after_s=3))
    r = sv(client, "/SERVER", action="list")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "3"
    assert r.json() == {"error:": "too many requests"}


def test_fault_drop_closes_without_an_answer(sim_host: SimulatorHost):
    state = RemotixState()
    url = sim_host.add_simulator("rx", RemotixSimulator(state, Faults(drop_rate=1.0)))
    with (
        httpx.Client(base_url=url) as client,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        client.get("/groups")
    assert state.requests == 1


def test_fault_hang_times_out_then_applies(remotix: tuple[httpx.Client, RemotixState], sim_host):
    client, state = remotix
    sim_host.set_faults("rx", Faults(hang_rate=1.0, hang_s=0.5))
    with pytest.raises(httpx.ReadTimeout):
        client.put("/connection/C-1/credentials", json={"rdp.password": "late"}, timeout=0.15)
    assert state.connection_password("C-1") == "old-pass"
    # the hung request is answered normally in the end: the write lands after the timeout
    assert wait_for(lambda: state.connection_password("C-1") == "late")


def test_fault_apply_then_fail_keeps_the_new_value(
    sparkview: tuple[httpx.Client, SparkViewState], sim_host
):
    client, state = sparkview
    sim_host.set_faults("sv", Faults(apply_then_fail_rate=1.0))
    r = sv(client, "/SERVER", action="update", id="ATPlus", pwd="applied")
    assert r.status_code == 500
    assert state.server_password("ATPlus") == "applied"
    assert sv(client, "/SERVER", action="list", id="ATPlus").status_code == 200  # reads unaffected


def test_fault_reject_targets(
    remotix: tuple[httpx.Client, RemotixState],
    sparkview: tuple[httpx.Client, SparkViewState],
    sim_host,
):
    rx, rx_state = remotix
    spark, sv_state = sparkview
    sim_host.set_faults("rx", Faults(reject_targets={"C-1", "123456"}))
    sim_host.set_faults("sv", Faults(reject_targets={"ATPlus"}))
    r = rx.put("/connection/C-1/credentials", json={"rdp.password": "no"})
    assert (r.status_code, r.json()) == (400, {"error": "rejected"})
    assert rx.put("/computer/123456/VNC", json={"apple.password": "no"}).status_code == 400
    assert rx_state.connection_password("C-1") == "old-pass"
    assert rx_state.computer_password("123456", "VNC") == "vncpass1"
    assert rx.get("/computer/123456/VNC/credentials").status_code == 200  # reads are not rejected
    r = sv(spark, "/SERVER", action="update", id="ATPlus", pwd="no")
    assert (r.status_code, r.json()) == (500, {"error:": "rejected"})
    assert sv_state.server_password("ATPlus") == "old-pass"


async def test_max_in_flight_counts_concurrent_requests(sim_host: SimulatorHost):
    state = RemotixState()
    url = sim_host.add_simulator("rx", RemotixSimulator(state, Faults(latency_ms=300)))
    n = 7
    async with httpx.AsyncClient(base_url=url) as client:
        answers = await asyncio.gather(*(client.get("/groups") for _ in range(n)))
    assert [a.status_code for a in answers] == [200] * n
    assert state.max_in_flight == n
    assert state.in_flight == 0
    assert state.requests == n


def test_admin_endpoints(remotix: tuple[httpx.Client, RemotixState]):
    client, state = remotix
    client.put("/connection/C-1/credentials", json={"rdp.password": "seen"})
    dump = client.get("/_sim/state").json()
    assert dump["connections"]["C-1"]["credentials"]["password"] == "seen"
    assert dump["writes"] == 1

    r = client.post("/_sim/faults", json={"error_rate": 1, "reject_targets": ["x"]})
    assert r.status_code == 200
    assert r.json()["reject_targets"] == ["x"]
    assert client.get("/groups").status_code == 503
    assert client.get("/_sim/state").status_code == 200  # admin calls bypass faults
    assert client.post("/_sim/faults", json={"bogus": 1}).status_code == 400
    assert client.post("/_sim/faults", json={"drop_rate": 2}).status_code == 400
    assert client.post("/_sim/faults", json={}).status_code == 200
    assert client.get("/groups").status_code == 200

    assert state.requests == 3  # the admin calls are not counted
    assert client.post("/_sim/reset-counters").status_code == 200
    assert (state.requests, state.writes, state.max_in_flight) == (0, 0, 0)


# -- seeding ---------------------------------------------------------------------------------
ENDPOINTS = {
    "mac": RemotixSettings(name="mac", system="remotix", url="http://127.0.0.1:1"),
    "gw": SparkViewSettings(name="gw", system="sparkview", url="http://127.0.0.1:2"),
}


def _row(line: int, endpoint: str, kind: str, target: str, protocol: str, **kw) -> Row:
    return Row(
        line=line,
        endpoint=endpoint,
        kind=kind,
        target=target,
        username=kw.pop("username", "admin"),
        protocol=protocol,
        **kw,
    )


ROWS = [
    _row(2, "mac", "connection", "C-9", "RDP", domain="CORP"),
    _row(3, "mac", "connection", "C-10", "NEAR"),
    _row(4, "mac", "computer", "4242", "RDP", port=3390),
    _row(5, "mac", "computer", "4242", "VNC", username="viewer"),
    _row(6, "gw", "server", "srv1", "RDP", domain="CORP"),
]


def test_seed_states_creates_every_object_the_rows_name():
    states = seed_states(ROWS, ENDPOINTS)
    mac, gw = states["mac"], states["gw"]
    assert isinstance(mac, RemotixState)
    assert isinstance(gw, SparkViewState)
    creds = mac.connection_credentials("C-9")
    assert (creds["username"], creds["domain"]) == ("admin", "CORP")
    assert len(creds["password"]) >= 12
    assert mac.connections["C-10"].protocol == "NEAR"
    assert set(mac.computers["4242"].connections) == {"RDP_3390", "VNC"}
    vnc = mac.computer_credentials("4242", "VNC")
    assert vnc["username"] == "viewer"
    assert 0 < len(vnc["password"]) <= 8
    assert gw.server_credentials("srv1")["domain"] == "CORP"
    passwords = {
        mac.connection_password("C-9"),
        mac.connection_password("C-10"),
        mac.computer_password("4242", "RDP_3390"),
        gw.server_password("srv1"),
    }
    assert len(passwords) == 4

    again = seed_states(ROWS, ENDPOINTS, rng_seed=1)
    same = seed_states(ROWS, ENDPOINTS, rng_seed=1)
    assert again["gw"].to_json()["servers"] == same["gw"].to_json()["servers"]


def test_seed_states_refuses_unknown_endpoints_and_wrong_systems():
    with pytest.raises(ValueError, match="unknown endpoint"):
        seed_states([_row(2, "nope", "server", "s", "RDP")], ENDPOINTS)
    with pytest.raises(ValueError, match="cannot live on"):
        seed_states([_row(2, "mac", "server", "s", "RDP")], ENDPOINTS)


def test_seeded_endpoints_serve_a_rotation(sim_host: SimulatorHost):
    states = seed_states(ROWS, ENDPOINTS)
    mac_url = sim_host.add_endpoint(ENDPOINTS["mac"], states["mac"])
    gw_url = sim_host.add_endpoint(ENDPOINTS["gw"], states["gw"], gateway_password=GW_PASSWORD)
    assert sim_host.urls == {"mac": mac_url, "gw": gw_url}
    assert mac_url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=mac_url) as client:
        r = client.put("/computer/4242/VNC", json={"apple.password": "Ab3$efgh"})
        assert r.status_code == 200
        assert client.get("/computer/4242/VNC/credentials").json()["apple.password"] == "Ab3$efgh"
    with httpx.Client(base_url=gw_url) as client:
        assert sv(client, "/SERVER", action="update", id="srv1", pwd="rotated").status_code == 200
    assert sim_host.state("gw").server_password("srv1") == "rotated"


def test_host_close_is_idempotent_and_frees_the_port():
    host = SimulatorHost()
    url = host.add_simulator("rx", RemotixSimulator(RemotixState()))
    assert httpx.get(f"{url}/groups").status_code == 200
    host.close()
    host.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/groups")
    with pytest.raises(RuntimeError, match="closed"):
        host.add_simulator("again", RemotixSimulator(RemotixState()))


async def test_async_host_serves_from_the_running_loop():
    state = SparkViewState()
    state.add_server("s1", "s1", "h1", "u", "old")
    async with AsyncSimulatorHost() as host:
        url = await host.add_simulator(
            "sv", SparkViewSimulator(state, GW_PASSWORD, Faults(apply_then_fail_rate=1))
        )
        async with httpx.AsyncClient(base_url=url) as client:
            params = {"action": "update", "id": "s1", "pwd": "new", "gatewayPwd": GW_MD5}
            r = await client.get("/SERVER", params=params)
        assert r.status_code == 500
        assert host.state("sv") is state
    assert state.server_password("s1") == "new"
    assert host.urls == {}


def test_package_exports_are_honest():
    import rotate.sim

    for name in rotate.sim.__all__:
        assert hasattr(rotate.sim, name), name
