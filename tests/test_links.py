"""Spark View follow-ups: access links embedding a rotated logon, and two-factor resets.

Unit tests (pytest-httpx) check the request shapes; end-to-end tests run the CLI on the
simulators and a real OpenBao."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from pytest_httpx import HTTPXMock

from rotate.backends import Secrets
from rotate.errors import RemoteError
from rotate.models import Credential, Row, Secret
from rotate.settings import RunSettings
from rotate.sim.faults import Faults
from rotate.sim.host import SimulatorHost
from rotate.vendors.sparkview import VENDOR as SPARKVIEW
from rotate.vendors.sparkview import SparkViewSettings
from rotate.vendors.sparkview.links import AccessLinks, link_ref
from rotate.vendors.sparkview.simulator import (
    SYMLINK_COLUMNS,
    SparkViewSimulator,
    SparkViewState,
    add_access_links,
)
from rotate.vendors.sparkview.target import SparkViewTarget
from tests.plugins.scene import World, assert_no_secret_in_outputs, cli, reconfigure

RUN = RunSettings(retries=2, backoff_s=0.0, timeout_s=1.0)
URL = "http://127.0.0.1:9002"
SV = SparkViewSettings(name="gw", system="sparkview", url=URL, gateway_password_env="GW")
GATEWAY = "gateway-secret-1"
GATEWAY_MD5 = hashlib.md5(GATEWAY.encode(), usedforsecurity=False).hexdigest()
NEW = "N3w Passw0rd&x=1"  # a space, '&' and '=': the re-encoding must hold them
OLD = "0ld-Passw0rd-42"
LINK_PASSWORD = "link-access-pw-9"
CRED = Credential("alice", Secret(NEW), "CORP")
L1_PARAMS = f"width=1280&user=alice&pwd={OLD}&domain=CORP&height=800&title=Ledger+%26+Pay"


def server_row(target: str = "s1", username: str = "alice", domain: str | None = "CORP") -> Row:
    return Row(
        line=2,
        endpoint="gw",
        kind="server",
        target=target,
        username=username,
        protocol="RDP",
        domain=domain,
    )


def link(
    id: str,
    server: str,
    parameters: str,
    password: str = "",
    comment: str = "",
    valid_time: str = "",
) -> list[Any]:
    valid_from = 1_700_000_000_000 if valid_time else ""
    valid_to = 1_700_432_000_000 if valid_time else ""
    return [id, server, password, valid_from, valid_time, valid_to, parameters, comment]


LINKS = [
    link("L1", "s1", L1_PARAMS, LINK_PASSWORD, "helpdesk", "5d"),  # embeds alice@CORP on s1
    link("L2", "s1", "user=bob&pwd=bob-pass-77"),  # another account on s1
    link("L3", "s2", "user=alice&pwd=s2-pass-88&domain=CORP"),  # alice on another server
    link("L4", "s1", "user=alice&domain=CORP"),  # no password: prompts
    link("L5", "s1", "user=alice&pwd=x5-pass-99&domain=OTHER"),  # another domain's alice
    link("L6", "s1", "user=CORP%5CALICE&pwd=y6-pass-11"),  # DOMAIN\user, case aside
]


def table(rows: list[list[Any]], cols: tuple[str, ...] = SYMLINK_COLUMNS) -> dict[str, Any]:
    return {
        "display": True,
        "type": "NORMALLIST",
        "cols": [{"name": c} for c in cols],
        "rows": rows,
    }


def target(settings: SparkViewSettings = SV) -> SparkViewTarget:
    t = SPARKVIEW.build(settings, RUN, Secrets({"GW": GATEWAY}))
    assert isinstance(t, SparkViewTarget)
    return t


def query(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


class Gateway:
    """A pytest-httpx callback routing by path and action; failures on demand."""

    def __init__(self, links: list[list[Any]], cols: tuple[str, ...] = SYMLINK_COLUMNS) -> None:
        self.links = links
        self.cols = cols
        self.list_status = 200
        self.update_status = 200
        self.update_error = "internal error"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        q = query(request)
        assert q.get("gatewayPwd") == GATEWAY_MD5
        if request.url.path == "/SYMLINK" and q.get("action") == "list":
            if self.list_status != 200:
                return httpx.Response(self.list_status, json={"error:": "busy"})
            return httpx.Response(200, json=table(self.links, self.cols))
        if request.url.path == "/SYMLINK" and q.get("action") == "update":
            if self.update_status != 200:
                return httpx.Response(self.update_status, json={"error:": self.update_error})
            return httpx.Response(200, json={"id": q["symlink"]})
        if request.url.path == "/CONTROL" and q.get("target") == "twofa":
            return httpx.Response(200, json={"user": q["user"]})
        return httpx.Response(500, json={"error:": "unknown"})

    @staticmethod
    def calls(mock: HTTPXMock, action: str) -> list[dict[str, str]]:
        return [
            query(r)
            for r in mock.get_requests()
            if r.url.path == "/SYMLINK" and query(r).get("action") == action
        ]


async def test_links_are_listed_once_and_only_the_rotated_accounts_updated(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_callback(Gateway(LINKS), is_reusable=True)
    t = target()
    others = [server_row("s3", "carol", None), server_row("s4", "dave", None)]
    results = await asyncio.gather(
        t.follow_up(server_row(), CRED),
        *(t.follow_up(r, Credential(r.username, Secret("zz-pass-000"))) for r in others),
    )
    assert results == [
        [f"access link {link_ref('L1')} updated", f"access link {link_ref('L6')} updated"],
        [],
        [],
    ]
    assert len(Gateway.calls(httpx_mock, "list")) == 1  # one list for the endpoint, not per item
    updates = {u["symlink"]: u for u in Gateway.calls(httpx_mock, "update")}
    assert set(updates) == {"L1", "L6"}
    sent = updates["L1"]
    # Only the password changed: every other parameter byte for byte, in its place.
    expected = L1_PARAMS.replace(f"pwd={OLD}", "pwd=N3w%20Passw0rd%26x%3D1")
    assert sent["parameters"] == expected
    assert dict(parse_qsl(sent["parameters"]))["pwd"] == NEW
    # A careful client resends the fields it keeps; validTime would restart the validity.
    assert sent == {
        "action": "update",
        "symlink": "L1",
        "server": "s1",
        "password": LINK_PASSWORD,
        "validFrom": "1700000000000",
        "validTo": "1700432000000",
        "comment": "helpdesk",
        "parameters": expected,
        "gatewayPwd": GATEWAY_MD5,
    }
    assert updates["L6"]["parameters"] == "user=CORP%5CALICE&pwd=N3w%20Passw0rd%26x%3D1"
    # A second rotation in the same run (say, a retry) lists nothing again.
    assert await t.follow_up(server_row(), CRED) == [
        f"access link {link_ref('L1')} updated",
        f"access link {link_ref('L6')} updated",
    ]
    assert len(Gateway.calls(httpx_mock, "list")) == 1
    await t.aclose()


async def test_link_fields_are_not_resent_when_switched_off(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_callback(Gateway(LINKS[:1]), is_reusable=True)
    t = target(replace(SV, send_link_fields_on_update=False))
    assert await t.follow_up(server_row(), CRED) == [f"access link {link_ref('L1')} updated"]
    (sent,) = Gateway.calls(httpx_mock, "update")
    assert set(sent) == {"action", "symlink", "parameters", "gatewayPwd"}
    await t.aclose()


async def test_custom_parameter_and_column_names(httpx_mock: HTTPXMock) -> None:
    cols = tuple(c if c != "resourceId" else "server" for c in SYMLINK_COLUMNS)
    links = [link("L1", "s1", f"username=alice&password={OLD}&dom=CORP")]
    httpx_mock.add_callback(Gateway(links, cols), is_reusable=True)
    settings = replace(
        SV,
        user_param="username",
        password_param="password",
        domain_param="dom",
        link_server_column="server",
    )
    t = target(settings)
    assert await t.follow_up(server_row(), CRED) == [f"access link {link_ref('L1')} updated"]
    (sent,) = Gateway.calls(httpx_mock, "update")
    assert sent["parameters"] == "username=alice&password=N3w%20Passw0rd%26x%3D1&dom=CORP"
    await t.aclose()


async def test_a_failed_link_update_is_a_secret_free_target_error(httpx_mock: HTTPXMock) -> None:
    gateway = Gateway(LINKS)
    gateway.update_status = 500
    # The gateway echoes what it was sent: none of it may reach the message.
    gateway.update_error = f"rejected: pwd={NEW} old={OLD} link={LINK_PASSWORD} {GATEWAY_MD5}"
    httpx_mock.add_callback(gateway, is_reusable=True)
    t = target(replace(SV, reset_twofa=True))
    with pytest.raises(RemoteError) as caught:
        await t.follow_up(server_row(), CRED)
    message = str(caught.value)
    assert f"access link {link_ref('L1')} not updated" in message
    assert f"access link {link_ref('L6')} not updated" in message
    assert "GET /SYMLINK?action=update" in message
    assert "rejected" in message
    # The other follow-up still happened, and the message says so.
    assert "done: two-factor enrolment reset for CORP\\alice" in message
    for secret in (NEW, OLD, LINK_PASSWORD, GATEWAY, GATEWAY_MD5, "y6-pass-11", "gatewayPwd="):
        assert secret not in message
    await t.aclose()


async def test_a_failed_list_is_remembered_not_repeated(httpx_mock: HTTPXMock) -> None:
    gateway = Gateway(LINKS)
    gateway.list_status = 503
    httpx_mock.add_callback(gateway, is_reusable=True)
    t = target()
    for _ in range(3):
        with pytest.raises(RemoteError, match="access links not checked"):
            await t.follow_up(server_row(), CRED)
    assert len(Gateway.calls(httpx_mock, "list")) == RUN.retries + 1  # one list, its retries
    assert Gateway.calls(httpx_mock, "update") == []
    await t.aclose()


@pytest.mark.parametrize(
    ("domain", "user"), [("CORP", "CORP\\alice"), (None, "alice")], ids=["domain", "local"]
)
async def test_two_factor_reset_when_enabled(
    httpx_mock: HTTPXMock, domain: str | None, user: str
) -> None:
    httpx_mock.add_callback(Gateway([]), is_reusable=True)
    t = target(replace(SV, update_links=False, reset_twofa=True))
    done = await t.follow_up(server_row(domain=domain), Credential("alice", Secret(NEW), domain))
    assert done == [f"two-factor enrolment reset for {user}"]
    (request,) = httpx_mock.get_requests()
    assert request.url.path == "/CONTROL"
    assert query(request) == {"target": "twofa", "user": user, "gatewayPwd": GATEWAY_MD5}
    await t.aclose()


async def test_nothing_is_sent_when_both_are_off(httpx_mock: HTTPXMock) -> None:
    t = target(replace(SV, update_links=False))
    assert await t.follow_up(server_row(), CRED) == []
    assert httpx_mock.get_requests() == []
    await t.aclose()


# -- the simulator ----------------------------------------------------------------------------


def test_simulator_link_update_merges_and_keeps_resent_fields(sim_host: SimulatorHost) -> None:
    """What the target relies on: an update changes what it names, keeps the rest, and a
    resent validity is stored as the list shows it (a number); list-one shows the same."""
    state = SparkViewState()
    state.add_server("s1", "s1", "h1", "alice", OLD, "CORP")
    (link_id,) = add_access_links(state, SV)
    before = state.symlinks[link_id].as_record()
    auth = {"gatewayPwd": GATEWAY_MD5}
    with httpx.Client(
        base_url=sim_host.add_simulator("gw", SparkViewSimulator(state, GATEWAY))
    ) as client:
        params = {"action": "update", "symlink": link_id, "parameters": "user=alice&pwd=n"}
        assert client.get("/SYMLINK", params={**params, **auth}).is_success
        after = state.symlinks[link_id].as_record()
        assert after == {**before, "parameters": "user=alice&pwd=n"}
        resent = {
            **params,
            "server": "s1",
            "validFrom": str(before["validFrom"]),
            "validTo": str(before["validTo"]),
            "comment": before["comment"],
            **auth,
        }
        assert client.get("/SYMLINK", params=resent).is_success
        assert state.symlinks[link_id].as_record() == after
        one = client.get("/SYMLINK", params={"action": "list", "symlink": link_id, **auth})
        assert one.json() == after


# -- end to end: the CLI on the simulators and a real OpenBao -----------------------------------


def _pwd(parameters: str) -> str | None:
    return dict(parse_qsl(parameters)).get("pwd")


def sv_state(world: World, name: str) -> SparkViewState:
    state = world.states[name]
    assert isinstance(state, SparkViewState)
    return state


def _seed_links(world: World) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Links on both gateways: `<server>-link` embeds its logon (updated by a run); the
    others must not change. Returns link id -> server id of the embedding links, and a
    snapshot of every link."""
    embedding: dict[str, str] = {}
    for name in ("gw1", "gw2"):
        state = sv_state(world, name)
        for link_id in add_access_links(state, world.settings.endpoints[name]):
            embedding[link_id] = link_id.removesuffix("-link")
        # The logon of another server, and the right user in another domain: not ours.
        hr = state.servers.get("hr-rdp-01") or state.servers["hr-rdp-02"]
        cross = urlencode(
            {"user": hr.rdp["username"], "pwd": "cross-Pass-123", "domain": "EXAMPLE"}
        )
        state.add_symlink("cross", "fin-rdp-01" if name == "gw1" else "ops-rdp-01", cross, "1d")
        elsewhere = urlencode({"user": "svc-fin", "pwd": "other-Dom-456", "domain": "ELSEWHERE"})
        state.add_symlink("elsewhere", "fin-rdp-01" if name == "gw1" else "ops-rdp-01", elsewhere)
        world.extra_secrets += [
            p for link in state.symlinks.values() if (p := _pwd(link.parameters))
        ]
    before = {
        f"{name}/{lid}": link.as_record()
        for name in ("gw1", "gw2")
        for lid, link in sv_state(world, name).symlinks.items()
    }
    return embedding, before


