"""VaultStore on real OpenBao: check(), permissions, error translation, threads."""

from __future__ import annotations

import http.server
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import hvac
import pytest

from rotate.devvault import DevVault
from rotate.errors import StoreError, StoreUnavailable
from rotate.models import Credential, Secret
from rotate.settings import VaultSettings
from rotate.stores.vault import VaultStore

pytestmark = pytest.mark.integration

ALL_BUT_PATCH = '"create", "read", "update", "delete"'
NEW = Credential("admin", Secret("s3cret-Candidate!"), None)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


def _no_secret(exc: BaseException, *secrets: str) -> None:
    """Neither the message nor any chained exception may carry a secret."""
    seen: BaseException | None = exc
    while seen is not None:
        for secret in secrets:
            assert secret not in str(seen)
            assert secret not in repr(seen)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)


def _token(client: hvac.Client, policy_name: str, policy: str) -> str:
    client.sys.create_or_update_acl_policy(name=policy_name, policy=policy)
    created = client.auth.token.create(policies=[policy_name], ttl="10m")
    token: str = created["auth"]["client_token"]
    return token


@pytest.fixture
def restricted(
    openbao_client: hvac.Client, vault_settings: VaultSettings
) -> Iterator[tuple[VaultSettings, str]]:
    """Settings with a token that may use its prefix but not `<prefix>/denied/` nor PATCH."""
    prefix = vault_settings.prefix
    name = f"rotate-test-{uuid.uuid4().hex[:8]}"
    token = _token(
        openbao_client,
        name,
        f"""
        path "secret/data/{prefix}/*"     {{ capabilities = [{ALL_BUT_PATCH}] }}
        path "secret/metadata/{prefix}/*" {{ capabilities = [{ALL_BUT_PATCH}] }}
        path "secret/data/{prefix}/denied/*"     {{ capabilities = ["deny"] }}
        path "secret/metadata/{prefix}/denied/*" {{ capabilities = ["deny"] }}
        path "secret/data/{prefix}/_pending/{prefix}/nostage/*" {{ capabilities = ["deny"] }}
        """,
    )
    yield replace(vault_settings, token=Secret(token)), token
    openbao_client.sys.delete_acl_policy(name)


# --- check() ------------------------------------------------------------------------------


def test_check_returns_the_token_display_name(
    vault_store: VaultStore, openbao_client: hvac.Client, vault_settings: VaultSettings
) -> None:
    assert vault_store.check() == "token"  # a dev server's root token is called "token"
    created = openbao_client.auth.token.create(
        policies=["default"], display_name="rotate-ci", ttl="5m"
    )
    other = replace(vault_settings, token=Secret(created["auth"]["client_token"]))
    with VaultStore(other) as store:
        assert store.check() == "token-rotate-ci"


