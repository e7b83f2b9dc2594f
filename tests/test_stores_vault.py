"""VaultStore on real OpenBao: check(), permissions, error translation of both planes (hvac for
the control plane, async HTTP for the data plane), request counting, threads and event loops."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

import hvac
import pytest

from rotate.devvault import DevVault
from rotate.errors import CasConflict, StoreError, StoreUnavailable
from rotate.models import Credential, PendingCandidate, Secret
from rotate.settings import VaultSettings
from rotate.stores.vault import VaultStore

pytestmark = pytest.mark.integration

ALL_BUT_PATCH = '"create", "read", "update", "delete"'
NEW = Credential("admin", Secret("s3cret-Candidate!"), None)
WHEN = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def _candidate(cred: Credential = NEW, base: int | None = None) -> PendingCandidate:
    return PendingCandidate(cred, "run-1", WHEN, base)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


def no_secret(exc: BaseException, *secrets: str) -> None:
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


@asynccontextmanager
async def _opened(settings: VaultSettings) -> AsyncIterator[VaultStore]:
    """A VaultStore whose async client is closed on this loop, and hvac clients after."""
    store = VaultStore(settings)
    try:
        yield store
    finally:
        await store.aclose()
        store.close()


@pytest.fixture
async def store(vault_store: VaultStore) -> AsyncIterator[VaultStore]:
    """`vault_store`, its data plane closed on the test's event loop."""
    yield vault_store
    await vault_store.aclose()


@pytest.fixture
def restricted(
    openbao_client: hvac.Client, vault_settings: VaultSettings
) -> Iterator[tuple[VaultSettings, str]]:
    """Settings with a token that may use its prefix, but neither LIST nor PATCH, nor
    `<prefix>/denied/`, nor write journal records of the run "nostage"."""
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
        path "secret/data/{prefix}/_pending/nostage-*" {{ capabilities = ["deny"] }}
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
    no_secret(info.value, settings.token.reveal())


def test_check_refuses_a_bad_token(vault_settings: VaultSettings) -> None:
    bad = f"hvs.{uuid.uuid4().hex}"
    store = VaultStore(replace(vault_settings, token=Secret(bad)))
    with store, pytest.raises(StoreUnavailable, match="Vault token refused") as info:
        store.check()
    no_secret(info.value, bad)


def test_check_without_a_token(vault_settings: VaultSettings) -> None:
    store = VaultStore(replace(vault_settings, token=None))
    with store, pytest.raises(StoreUnavailable, match="no token for Vault"):
        store.check()


def test_a_sealed_server_is_reported_by_both_planes() -> None:
    with DevVault() as server:
        client = hvac.Client(url=server.addr, token=server.token.reveal())
        client.sys.seal()
        settings = server.settings(prefix="sealed")
        store = VaultStore(settings)
        with store, pytest.raises(StoreUnavailable) as info:
            store.check()
        assert str(info.value) == f"Vault at {server.addr} is sealed"
        no_secret(info.value, server.token.reveal())

        async def data_plane() -> None:
            async with _opened(settings) as sealed:
                with pytest.raises(StoreError) as info:
                    await sealed.read_state("sealed/x")
                assert str(info.value) == (
                    f"Vault unreachable: {server.addr} is sealed or down (HTTP 503) "
                    "on secret/sealed/x"
                )
                no_secret(info.value, server.token.reveal())
                with pytest.raises(StoreError, match=r"sealed or down \(HTTP 503\)"):
                    await sealed.stage("run-1", {"sealed/x": _candidate()})
                # Unsealed again, the same store carries on.
                client.sys.submit_unseal_key(server.unseal_key.reveal())
                assert (await sealed.read_state("sealed/x")).current_version is None

        asyncio.run(data_plane())
        client.adapter.close()


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


async def test_a_missing_mount_is_not_mistaken_for_a_missing_secret(
    vault_settings: VaultSettings,
) -> None:
    path = f"{vault_settings.prefix}/x"
    async with _opened(replace(vault_settings, mount="no-such-mount")) as store:
        for call in (
            lambda: store.read_state(path),
            lambda: store.read_current(path),
            lambda: store.pending(),
            lambda: store.list_paths(vault_settings.prefix),
            lambda: store.stage("run-1", {path: _candidate()}),
            lambda: store.promote(path, NEW, None),
            lambda: store.record_failure(path, "run-1", WHEN),
        ):
            with pytest.raises(StoreError) as info:
                await call()
            assert str(info.value) == "no secrets engine is mounted at no-such-mount/"


