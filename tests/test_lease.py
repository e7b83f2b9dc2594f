"""The run lease: one writer at a time, takeover of dead or expired holders, renewal."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from rotate.errors import CasConflict, LeaseHeld
from rotate.lease import Holder, Lease, process_gone
from rotate.stores.memory import MemoryStore

PATH = "rotate/_lease/default"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def lease(store: MemoryStore, run_id: str, clock: Clock | None = None) -> Lease:
    return Lease(store, PATH, run_id, "run", ttl_s=300, clock=clock)


def plant(store: MemoryStore, **overrides: object) -> None:
    """A lease record of another run, as Vault would hold it."""
    now = datetime.now(UTC)
    holder = Holder(
        run_id="other-run",
        host="elsewhere.example",
        pid=4242,
        user="ops",
        mode="run",
        acquired_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    data = holder.to_record()
    data.update({k: str(v) for k, v in overrides.items()})
    store.write_record(PATH, data, 0)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_first_run_takes_the_lease_and_a_second_is_refused_naming_the_holder() -> None:
    store = MemoryStore()
    first = lease(store, "run-1")
    assert first.acquire() == "lease taken"
    with pytest.raises(LeaseHeld) as info:
        lease(store, "run-2").acquire()
    text = str(info.value)
    assert "run run-1" in text
    assert socket.gethostname() in text
    assert f"pid {os.getpid()}" in text
    data, _ = store.read_record(PATH) or ({}, 0)
    assert data["run_id"] == "run-1"


def test_release_frees_the_lease_for_the_next_run() -> None:
    store = MemoryStore()
    first = lease(store, "run-1")
    first.acquire()
    first.release()
    assert store.read_record(PATH) is None
    assert lease(store, "run-2").acquire() == "lease taken"


def test_lease_of_a_dead_process_on_this_host_is_taken_over_at_once() -> None:
    store = MemoryStore()
    plant(store, host=socket.gethostname(), pid=dead_pid())
    note = lease(store, "run-2").acquire()
    assert "whose process is gone" in note
    assert "other-run" in note


def test_lease_of_a_killed_unreaped_process_is_taken_over() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        store = MemoryStore()
        plant(store, host=socket.gethostname(), pid=proc.pid)
        with pytest.raises(LeaseHeld):
            lease(store, "run-2").acquire()  # alive: held
        proc.kill()
        # Not waited for: a zombie is dead all the same.
        deadline = datetime.now(UTC) + timedelta(seconds=5)
        while not process_gone(proc.pid, "", "") and datetime.now(UTC) < deadline:
            pass
        assert "whose process is gone" in lease(store, "run-3").acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_live_process_with_the_same_pid_but_another_start_time_is_not_the_holder() -> None:
    assert process_gone(os.getpid(), "1", "")
    assert not process_gone(os.getpid(), "", "")


def test_lease_on_another_host_waits_for_expiry() -> None:
    store = MemoryStore()
    clock = Clock()
    plant(store, expires_at=(clock.now + timedelta(minutes=5)).isoformat())
    with pytest.raises(LeaseHeld, match=r"elsewhere\.example"):
        lease(store, "run-2", clock).acquire()
    clock.now += timedelta(minutes=6)
    assert "expired lease of run other-run" in lease(store, "run-2", clock).acquire()


def test_renewal_moves_expiry_and_fails_once_another_run_took_over() -> None:
    store = MemoryStore()
    clock = Clock()
    mine = lease(store, "run-1", clock)
    mine.acquire()
    first_expiry = mine.holder.expires_at if mine.holder else None
    clock.now += timedelta(minutes=2)
    mine.renew()
    assert mine.holder is not None
    assert first_expiry is not None
    assert mine.holder.expires_at > first_expiry
    # Stalled past expiry, another run takes it over; our renewal must notice.
    clock.now += timedelta(minutes=10)
    lease(store, "run-2", clock).acquire()
    with pytest.raises(CasConflict):
        mine.renew()
    mine.release()  # not ours any more: left alone
    data, _ = store.read_record(PATH) or ({}, 0)
    assert data["run_id"] == "run-2"


def test_racing_runs_one_wins_by_check_and_set(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    lease(store, "run-b").acquire()
    # run-a looked before run-b wrote: its first read saw no lease.
    real = store.read_record
    calls = []

    def stale_first(path: str) -> tuple[dict[str, str], int] | None:
        calls.append(path)
        return None if len(calls) == 1 else real(path)

    monkeypatch.setattr(store, "read_record", stale_first)
    with pytest.raises(LeaseHeld, match=r"took the lease .* first: run run-b"):
        lease(store, "run-a").acquire()
