"""Vault auth for schedulers: token file, AppRole (environment and files), Kubernetes (against
a fake Vault over TLS: no cluster here), renewal during a long run, revocation at the end,
namespaces, the capability preflight, and never a secret in a message."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hvac
import pytest
import trustme

from rotate import vaultauth
from rotate.cli import main
from rotate.devvault import DevVault
from rotate.errors import ConfigError, StoreUnavailable
from rotate.models import Secret, SecretState
from rotate.settings import VaultSettings, load_settings
from rotate.stores.vault import VaultStore
from tests.plugins.scene import DEMO_CSV, DEMO_TOML
from tests.test_stores_vault import no_secret

ROLE_ID = "3c1f6c1e-role-id-not-real"
SECRET_ID = "9d2b7a55-secret-id-not-real"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cm90YXRlIn0.c2lnbmF0dXJl"
DEFAULT_JWT_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _config(tmp_path: Path, vault: str) -> Path:
    path = tmp_path / "rotate.toml"
    path.write_text(f"[vault]\n{vault}\n", encoding="utf-8")
    return path


def _rejected(tmp_path: Path, vault: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path, vault), env=env or {})
    return str(info.value)


@pytest.fixture(autouse=True)
def _no_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # load_settings falls back to ~/.vault-token: keep the developer's real one out of tests
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def logins(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token a login gave, in order (to check renewal and revocation from outside)."""
    tokens: list[str] = []
    real = vaultauth.log_in

    def recording(*args: Any, **kwargs: Any) -> vaultauth.Grant:
        grant = real(*args, **kwargs)
        tokens.append(grant.token.reveal())
        return grant

    monkeypatch.setattr(vaultauth, "log_in", recording)
    return tokens


# --- config: detected in load_settings, before any network call (exit 2) -----------------


def test_approle_from_the_environment_loads_and_ignores_vault_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("hvs.from-the-token-file")
    config = _config(
        tmp_path, f'auth = "approle"\napprole_mount = "ci/approle"\ntoken_file = "{token_file}"'
    )
    env = {"VAULT_ROLE_ID": ROLE_ID, "VAULT_SECRET_ID": f" {SECRET_ID}\n", "VAULT_TOKEN": "x"}
    vault = load_settings(config, env=env).vault
    assert (vault.auth, vault.approle_mount) == ("approle", "ci/approle")
    assert vault.role_id == Secret(ROLE_ID)
    assert vault.secret_id == Secret(SECRET_ID)
    # the run gets its own token: neither VAULT_TOKEN nor the token file is used
    assert vault.token is None
    assert ROLE_ID not in repr(vault)
    assert SECRET_ID not in repr(vault)


def test_approle_from_files_loads_without_reading_them(tmp_path: Path) -> None:
    role_file, secret_file = tmp_path / "role-id", tmp_path / "secret-id"
    role_file.write_text(ROLE_ID)
    secret_file.write_text(SECRET_ID)
    config = _config(
        tmp_path,
        f'auth = "approle"\nrole_id_file = "{role_file}"\nsecret_id_file = "{secret_file}"',
    )
    vault = load_settings(config, env={}).vault
    assert vault.approle_mount == "approle"
    assert (vault.role_id, vault.secret_id) == (None, None)  # read at login
    assert (vault.role_id_file, vault.secret_id_file) == (str(role_file), str(secret_file))


def test_approle_without_a_role_id_or_secret_id_source_is_named(tmp_path: Path) -> None:
    message = _rejected(tmp_path, 'auth = "approle"')
    assert "vault: auth = 'approle' needs a role id: set VAULT_ROLE_ID" in message
    assert "or name a file in vault.role_id_file" in message
    assert "vault: auth = 'approle' needs a secret id: set VAULT_SECRET_ID" in message
    message = _rejected(tmp_path, 'auth = "approle"', env={"VAULT_SECRET_ID": SECRET_ID})
    assert "needs a role id" in message
    assert "needs a secret id" not in message
    assert SECRET_ID not in message


def test_unreadable_login_files_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    message = _rejected(
        tmp_path,
        f'auth = "approle"\nrole_id_file = "{tmp_path}/absent"\nsecret_id_file = "{folder}"',
    )
    assert f"vault.role_id_file: '{tmp_path}/absent' does not exist" in message
    assert f"vault.secret_id_file: '{folder}' is not a file" in message


