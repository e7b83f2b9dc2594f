"""The SecretStore contract, run against MemoryStore and against VaultStore on real OpenBao.

The data plane is async: each test runs on its own event loop (pytest-asyncio, auto mode) and
the `backend` fixture closes every store's async client on that loop when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import pytest

from rotate.errors import CasConflict, PendingConflict, StoreError
from rotate.models import Credential, PendingCandidate, Secret
from rotate.settings import VaultSettings
from rotate.stores.memory import MemoryStore
from rotate.stores.vault import VaultStore

OLD = Credential("admin", Secret("old-Passw0rd!"), None)
NEW = Credential("admin", Secret("new-Passw0rd#1"), "CORP")
NEWER = Credential("admin", Secret("newer-Passw0rd#2"), "CORP")
OTHER = Credential("admin", Secret("someone-elses-Passw0rd%3"), None)
STAGED_AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
PASSWORDS = tuple(c.password.reveal() for c in (OLD, NEW, NEWER, OTHER))

Store = MemoryStore | VaultStore


@dataclass
class Backend:
    """A store plus a way to look behind its back, the same for both implementations."""

    store: Store
    settings: VaultSettings
    client: hvac.Client | None = None  # root client when the store is a VaultStore
    others: list[Store] = field(default_factory=list)  # stores opened by `fresh`

    @property
    def memory(self) -> MemoryStore:
        assert isinstance(self.store, MemoryStore)
        return self.store

    @property
    def mount(self) -> str:
        return self.settings.mount

    def path(self, name: str) -> str:
        return f"{self.settings.prefix}/ep/connection/{name}/RDP"

    def where(self, path: str) -> str:
        """A path as the store's messages name it."""
        return f"{self.mount}/{path}"

    def fresh(self) -> Store:
        """Another store instance on the same data, as the next run (or a restarted one) has."""
        if self.client is None:
            other = MemoryStore(self.settings)
            other._memory = self.memory._memory
            other.kv = other._memory
        else:
            other = VaultStore(self.settings)
        self.others.append(other)
        return other

    # --- looking behind the store's back -----------------------------------------------------

    def seed(self, path: str, data: dict[str, Any], custom: dict[str, str] | None = None) -> int:
        """Write a version as a person (or another tool) would, outside rotate."""
        if self.client is None:
            return self.memory.put(path, data, custom)
        kv = self.client.secrets.kv.v2
        written = kv.create_or_update_secret(path, data, mount_point=self.mount)
        if custom:
            meta = kv.read_secret_metadata(path, mount_point=self.mount)["data"]
            merged = {**(meta.get("custom_metadata") or {}), **custom}
            self.client.adapter.post(
                f"/v1/{self.mount}/metadata/{path}", json={"custom_metadata": merged}
            )
        return int(written["data"]["version"])

    def version_data(self, path: str, version: int) -> dict[str, Any] | None:
        """One version's fields, read directly (hvac for Vault)."""
        if self.client is None:
            return self.memory.version_data(path, version)
        try:
            answer = self.client.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=self.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        data: dict[str, Any] = answer["data"]["data"]
        return data

    def current_version(self, path: str) -> int:
        """The path's current version number, read directly (0: none)."""
        if self.client is None:
            entry = self.memory._memory.entries.get(path)
            return entry.current_version if entry else 0
        try:
            meta = self.client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount)
        except hvac.exceptions.InvalidPath:
            return 0
        return int(meta["data"]["current_version"])

    def latest(self, path: str) -> dict[str, Any] | None:
        """The latest version's raw fields (of a journal record, say), or None."""
        version = self.current_version(path)
        return self.version_data(path, version) if version else None

    def created_at(self, path: str, version: int) -> datetime:
        """The created_time of one version, read directly."""
        if self.client is None:
            return self.memory._memory.entries[path].created[version - 1]
        meta = self.client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount)
        return datetime.fromisoformat(meta["data"]["versions"][str(version)]["created_time"])

    def custom_metadata(self, path: str) -> dict[str, str]:
        if self.client is None:
            return self.memory.metadata(path)
        meta = self.client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount)
        return dict(meta["data"].get("custom_metadata") or {})

    def exists(self, path: str) -> bool:
        """Whether any trace of `path` is left (metadata included, not only a live version)."""
        if self.client is None:
            return path in self.memory._memory.entries
        try:
            self.client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount)
        except hvac.exceptions.InvalidPath:
            return False
        return True

    def soft_delete(self, path: str) -> None:
        """`kv delete`: the latest version goes, the metadata stays."""
        if self.client is None:
            self.memory.delete_latest(path)
        else:
            self.client.secrets.kv.v2.delete_latest_version_of_secret(path, mount_point=self.mount)

    def records(self) -> list[str]:
        """The journal records there are (their paths), listed directly."""
        if self.client is None:
            return self.memory.journal_records()
        root = self.settings.pending_root
        try:
            keys = self.client.secrets.kv.v2.list_secrets(root, mount_point=self.mount)
        except hvac.exceptions.InvalidPath:
            return []
        return sorted(f"{root}/{k}" for k in keys["data"]["keys"])

    def candidates_in(self, name: str) -> dict[str, dict[str, Any]]:
        """The candidates journal record `name` lists, raw ({} when it is gone)."""
        data = self.latest(name)
        return dict((data or {}).get("candidates") or {})


