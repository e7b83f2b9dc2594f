"""Request shapes and error translation of the vendor adapters (pytest-httpx, no sockets)."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pytest_httpx import HTTPXMock

from rotate.backends import Secrets
from rotate.errors import EndpointUnavailable, OutcomeUnknown, Rejected, RemoteError
from rotate.models import Credential, Row, Secret
from rotate.settings import RunSettings
from rotate.vendors.base import EndpointSettings, Target
from rotate.vendors.http import redact_url
from rotate.vendors.remotix import VENDOR as REMOTIX
from rotate.vendors.remotix import RemotixSettings
from rotate.vendors.sparkview import VENDOR as SPARKVIEW
from rotate.vendors.sparkview import SparkViewSettings

RUN = RunSettings(retries=2, backoff_s=0.0, timeout_s=1.0)
RX = RemotixSettings(name="rx", system="remotix", url="http://127.0.0.1:9001")
SV = SparkViewSettings(
    name="gw", system="sparkview", url="http://127.0.0.1:9002", gateway_password_env="GW"
)
GATEWAY = "gateway-secret-1"


def build_target(settings: EndpointSettings, env: dict[str, str] | None = None) -> Target:
    vendor = REMOTIX if settings.system == "remotix" else SPARKVIEW
    return vendor.build(settings, RUN, Secrets(env or {"GW": GATEWAY}))


GATEWAY_MD5 = hashlib.md5(GATEWAY.encode(), usedforsecurity=False).hexdigest()
PASSWORD = "N3w-Passw0rd!x"
CRED = Credential("alice", Secret(PASSWORD), "CORP")


def row(
    kind: str, target: str, protocol: str, port: int | None = None, domain: str | None = None
) -> Row:
    return Row(
        line=2,
        endpoint="rx" if kind != "server" else "gw",
        kind=kind,
        target=target,
        username="alice",
        protocol=protocol,
        port=port,
        domain=domain,
    )


def remotix(env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return build_target(RX, env)


def sparkview():  # type: ignore[no-untyped-def]
    return build_target(SV)


def test_redact_url_drops_query_and_userinfo() -> None:
    url = f"https://u:p@gw.example:8443/SERVER?id=x&pwd={PASSWORD}&gatewayPwd={GATEWAY_MD5}#f"
    assert redact_url(url) == "https://gw.example:8443/SERVER"


@pytest.mark.parametrize(
    ("protocol", "keys"),
    [
        ("NEAR", {"rxp.username": "alice", "rxp.password": PASSWORD}),
        ("RDP", {"rdp.username": "alice", "rdp.password": PASSWORD, "rdp.domain": "CORP"}),
        ("APPLE", {"apple.username": "alice", "apple.password": PASSWORD}),
    ],
)
async def test_remotix_connection_push_body(
    httpx_mock: HTTPXMock, protocol: str, keys: dict[str, str]
) -> None:
    httpx_mock.add_response(
        method="PUT", url="http://127.0.0.1:9001/connection/4567-89AB/credentials"
    )
    target = remotix()
    await target.push(row("connection", "4567-89AB", protocol), CRED)
    sent = httpx_mock.get_request()
    assert sent is not None
    assert json.loads(sent.content) == keys
    await target.aclose()


async def test_remotix_computer_push_uses_port_suffix_and_reads_back(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", url="http://127.0.0.1:9001/computer/123456/RDP_3390")
    httpx_mock.add_response(
        method="GET",
        url="http://127.0.0.1:9001/computer/123456/RDP_3390/credentials",
        json={"rdp.username": "alice", "rdp.password": PASSWORD},
    )
    target = remotix()
    r = row("computer", "123456", "RDP", port=3390, domain="CORP")
    assert target.verifiable(r)
    assert not target.verifiable(row("connection", "x", "RDP"))
    await target.push(r, CRED)
    assert await target.read_back(r) == Secret(PASSWORD)
    await target.aclose()


async def test_remotix_vnc_uses_apple_keys_by_default(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", url="http://127.0.0.1:9001/computer/7/VNC_5901")
    target = remotix()
    await target.push(row("computer", "7", "VNC", port=5901), Credential("bob", Secret("abcd1234")))
    sent = httpx_mock.get_request()
    assert sent is not None
    assert json.loads(sent.content) == {"apple.username": "bob", "apple.password": "abcd1234"}
    await target.aclose()


async def test_remotix_bearer_token_sent_when_env_set(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="GET", url="http://127.0.0.1:9001/groups", json=[])
    settings = RemotixSettings(name="rx", system="remotix", url=RX.url, token_env="RX_TOK")
    target = build_target(settings, {"RX_TOK": "tok-123"})
    assert "0 group" in await target.probe()
    sent = httpx_mock.get_request()
    assert sent is not None
    assert sent.headers["Authorization"] == "Bearer tok-123"
    await target.aclose()


async def test_transient_errors_are_retried_then_succeed(httpx_mock: HTTPXMock) -> None:
    url = "http://127.0.0.1:9001/connection/u1/credentials"
    httpx_mock.add_response(method="PUT", url=url, status_code=503)
    httpx_mock.add_response(method="PUT", url=url, status_code=429, headers={"Retry-After": "0"})
    httpx_mock.add_response(method="PUT", url=url, status_code=200)
    target = remotix()
    await target.push(row("connection", "u1", "NEAR"), CRED)
    assert len(httpx_mock.get_requests()) == 3
    await target.aclose()


async def test_definite_rejection_is_not_retried_and_secret_is_scrubbed(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(
        method="PUT",
        url="http://127.0.0.1:9001/connection/u1/credentials",
        status_code=400,
        json={"error": f"bad password {PASSWORD}"},
    )
    target = remotix()
    with pytest.raises(Rejected) as info:
        await target.push(row("connection", "u1", "NEAR"), CRED)
    assert len(httpx_mock.get_requests()) == 1
    assert "HTTP 400" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert "bad password ***" in str(info.value)
    await target.aclose()


async def test_timeouts_after_retries_leave_the_outcome_unknown(httpx_mock: HTTPXMock) -> None:
    for _ in range(3):
        httpx_mock.add_exception(httpx.ReadTimeout("timed out"))
    target = remotix()
    with pytest.raises(OutcomeUnknown, match="outcome unknown after 3 attempt"):
        await target.push(row("connection", "u1", "NEAR"), CRED)
    await target.aclose()


async def test_connect_errors_are_a_plain_failure_not_in_doubt(httpx_mock: HTTPXMock) -> None:
    for _ in range(3):
        httpx_mock.add_exception(httpx.ConnectError("refused"))
    target = remotix()
    with pytest.raises(RemoteError) as info:
        await target.push(row("connection", "u1", "NEAR"), CRED)
    assert not isinstance(info.value, OutcomeUnknown | Rejected)
    await target.aclose()


async def test_503_on_a_write_after_retries_is_in_doubt(httpx_mock: HTTPXMock) -> None:
    for _ in range(3):
        httpx_mock.add_response(method="PUT", status_code=503)
    target = remotix()
    with pytest.raises(OutcomeUnknown):
        await target.push(row("connection", "u1", "NEAR"), CRED)
    await target.aclose()


async def test_remotix_probe_failure_is_endpoint_unavailable(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        method="GET",
        url="http://127.0.0.1:9001/groups",
        status_code=403,
        json={"error": "forbidden"},
    )
    target = remotix()
    with pytest.raises(EndpointUnavailable, match="HTTP 403"):
        await target.probe()
    await target.aclose()


SERVER_LIST = {
    "display": True,
    "type": "NORMALLIST",
    "cols": [
        {"name": "id"},
        {"name": "displayName"},
        {"name": "server"},
        {"name": "remoteProgram"},
        {"name": "command"},
    ],
    "rows": [["fin-rdp-01", "Finance RDP", "10.0.0.5", "", ""]],
}


def _query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(request.url)).query)


async def test_sparkview_probe_then_update_sends_md5_and_definition(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url="http://127.0.0.1:9002/CONTROL?target=gateway",
        json={"version": "6.3", "buildNumber": "1"},
    )
    httpx_mock.add_response(
        url=f"http://127.0.0.1:9002/SERVER?action=list&gatewayPwd={GATEWAY_MD5}", json=SERVER_LIST
    )
    httpx_mock.add_response(method="GET", json={})
    target = sparkview()
    assert "1 server" in await target.probe()
    await target.push(row("server", "fin-rdp-01", "RDP"), CRED)
    update = httpx_mock.get_requests()[-1]
    q = _query(update)
    assert q["action"] == ["update"]
    assert q["id"] == ["fin-rdp-01"]
    assert q["displayName"] == ["Finance RDP"]
    assert q["server"] == ["10.0.0.5"]
    assert q["user"] == ["alice"]
    assert q["pwd"] == [PASSWORD]
    assert q["domain"] == ["CORP"]
    assert q["gatewayPwd"] == [GATEWAY_MD5]
    await target.aclose()


async def test_sparkview_wrong_gateway_password_fails_probe_without_leaking(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(
        url="http://127.0.0.1:9002/CONTROL?target=gateway", json={"version": "6.3"}
    )
    httpx_mock.add_response(
        status_code=500, json={"error:": f"invalid gateway password {GATEWAY_MD5}"}
    )
    target = sparkview()
    with pytest.raises(EndpointUnavailable) as info:
        await target.probe()
    text = str(info.value)
    assert "gateway password" in text
    assert GATEWAY_MD5 not in text
    assert GATEWAY not in text
    assert len(httpx_mock.get_requests()) == 2  # a definite "no" is not retried
    await target.aclose()


async def test_sparkview_unknown_server_is_rejected_before_any_write(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="http://127.0.0.1:9002/CONTROL?target=gateway", json={})
    httpx_mock.add_response(json=SERVER_LIST)
    target = sparkview()
    await target.probe()
    with pytest.raises(Rejected, match="not defined"):
        await target.push(row("server", "nope", "RDP"), CRED)
    assert len(httpx_mock.get_requests()) == 2
    await target.aclose()


async def test_sparkview_read_back_and_gateway_error_text(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"id": "a", "rdp": {"username": "alice", "password": PASSWORD}})
    httpx_mock.add_response(status_code=500, json={"error:": "not found"})
    target = sparkview()
    r = row("server", "a", "RDP")
    assert await target.read_back(r) == Secret(PASSWORD)
    with pytest.raises(Rejected, match="gateway error: not found") as info:
        await target.read_back(r)
    assert "gatewayPwd" not in str(info.value)
    await target.aclose()


async def test_sparkview_write_error_is_in_doubt_unless_a_configured_refusal(
    httpx_mock: HTTPXMock,
) -> None:
    """The gateway says 500 for everything: only a refusal word makes a write definite."""
    from dataclasses import replace

    httpx_mock.add_response(url="http://127.0.0.1:9002/CONTROL?target=gateway", json={})
    httpx_mock.add_response(json=SERVER_LIST)
    for _ in range(3):
        httpx_mock.add_response(status_code=500, json={"error:": "internal error"})
    httpx_mock.add_response(status_code=500, json={"error:": "Locked by policy"})
    settings = replace(SV, write_refusals=("locked",))
    target = build_target(settings)
    await target.probe()
    r = row("server", "fin-rdp-01", "RDP")
    with pytest.raises(OutcomeUnknown, match="internal error"):
        await target.push(r, CRED)
    with pytest.raises(Rejected, match="Locked by policy"):
        await target.push(r, CRED)
    await target.aclose()


async def test_a_no_after_an_attempt_that_may_have_applied_is_in_doubt(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"))
    httpx_mock.add_response(method="PUT", status_code=400, json={"error": "same password"})
    target = remotix()
    with pytest.raises(OutcomeUnknown, match="earlier attempt that may have applied it"):
        await target.push(row("connection", "u1", "NEAR"), CRED)
    await target.aclose()
