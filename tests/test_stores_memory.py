"""MemoryStore's test helpers: inspection, fault injection, thread safety."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from rotate.errors import StoreError, StoreUnavailable
from rotate.models import Credential, Secret
from rotate.settings import VaultSettings
from rotate.stores.base import SecretStore
from rotate.stores.memory import MemoryStore

A = Credential("admin", Secret("pw-A-1234567"))
B = Credential("admin", Secret("pw-B-1234567"), "CORP")
WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def _rotate(store: MemoryStore, path: str, cred: Credential, expected: int | None) -> int:
    store.stage(path, cred, "run-1")
    return store.promote(path, cred, expected, "run-1", WHEN)


def test_it_satisfies_the_protocol() -> None:
    store: SecretStore = MemoryStore()
    assert store.check() == "memory"


def test_inspection_helpers() -> None:
    store = MemoryStore(VaultSettings(prefix="p"))
    _rotate(store, "p/a", A, None)
    _rotate(store, "p/a", B, 1)
    store.stage("p/b", A, "run-2")

    assert store.versions("p/a") == [A, B]
    assert store.pending_paths() == ["p/b"]
    assert store.metadata("p/a") == {
        "rotated_at": WHEN.isoformat(),
        "run_id": "run-1",
        "rotated_by": "rotate",
    }
    assert store.metadata("p/none") == {}
    assert store.version_data("p/a", 1) == {"username": "admin", "password": "pw-A-1234567"}
    assert store.version_data("p/a", 3) is None
    assert store.calls("stage") == 3
    assert store.calls("promote") == 2


def test_pending_lives_under_the_configured_root() -> None:
    store = MemoryStore(VaultSettings(prefix="p", pending_prefix="staging"))
    store.stage("p/a", A, "run-1")
    assert store.version_data("staging/p/a", 1) is not None
    assert store.pending_paths() == ["p/a"]


def test_clock_sets_staged_at_and_version_time() -> None:
    store = MemoryStore(clock=lambda: WHEN)
    store.put("x/a", {"username": "u", "password": "p"})
    store.stage("x/a", A, "run-1")
    state = store.read_state("x/a")
    assert state.rotated_at == WHEN
    assert state.pending is not None
    assert state.pending.staged_at == WHEN


def test_fail_next_fails_exactly_n_calls_without_effect() -> None:
    store = MemoryStore()
    store.fail_next("stage", times=2)

    for _ in range(2):
        with pytest.raises(StoreError, match="injected failure in stage"):
            store.stage("x/a", A, "run-1")
        assert store.pending_paths() == []
    store.stage("x/a", A, "run-1")

    assert store.pending_paths() == ["x/a"]
    assert store.calls("stage") == 3


def test_fail_next_after_takes_effect_then_raises() -> None:
    store = MemoryStore()
    store.stage("x/a", A, "run-1")
    store.fail_next("promote", after=True)

    with pytest.raises(StoreError):
        store.promote("x/a", A, None, "run-1", WHEN)

    # The answer was lost, not the write: the version exists and the candidate is gone.
    assert store.versions("x/a") == [A]
    assert store.pending_paths() == []
    # A retry of the same promotion converges instead of conflicting.
    assert store.promote("x/a", A, None, "run-1", WHEN) == 1


def test_fail_next_with_a_given_error() -> None:
    store = MemoryStore()
    store.fail_next("check", error=StoreUnavailable("Vault at x is sealed"))
    with pytest.raises(StoreUnavailable, match="sealed"):
        store.check()
    assert store.check() == "memory"


def test_fail_next_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="unknown store method"):
        MemoryStore().fail_next("promte")
    with pytest.raises(ValueError, match="at least 1"):
        MemoryStore().fail_next("promote", times=0)


def test_concurrent_rotations_lose_nothing() -> None:
    store = MemoryStore()

    def work(i: int) -> int:
        path = f"x/{i % 10}"
        cred = Credential("u", Secret(f"pw-{i}"))
        while True:
            try:
                store.stage(path, cred, f"run-{i}")
                break
            except StoreError:
                continue  # another thread's candidate is there; wait for it to go
        version = store.read_state(path).current_version
        return store.promote(path, cred, version, f"run-{i}", WHEN)

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(work, range(200)))

    assert store.pending_paths() == []
    assert sum(len(store.versions(f"x/{k}")) for k in range(10)) == 200
    assert sorted(versions) == sorted(v for k in range(10) for v in range(1, 21))