# --- permissions and error translation ----------------------------------------------------


async def test_permission_denied_names_the_path(restricted: tuple[VaultSettings, str]) -> None:
    settings, token = restricted
    denied = f"{settings.prefix}/denied/x"
    pending_root = f"secret/{settings.pending_root}"
    async with _opened(settings) as store:
        assert store.check()  # the token itself is fine
        refusals = (
            (
                f"{pending_root}/nostage-00001",
                lambda: store.stage("nostage", {f"{settings.prefix}/ok": _candidate()}),
            ),
            (f"secret/{denied}", lambda: store.read_state(denied)),
            (f"secret/{denied}", lambda: store.read_current(denied)),
            (f"secret/{denied}", lambda: store.promote(denied, NEW, None)),
            # no PATCH right: read-modify-write, whose read is refused too
            (f"secret/{denied}", lambda: store.record_failure(denied, "run-1", WHEN)),
            (f"secret/{denied}", lambda: store.promote(denied, NEW, None, rotated_at=None)),
            (pending_root, lambda: store.pending()),  # no LIST right
            (f"secret/{settings.prefix}", lambda: store.list_paths(settings.prefix)),
        )
        for where, call in refusals:
            with pytest.raises(StoreError) as info:
                await call()
            assert str(info.value) == f"permission denied on {where}"
            no_secret(info.value, token, NEW.password.reveal())
        # Staging a denied path is not refused: only its journal record is written.
        assert (await store.stage("run-1", {denied: _candidate()})).startswith(
            f"{settings.pending_root}/run-1-"
        )


async def test_metadata_writes_without_patch_capability_keep_user_metadata(
    restricted: tuple[VaultSettings, str], openbao_client: hvac.Client
) -> None:
    settings, _ = restricted
    path = f"{settings.prefix}/nopatch/x"
    openbao_client.secrets.kv.v2.create_or_update_secret(path, {"username": "u", "password": "p"})
    openbao_client.adapter.post(
        f"/v1/secret/metadata/{path}",
        json={"custom_metadata": {"owner": "it-ops"}, "delete_version_after": "87600h"},
    )
    fresh = f"{settings.prefix}/nopatch/never-rotated"
    async with _opened(settings) as store:
        await store.stage("run-9", {path: _candidate(base=1)})
        assert await store.promote(path, NEW, 1, rotated_at=None) == 2
        assert (await store.read_state(path)).rotated_at is None
        await store.record_failure(path, "run-9", WHEN)
        await store.record_failure(fresh, "run-9", WHEN)  # no metadata yet: created
        assert (await store.read_state(fresh)).last_failure_at == WHEN

    meta = openbao_client.secrets.kv.v2.read_secret_metadata(path)["data"]
    custom = meta["custom_metadata"]
    assert (custom["owner"], custom["adopted_version"], custom["last_failure_run"]) == (
        "it-ops",
        "2",
        "run-9",
    )
    # The read-modify-write fallback must not reset the other metadata settings.
    assert meta["delete_version_after"] == "87600h0m0s"


async def test_item_calls_on_an_unreachable_vault(vault_settings: VaultSettings) -> None:
    settings = replace(vault_settings, addr=f"http://127.0.0.1:{_closed_port()}")
    path = f"{settings.prefix}/x"
    assert settings.token is not None
    async with _opened(settings) as store:
        for call in (
            lambda: store.pending(),
            lambda: store.read_state(path),
            lambda: store.read_current(path),
            lambda: store.stage("run-1", {path: _candidate()}),
            lambda: store.promote(path, NEW, None),
            lambda: store.record_failure(path, "run-1", WHEN),
            lambda: store.list_paths(settings.prefix),
        ):
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"^Vault unreachable: ") as info:
                await call()
            assert time.monotonic() - started < settings.timeout_s
            assert f"secret/{settings.prefix}" in str(info.value)
            no_secret(info.value, settings.token.reveal(), NEW.password.reveal())
        with pytest.raises(StoreError, match=r"^Vault unreachable: .* on password policy 'p'$"):
            await store.generate_password("p")


