"""The SecretStore contract, run against MemoryStore and against VaultStore on real OpenBao."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import pytest

from rotate.errors import PendingConflict, StoreError
from rotate.models import Credential, Secret
from rotate.settings import VaultSettings
from rotate.stores.base import SecretStore
from rotate.stores.memory import MemoryStore

OLD = Credential("admin", Secret("old-Passw0rd!"), None)
NEW = Credential("admin", Secret("new-Passw0rd#1"), "CORP")
NEWER = Credential("admin", Secret("newer-Passw0rd#2"), "CORP")


@dataclass
class Backend:
    """A store plus a way to look behind its back, the same for both implementations."""

    store: SecretStore
    settings: VaultSettings
    client: hvac.Client | None = None  # root client when the store is a VaultStore

    @property
    def memory(self) -> MemoryStore:
        assert isinstance(self.store, MemoryStore)
        return self.store

    def path(self, name: str) -> str:
        return f"{self.settings.prefix}/ep/connection/{name}/RDP"

    def pending_of(self, path: str) -> str:
        return f"{self.settings.pending_root}/{path}"

    def seed(self, path: str, data: dict[str, str], custom: dict[str, str] | None = None) -> None:
        """Write a version as a person would, outside rotate."""
        if self.client is None:
            self.memory.put(path, data, custom)
            return
        kv = self.client.secrets.kv.v2
        kv.create_or_update_secret(path, data, mount_point=self.settings.mount)
        if custom:
            meta = kv.read_secret_metadata(path, mount_point=self.settings.mount)["data"]
            merged = {**(meta.get("custom_metadata") or {}), **custom}
            self.client.adapter.post(
                f"/v1/{self.settings.mount}/metadata/{path}", json={"custom_metadata": merged}
            )

    def version_data(self, path: str, version: int) -> dict[str, str] | None:
        """One version's fields, read directly (hvac for Vault)."""
        if self.client is None:
            return self.memory.version_data(path, version)
        try:
            answer = self.client.secrets.kv.v2.read_secret_version(
                path,
                version=version,
                mount_point=self.settings.mount,
                raise_on_deleted_version=True,
            )
        except hvac.exceptions.InvalidPath:
            return None
        data: dict[str, str] = answer["data"]["data"]
        return data

    def custom_metadata(self, path: str) -> dict[str, str]:
        if self.client is None:
            return self.memory.metadata(path)
        meta = self.client.secrets.kv.v2.read_secret_metadata(
            path, mount_point=self.settings.mount
        )["data"]
        return dict(meta.get("custom_metadata") or {})

    def exists(self, path: str) -> bool:
        """Whether any trace of `path` is left (metadata included, not only a live version)."""
        if self.client is None:
            return path in self.memory._entries
        try:
            self.client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.settings.mount)
        except hvac.exceptions.InvalidPath:
            return False
        return True

    def soft_delete(self, path: str) -> None:
        """`kv delete`: the latest version goes, the metadata stays."""
        if self.client is None:
            self.memory.delete_latest(path)
        else:
            self.client.secrets.kv.v2.delete_latest_version_of_secret(
                path, mount_point=self.settings.mount
            )