def test_check_against_a_closed_port_is_quick(vault_settings: VaultSettings) -> None:
    settings = replace(vault_settings, addr=f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    with VaultStore(settings) as store, pytest.raises(StoreUnavailable) as info:
        store.check()
    assert time.monotonic() - started < settings.timeout_s
    message = str(info.value)
    assert message.startswith(f"Vault at {settings.addr} is unreachable: ")
    assert "connection refused" in message.lower()
    assert settings.token is not None
    _no_secret(info.value, settings.token.reveal())


def test_check_refuses_a_bad_token(vault_settings: VaultSettings) -> None:
    bad = f"hvs.{uuid.uuid4().hex}"
    store = VaultStore(replace(vault_settings, token=Secret(bad)))
    with store, pytest.raises(StoreUnavailable, match="Vault token refused") as info:
        store.check()
    _no_secret(info.value, bad)


def test_check_without_a_token(vault_settings: VaultSettings) -> None:
    store = VaultStore(replace(vault_settings, token=None))
    with store, pytest.raises(StoreUnavailable, match="no token for Vault"):
        store.check()


def test_check_reports_a_sealed_server() -> None:
    with DevVault() as server:
        client = hvac.Client(url=server.addr, token=server.token.reveal())
        client.sys.seal()
        client.adapter.close()
        store = VaultStore(server.settings())
        with store, pytest.raises(StoreUnavailable) as info:
            store.check()
        assert str(info.value) == f"Vault at {server.addr} is sealed"
        _no_secret(info.value, server.token.reveal())


def test_check_refuses_a_kv_v1_mount(
    openbao_client: hvac.Client, vault_settings: VaultSettings
) -> None:
    mount = f"kv1-{uuid.uuid4().hex[:8]}"
    openbao_client.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    try:
        store = VaultStore(replace(vault_settings, mount=mount))
        with store, pytest.raises(StoreUnavailable, match="not a KV version 2 mount"):
            store.check()
    finally:
        openbao_client.sys.disable_secrets_engine(mount)


def test_a_missing_mount_is_not_mistaken_for_a_missing_secret(
    vault_settings: VaultSettings,
) -> None:
    store = VaultStore(replace(vault_settings, mount="no-such-mount"))
    with store, pytest.raises(StoreError, match="no secrets engine is mounted at no-such-mount/"):
        store.read_state(f"{vault_settings.prefix}/x")


# --- permissions and error translation ----------------------------------------------------


def test_permission_denied_names_the_path(restricted: tuple[VaultSettings, str]) -> None:
    settings, token = restricted
    denied = f"{settings.prefix}/denied/x"
    nostage = f"{settings.prefix}/nostage/x"
    with VaultStore(settings) as store:
        assert store.check()  # the token itself is fine
        with pytest.raises(StoreError) as read_info:
            store.read_state(denied)
        with pytest.raises(StoreError) as promote_info:
            store.promote(denied, NEW, None, "run-1", datetime.now(UTC))
        with pytest.raises(StoreError) as stage_info:
            store.stage(nostage, NEW, "run-1")

    assert str(read_info.value) == f"permission denied on secret/{denied}"
    assert str(promote_info.value) == f"permission denied on secret/{denied}"
    pending = f"secret/{settings.pending_root}/{nostage}"
    assert str(stage_info.value) == f"permission denied on {pending}"
    for info in (read_info, promote_info, stage_info):
        _no_secret(info.value, token, NEW.password.reveal())


def test_promote_without_patch_capability_still_keeps_user_metadata(
    restricted: tuple[VaultSettings, str], openbao_client: hvac.Client
) -> None:
    settings, _ = restricted
    path = f"{settings.prefix}/nopatch/x"
    openbao_client.secrets.kv.v2.create_or_update_secret(path, {"username": "u", "password": "p"})
    openbao_client.adapter.post(
        f"/v1/secret/metadata/{path}",
        json={"custom_metadata": {"owner": "it-ops"}, "delete_version_after": "87600h"},
    )
    with VaultStore(settings) as store:
        store.stage(path, NEW, "run-9")
        assert store.promote(path, NEW, 1, "run-9", datetime.now(UTC)) == 2
        assert store.read_state(path).pending is None

    meta = openbao_client.secrets.kv.v2.read_secret_metadata(path)["data"]
    assert meta["custom_metadata"]["owner"] == "it-ops"
    assert meta["custom_metadata"]["run_id"] == "run-9"
    # The read-modify-write fallback must not reset the other metadata settings.
    assert meta["delete_version_after"] == "87600h0m0s"


def test_item_calls_on_an_unreachable_vault(vault_settings: VaultSettings) -> None:
    settings = replace(vault_settings, addr=f"http://127.0.0.1:{_closed_port()}")
    path = f"{settings.prefix}/x"
    with VaultStore(settings) as store:
        for call in (
            lambda: store.read_state(path),
            lambda: store.stage(path, NEW, "run-1"),
            lambda: store.promote(path, NEW, None, "run-1", datetime.now(UTC)),
        ):
            with pytest.raises(StoreError, match=r"^Vault unreachable: ") as info:
                call()
            assert f"secret/{settings.prefix}" in str(info.value)
            assert settings.token is not None
            _no_secret(info.value, settings.token.reveal(), NEW.password.reveal())


def test_other_vault_errors_are_translated_without_the_raw_exception(
    vault_store: VaultStore, openbao_client: hvac.Client, vault_settings: VaultSettings
) -> None:
    path = f"{vault_settings.prefix}/not-a-credential"
    openbao_client.secrets.kv.v2.create_or_update_secret(path, {"note": "x"})
    with pytest.raises(StoreError, match="lacks a string 'username' or 'password'"):
        vault_store.read_current(path)
    # A 400 from Vault (custom_metadata values are capped at 512 bytes) becomes a StoreError
    # naming the step; the candidate stays, since the rotation was not fully recorded.
    cred_path = f"{vault_settings.prefix}/long-run-id"
    vault_store.stage(cred_path, NEW, "run-1")
    with pytest.raises(StoreError, match="HTTP 400") as info:
        vault_store.promote(cred_path, NEW, None, "r" * 600, datetime.now(UTC))
    assert str(info.value).startswith(
        f"Vault refused the request on secret/{cred_path} (metadata): HTTP 400: "
    )
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert vault_settings.token is not None
    _no_secret(info.value, NEW.password.reveal(), vault_settings.token.reveal())
    assert vault_store.read_state(cred_path).pending is not None
    assert vault_store.read_current(cred_path) == NEW


# --- threads and lifecycle ----------------------------------------------------------------


def test_each_thread_gets_its_own_client(vault_settings: VaultSettings) -> None:
    made: list[int] = []
    lock = threading.Lock()
    base = VaultStore(vault_settings)

    def factory() -> hvac.Client:
        with lock:
            made.append(threading.get_ident())
        return base._new_client()

    store = VaultStore(vault_settings, client_factory=factory)
    barrier = threading.Barrier(8)

    def rotate(i: int) -> int:
        barrier.wait()  # all eight threads at once, so each really needs a client
        path = f"{vault_settings.prefix}/threads/{i}"
        cred = Credential(f"user{i}", Secret(f"pw-{i}-{uuid.uuid4().hex}"))
        store.stage(path, cred, "run-t")
        version = store.promote(path, cred, None, "run-t", datetime.now(UTC))
        assert store.read_current(path) == cred
        return version

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(rotate, range(32)))
    store.close()
    base.close()

    assert versions == [1] * 32
    assert len(made) == len(set(made)) == 8


def test_a_closed_store_refuses_calls(vault_settings: VaultSettings) -> None:
    store = VaultStore(vault_settings)
    assert store.read_current(f"{vault_settings.prefix}/x") is None
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.read_current(f"{vault_settings.prefix}/x")


def test_a_foreign_404_is_not_read_as_a_missing_secret(vault_settings: VaultSettings) -> None:
    class NotVault(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<h1>Not Found</h1>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotVault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = replace(vault_settings, addr=f"http://127.0.0.1:{server.server_address[1]}")
        with VaultStore(settings) as store:
            with pytest.raises(StoreUnavailable, match="does not answer like Vault"):
                store.check()
            with pytest.raises(StoreError, match="without a Vault error body"):
                store.read_state(f"{settings.prefix}/x")
    finally:
        server.shutdown()
        server.server_close()