def test_run_updates_the_links_embedding_rotated_logons(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    embedding, before = _seed_links(world)
    listed: list[str] = []
    list_links = AccessLinks._list_links

    async def counting(self: AccessLinks) -> Any:
        listed.append(self.settings.name)
        return await list_links(self)

    monkeypatch.setattr(AccessLinks, "_list_links", counting)
    assert len(embedding) == len([r for r in world.rows if r.kind == "server"]) == 12
    json_path = world.out.parent / "run.json"
    assert cli(world, "run", "--json", str(json_path)) == 0
    record = json.loads(json_path.read_text())
    assert sorted(listed) == ["gw1", "gw2"]  # once per endpoint, not once per server
    olds = set(world.initial.values())
    for item in record["items"]:
        if item["kind"] == "server":
            assert item["status"] == "rotated"
            assert item["followups"] == [
                f"access link {link_ref(item['target'] + '-link')} updated"
            ]
            assert item["error"] == ""
        else:
            assert item["followups"] == []
    for name in ("gw1", "gw2"):
        state = sv_state(world, name)
        for lid, link in state.symlinks.items():
            # No link carries an old password any more.
            assert _pwd(link.parameters) not in olds, lid
            if lid in embedding:
                server = embedding[lid]
                now = state.server_password(server)
                assert now is not None
                assert _pwd(link.parameters) == now
                # Everything else as it was: other parameters (in order) and fields.
                was = before[f"{name}/{lid}"]
                old_params = was["parameters"]
                assert [p.split("=")[0] for p in link.parameters.split("&")] == [
                    p.split("=")[0] for p in old_params.split("&")
                ]
                assert [p for p in link.parameters.split("&") if not p.startswith("pwd=")] == [
                    p for p in old_params.split("&") if not p.startswith("pwd=")
                ]
                assert {**link.as_record(), "parameters": old_params} == was
            else:
                assert link.as_record() == before[f"{name}/{lid}"], lid
        assert state.twofa_resets == []  # off by default
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog, json_path)


