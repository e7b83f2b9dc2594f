"""deploy/vault-policy.hcl is enough, and no more than enough: a scheduled run logs in with
AppRole on exactly that policy (the test's prefix substituted), rotates the demo inventory and
converges; a policy missing a rule is refused at the start, naming it, with nothing changed."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hvac
import pytest

from rotate import vaultauth
from tests.plugins.scene import (
    ROOT,
    World,
    assert_no_secret_in_outputs,
    cli,
    converged,
    lockouts,
    reconfigure,
    snapshot,
)

pytestmark = pytest.mark.integration

POLICY = ROOT / "deploy" / "vault-policy.hcl"


def policy_for(prefix: str, edit: str | None = None) -> str:
    """The shipped policy on `prefix`; `edit` names a rule to break (see the cases below)."""
    text = POLICY.read_text()
    assert text.count('"secret/data/rotate/') == 1
    text = text.replace('"secret/data/rotate/', f'"secret/data/{prefix}/')
    text = text.replace('"secret/metadata/rotate/', f'"secret/metadata/{prefix}/')
    assert "rotate/" not in re.sub(r"#.*", "", text).replace(f"{prefix}/", ""), "another prefix"
    if edit in ("_pending", "_lease", "_stale"):
        rule = re.compile(rf'path "secret/metadata/{prefix}/{edit}/\*" \{{[^}}]*\}}\n')
        text, found = rule.subn("", text)
        assert found == 1
    elif edit == "patch":
        broad = '["read", "list", "patch", "create", "update"]'
        assert text.count(broad) == 1
        text = text.replace(broad, '["read", "list", "create"]')
    return text


@dataclass
class Login:
    """The AppRole the scheduled job logs in with, and every token a login gave."""

    mount: str
    policy: str
    tokens: list[str]


@pytest.fixture
def approle_login(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Login]:
    """An AppRole (at a mount of this test's own) on the shipped policy; the world's config
    says `auth = "approle"`, and the environment has the role and secret ids, no token."""
    client = world.client
    mount = f"approle-{uuid.uuid4().hex[:8]}"
    policy = f"rotate-{uuid.uuid4().hex[:8]}"
    client.sys.enable_auth_method("approle", path=mount)
    client.sys.create_or_update_acl_policy(policy, policy_for(world.settings.vault.prefix))
    client.auth.approle.create_or_update_approle(
        "rotate", token_policies=[policy], token_ttl="5m", mount_point=mount
    )
    role_id = client.auth.approle.read_role_id("rotate", mount_point=mount)["data"]["role_id"]
    secret = client.auth.approle.generate_secret_id("rotate", mount_point=mount)
    secret_id = secret["data"]["secret_id"]
    world.extra_secrets += [role_id, secret_id]
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("VAULT_ROLE_ID", role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", secret_id)
    reconfigure(world, {'auth = "token"': f'auth = "approle"\napprole_mount = "{mount}"'})

    tokens: list[str] = []
    real = vaultauth.log_in

    def recording(*args: Any, **kwargs: Any) -> vaultauth.Grant:
        grant = real(*args, **kwargs)
        tokens.append(grant.token.reveal())
        world.extra_secrets.append(grant.token.reveal())
        return grant

    monkeypatch.setattr(vaultauth, "log_in", recording)
    yield Login(mount, policy, tokens)
    client.sys.disable_auth_method(mount)
    client.sys.delete_acl_policy(policy)


def alive(world: World, token: str) -> bool:
    client = hvac.Client(url=world.vault.addr, token=token)
    try:
        client.auth.token.lookup_self()
    except hvac.exceptions.Forbidden:
        return False
    finally:
        client.adapter.close()
    return True


def lease_exists(world: World) -> bool:
    path = f"{world.settings.vault.lease_root}/{world.settings.run.lease_name}"
    try:
        world.client.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")
    except hvac.exceptions.InvalidPath:
        return False
    return True


def test_a_scheduled_approle_run_on_the_shipped_policy_rotates_everything(
    world: World,
    approle_login: Login,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world.out.mkdir()
    record_path = world.out / "record.json"
    assert cli(world, "run", "--json", str(record_path)) == 0
    record = json.loads(record_path.read_text())
    assert record["summary"]["rotated"] == record["summary"]["total"] == len(world.rows)
    assert converged(world) == []
    assert lockouts(world) == []
    # The journal record was deleted once settled, the lease released, the token given back.
    with pytest.raises(hvac.exceptions.InvalidPath):
        world.client.secrets.kv.v2.list_secrets(world.settings.vault.pending_root, "secret")
    assert not lease_exists(world)
    assert len(approle_login.tokens) == 1
    assert not alive(world, approle_login.tokens[0]), "the run's own token outlived it"

    # The other commands are covered too: plan and report read (LIST included: drift and
    # pending discovery work), reconcile writes.
    assert cli(world, "plan") == 0
    assert cli(world, "report") == 0
    assert cli(world, "reconcile") == 0
    assert len(approle_login.tokens) == 4
    assert not any(alive(world, t) for t in approle_login.tokens)
    for refused in ("permission denied", "drift not checked", "could not list", "lacks"):
        assert refused not in caplog.text
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (
            "_pending",
            "'delete' on secret/metadata/{prefix}/_pending/preflight-00001 (dropping a journal "
            "record once its candidates are settled)",
        ),
        ("_lease", "'delete' on secret/metadata/{prefix}/_lease/default (releasing the run lease)"),
        (
            "_stale",
            "'delete' on secret/metadata/{prefix}/_stale/preflight-00001 (dropping a stale-usage "
            "record once its usages are repaired)",
        ),
        (
            "patch",
            "'patch' or 'update' on secret/metadata/{path} (its versions and custom_metadata)",
        ),
    ],
)
def test_a_policy_missing_a_rule_is_refused_at_the_start_naming_it(
    world: World,
    approle_login: Login,
    edit: str,
    named: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = world.settings.vault.prefix
    world.client.sys.create_or_update_acl_policy(approle_login.policy, policy_for(prefix, edit))
    path = world.rows[0].vault_path
    assert path.startswith(f"{prefix}/accounts/EXAMPLE_administrator-")
    before = snapshot(world, world.client)

    assert cli(world, "run", "--force") == 3
    captured = capsys.readouterr()
    assert named.format(prefix=prefix, path=path) in captured.err
    assert "nothing was changed" in captured.err
    assert "Traceback" not in captured.err
    # Nothing changed: no Vault write (secrets, candidates, lease), not a single target call.
    assert snapshot(world, world.client) == before
    assert not lease_exists(world)
    assert sum(world.host.simulator(n).counters.requests for n in world.states) == 0
    assert not any(alive(world, t) for t in approle_login.tokens)
    assert_no_secret_in_outputs(world, captured, caplog)