@pytest.fixture(params=["memory", pytest.param("vault", marks=pytest.mark.integration)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        settings = VaultSettings(prefix="rotate-test-mem")
        found = Backend(MemoryStore(settings), settings)
    else:
        found = Backend(
            request.getfixturevalue("vault_store"),
            request.getfixturevalue("vault_settings"),
            request.getfixturevalue("openbao_client"),
        )
    yield found
    # The async clients belong to this test's event loop: close them on it.
    for store in (found.store, *found.others):
        await store.aclose()
    for store in found.others:
        store.close()


def fields(credential: Credential, base: int | None = None) -> dict[str, Any]:
    """A secret's fields; with `base`, a journal entry's (base_version 0: no version yet)."""
    data: dict[str, Any] = {
        "username": credential.username,
        "password": credential.password.reveal(),
    }
    if credential.domain:
        data["domain"] = credential.domain
    if base is not None:
        data["base_version"] = base
    return data


def candidate(
    credential: Credential, base: int | None = None, run: str = "run-1"
) -> PendingCandidate:
    return PendingCandidate(credential, run, STAGED_AT, base)


def _clean(exc: BaseException, *secrets: str) -> None:
    """Neither the message nor the repr of `exc` carries any of the secrets."""
    for secret in secrets or PASSWORDS:
        assert secret not in str(exc)
        assert secret not in repr(exc)


# --- reading ------------------------------------------------------------------------------


async def test_absent_secret_has_no_state(backend: Backend) -> None:
    path = backend.path("nothing")
    state = await backend.store.read_state(path)
    assert (state.path, state.current_version, state.rotated_at) == (path, None, None)
    assert (state.pending, state.last_failure_at) == (None, None)
    assert await backend.store.read_current(path) is None
    assert await backend.store.pending() == {}


async def test_rotated_at_falls_back_to_the_version_time(backend: Backend) -> None:
    path = backend.path("manual")
    backend.seed(path, fields(OLD), {"owner": "someone"})

    state = await backend.store.read_state(path)

    assert state.current_version == 1
    assert state.rotated_at == backend.created_at(path, 1)
    assert abs(datetime.now(UTC) - state.rotated_at) < timedelta(minutes=1)
    assert await backend.store.read_current(path) == OLD


async def test_a_secret_that_is_no_credential_is_refused_without_its_values(
    backend: Backend,
) -> None:
    path = backend.path("not-a-credential")
    backend.seed(path, {"user": "admin", "pass": "leaky-Passw0rd"})
    with pytest.raises(StoreError, match="lacks a string 'username' or 'password'") as info:
        await backend.store.read_current(path)
    assert backend.where(path) in str(info.value)
    _clean(info.value, "leaky-Passw0rd")


async def test_a_soft_deleted_secret_reads_as_no_current_credential(backend: Backend) -> None:
    path = backend.path("soft-deleted")
    backend.seed(path, fields(OLD))
    backend.soft_delete(path)
    assert await backend.store.read_current(path) is None
    assert (await backend.store.read_state(path)).current_version == 1  # metadata stays


# --- staging --------------------------------------------------------------------------------


async def test_stage_writes_one_journal_record_and_leaves_current_alone(backend: Backend) -> None:
    store = backend.store
    a, b = backend.path("staged"), backend.path("brand-new")
    backend.seed(a, fields(OLD))
    before = store.kv.requests

    name = await store.stage("run-1", {a: candidate(NEW, 1), b: candidate(NEWER)})

    assert store.kv.requests - before == 1  # one write for the whole batch
    assert name.startswith(f"{backend.settings.pending_root}/run-1-")
    assert backend.records() == [name]
    record = backend.latest(name)
    assert record is not None
    assert set(record) == {"run_id", "staged_at", "candidates"}
    assert record["run_id"] == "run-1"
    assert datetime.fromisoformat(record["staged_at"]) == STAGED_AT
    assert record["candidates"] == {a: fields(NEW, 1), b: fields(NEWER, 0)}
    # Readers of the current value still get the old password (invariant 2), and a path with
    # no secret yet gets none: candidates live apart from the secrets.
    assert await store.read_current(a) == OLD
    assert backend.version_data(a, 2) is None
    assert await store.read_current(b) is None
    assert not backend.exists(b)
    # This store and the next run's both see the candidates, as they were staged.
    expected = {a: candidate(NEW, 1), b: candidate(NEWER)}
    assert await store.pending() == expected
    assert await backend.fresh().pending() == expected


async def test_each_batch_gets_a_record_of_its_own(backend: Backend) -> None:
    store = backend.store
    first = await store.stage("run-1", {backend.path("a"): candidate(NEW)})
    second = await store.stage("run-1", {backend.path("b"): candidate(NEW)})
    assert first != second
    assert backend.records() == sorted([first, second])
    assert set(await backend.fresh().pending()) == {backend.path("a"), backend.path("b")}


async def test_staging_a_path_with_a_candidate_is_a_conflict_and_keeps_the_first(
    backend: Backend,
) -> None:
    store = backend.store
    a, c = backend.path("twice"), backend.path("other")
    name = await store.stage("run-1", {a: candidate(NEW)})

    with pytest.raises(PendingConflict) as info:
        await store.stage("run-2", {c: candidate(NEWER, run="run-2"), a: candidate(NEWER)})

    assert str(info.value) == f"{backend.where(a)} already has a candidate in a journal record"
    _clean(info.value)
    assert backend.records() == [name]  # nothing of the refused batch was written
    assert await store.pending() == {a: candidate(NEW)}
    # The next run, having read the journal, refuses it the same way.
    later = backend.fresh()
    assert (await later.pending())[a].credential == NEW
    with pytest.raises(PendingConflict):
        await later.stage("run-3", {a: candidate(NEWER, run="run-3")})
    assert backend.candidates_in(name) == {a: fields(NEW, 0)}


async def test_a_soft_deleted_journal_record_holds_no_candidate(backend: Backend) -> None:
    a = backend.path("leftover")
    name = await backend.store.stage("run-1", {a: candidate(NEW)})
    backend.soft_delete(name)

    later = backend.fresh()
    assert await later.pending() == {}
    await later.stage("run-2", {a: candidate(NEWER, run="run-2")})
    assert await backend.fresh().pending() == {a: candidate(NEWER, run="run-2")}


# --- promoting ------------------------------------------------------------------------------


async def test_promote_writes_one_version_and_its_time_is_the_rotation_time(
    backend: Backend,
) -> None:
    store = backend.store
    path = backend.path("promoted")
    backend.seed(path, fields(OLD), {"owner": "it-ops"})
    await store.stage("run-1", {path: candidate(NEW, 1)})
    before = store.kv.requests

    assert await store.promote(path, NEW, 1) == 2

    assert store.kv.requests - before == 1  # one check-and-set write, no metadata write
    assert backend.version_data(path, 1) == fields(OLD)  # history kept
    assert backend.version_data(path, 2) == fields(NEW)
    assert backend.custom_metadata(path) == {"owner": "it-ops"}  # nothing of ours
    assert await store.read_current(path) == NEW
    state = await store.read_state(path)
    assert (state.current_version, state.pending) == (2, None)
    assert state.rotated_at == backend.created_at(path, 2)


async def test_a_first_promotion_creates_the_secret(backend: Backend) -> None:
    path = backend.path("first")
    await backend.store.stage("run-1", {path: candidate(NEW)})
    assert await backend.store.promote(path, NEW, None) == 1
    assert backend.version_data(path, 1) == fields(NEW)
    assert backend.custom_metadata(path) == {}
    state = await backend.store.read_state(path)
    assert (state.current_version, state.rotated_at) == (1, backend.created_at(path, 1))


async def test_promote_with_a_stale_version_fails_and_keeps_the_candidate(
    backend: Backend,
) -> None:
    store = backend.store
    path = backend.path("stale")
    backend.seed(path, fields(OLD))
    name = await store.stage("run-1", {path: candidate(NEW, 1)})
    backend.seed(path, fields(OTHER))  # someone else writes version 2 meanwhile

    for stale in (1, None, 7):
        with pytest.raises(StoreError, match="changed during the rotation") as info:
            await store.promote(path, NEW, stale)
        expected = stale or "no current version"
        assert str(info.value) == (
            f"current version of {backend.where(path)} changed during the rotation "
            f"(expected {expected})"
        )
        assert not isinstance(info.value, CasConflict)
        _clean(info.value)

    assert await store.read_current(path) == OTHER
    assert backend.version_data(path, 3) is None
    # The candidate stays, for this run's settle and for the next run.
    await store.settle()
    assert backend.candidates_in(name) == {path: fields(NEW, 1)}
    later = backend.fresh()
    pending = await later.pending()
    assert pending[path].credential == NEW
    assert (await later.read_state(path, pending[path])).pending == pending[path]


async def test_promote_retried_after_a_lost_answer_returns_the_same_version(
    backend: Backend,
) -> None:
    store = backend.store
    path = backend.path("retried")
    await store.stage("run-1", {path: candidate(NEW)})
    assert await store.promote(path, NEW, None) == 1

    # Same call again, as if the first answer never arrived: it finds its own write.
    assert await store.promote(path, NEW, None) == 1
    assert backend.version_data(path, 2) is None

    assert await store.promote(path, NEWER, 1) == 2
    assert await store.promote(path, NEWER, 1) == 2
    assert backend.version_data(path, 3) is None
    # A different password at the version it expected to write is no retry: a conflict.
    with pytest.raises(StoreError, match="changed during the rotation"):
        await store.promote(path, OTHER, 1)


async def test_an_adopted_password_has_no_rotation_time_until_the_next_promotion(
    backend: Backend,
) -> None:
    store = backend.store
    path = backend.path("adopted")

    version = await store.promote(path, OLD, None, rotated_at=None)

    assert version == 1
    assert backend.custom_metadata(path)["adopted_version"] == "1"
    state = await store.read_state(path)
    assert state.current_version == 1
    assert state.rotated_at is None  # its age is unknown, so it is due
    # A retry after a lost answer is still that same adopted version.
    assert await store.promote(path, OLD, None, rotated_at=None) == 1
    assert (await store.read_state(path)).rotated_at is None

    assert await store.promote(path, NEW, 1) == 2
    state = await store.read_state(path)
    assert state.rotated_at == backend.created_at(path, 2)


async def test_an_imported_rotation_time_applies_to_its_version_only(backend: Backend) -> None:
    store = backend.store
    path = backend.path("imported")
    backend.seed(path, fields(OLD), {"owner": "it-ops"})
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    assert await store.promote(path, NEW, 1, rotated_at=when) == 2

    assert (await store.read_state(path)).rotated_at == when
    meta = backend.custom_metadata(path)
    assert meta["owner"] == "it-ops"  # a key a person put on the secret survives ours
    assert meta["rotated_version"] == "2"
    assert datetime.fromisoformat(meta["rotated_at"]) == when
    # The next version, ours or a person's, is dated by its own creation again.
    assert await store.promote(path, NEWER, 2) == 3
    assert (await store.read_state(path)).rotated_at == backend.created_at(path, 3)
    backend.seed(path, fields(OTHER))
    assert (await store.read_state(path)).rotated_at == backend.created_at(path, 4)
    # A naive datetime is taken as UTC.
    assert await store.promote(path, NEW, 4, rotated_at=datetime(2026, 4, 1, 8, 0)) == 5
    assert (await store.read_state(path)).rotated_at == datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


async def test_domain_is_stored_only_when_there_is_one(backend: Backend) -> None:
    store = backend.store
    path = backend.path("domain")
    await store.stage("run-1", {path: candidate(OLD)})
    await store.promote(path, OLD, None)
    await store.settle()  # as the run does once its batch is done
    await store.stage("run-2", {path: candidate(NEW, 1, run="run-2")})
    await store.promote(path, NEW, 1)

    assert "domain" not in (backend.version_data(path, 1) or {})
    assert (backend.version_data(path, 2) or {})["domain"] == "CORP"
    assert await store.read_current(path) == NEW


# --- settling and discarding ----------------------------------------------------------------


async def test_settle_rewrites_the_record_without_the_promoted_then_deletes_it(
    backend: Backend,
) -> None:
    store = backend.store
    a, b, c = backend.path("a"), backend.path("b"), backend.path("c")
    name = await store.stage("run-1", {a: candidate(NEW), b: candidate(NEW), c: candidate(NEW)})

    await store.promote(a, NEW, None)
    assert set(backend.candidates_in(name)) == {a, b, c}  # promotion alone leaves it listed
    await store.settle(name)

    assert backend.candidates_in(name) == {b: fields(NEW, 0), c: fields(NEW, 0)}
    assert backend.current_version(name) == 2  # rewritten, not replaced
    assert set(await backend.fresh().pending()) == {b, c}

    await store.discard(b)
    await store.promote(c, NEW, None)
    await store.settle(name)

    assert not backend.exists(name)  # the record and all its versions
    assert backend.records() == []
    assert await backend.fresh().pending() == {}
    await store.settle(name)  # settled already: nothing to do, not an error
    await store.settle()


async def test_reading_the_journal_again_keeps_what_this_store_settled(backend: Backend) -> None:
    store = backend.store
    a, b, c = backend.path("a"), backend.path("b"), backend.path("c")
    name = await store.stage("run-1", {a: candidate(NEW), b: candidate(NEW), c: candidate(NEW)})
    await store.discard(b)  # rewrites the record at once
    await store.promote(a, NEW, None)  # still listed there until settled
    assert set(backend.candidates_in(name)) == {a, c}

    assert await store.pending() == {c: candidate(NEW)}  # a promoted, b discarded: not pending
    await store.settle(name)

    assert backend.candidates_in(name) == {c: fields(NEW, 0)}


async def test_settle_without_a_name_tidies_every_touched_record(backend: Backend) -> None:
    store = backend.store
    a, b, c, d = (backend.path(n) for n in "abcd")
    first = await store.stage("run-1", {a: candidate(NEW)})
    second = await store.stage("run-1", {b: candidate(NEW), c: candidate(NEW)})
    third = await store.stage("run-1", {d: candidate(NEW)})
    await store.promote(a, NEW, None)
    await store.promote(b, NEW, None)

    await store.settle()

    assert not backend.exists(first)
    assert backend.candidates_in(second) == {c: fields(NEW, 0)}
    assert backend.current_version(third) == 1  # nothing to settle there: left alone
    assert set(await backend.fresh().pending()) == {c, d}


async def test_discard_removes_the_candidate_at_once(backend: Backend) -> None:
    store = backend.store
    a, b = backend.path("discarded"), backend.path("kept")
    backend.seed(a, fields(OLD))
    name = await store.stage("run-1", {a: candidate(NEW, 1), b: candidate(NEWER)})

    await store.discard(a)

    assert backend.candidates_in(name) == {b: fields(NEWER, 0)}  # no settle needed
    assert set(await backend.fresh().pending()) == {b}
    assert await store.read_current(a) == OLD
    assert backend.current_version(a) == 1
    before = store.kv.requests
    await store.discard(a)  # nothing left: a no-op, not an error
    await store.discard(backend.path("never-staged"))
    assert store.kv.requests == before

    await store.discard(b)
    assert not backend.exists(name)
    await store.settle(name)  # all discarded and the record gone: nothing to do
    assert await backend.fresh().pending() == {}
    # The path may be staged again.
    await store.stage("run-1", {a: candidate(NEWER, 1)})
    assert (await backend.fresh().pending())[a].credential == NEWER


# --- what the next run finds --------------------------------------------------------------


async def test_a_new_run_recognises_a_promoted_but_unsettled_candidate(backend: Backend) -> None:
    a, b = backend.path("promoted"), backend.path("unsent")
    backend.seed(a, fields(OLD))
    backend.seed(b, fields(OLD))
    name = await backend.store.stage("run-1", {a: candidate(NEW, 1), b: candidate(NEWER, 1)})
    assert await backend.store.promote(a, NEW, 1) == 2
    # ... and the run stops here, before it settles the record.

    later = backend.fresh()
    pending = await later.pending()
    assert set(pending) == {a, b}
    state_a = await later.read_state(a, pending[a])
    state_b = await later.read_state(b, pending[b])

    assert state_a.pending is None  # it is the current version already
    assert state_a.current_version == 2
    assert state_a.rotated_at == backend.created_at(a, 2)
    assert state_b.pending == pending[b] == candidate(NEWER, 1)
    assert state_b.current_version == 1

    await later.settle()
    assert backend.candidates_in(name) == {b: fields(NEWER, 1)}
    assert set(await backend.fresh().pending()) == {b}


async def test_no_new_candidate_beside_one_promoted_but_still_listed(backend: Backend) -> None:
    """Two records naming one path would stop every later run: the listed one goes first."""
    a = backend.path("promoted")
    backend.seed(a, fields(OLD))
    name = await backend.store.stage("run-1", {a: candidate(NEW, 1)})
    assert await backend.store.promote(a, NEW, 1) == 2  # ... and the run stops here
    later = backend.fresh()
    pending = await later.pending()
    await later.read_state(a, pending[a])  # recognised as promoted: settled, still listed
    with pytest.raises(PendingConflict):
        await later.stage("run-2", {a: candidate(NEWER, 2, "run-2")})
    await later.settle()
    assert backend.candidates_in(name) == {}
    await later.stage("run-2", {a: candidate(NEWER, 2, "run-2")})
    assert set(await backend.fresh().pending()) == {a}


async def test_a_candidate_whose_secret_moved_to_another_password_stays_pending(
    backend: Backend,
) -> None:
    path = backend.path("moved")
    backend.seed(path, fields(OLD))
    name = await backend.store.stage("run-1", {path: candidate(NEW, 1)})
    backend.seed(path, fields(OTHER))  # a person wrote version 2, not our candidate

    later = backend.fresh()
    pending = await later.pending()
    state = await later.read_state(path, pending[path])

    assert state.pending == pending[path] == candidate(NEW, 1)
    assert state.current_version == 2
    await later.settle()
    assert backend.current_version(name) == 1  # untouched
    assert backend.candidates_in(name) == {path: fields(NEW, 1)}


async def test_two_journal_records_naming_one_path_are_refused(backend: Backend) -> None:
    a, b = backend.path("doubled"), backend.path("single")
    first = await backend.store.stage("run-1", {a: candidate(NEW)})
    second = f"{backend.settings.pending_root}/run-2-00001"
    backend.seed(
        second,
        {
            "run_id": "run-2",
            "staged_at": STAGED_AT.isoformat(),
            "candidates": {a: fields(NEWER, 0), b: fields(NEWER, 0)},
        },
    )

    later = backend.fresh()
    pending = await later.pending()

    assert pending == {b: candidate(NEWER, run="run-2")}  # the other entry is unaffected
    with pytest.raises(StoreError, match="two pending candidates") as info:
        await later.read_state(a)
    message = str(info.value)
    assert backend.where(a) in message
    assert backend.where(first) in message
    assert backend.where(second) in message
    assert "delete the other record's entry" in message
    _clean(info.value)
    with pytest.raises(PendingConflict):
        await later.stage("run-3", {a: candidate(OTHER, run="run-3")})
    assert (await later.read_state(b, pending[b])).pending == pending[b]


# --- failures, listing, paths -------------------------------------------------------------


async def test_failures_are_noted_in_metadata_even_before_any_rotation(backend: Backend) -> None:
    store = backend.store
    never = backend.path("never")
    when = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)

    await store.record_failure(never, "run-1", when)

    state = await store.read_state(never)
    assert (state.last_failure_at, state.current_version, state.rotated_at) == (when, None, None)
    meta = backend.custom_metadata(never)
    assert meta["last_failure_run"] == "run-1"
    assert datetime.fromisoformat(meta["last_failure_at"]) == when
    # A first rotation still works on a path that has only failure metadata.
    await store.stage("run-2", {never: candidate(NEW, run="run-2")})
    assert await store.promote(never, NEW, None) == 1
    after = await store.read_state(never)
    assert after.last_failure_at == when
    assert after.rotated_at == backend.created_at(never, 1)
    # A later failure replaces the note; a person's keys stay.
    backend.seed(never, fields(NEW), {"owner": "it-ops"})
    await store.record_failure(never, "run-3", when + timedelta(days=1))
    assert (await store.read_state(never)).last_failure_at == when + timedelta(days=1)
    meta = backend.custom_metadata(never)
    assert (meta["owner"], meta["last_failure_run"]) == ("it-ops", "run-3")


async def test_list_paths_leaves_out_pending_and_lease_areas(backend: Backend) -> None:
    store = backend.store
    prefix = backend.settings.prefix
    a, b = backend.path("a"), backend.path("b")
    deep = f"{prefix}/other/deeper/still/x"
    await store.promote(a, OLD, None)
    await store.promote(b, OLD, None)
    backend.seed(deep, fields(OLD))
    await store.stage("run-1", {backend.path("c"): candidate(NEW)})  # pending only: no secret
    store.write_record(f"{backend.settings.lease_root}/default", {"run_id": "r"}, 0)
    failed = backend.path("failed-only")
    await store.record_failure(failed, "run-1", datetime.now(UTC))  # metadata, as Vault lists

    listed = await store.list_paths(prefix)

    assert listed == sorted([a, b, deep, failed])
    assert await store.list_paths(f"{prefix}/other/") == [deep]
    assert await store.list_paths(f"{prefix}/nothing-here") == []


@pytest.mark.parametrize("bad", ["", "/lead", "trail/", "a//b", "a/../b", "a/./b", "."])
async def test_malformed_paths_are_refused_by_every_data_plane_method(
    backend: Backend, bad: str
) -> None:
    store = backend.store
    good = backend.path("good")
    calls = {
        "read_state": lambda: store.read_state(bad),
        "read_current": lambda: store.read_current(bad),
        "stage": lambda: store.stage("run-1", {good: candidate(NEW), bad: candidate(NEW)}),
        "promote": lambda: store.promote(bad, NEW, None),
        "discard": lambda: store.discard(good, bad),
        "record_failure": lambda: store.record_failure(bad, "run-1", datetime.now(UTC)),
    }
    for method, call in calls.items():
        with pytest.raises(StoreError, match="invalid secret path") as info:
            await call()
        assert not isinstance(info.value, PendingConflict), method
        _clean(info.value)
    assert backend.records() == []  # not even the good half of the batch
    assert await store.list_paths(backend.settings.prefix) == []


async def test_paths_inside_the_pending_area_are_refused(backend: Backend) -> None:
    store = backend.store
    root = backend.settings.pending_root
    for inside in (root, f"{root}/x", f"{root}/run-1-00001"):
        calls = (
            lambda p=inside: store.read_state(p),
            lambda p=inside: store.read_current(p),
            lambda p=inside: store.stage("run-1", {p: candidate(NEW)}),
            lambda p=inside: store.promote(p, NEW, None),
            lambda p=inside: store.discard(p),
            lambda p=inside: store.record_failure(p, "run-1", datetime.now(UTC)),
        )
        for call in calls:
            with pytest.raises(StoreError, match="pending area"):
                await call()
    assert backend.records() == []


# --- control plane --------------------------------------------------------------------------


def test_read_field(backend: Backend) -> None:
    path = f"{backend.settings.prefix}/gateways/gw1"
    backend.seed(path, {"password": "gw-secret", "note": "x"})

    assert backend.store.read_field(path, "password") == "gw-secret"
    with pytest.raises(StoreError, match="no field 'missing'") as info:
        backend.store.read_field(path, "missing")
    _clean(info.value, "gw-secret")
    with pytest.raises(StoreError, match="no secret at"):
        backend.store.read_field(f"{backend.settings.prefix}/gateways/none", "password")


def test_records_check_and_set(backend: Backend) -> None:
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
