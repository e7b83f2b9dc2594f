"""Candidates from a Vault/OpenBao password policy (`generator = "vault"`)."""

from __future__ import annotations

import json
import string
import uuid
from pathlib import Path

import hvac
import pytest

from rotate.errors import ConfigError, StoreError
from rotate.inventory import group_accounts
from rotate.models import Status
from rotate.runbook import Options, Runbook
from rotate.settings import PolicySettings, load_settings
from rotate.stores.memory import MemoryStore
from rotate.stores.vault import VaultStore
from tests.fakes import FakeTarget
from tests.plugins.scene import World, cli, reconfigure
from tests.test_pipeline import make_rows, settings

RULES = """
length = 20
rule "charset" {
  charset = "abcdefghijkmnpqrstuvwxyz"
  min-chars = 1
}
rule "charset" {
  charset = "ABCDEFGHJKLMNPQRSTUVWXYZ"
  min-chars = 1
}
rule "charset" {
  charset = "23456789"
  min-chars = 1
}
"""
ALLOWED = set("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")


def vault_policy_settings(length: int, name: str = "corp") -> object:
    base = settings()
    policy = PolicySettings(name="default", length=length, generator="vault", vault_policy=name)
    return type(base)(run=base.run, policies={"default": policy}, endpoints=base.endpoints)


@pytest.mark.parametrize(("registered", "status"), [(20, Status.ROTATED), (12, Status.FAILED)])
async def test_candidates_come_from_the_store_and_their_length_is_checked(
    registered: int, status: Status
) -> None:
    store = MemoryStore()
    store.password_policies["corp"] = registered
    target = FakeTarget("ep1", store)
    book = Runbook(
        vault_policy_settings(20),
        store,
        {"ep1": target},  # type: ignore[arg-type]
        Options(run_id="r", mode="run"),
    )
    out = await book.run(group_accounts(make_rows(2)))
    assert {i.status for i in out.items} == {status}
    if status is Status.FAILED:
        assert "made a password of 12 characters" in out.items[0].error
        assert target.pushes == 0
        assert store.pending_paths() == []
    else:
        assert all(len(p) == 20 for p in target.held.values())


def test_generator_vault_needs_a_policy_name(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[policies.p]\ngenerator = "vault"\n')
    with pytest.raises(ConfigError, match=r"policies\.p\.vault_policy"):
        load_settings(config, env={})
    config.write_text('[policies.p]\ngenerator = "dice"\n')
    with pytest.raises(ConfigError, match=r"policies\.p\.generator"):
        load_settings(config, env={})


def _policy(client: hvac.Client) -> str:
    name = f"rotate-test-{uuid.uuid4().hex[:8]}"
    client.adapter.put(f"/v1/sys/policies/password/{name}", json={"policy": RULES})
    return name


async def test_vault_store_generates_from_an_openbao_password_policy(
    vault_store: VaultStore, openbao_client: hvac.Client
) -> None:
    name = _policy(openbao_client)
    try:
        made = [await vault_store.generate_password(name) for _ in range(5)]
        assert len({p.reveal() for p in made}) == 5
        for password in made:
            assert len(password) == 20
            assert set(password.reveal()) <= ALLOWED
            assert password.reveal() not in repr(password)
        with pytest.raises(StoreError, match="Vault has no password policy 'no-such-policy'"):
            await vault_store.generate_password("no-such-policy")
    finally:
        await vault_store.aclose()


def test_a_run_with_an_openbao_password_policy(world: World, openbao_client: hvac.Client) -> None:
    name = _policy(openbao_client)
    reconfigure(
        world,
        {
            "[policies.default]\nlength = 24\n": "[policies.default]\nlength = 20\n"
            f'generator = "vault"\nvault_policy = "{name}"\n'
        },
    )
    json_path = world.out.parent / "r.json"
    assert cli(world, "run", "--json", str(json_path)) == 0
    record = json.loads(json_path.read_text())
    assert record["summary"]["rotated"] == len(world.rows)
    default_rows = [r for r in world.rows if r.policy == "default"]
    assert default_rows
    for row in default_rows:
        password = world.current(row)
        assert password is not None
        assert len(password) == 20
        assert set(password) <= ALLOWED
        assert not set(password) & set(string.punctuation)
    assert world.held(default_rows[0]) == world.current(default_rows[0])
