"""The read-only look `rotate plan` takes at each usage (`inspect`), and the "missing" verdict
of a push, per vendor: request shapes and error translation (pytest-httpx, no sockets)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from pytest_httpx import HTTPXMock

from rotate.errors import Missing, Rejected, RemoteError
from rotate.vendors.base import Inspectable, UsageCheck
from tests.test_targets import (
    CRED,
    GATEWAY,
    GATEWAY_MD5,
    PASSWORD,
    RX,
    SERVER_LIST,
    SV,
    build_target,
    remotix,
    row,
    sparkview,
)

RX_URL = "http://127.0.0.1:9001"
SV_URL = "http://127.0.0.1:9002"


def test_both_vendors_targets_inspect() -> None:
    assert isinstance(remotix(), Inspectable)
    assert isinstance(sparkview(), Inspectable)


# -- Remotix cloud computers -----------------------------------------------------------------


async def test_remotix_computer_inspect_reads_its_credentials_and_drops_the_password(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(
        url=f"{RX_URL}/computer/123456/RDP_3390/credentials",
        json={"rdp.username": "bob", "rdp.password": PASSWORD, "rdp.domain": "CORP"},
    )
    target = remotix()
    found = await target.inspect(row("computer", "123456", "RDP", port=3390))
    assert found == UsageCheck(True, "bob")
    assert PASSWORD not in repr(found)
    assert [r.method for r in httpx_mock.get_requests()] == ["GET"]
    await target.aclose()


async def test_remotix_computer_without_stored_username_is_not_checked_for_it(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(url=f"{RX_URL}/computer/7/VNC/credentials", json={})
    target = remotix()
    assert await target.inspect(row("computer", "7", "VNC")) == UsageCheck(True, None)
    await target.aclose()


async def test_remotix_missing_computer_is_a_404_not_retried(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=404, json={"error": "computer not found"})
    target = remotix()
    found = await target.inspect(row("computer", "999", "RDP"))
    assert not found.exists
    assert "computer not found" in found.detail
    assert len(httpx_mock.get_requests()) == 1
    await target.aclose()


async def test_remotix_missing_status_is_a_setting(httpx_mock: HTTPXMock) -> None:
    """An install answering 410 for a gone object: 404 is then an ordinary rejection."""
    httpx_mock.add_response(status_code=410, json={"error": "gone"})
    httpx_mock.add_response(status_code=404, json={"error": "no route"})
    target = build_target(replace(RX, missing_status=410))
    assert not (await target.inspect(row("computer", "1", "RDP"))).exists
    with pytest.raises(Rejected) as info:
        await target.inspect(row("computer", "1", "RDP"))
    assert not isinstance(info.value, Missing)
    await target.aclose()


async def test_remotix_push_to_a_missing_computer_raises_missing(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", status_code=404, json={"error": "computer not found"})
    target = remotix()
    with pytest.raises(Missing, match="computer not found") as info:
        await target.push(row("computer", "999", "RDP"), CRED)
    assert PASSWORD not in str(info.value)
    await target.aclose()


async def test_remotix_push_to_a_missing_connection_raises_missing(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", status_code=404, json={"error": "connection not found"})
    target = remotix()
    with pytest.raises(Missing):
        await target.push(row("connection", "DEAD-BEEF", "RDP"), CRED)
    await target.aclose()


async def test_remotix_other_4xx_on_push_stays_a_plain_rejection(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", status_code=400, json={"error": "bad key"})
    target = remotix()
    with pytest.raises(Rejected) as info:
        await target.push(row("computer", "1", "RDP"), CRED)
    assert not isinstance(info.value, Missing)
    await target.aclose()


# -- Remotix address book: found through the groups, listed once per target ----------------


async def test_remotix_connections_are_found_through_the_groups_listed_once(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(
        url=f"{RX_URL}/groups",
        json=[{"group_uid": "G1", "name": "Office"}, {"group_uid": "G2", "name": "Lab"}],
    )
    httpx_mock.add_response(
        url=f"{RX_URL}/group/G1", json=[{"uid": "AAAA-0001", "name": "pc1", "type": "RDP"}]
    )
    httpx_mock.add_response(
        url=f"{RX_URL}/group/G2", json=[{"uid": "AAAA-0002", "name": "mac", "type": "VNC"}]
    )
    target = remotix()
    uids = ["AAAA-0001", "AAAA-0002", "AAAA-0404"] * 20
    found = await asyncio.gather(*(target.inspect(row("connection", u, "RDP")) for u in uids))
    by_uid = dict(zip(uids, found, strict=True))
    assert by_uid["AAAA-0001"].exists
    assert by_uid["AAAA-0002"].exists
    assert by_uid["AAAA-0001"].username is None  # the listing shows no username
    assert not by_uid["AAAA-0404"].exists
    assert "no address-book group" in by_uid["AAAA-0404"].detail
    # 60 inspections, one listing: GET /groups once, each group once
    paths = sorted(r.url.path for r in httpx_mock.get_requests())
    assert paths == ["/group/G1", "/group/G2", "/groups"]
    await target.aclose()


async def test_remotix_connection_not_found_while_a_group_was_unreadable_is_not_checked(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(url=f"{RX_URL}/groups", json=[{"group_uid": "G1", "name": "Office"}])
    httpx_mock.add_response(url=f"{RX_URL}/group/G1", status_code=403, json={"error": "denied"})
    target = remotix()
    with pytest.raises(RemoteError, match="Office"):
        await target.inspect(row("connection", "AAAA-0001", "RDP"))
    await target.aclose()


# -- Spark View servers ----------------------------------------------------------------------


async def test_sparkview_inspect_reads_the_server_by_id(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        json={"id": "fin", "rdp": {"username": "svc-fin", "password": PASSWORD, "domain": "C"}}
    )
    target = sparkview()
    found = await target.inspect(row("server", "fin", "RDP"))
    assert found == UsageCheck(True, "svc-fin")
    (request,) = httpx_mock.get_requests()
    assert request.url.params["action"] == "list"
    assert request.url.params["id"] == "fin"
    assert request.url.params["gatewayPwd"] == GATEWAY_MD5
    await target.aclose()


async def test_sparkview_missing_server_is_the_gateways_not_found(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=500, json={"error:": "not found"})
    target = sparkview()
    found = await target.inspect(row("server", "nope", "RDP"))
    assert not found.exists
    assert "not found" in found.detail
    assert GATEWAY_MD5 not in found.detail
    assert GATEWAY not in found.detail
    await target.aclose()


async def test_sparkview_other_gateway_errors_are_not_missing(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=500, json={"error:": "invalid gateway password"})
    target = sparkview()
    with pytest.raises(Rejected) as info:
        await target.inspect(row("server", "fin", "RDP"))
    assert not isinstance(info.value, Missing)
    await target.aclose()


async def test_sparkview_missing_words_are_a_setting(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=500, json={"error:": "no such server"})
    target = build_target(replace(SV, missing_errors=("no such server",)))
    assert not (await target.inspect(row("server", "x", "RDP"))).exists
    await target.aclose()


async def test_sparkview_push_to_a_server_the_list_lacks_raises_missing_before_any_write(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(url=f"{SV_URL}/CONTROL?target=gateway", json={})
    httpx_mock.add_response(json=SERVER_LIST)
    target = sparkview()
    await target.probe()
    with pytest.raises(Missing):
        await target.push(row("server", "nope", "RDP"), CRED)
    assert len(httpx_mock.get_requests()) == 2
    await target.aclose()


async def test_sparkview_update_answered_not_found_raises_missing(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=500, json={"error:": "not found"})
    target = build_target(replace(SV, send_definition_on_update=False))
    with pytest.raises(Missing) as info:
        await target.push(row("server", "gone", "RDP"), CRED)
    assert PASSWORD not in str(info.value)
    await target.aclose()


# -- the simulators answer as the settings say the API does ---------------------------------


@pytest.mark.integration  # simulators served on loopback
async def test_simulators_mirror_the_missing_settings() -> None:
    """An endpoint configured with another "missing" answer gets a stand-in that gives it
    (over loopback), and its target reads that answer as missing."""
    from rotate.backends import Secrets
    from rotate.sim.host import AsyncSimulatorHost
    from rotate.vendors.remotix import VENDOR as REMOTIX
    from rotate.vendors.sparkview import VENDOR as SPARKVIEW
    from tests.test_targets import RUN

    rx = replace(RX, missing_status=410)
    sv = replace(SV, missing_errors=("no such server",))
    async with AsyncSimulatorHost() as host:
        rx_url = await host.add_endpoint(rx, REMOTIX.simulator.new_state())
        sv_url = await host.add_endpoint(
            sv, SPARKVIEW.simulator.new_state(), gateway_password=GATEWAY
        )
        rx_target = REMOTIX.build(replace(rx, url=rx_url), RUN, Secrets({}))
        sv_target = SPARKVIEW.build(replace(sv, url=sv_url), RUN, Secrets({"GW": GATEWAY}))
        try:
            found = await rx_target.inspect(row("computer", "1", "RDP"))
            assert not found.exists
            assert "HTTP 410" in found.detail
            found = await sv_target.inspect(row("server", "x", "RDP"))
            assert not found.exists
            assert "no such server" in found.detail
        finally:
            await rx_target.aclose()
            await sv_target.aclose()