def test_kubernetes_needs_a_role_and_a_service_account_token(tmp_path: Path) -> None:
    assert not Path(DEFAULT_JWT_FILE).exists(), "this test expects to run outside a pod"
    message = _rejected(tmp_path, 'auth = "kubernetes"')
    assert "vault: auth = 'kubernetes' needs vault.kubernetes_role" in message
    assert f"vault.kubernetes_jwt_file: '{DEFAULT_JWT_FILE}' does not exist" in message
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(JWT)
    config = _config(
        tmp_path,
        f'auth = "kubernetes"\nkubernetes_role = "rotate"\nkubernetes_jwt_file = "{jwt_file}"',
    )
    vault = load_settings(config, env={"VAULT_TOKEN": "x"}).vault
    assert (vault.kubernetes_role, vault.kubernetes_mount) == ("rotate", "kubernetes")
    assert vault.token is None


@pytest.mark.parametrize(
    ("vault", "expected"),
    [
        (
            'auth = "ldap"',
            "vault.auth: 'ldap' is not supported (supported: 'token', 'approle', 'kubernetes')",
        ),
        ('role_id = "s3cr3t-value"', "vault.role_id: secrets never live in the config file"),
        ('jwt = "s3cr3t-value"', "vault.jwt: secrets never live in the config file"),
        ('secret_id = "s3cr3t-value"', "vault.secret_id: secrets never live in the config file"),
        ('approle_mount = "/approle/"', "vault.approle_mount: '/approle/' must be a non-empty"),
        ('kubernetes_mount = ""', "vault.kubernetes_mount: '' must be a non-empty path"),
        ("preflight = 1", "vault.preflight: expected bool"),
    ],
)
def test_bad_auth_config_is_named_without_echoing_a_secret(
    tmp_path: Path, vault: str, expected: str
) -> None:
    message = _rejected(tmp_path, vault)
    assert expected in message
    assert "s3cr3t-value" not in message


