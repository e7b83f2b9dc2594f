"""MemoryStore's test helpers: inspection, fault injection, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from rotate.errors import CasConflict, PendingConflict, StoreError, StoreUnavailable
from rotate.models import Credential, PendingCandidate, Secret
from rotate.settings import VaultSettings
from rotate.stores.base import SecretStore
from rotate.stores.kv import KV
from rotate.stores.memory import MemoryStore

A = Credential("admin", Secret("pw-A-1234567"))
B = Credential("admin", Secret("pw-B-1234567"), "CORP")
WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def _candidate(cred: Credential, base: int | None = None, run: str = "run-1") -> PendingCandidate:
    return PendingCandidate(cred, run, WHEN, base)


async def _rotate(store: MemoryStore, path: str, cred: Credential, expected: int | None) -> int:
    name = await store.stage("run-1", {path: _candidate(cred, expected)})
    version = await store.promote(path, cred, expected)
    await store.settle(name)
    return version


def test_it_satisfies_the_protocol() -> None:
    store: SecretStore = MemoryStore()
    assert store.check() == "memory"


async def test_inspection_helpers() -> None:
    store = MemoryStore(VaultSettings(prefix="p"))
    await _rotate(store, "p/a", A, None)
    await _rotate(store, "p/a", B, 1)
    name = await store.stage("run-2", {"p/b": _candidate(A), "p/c": _candidate(B)})

    assert store.versions("p/a") == [A, B]
    assert store.pending_paths() == ["p/b", "p/c"]
    assert store.candidates() == {"p/b": A, "p/c": B}
    assert store.journal_records() == [name]
    assert name.startswith("p/_pending/run-2-")
    assert store.metadata("p/a") == {}  # a plain promotion writes no metadata
    assert store.metadata("p/none") == {}
    assert store.version_data("p/a", 1) == {"username": "admin", "password": "pw-A-1234567"}
    assert store.version_data("p/a", 3) is None
    assert store.version_data(name, 1) == {
        "run_id": "run-2",
        "staged_at": WHEN.isoformat(),
        "candidates": {
            "p/b": {"username": "admin", "password": "pw-A-1234567", "base_version": 0},
            "p/c": {
                "username": "admin",
                "password": "pw-B-1234567",
                "domain": "CORP",
                "base_version": 0,
            },
        },
    }
    assert store.calls("stage") == 3
    assert store.calls("promote") == 2
    assert store.calls("settle") == 2
    assert store.requests > 0

    await store.record_failure("p/a", "run-3", WHEN)
    assert store.metadata("p/a") == {
        "last_failure_at": WHEN.isoformat(),
        "last_failure_run": "run-3",
    }


async def test_put_and_delete_latest_act_like_a_person() -> None:
    store = MemoryStore()
    assert store.put("x/a", {"username": "u", "password": "p"}, {"owner": "me"}) == 1
    assert store.put("x/a", {"username": "u", "password": "q"}) == 2
    assert store.metadata("x/a") == {"owner": "me"}
    store.delete_latest("x/a")
    assert await store.read_current("x/a") is None
    assert store.versions("x/a") == [Credential("u", Secret("p"))]
    assert (await store.read_state("x/a")).current_version == 2


async def test_journal_records_live_under_the_configured_root() -> None:
    store = MemoryStore(VaultSettings(prefix="p", pending_prefix="staging"))
    name = await store.stage("run-1", {"p/a": _candidate(A)})
    assert name.startswith("staging/run-1-")
    assert store.journal_records() == [name]
    assert set((store.version_data(name, 1) or {})["candidates"]) == {"p/a"}
    assert store.pending_paths() == ["p/a"]
    assert await store.list_paths("p") == []


async def test_clock_dates_the_versions() -> None:
    store = MemoryStore(clock=lambda: WHEN)
    store.put("x/a", {"username": "u", "password": "p"})
    assert (await store.read_state("x/a")).rotated_at == WHEN

    await store.stage("run-1", {"x/a": PendingCandidate(A, "run-1", datetime.now(UTC), 1)})
    staged = (await store.pending())["x/a"]
    assert staged.staged_at != WHEN  # the candidate's own time, not the clock's
    assert await store.promote("x/a", A, 1) == 2
    state = await store.read_state("x/a", staged)
    assert (state.rotated_at, state.pending) == (WHEN, None)


async def test_generate_password_uses_the_registered_length() -> None:
    store = MemoryStore()
    store.password_policies["corp"] = 20
    assert len(await store.generate_password("corp")) == 20
    with pytest.raises(StoreError, match="no password policy 'other'"):
        await store.generate_password("other")


# --- fault injection ----------------------------------------------------------------------


async def test_fail_next_fails_exactly_n_calls_without_effect() -> None:
    store = MemoryStore()
    store.fail_next("stage", times=2)

    for _ in range(2):
        with pytest.raises(StoreError, match="injected failure in stage"):
            await store.stage("run-1", {"x/a": _candidate(A)})
        assert store.journal_records() == []
    await store.stage("run-1", {"x/a": _candidate(A)})

    assert store.pending_paths() == ["x/a"]
    assert store.calls("stage") == 3


async def test_fail_next_after_takes_effect_then_raises() -> None:
    store = MemoryStore()
    name = await store.stage("run-1", {"x/a": _candidate(A)})
    store.fail_next("promote", after=True)

    with pytest.raises(StoreError):
        await store.promote("x/a", A, None)

    # The answer was lost, not the write: the version exists.
    assert store.versions("x/a") == [A]
    # A retry of the same promotion converges instead of conflicting, and the candidate
    # leaves its record when it is settled.
    assert await store.promote("x/a", A, None) == 1
    assert store.pending_paths() == ["x/a"]
    await store.settle(name)
    assert store.pending_paths() == []
    assert store.journal_records() == []


async def test_a_stage_whose_answer_was_lost_is_found_by_the_next_run() -> None:
    store = MemoryStore()
    store.put("x/a", {"username": "admin", "password": "old"})
    store.fail_next("stage", after=True)

    with pytest.raises(StoreError):
        await store.stage("run-1", {"x/a": _candidate(A, 1)})

    assert store.pending_paths() == ["x/a"]
    later = MemoryStore()
    later._memory = store._memory
    later.kv = later._memory
    pending = await later.pending()
    assert pending == {"x/a": _candidate(A, 1)}
    assert (await later.read_state("x/a", pending["x/a"])).pending == pending["x/a"]


async def test_a_failed_settle_leaves_the_record_for_the_next_one() -> None:
    store = MemoryStore()
    name = await store.stage("run-1", {"x/a": _candidate(A), "x/b": _candidate(B)})
    await store.promote("x/a", A, None)
    store.fail_next("settle")

    with pytest.raises(StoreError, match="injected failure in settle"):
        await store.settle(name)
    assert store.pending_paths() == ["x/a", "x/b"]

    await store.settle()
    assert store.pending_paths() == ["x/b"]


async def test_fail_next_with_a_given_error() -> None:
    store = MemoryStore()
    store.fail_next("check", error=StoreUnavailable("Vault at x is sealed"))
    with pytest.raises(StoreUnavailable, match="sealed"):
        store.check()
    assert store.check() == "memory"

    store.fail_next("read_state", error=StoreError("Vault unreachable: test"))
    with pytest.raises(StoreError, match="unreachable"):
        await store.read_state("x/a")
    assert (await store.read_state("x/a")).current_version is None


def test_fail_next_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="unknown store method"):
        MemoryStore().fail_next("promte")
    with pytest.raises(ValueError, match="unknown store method"):
        MemoryStore().fail_next("list_pending")  # gone with the journal records
    with pytest.raises(ValueError, match="at least 1"):
        MemoryStore().fail_next("promote", times=0)


# --- concurrency --------------------------------------------------------------------------


async def test_concurrent_rotations_lose_nothing() -> None:
    store = MemoryStore()

    async def work(i: int) -> int:
        path = f"x/{i % 10}"
        cred = Credential("u", Secret(f"pw-{i}"))
        while True:
            state = await store.read_state(path)
            try:
                name = await store.stage(
                    f"run-{i}", {path: _candidate(cred, state.current_version, f"run-{i}")}
                )
                break
            except PendingConflict:
                await asyncio.sleep(0)  # another task's candidate is there; wait for it to go
        await asyncio.sleep(0)
        version = await store.promote(path, cred, state.current_version)
        await asyncio.sleep(0)
        await store.settle(name)
        return version

    versions = await asyncio.gather(*(work(i) for i in range(200)))

    assert store.journal_records() == []
    assert sum(len(store.versions(f"x/{k}")) for k in range(10)) == 200
    assert sorted(versions) == sorted(v for k in range(10) for v in range(1, 21))


class _HeldJournal:
    """The store's KV, with journal-record writes held until `release` is set."""

    def __init__(self, kv: KV, root: str) -> None:
        self._kv = kv
        self._root = root + "/"
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    async def write(
        self, path: str, data: Mapping[str, Any], cas: int, secrets: tuple[str, ...] = ()
    ) -> int:
        if path.startswith(self._root):
            self.entered.set()
            await self.release.wait()
        return await self._kv.write(path, data, cas, secrets)