def test_two_factor_reset_and_a_failed_link_update(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    _seed_links(world)
    gw2_line = 'gateway_password_env = "GW2_PASSWORD"'
    config = reconfigure(world, {gw2_line: f"{gw2_line}\nreset_twofa = true"})
    # The gateway refuses the update of one link: the rotation stands, the item says why.
    world.host.set_faults("gw1", Faults(reject_targets={"fin-rdp-02-link"}))
    json_path = world.out.parent / "run.json"
    assert cli(world, "run", "--json", str(json_path), config=config) == 0
    items = {(i["endpoint"], i["target"]): i for i in json.loads(json_path.read_text())["items"]}
    failed = items[("gw1", "fin-rdp-02")]
    assert failed["status"] == "rotated"
    assert failed["followups"] == []
    assert (
        f"follow-up failed: access link {link_ref('fin-rdp-02-link')} not updated"
        in failed["error"]
    )
    gw1 = sv_state(world, "gw1")
    assert (
        _pwd(gw1.symlinks["fin-rdp-02-link"].parameters)
        == world.initial["gw1/server/fin-rdp-02/RDP"]
    )
    assert gw1.twofa_resets == []
    gw2 = sv_state(world, "gw2")
    expected = sorted(
        f"{r.domain}\\{r.username}" if r.domain else r.username for r in world.rows_of("gw2")
    )
    assert sorted(gw2.twofa_resets) == expected
    for row in world.rows_of("gw2"):
        user = f"{row.domain}\\{row.username}" if row.domain else row.username
        assert items[("gw2", row.target)]["followups"] == [
            f"access link {link_ref(row.target + '-link')} updated",
            f"two-factor enrolment reset for {user}",
        ]
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog, json_path)
