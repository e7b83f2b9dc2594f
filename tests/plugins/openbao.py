"""Pytest plugin: one real OpenBao dev server per session, a fresh secret prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import hvac
import pytest

from rotate.devvault import DevVault
from rotate.settings import VaultSettings
from rotate.stores.vault import VaultStore

_FIXTURES = {"openbao", "openbao_client", "vault_settings", "vault_store"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the server, so `-m "not integration"` skips them."""
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def openbao() -> Iterator[DevVault]:
    """A started OpenBao dev server on loopback (KV v2 at `secret/`), stopped at the end."""
    with DevVault() as server:
        yield server


@pytest.fixture(scope="session")
def openbao_client(openbao: DevVault) -> Iterator[hvac.Client]:
    """A root hvac client, for setting a scene up or looking behind a store's back."""
    client = hvac.Client(url=openbao.addr, token=openbao.token.reveal())
    yield client
    client.adapter.close()


@pytest.fixture
def vault_settings(openbao: DevVault) -> VaultSettings:
    """Settings on the dev server with a prefix of its own, so tests never see each other."""
    return openbao.settings(prefix=f"rotate-test-{uuid.uuid4().hex[:8]}", timeout_s=5.0)


@pytest.fixture
def vault_store(vault_settings: VaultSettings) -> Iterator[VaultStore]:
    """A VaultStore on `vault_settings`, closed after the test."""
    store = VaultStore(vault_settings)
    yield store
    store.close()