async def test_a_promotion_during_a_rewrite_of_its_record_is_still_settled() -> None:
    """Items of one batch finish side by side: one is discarded (its record is rewritten)
    while another is promoted. The promoted one must leave the record at the next settle."""
    store = MemoryStore()
    name = await store.stage("run-1", {"x/a": _candidate(A), "x/b": _candidate(B)})
    held = _HeldJournal(store.kv, VaultSettings().pending_root)
    store.kv = held

    discarding = asyncio.create_task(store.discard("x/a"))
    await asyncio.wait_for(held.entered.wait(), 5)  # the rewrite without x/a is in flight ...
    assert await store.promote("x/b", B, None) == 1  # ... when x/b is promoted
    held.release.set()
    await discarding

    assert store.candidates() == {"x/b": B}  # the rewrite written: x/a gone
    await store.settle(name)
    assert store.journal_records() == []


def test_records_from_many_threads_lose_no_update() -> None:
    store = MemoryStore()
    path = "x/_lease/counter"

    def bump(_: int) -> None:
        for _ in range(25):
            while True:
                found = store.read_record(path)
                data, version = found if found else ({"n": "0"}, 0)
                try:
                    store.write_record(path, {"n": str(int(data["n"]) + 1)}, version)
                    break
                except CasConflict:
                    continue

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(bump, range(8)))

    assert store.read_record(path) == ({"n": "200"}, 200)


async def test_aclose_and_close() -> None:
    store = MemoryStore()
    await store.aclose()
    assert not store.closed
    store.close()
    assert store.closed
