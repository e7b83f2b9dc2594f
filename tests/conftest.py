"""Shared fixtures: a real OpenBao dev server and the vendor simulators, on loopback."""

pytest_plugins = [
    "tests.plugins.openbao",
    "tests.plugins.simulators",
    "tests.plugins.scene",
    "tests.plugins.slapd",
    "tests.plugins.samba",
]

import ssl  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _httpx_mockable_transport(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-httpx intercepts httpx's own transport: tests that use it get that one instead
    of the aiohttp transport rotate uses (rotate/transport.py), on the same settings."""
    if "httpx_mock" not in request.fixturenames:
        return

    def plain(verify: ssl.SSLContext | bool, limit: int) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(verify=verify, limits=httpx.Limits(max_connections=limit))

    monkeypatch.setattr("rotate.vendors.http.transport", plain)