async def test_a_vault_refusal_is_translated_without_the_raw_exception(
    store: VaultStore, vault_settings: VaultSettings
) -> None:
    # custom_metadata values are capped at 512 bytes: a 400 from Vault.
    path = f"{vault_settings.prefix}/long-run-id"
    with pytest.raises(StoreError, match="HTTP 400") as info:
        await store.record_failure(path, "r" * 600, WHEN)
    assert str(info.value).startswith(
        f"Vault refused the request on secret/{path} (metadata): HTTP 400: "
    )
    assert len(str(info.value)) < 400  # Vault's text is cut short
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert vault_settings.token is not None
    no_secret(info.value, vault_settings.token.reveal())
    assert (await store.read_state(path)).last_failure_at is None


async def test_a_check_and_set_conflict_surfaces_as_documented(
    store: VaultStore, openbao_client: hvac.Client, vault_settings: VaultSettings
) -> None:
    path = f"{vault_settings.prefix}/cas"
    openbao_client.secrets.kv.v2.create_or_update_secret(path, {"username": "u", "password": "p"})

    # The KV layer: Vault's "check-and-set parameter did not match" is a CasConflict.
    with pytest.raises(CasConflict) as info:
        await store.kv.write(path, {"username": "u", "password": "q"}, cas=0)
    assert str(info.value) == f"secret/{path} changed"
    # A promotion: a StoreError saying what it expected, never the password.
    await store.stage("run-1", {path: _candidate(base=1)})
    openbao_client.secrets.kv.v2.create_or_update_secret(path, {"username": "u", "password": "o"})
    with pytest.raises(StoreError) as info:
        await store.promote(path, NEW, 1)
    assert str(info.value) == (
        f"current version of secret/{path} changed during the rotation (expected 1)"
    )
    assert info.value.__cause__ is None
    no_secret(info.value, NEW.password.reveal())
    # A journal record's name taken already (the same run id in another process).
    other = VaultStore(vault_settings)
    try:
        with pytest.raises(StoreError, match="exists already"):
            await other.stage("run-1", {f"{vault_settings.prefix}/y": _candidate()})
    finally:
        await other.aclose()
        other.close()


