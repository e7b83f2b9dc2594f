"""Shared fixtures: a real OpenBao dev server and the vendor simulators, on loopback; and the
test layers: a test that uses no server runs as a unit test, with network sockets disabled."""

pytest_plugins = [
    "tests.plugins.openbao",
    "tests.plugins.simulators",
    "tests.plugins.scene",
    "tests.plugins.slapd",
    "tests.plugins.samba",
    "tests.plugins.sshd",
    "tests.plugins.authority",
]

import ssl  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402
from pytest_socket import disable_socket, enable_socket  # noqa: E402

#: fixtures that bring a server on loopback: a test using one is an integration test
SERVER_FIXTURES = frozenset(
    {
        "openbao",
        "openbao_client",
        "vault_settings",
        "vault_store",
        "spare_vault",
        "sim_host",
        "world",
        "make_world",
        "slapd",
        "private_slapd",
        "samba",
        "directory",
        "sshd",
        "ssh_host",  # test_authority_ssh: a host under test; test_sim_sshhost: the stand-in
        # a test's own listeners on loopback
        "net",  # test_hostile: a fake Vault and a fake endpoint that count connections
        "fake_vault",  # test_vaultauth: a Vault that answers Kubernetes logins
        "hang_up",  # test_transport: a socket that hangs up after the request
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server as `integration` (`-m "not integration"` runs the
    unit layer alone)."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _unit_tests_have_no_network(request: pytest.FixtureRequest) -> Iterator[None]:
    """A unit test (no server, not marked `integration`) may not open a network socket; the
    event loop's own Unix socket pair stays allowed."""
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        enable_socket()


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