def test_the_cli_exits_2_on_an_auth_problem_before_any_network_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port nobody listens on: a connection attempt would show as "unreachable", exit 3.
    config = tmp_path / "rotate.toml"
    config.write_text(
        DEMO_TOML.read_text()
        .replace('auth = "token"', 'auth = "approle"')
        .replace("http://127.0.0.1:8200", "http://127.0.0.1:9")
    )
    monkeypatch.setenv("VAULT_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("GW1_PASSWORD", "gw1-pass")
    monkeypatch.setenv("GW2_PASSWORD", "gw2-pass")
    argv = ["run", str(DEMO_CSV), "--config", str(config), "--out-dir", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs a role id: set VAULT_ROLE_ID" in err
    assert SECRET_ID not in err
    assert not (tmp_path / "out").exists()


# --- token auth: given, renewed when renewable, never revoked ------------------------------


def _policy(client: hvac.Client, hcl: str) -> str:
    name = f"rotate-test-{uuid.uuid4().hex[:8]}"
    client.sys.create_or_update_acl_policy(name=name, policy=hcl)
    return name


def _rw(client: hvac.Client, prefix: str) -> str:
    return _policy(
        client,
        f'path "secret/data/{prefix}/*" {{ capabilities = ["read", "create", "update"] }}\n'
        f'path "secret/metadata/{prefix}/*" '
        '{ capabilities = ["read", "list", "patch", "create", "update", "delete"] }',
    )


def _alive(addr: str, token: str) -> bool:
    """Whether `token` still works (a lookup of itself)."""
    client = hvac.Client(url=addr, token=token)
    try:
        client.auth.token.lookup_self()
    except hvac.exceptions.Forbidden:
        return False
    finally:
        client.adapter.close()
    return True


def _read_state(store: VaultStore, path: str) -> SecretState:
    """One data-plane read on an event loop of its own (its client closed on that loop)."""

    async def read() -> SecretState:
        try:
            return await store.read_state(path)
        finally:
            await store.aclose()

    return asyncio.run(read())


def _busy(store: VaultStore, prefix: str, seconds: float, threads: int = 3) -> int:
    """A "run" for `seconds`: control-plane reads from several threads while as many readers
    on the run's event loop read state (the data plane); how many reads succeeded."""
    deadline = time.monotonic() + seconds

    def control(i: int) -> int:
        done = 0
        while time.monotonic() < deadline:
            store.read_record(f"{prefix}/_lease/busy-{i}")
            done += 1
            time.sleep(0.1)
        return done

    async def data(i: int) -> int:
        done = 0
        while time.monotonic() < deadline:
            await store.read_state(f"{prefix}/busy/{i}")
            done += 1
            await asyncio.sleep(0.1)
        return done

    async def run() -> int:
        try:
            return sum(await asyncio.gather(*(data(i) for i in range(threads))))
        finally:
            await store.aclose()

    with ThreadPoolExecutor(threads) as pool:
        controlled = pool.map(control, range(threads))
        read = asyncio.run(run())
        return read + sum(controlled)


@pytest.mark.integration
def test_a_token_from_the_token_file_is_used_and_never_revoked(
    openbao: DevVault, openbao_client: hvac.Client, vault_settings: VaultSettings, tmp_path: Path
) -> None:
    created = openbao_client.auth.token.create(
        policies=[_rw(openbao_client, vault_settings.prefix)], display_name="cron", ttl="10m"
    )
    token = created["auth"]["client_token"]
    token_file = tmp_path / "vault-token"
    token_file.write_text(token + "\n")
    config = _config(
        tmp_path,
        f'addr = "{openbao.addr}"\nprefix = "{vault_settings.prefix}"\ntoken_file = "{token_file}"',
    )
    settings = load_settings(config, env={}).vault
    assert settings.token == Secret(token)
    with VaultStore(settings) as store:
        assert store.check() == "token-cron"
        assert _read_state(store, f"{vault_settings.prefix}/x").current_version is None
    assert _alive(openbao.addr, token), "a token the run was given was revoked"


@pytest.mark.integration
def test_a_renewable_given_token_is_renewed_during_a_long_run(
    openbao: DevVault, openbao_client: hvac.Client, vault_settings: VaultSettings
) -> None:
    created = openbao_client.auth.token.create(
        policies=[_rw(openbao_client, vault_settings.prefix)], ttl="3s", explicit_max_ttl="5m"
    )
    token = created["auth"]["client_token"]
    with VaultStore(replace(vault_settings, token=Secret(token))) as store:
        store.check()
        assert _busy(store, vault_settings.prefix, 7.0) > 0  # longer than the TTL: renewed
        assert _alive(openbao.addr, token)
    assert _alive(openbao.addr, token), "a token the run was given was revoked"


# --- AppRole, on the real OpenBao -------------------------------------------------------------


@dataclass
class AppRole:
    mount: str
    role_id: str
    secret_id: str = field(repr=False)

    def settings(self, base: VaultSettings, **overrides: Any) -> VaultSettings:
        login: dict[str, Any] = {
            "token": None,
            "auth": "approle",
            "approle_mount": self.mount,
            "role_id": Secret(self.role_id),
            "secret_id": Secret(self.secret_id),
        }
        return replace(base, **{**login, **overrides})


AppRoleFactory = Callable[..., AppRole]


@pytest.fixture
def approle(openbao_client: hvac.Client, vault_settings: VaultSettings) -> Iterator[AppRoleFactory]:
    """Make an AppRole (at a mount of this test's own) whose tokens may use the test prefix."""
    mount = f"approle-{uuid.uuid4().hex[:8]}"
    openbao_client.sys.enable_auth_method("approle", path=mount)
    policy = _rw(openbao_client, vault_settings.prefix)

    def make(**role: Any) -> AppRole:
        name = f"rotate-{uuid.uuid4().hex[:6]}"
        role.setdefault("token_policies", [policy])
        openbao_client.auth.approle.create_or_update_approle(name, mount_point=mount, **role)
        role_id = openbao_client.auth.approle.read_role_id(name, mount_point=mount)
        secret_id = openbao_client.auth.approle.generate_secret_id(name, mount_point=mount)
        return AppRole(mount, role_id["data"]["role_id"], secret_id["data"]["secret_id"])

    yield make
    openbao_client.sys.disable_auth_method(mount)
    openbao_client.sys.delete_acl_policy(policy)


@pytest.mark.integration
def test_approle_from_the_environment_logs_in_once_shares_the_token_and_revokes_it(
    openbao: DevVault,
    vault_settings: VaultSettings,
    approle: AppRoleFactory,
    logins: list[str],
    tmp_path: Path,
) -> None:
    role = approle(token_ttl="10m")
    config = _config(
        tmp_path,
        f'addr = "{openbao.addr}"\nprefix = "{vault_settings.prefix}"\n'
        f'auth = "approle"\napprole_mount = "{role.mount}"',
    )
    env = {"VAULT_ROLE_ID": role.role_id, "VAULT_SECRET_ID": role.secret_id}
    settings = load_settings(config, env=env).vault
    with VaultStore(settings) as store:
        assert store.check() == role.mount  # a login's display name is its mount
        assert _busy(store, vault_settings.prefix, 0.3, threads=4) > 0
        assert len(logins) == 1, "one login for the whole run, shared by every thread"
        assert _alive(openbao.addr, logins[0])
    assert not _alive(openbao.addr, logins[0]), "the token the run created outlived it"


@pytest.mark.integration
def test_approle_from_files(
    openbao: DevVault,
    vault_settings: VaultSettings,
    approle: AppRoleFactory,
    logins: list[str],
    tmp_path: Path,
) -> None:
    role = approle()
    role_file, secret_file = tmp_path / "role-id", tmp_path / "secret-id"
    role_file.write_text(role.role_id + "\n")
    secret_file.write_text(f"  {role.secret_id}\n")
    config = _config(
        tmp_path,
        f'addr = "{openbao.addr}"\nprefix = "{vault_settings.prefix}"\nauth = "approle"\n'
        f'approle_mount = "{role.mount}"\n'
        f'role_id_file = "{role_file}"\nsecret_id_file = "{secret_file}"',
    )
    settings = load_settings(config, env={}).vault
    with VaultStore(settings) as store:
        store.check()
        _read_state(store, f"{vault_settings.prefix}/x")
    assert len(logins) == 1
    assert not _alive(openbao.addr, logins[0])


@pytest.mark.integration
def test_a_short_lived_approle_token_is_renewed_during_a_run_longer_than_its_ttl(
    openbao: DevVault, vault_settings: VaultSettings, approle: AppRoleFactory, logins: list[str]
) -> None:
    role = approle(token_ttl="3s", token_max_ttl="5m")
    with VaultStore(role.settings(vault_settings)) as store:
        store.check()
        assert _busy(store, vault_settings.prefix, 7.0) > 0  # > 2 TTLs, never a refusal
        assert logins
        assert _alive(openbao.addr, logins[0])
        assert len(logins) == 1, "renewed, not replaced"
    assert not _alive(openbao.addr, logins[0])


@pytest.mark.integration
def test_a_token_at_its_max_ttl_is_replaced_by_a_fresh_login(
    openbao: DevVault, vault_settings: VaultSettings, approle: AppRoleFactory, logins: list[str]
) -> None:
    role = approle(token_ttl="2s", token_max_ttl="3s")
    with VaultStore(role.settings(vault_settings)) as store:
        store.check()
        assert _busy(store, vault_settings.prefix, 6.0) > 0
        assert len(logins) >= 2, "no fresh login when renewal could no longer extend the token"
        assert _alive(openbao.addr, logins[-1])
    assert not any(_alive(openbao.addr, t) for t in logins)


@pytest.mark.integration
def test_a_batch_token_is_used_and_not_revoked(
    openbao: DevVault,
    vault_settings: VaultSettings,
    approle: AppRoleFactory,
    logins: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    role = approle(token_type="batch", token_ttl="1m")
    with VaultStore(role.settings(vault_settings)) as store:
        store.check()
        _read_state(store, f"{vault_settings.prefix}/x")
    # Batch tokens cannot be revoked: no attempt, no warning; it expires by itself.
    assert "could not revoke" not in caplog.text
    assert _alive(openbao.addr, logins[0])


@pytest.mark.integration
def test_approle_login_refused_names_the_mount_never_a_secret(
    vault_settings: VaultSettings, approle: AppRoleFactory
) -> None:
    role = approle()
    wrong = replace(role, secret_id=f"{uuid.uuid4()}")
    with (
        VaultStore(wrong.settings(vault_settings)) as store,
        pytest.raises(StoreUnavailable) as info,
    ):
        store.check()
    assert str(info.value) == (
        f"AppRole login refused at {role.mount}: HTTP 400: invalid role or secret ID"
    )
    no_secret(info.value, role.role_id, wrong.secret_id)

    nowhere = replace(role, mount="no-such-approle")
    with (
        VaultStore(nowhere.settings(vault_settings)) as store,
        pytest.raises(StoreUnavailable) as info,
    ):
        store.check()
    assert str(info.value) == (
        "AppRole login refused at no-such-approle: HTTP 403: permission denied "
        "(is the AppRole auth method enabled at auth/no-such-approle/?)"
    )
    no_secret(info.value, role.role_id, role.secret_id)


@pytest.mark.integration
def test_a_secret_id_file_gone_or_empty_at_login_is_named(
    vault_settings: VaultSettings, approle: AppRoleFactory, tmp_path: Path
) -> None:
    role = approle()
    gone, empty = tmp_path / "gone", tmp_path / "empty"
    empty.write_text("\n")
    for path, why in ((gone, "cannot be read: No such file or directory"), (empty, "is empty")):
        settings = role.settings(vault_settings, secret_id=None, secret_id_file=str(path))
        with VaultStore(settings) as store, pytest.raises(StoreUnavailable) as info:
            store.check()
        assert str(info.value) == f"vault.secret_id_file '{path}' {why}"
        no_secret(info.value, role.role_id)


@pytest.mark.integration
def test_vault_namespace_is_honoured_by_the_login_and_every_request(
    openbao: DevVault, openbao_client: hvac.Client, logins: list[str]
) -> None:
    namespace = f"team-{uuid.uuid4().hex[:6]}"
    openbao_client.adapter.post(f"/v1/sys/namespaces/{namespace}")
    inside = hvac.Client(url=openbao.addr, token=openbao.token.reveal(), namespace=namespace)
    try:
        inside.sys.enable_auth_method("approle", path="approle")
        inside.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        name = _rw(inside, "rotate")
        inside.auth.approle.create_or_update_approle("rotate", token_policies=[name])
        role = AppRole(
            "approle",
            inside.auth.approle.read_role_id("rotate")["data"]["role_id"],
            inside.auth.approle.generate_secret_id("rotate")["data"]["secret_id"],
        )
        settings = role.settings(openbao.settings(prefix="rotate"), namespace=namespace)
        with VaultStore(settings) as store:
            store.check()
            store.preflight(["rotate/a/b"], lease="rotate/_lease/default")
            store.write_record("rotate/a/b", {"k": "v"}, 0)
        # Written in the namespace's own KV mount, not the root one.
        answer = inside.secrets.kv.v2.read_secret_version(
            "rotate/a/b", raise_on_deleted_version=True
        )
        assert answer["data"]["data"] == {"k": "v"}
        assert not _alive(openbao.addr, logins[0])  # revoked, in its namespace too

        # The role lives in the namespace: outside it the login is refused.
        with (
            VaultStore(replace(settings, namespace=None)) as store,
            pytest.raises(StoreUnavailable, match="AppRole login refused at approle: HTTP 403"),
        ):
            store.check()
    finally:
        inside.adapter.close()
        openbao_client.adapter.delete(f"/v1/sys/namespaces/{namespace}")


# --- the preflight --------------------------------------------------------------------------


@pytest.mark.integration
def test_preflight_passes_a_sufficient_token(
    vault_store: VaultStore, vault_settings: VaultSettings
) -> None:
    prefix = vault_settings.prefix
    vault_store.check()
    vault_store.preflight([f"{prefix}/a/b", f"{prefix}/c/d"], lease=f"{prefix}/_lease/default")


@pytest.mark.integration
def test_preflight_names_each_missing_capability_and_path(
    openbao_client: hvac.Client, vault_settings: VaultSettings
) -> None:
    prefix = vault_settings.prefix
    name = _policy(
        openbao_client,
        f'path "secret/data/{prefix}/*" {{ capabilities = ["read", "create", "update"] }}\n'
        f'path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "list", "patch"] }}\n',
    )
    token = openbao_client.auth.token.create(policies=[name], ttl="5m")["auth"]["client_token"]
    with VaultStore(replace(vault_settings, token=Secret(token))) as store:
        store.check()
        before = store.requests
        with pytest.raises(StoreUnavailable) as info:
            store.preflight([f"{prefix}/ep/x", f"{prefix}/ep/y"], lease=f"{prefix}/_lease/l")
        assert store.requests == before + 1  # one question for every path
    message = str(info.value)
    assert message.startswith("the Vault token may not do what this run needs, so nothing")
    journal = f"secret/metadata/{prefix}/_pending/preflight-00001"
    assert f"'delete' on {journal} (dropping a journal record" in message
    assert f"'delete' on secret/metadata/{prefix}/_lease/l (releasing the run lease)" in message
    assert "/ep/y" not in message  # one sample per folder
    assert "(see deploy/vault-policy.hcl)" in message
    no_secret(info.value, token)


@pytest.mark.integration
def test_preflight_lets_a_token_that_may_not_ask_through_with_a_warning(
    openbao_client: hvac.Client, vault_settings: VaultSettings, caplog: pytest.LogCaptureFixture
) -> None:
    name = _rw(openbao_client, vault_settings.prefix)
    created = openbao_client.auth.token.create(policies=[name], no_default_policy=True, ttl="5m")[
        "auth"
    ]["client_token"]
    store = VaultStore(replace(vault_settings, token=Secret(created)))
    with store, caplog.at_level(logging.WARNING):
        store.preflight([f"{vault_settings.prefix}/a"], lease=None)
    assert "capabilities were not checked" in caplog.text
    assert created not in caplog.text


@pytest.mark.integration
def test_preflight_false_asks_nothing(vault_settings: VaultSettings) -> None:
    with VaultStore(replace(vault_settings, preflight=False)) as store:
        store.preflight([f"{vault_settings.prefix}/a"], lease=f"{vault_settings.prefix}/_lease/x")
        assert store.requests == 0


# --- Kubernetes: no cluster here, so a fake Vault over TLS checks what the client sends -----


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeVault:
    """Just enough of Vault for `check()` and `close()` after a Kubernetes login, over TLS,
    recording every request; `login` is the answer to a login (status, body)."""

    TOKEN = "s.fake-issued-token-42"  # a fake server's made-up token

    def __init__(self, tmp_path: Path) -> None:
        self.seen: list[Seen] = []
        self.login: tuple[int, dict[str, Any]] = (
            200,
            {
                "auth": {
                    "client_token": self.TOKEN,
                    "lease_duration": 3600,
                    "renewable": True,
                    "token_type": "service",
                }
            },
        )
        ca = trustme.CA()
        self.ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                fake.seen.append(
                    Seen(self.command, path, dict(self.headers), json.loads(raw) if raw else None)
                )
                status, body = fake.route(self.command, path, self.headers.get("X-Vault-Token"))
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.addr = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, method: str, path: str, token: str | None) -> tuple[int, Any]:
        if path == "/v1/sys/health":
            return 200, {"initialized": True, "sealed": False, "standby": False}
        if path.startswith("/v1/auth/") and path.endswith("/login"):
            return self.login
        if token != self.TOKEN:
            return 403, {"errors": ["permission denied"]}
        if path == "/v1/auth/token/lookup-self":
            data = {"display_name": "kubernetes-rotate", "ttl": 3600, "renewable": True}
            return 200, {"data": {**data, "type": "service", "creation_ttl": 3600}}
        if path == "/v1/sys/internal/ui/mounts/secret":
            return 200, {"data": {"type": "kv", "options": {"version": "2"}}}
        if path == "/v1/auth/token/revoke-self":
            return 204, None
        return 404, {"errors": []}

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_vault(tmp_path: Path) -> Iterator[FakeVault]:
    fake = FakeVault(tmp_path)
    yield fake
    fake.close()


def _kubernetes(fake: FakeVault, tmp_path: Path, **overrides: Any) -> VaultSettings:
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(JWT + "\n")
    base = VaultSettings(
        addr=fake.addr,
        auth="kubernetes",
        kubernetes_role="rotate",
        kubernetes_jwt_file=str(jwt_file),
        kubernetes_mount="k8s-prod",
        cacert=str(fake.ca_file),
        namespace="team-a",
        timeout_s=5.0,
    )
    return replace(base, **overrides)


def test_kubernetes_login_request_shape_namespace_cacert_and_revocation(
    fake_vault: FakeVault, tmp_path: Path
) -> None:
    with VaultStore(_kubernetes(fake_vault, tmp_path)) as store:
        assert store.check() == "kubernetes-rotate"
    [login] = fake_vault.requests_to("/v1/auth/k8s-prod/login")
    assert login.method == "POST"
    assert login.body == {"role": "rotate", "jwt": JWT}  # the file's content, stripped
    assert login.headers["X-Vault-Namespace"] == "team-a"
    assert "X-Vault-Token" not in login.headers  # a login carries no token
    # Every later request carries the token the login gave, in the namespace.
    later = fake_vault.seen[fake_vault.seen.index(login) + 1 :]
    assert [s.path for s in later][:1] == ["/v1/auth/token/lookup-self"]
    for seen in later:
        assert seen.headers["X-Vault-Token"] == FakeVault.TOKEN
        assert seen.headers["X-Vault-Namespace"] == "team-a"
    # ... and the run gives it back at the end.
    [revoke] = fake_vault.requests_to("/v1/auth/token/revoke-self")
    assert revoke.method == "POST"
    # sys/health is asked outside the namespace (it lives in the root one only).
    assert "X-Vault-Namespace" not in fake_vault.requests_to("/v1/sys/health")[0].headers


def test_kubernetes_login_refused_masks_the_jwt(fake_vault: FakeVault, tmp_path: Path) -> None:
    # A server that echoes what it was sent in its error must not make us echo it.
    fake_vault.login = (400, {"errors": [f'invalid role name "rotate" for JWT {JWT}']})
    with (
        VaultStore(_kubernetes(fake_vault, tmp_path)) as store,
        pytest.raises(StoreUnavailable) as info,
    ):
        store.check()
    assert str(info.value) == (
        "Kubernetes login refused at k8s-prod (role 'rotate'): "
        'HTTP 400: invalid role name "rotate" for JWT ***'
    )
    no_secret(info.value, JWT)
    assert fake_vault.requests_to("/v1/auth/token/revoke-self") == []  # no token, no revoke


def test_kubernetes_login_without_a_token_in_the_answer(
    fake_vault: FakeVault, tmp_path: Path
) -> None:
    fake_vault.login = (200, {"auth": None, "warnings": ["role has no policies"]})
    with (
        VaultStore(_kubernetes(fake_vault, tmp_path)) as store,
        pytest.raises(
            StoreUnavailable,
            match=r"^Kubernetes login at k8s-prod \(role 'rotate'\) gave no token$",
        ),
    ):
        store.check()


def test_without_the_ca_bundle_the_jwt_never_leaves(fake_vault: FakeVault, tmp_path: Path) -> None:
    settings = _kubernetes(fake_vault, tmp_path, cacert=None)
    with VaultStore(settings) as store, pytest.raises(StoreUnavailable) as info:
        store.check()
    assert "TLS error" in str(info.value)
    assert "certificate verify failed" in str(info.value)
    assert fake_vault.seen == []  # the handshake failed: not even sys/health was read
    no_secret(info.value, JWT)


def test_a_jwt_file_gone_at_login_is_named(fake_vault: FakeVault, tmp_path: Path) -> None:
    settings = _kubernetes(fake_vault, tmp_path, kubernetes_jwt_file=str(tmp_path / "absent"))
    with VaultStore(settings) as store, pytest.raises(StoreUnavailable) as info:
        store.check()
    assert str(info.value) == (
        f"vault.kubernetes_jwt_file '{tmp_path}/absent' cannot be read: No such file or directory"
    )
    assert fake_vault.requests_to("/v1/auth/k8s-prod/login") == []