class _Echo(http.server.BaseHTTPRequestHandler):
    """A server that refuses every request, quoting the token and the body it was sent (as a
    careless proxy or a verbose plugin might)."""

    def _refuse(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        token = self.headers.get("X-Vault-Token", "")
        answer = json.dumps({"errors": [f"bad request with token {token}: {body}"]}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PATCH = do_LIST = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_addr() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_no_password_or_token_in_messages_even_when_the_server_quotes_them(
    vault_settings: VaultSettings, echo_addr: str
) -> None:
    settings = replace(vault_settings, addr=echo_addr)
    assert settings.token is not None
    token = settings.token.reveal()
    path = f"{settings.prefix}/x"
    async with _opened(settings) as store:
        for call in (
            lambda: store.stage("run-1", {path: _candidate()}),
            lambda: store.promote(path, NEW, None),
            lambda: store.read_state(path),
        ):
            with pytest.raises(StoreError, match=r"^Vault refused the request on secret/") as info:
                await call()
            assert "***" in str(info.value)
            no_secret(info.value, token, NEW.password.reveal())


# --- counting, threads, event loops, lifecycle ----------------------------------------------


async def test_requests_counts_both_planes(
    store: VaultStore, vault_settings: VaultSettings
) -> None:
    prefix = vault_settings.prefix
    store.check()
    assert store.requests > 0  # health, token lookup, mount check: hvac

    def counted(delta: int) -> None:
        nonlocal before
        assert store.requests - before == delta
        before = store.requests

    before = store.requests
    store.write_record(f"{vault_settings.lease_root}/l", {"run_id": "r"}, 0)
    counted(1)
    await store.read_state(f"{prefix}/a")  # one metadata read
    counted(1)
    name = await store.stage("run-1", {f"{prefix}/a": _candidate(), f"{prefix}/b": _candidate()})
    counted(1)
    await store.promote(f"{prefix}/a", NEW, None)
    counted(1)
    await store.pending()  # one LIST, one read per record
    counted(2)
    await store.settle(name)  # one rewrite
    counted(1)
    store.read_record(f"{vault_settings.lease_root}/l")
    counted(1)


def test_each_thread_gets_its_own_client(vault_settings: VaultSettings) -> None:
    made: list[int] = []
    lock = threading.Lock()
    base = VaultStore(vault_settings)

    def factory() -> hvac.Client:
        with lock:
            made.append(threading.get_ident())
        return base._clients.from_settings()

    store = VaultStore(vault_settings, client_factory=factory)
    barrier = threading.Barrier(8)

    def record(i: int) -> int:
        barrier.wait()  # all eight threads at once, so each really needs a client
        path = f"{vault_settings.lease_root}/threads/{i}"
        version = store.write_record(path, {"n": str(i)}, 0)
        assert store.read_record(path) == ({"n": str(i)}, version)
        return version

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(record, range(32)))
    store.close()
    base.close()

    assert versions == [1] * 32
    assert len(made) == len(set(made)) == 8


async def test_many_rotations_side_by_side_on_one_loop(
    store: VaultStore, vault_settings: VaultSettings
) -> None:
    paths = [f"{vault_settings.prefix}/side/{i}" for i in range(32)]
    creds = {
        p: Credential(f"user{i}", Secret(f"pw-{i}-{uuid.uuid4().hex}")) for i, p in enumerate(paths)
    }
    name = await store.stage("run-t", {p: _candidate(c) for p, c in creds.items()})

    async def rotate(path: str) -> int:
        version = await store.promote(path, creds[path], None)
        assert await store.read_current(path) == creds[path]
        return version

    versions = await asyncio.gather(*(rotate(p) for p in paths))
    await store.settle(name)

    assert versions == [1] * 32
    assert await store.pending() == {}
    assert await store.list_paths(f"{vault_settings.prefix}/side") == sorted(paths)


def test_the_data_plane_follows_the_event_loop(vault_settings: VaultSettings) -> None:
    """A run's loop ends (and closes the client); another loop, a later phase, gets a new one."""
    store = VaultStore(vault_settings)
    path = f"{vault_settings.prefix}/loops"

    async def first() -> None:
        await store.stage("run-1", {path: _candidate()})
        assert await store.promote(path, NEW, None) == 1
        await store.aclose()

    async def second() -> None:
        assert await store.read_current(path) == NEW
        await store.settle()
        await store.aclose()
        await store.aclose()  # twice: a no-op

    try:
        asyncio.run(first())
        asyncio.run(second())
    finally:
        store.close()
    assert not any(n.startswith(vault_settings.pending_root) for n in _listed(vault_settings))


def _listed(settings: VaultSettings) -> list[str]:
    assert settings.token is not None
    client = hvac.Client(url=settings.addr, token=settings.token.reveal())
    try:
        keys = client.secrets.kv.v2.list_secrets(settings.pending_root)["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        keys = []
    finally:
        client.adapter.close()
    return [f"{settings.pending_root}/{k}" for k in keys]


def test_a_closed_store_refuses_every_call(vault_settings: VaultSettings) -> None:
    store = VaultStore(vault_settings)
    path = f"{vault_settings.lease_root}/x"
    assert store.read_record(path) is None
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.read_record(path)
    with pytest.raises(StoreError, match="closed"):
        store.write_record(path, {"run_id": "r"}, 0)

    async def data_plane() -> None:
        try:
            with pytest.raises(StoreError, match="closed"):
                await store.read_current(f"{vault_settings.prefix}/x")
            with pytest.raises(StoreError, match="closed"):
                await store.pending()
        finally:
            await store.aclose()

    asyncio.run(data_plane())


class _NotVault(http.server.BaseHTTPRequestHandler):
    def _not_found(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<h1>Not Found</h1>")

    do_GET = do_POST = do_PATCH = do_LIST = _not_found

    def log_message(self, *args: object) -> None:
        pass


async def test_a_foreign_404_is_not_read_as_a_missing_secret(vault_settings: VaultSettings) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotVault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = replace(vault_settings, addr=f"http://127.0.0.1:{server.server_address[1]}")
        path = f"{settings.prefix}/x"
        async with _opened(settings) as store:
            with pytest.raises(StoreUnavailable, match="does not answer like Vault"):
                await asyncio.to_thread(store.check)
            for call in (
                lambda: store.read_state(path),
                lambda: store.read_current(path),
                lambda: store.pending(),
                lambda: store.list_paths(settings.prefix),
                lambda: store.record_failure(path, "run-1", WHEN),  # PATCH, then read
            ):
                with pytest.raises(StoreError) as info:
                    await call()
                assert str(info.value) == (
                    f"{settings.addr} answered 404 without a Vault error body: is it Vault?"
                )
    finally:
        server.shutdown()
        server.server_close()