@pytest.fixture(params=["memory", pytest.param("vault", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        settings = VaultSettings(prefix="rotate-test-mem")
        yield Backend(MemoryStore(settings), settings)
        return
    settings = request.getfixturevalue("vault_settings")
    store = request.getfixturevalue("vault_store")
    yield Backend(store, settings, request.getfixturevalue("openbao_client"))


def _recent(moment: datetime | None) -> bool:
    return moment is not None and abs(datetime.now(UTC) - moment) < timedelta(minutes=1)


def _clean(exc: BaseException, *secrets: str) -> None:
    text = str(exc)
    for secret in secrets:
        assert secret not in text


# --- the contract -------------------------------------------------------------------------


def test_absent_secret_has_no_state(backend: Backend) -> None:
    path = backend.path("nothing")
    state = backend.store.read_state(path)
    assert (state.path, state.current_version, state.rotated_at) == (path, None, None)
    assert state.last_run_id is None
    assert state.pending is None
    assert backend.store.read_current(path) is None


def test_stage_shows_pending_and_leaves_current_alone(backend: Backend) -> None:
    path = backend.path("staged")
    backend.seed(path, {"username": "admin", "password": OLD.password.reveal()})

    backend.store.stage(path, NEW, "run-1")

    state = backend.store.read_state(path)
    assert state.current_version == 1
    assert state.pending is not None
    assert state.pending.credential == NEW
    assert state.pending.run_id == "run-1"
    assert _recent(state.pending.staged_at)
    # Readers of the current value still get the old password (invariant 2).
    assert backend.store.read_current(path) == OLD
    assert backend.version_data(path, 2) is None


def test_stage_twice_is_a_conflict_and_keeps_the_first(backend: Backend) -> None:
    path = backend.path("twice")
    backend.store.stage(path, NEW, "run-1")

    with pytest.raises(PendingConflict) as info:
        backend.store.stage(path, NEWER, "run-2")

    assert f"{backend.settings.mount}/{backend.pending_of(path)}" in str(info.value)
    _clean(info.value, NEW.password.reveal(), NEWER.password.reveal())
    pending = backend.store.read_state(path).pending
    assert pending is not None
    assert (pending.credential, pending.run_id) == (NEW, "run-1")


def test_stage_reuses_a_soft_deleted_leftover(backend: Backend) -> None:
    path = backend.path("leftover")
    backend.store.stage(path, NEW, "run-1")
    backend.soft_delete(backend.pending_of(path))
    assert backend.store.read_state(path).pending is None

    backend.store.stage(path, NEWER, "run-2")

    pending = backend.store.read_state(path).pending
    assert pending is not None
    assert (pending.credential, pending.run_id) == (NEWER, "run-2")


def test_promote_keeps_history_and_records_the_rotation(backend: Backend) -> None:
    path = backend.path("promoted")
    first_at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    backend.store.stage(path, NEW, "run-1")
    assert backend.store.promote(path, NEW, None, "run-1", first_at) == 1
    assert not backend.exists(backend.pending_of(path))
    # A key a person put on the secret must survive our next promotion.
    backend.seed(path, credential_fields(NEW), {"owner": "it-ops"})  # version 2, same value

    second_at = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)
    backend.store.stage(path, NEWER, "run-2")
    assert backend.store.promote(path, NEWER, 2, "run-2", second_at) == 3

    assert backend.version_data(path, 1) == credential_fields(NEW)
    assert backend.version_data(path, 3) == credential_fields(NEWER)
    assert backend.store.read_current(path) == NEWER
    meta = backend.custom_metadata(path)
    assert meta["owner"] == "it-ops"
    assert meta["run_id"] == "run-2"
    assert meta["rotated_by"] == "rotate"
    assert datetime.fromisoformat(meta["rotated_at"]) == second_at
    state = backend.store.read_state(path)
    assert (state.current_version, state.rotated_at, state.last_run_id) == (3, second_at, "run-2")
    assert state.pending is None
    # The candidate is gone entirely, metadata and all versions.
    assert not backend.exists(backend.pending_of(path))


def test_promote_with_stale_version_fails_and_keeps_pending(backend: Backend) -> None:
    path = backend.path("stale")
    backend.store.stage(path, NEW, "run-1")
    backend.store.promote(path, NEW, None, "run-1", datetime.now(UTC))
    backend.store.stage(path, NEWER, "run-2")

    for stale in (None, 7):
        with pytest.raises(StoreError, match="changed during the rotation") as info:
            backend.store.promote(path, NEWER, stale, "run-2", datetime.now(UTC))
        assert path in str(info.value)
        _clean(info.value, NEWER.password.reveal())

    assert backend.store.read_current(path) == NEW
    assert backend.version_data(path, 2) is None
    pending = backend.store.read_state(path).pending
    assert pending is not None
    assert pending.credential == NEWER


def test_promote_retried_after_a_lost_answer_is_not_a_conflict(backend: Backend) -> None:
    path = backend.path("retried")
    backend.store.stage(path, NEW, "run-1")
    assert backend.store.promote(path, NEW, None, "run-1", datetime.now(UTC)) == 1

    # Same call again, as if the first answer never arrived: it finds its own write.
    assert backend.store.promote(path, NEW, None, "run-1", datetime.now(UTC)) == 1
    assert backend.version_data(path, 2) is None


def test_discard_removes_the_candidate_only(backend: Backend) -> None:
    path = backend.path("discarded")
    backend.seed(path, credential_fields(OLD))
    backend.store.stage(path, NEW, "run-1")

    backend.store.discard(path)
    backend.store.discard(path)  # nothing left: a no-op, not an error

    assert backend.store.read_state(path).pending is None
    assert not backend.exists(backend.pending_of(path))
    assert backend.store.read_current(path) == OLD


def test_rotated_at_falls_back_to_the_version_time(backend: Backend) -> None:
    path = backend.path("manual")
    backend.seed(path, credential_fields(OLD), {"owner": "someone"})

    state = backend.store.read_state(path)

    assert state.current_version == 1
    assert _recent(state.rotated_at)
    assert state.last_run_id is None


def test_domain_is_stored_only_when_there_is_one(backend: Backend) -> None:
    path = backend.path("domain")
    backend.store.stage(path, OLD, "run-1")
    backend.store.promote(path, OLD, None, "run-1", datetime.now(UTC))
    backend.store.stage(path, NEW, "run-2")
    backend.store.promote(path, NEW, 1, "run-2", datetime.now(UTC))

    assert "domain" not in (backend.version_data(path, 1) or {})
    assert (backend.version_data(path, 2) or {})["domain"] == "CORP"
    assert backend.store.read_current(path) == NEW


def test_read_field(backend: Backend) -> None:
    path = f"{backend.settings.prefix}/gateways/gw1"
    backend.seed(path, {"password": "gw-secret", "note": "x"})

    assert backend.store.read_field(path, "password") == "gw-secret"
    with pytest.raises(StoreError, match="no field 'missing'") as info:
        backend.store.read_field(path, "missing")
    _clean(info.value, "gw-secret")
    with pytest.raises(StoreError, match="no secret at"):
        backend.store.read_field(f"{backend.settings.prefix}/gateways/none", "password")


@pytest.mark.parametrize("bad", ["", "/lead", "trail/", "a//b", "a/../b", "a/./b"])
def test_malformed_paths_are_refused(backend: Backend, bad: str) -> None:
    with pytest.raises(StoreError, match="invalid secret path"):
        backend.store.read_state(bad)
    with pytest.raises(StoreError, match="invalid secret path"):
        backend.store.stage(bad, NEW, "run-1")


def test_paths_inside_the_pending_area_are_refused(backend: Backend) -> None:
    inside = f"{backend.settings.pending_root}/x"
    for call in (
        lambda: backend.store.promote(inside, NEW, None, "r", datetime.now(UTC)),
        lambda: backend.store.stage(inside, NEW, "r"),
        lambda: backend.store.read_current(inside),
    ):
        with pytest.raises(StoreError, match="pending area"):
            call()


def credential_fields(credential: Credential) -> dict[str, Any]:
    data = {"username": credential.username, "password": credential.password.reveal()}
    if credential.domain:
        data["domain"] = credential.domain
    return data


def test_records_check_and_set(backend: Backend) -> None:
    from rotate.errors import CasConflict

    path = f"{backend.settings.lease_root}/default"
    store = backend.store
    assert store.read_record(path) is None
    assert store.write_record(path, {"run_id": "a"}, 0) == 1
    with pytest.raises(CasConflict):
        store.write_record(path, {"run_id": "b"}, 0)
    assert store.write_record(path, {"run_id": "a", "n": "2"}, 1) == 2
    with pytest.raises(CasConflict):
        store.write_record(path, {"run_id": "b"}, 1)
    assert store.read_record(path) == ({"run_id": "a", "n": "2"}, 2)
    store.delete_record(path)
    assert store.read_record(path) is None
    store.delete_record(path)  # idempotent
    assert store.write_record(path, {"run_id": "c"}, 0) == 1


def test_promotion_of_unknown_age_counts_as_never_rotated(backend: Backend) -> None:
    path = backend.path("adopted")
    store = backend.store
    version = store.promote(path, OLD, None, "reconcile-1", None)
    state = store.read_state(path)
    assert state.current_version == version
    assert state.rotated_at is None  # adopted: its age is unknown, so it is due
    when = datetime(2026, 11, 1, tzinfo=UTC)
    store.promote(path, NEW, version, "run-2", when)
    assert store.read_state(path).rotated_at == when


def test_failures_are_noted_in_metadata_even_before_any_rotation(backend: Backend) -> None:
    store = backend.store
    never = backend.path("never")
    when = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    store.record_failure(never, "run-1", when)
    state = store.read_state(never)
    assert state.last_failure_at == when
    assert state.current_version is None
    # A first rotation still works on a path that has only failure metadata.
    store.stage(never, NEW, "run-2")
    assert store.promote(never, NEW, None, "run-2", when + timedelta(days=1)) == 1
    after = store.read_state(never)
    assert after.last_failure_at == when
    assert after.rotated_at == when + timedelta(days=1)


def test_list_paths_leaves_out_pending_and_lease_areas(backend: Backend) -> None:
    store = backend.store
    a, b = backend.path("a"), backend.path("b")
    store.promote(a, OLD, None, "r", datetime.now(UTC))
    store.promote(b, OLD, None, "r", datetime.now(UTC))
    store.stage(backend.path("c"), NEW, "r")  # only pending: not a secret yet
    store.write_record(f"{backend.settings.lease_root}/default", {"run_id": "r"}, 0)
    assert store.list_paths(backend.settings.prefix) == sorted([a, b])


def test_list_pending_names_the_rows_with_a_candidate(backend: Backend) -> None:
    store = backend.store
    assert store.list_pending() == set()
    a, b = backend.path("a"), backend.path("b")
    store.stage(a, NEW, "r")
    store.stage(b, NEW, "r")
    store.promote(b, NEW, None, "r", datetime.now(UTC))
    assert store.list_pending() == {a}
    # Skipping the candidate read is an explicit choice of the caller.
    assert store.read_state(a).pending is not None
    assert store.read_state(a, pending=False).pending is None
