"""One writer: two `rotate run` at once on the same inventory, as separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rotate.sim.faults import Faults
from tests.plugins.scene import World, converged


def start_run(world: World, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rotate",
            "run",
            str(world.inventory),
            "--config",
            str(world.config),
            "--out-dir",
            str(out),
            "-q",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_lease(world: World) -> None:
    """Until a run holds the lease (it takes it after its checks, before any target call)."""
    path = f"{world.settings.vault.lease_root}/{world.settings.run.lease_name}"
    deadline = time.monotonic() + 30
    while world.store.read_record(path) is None:
        assert time.monotonic() < deadline, "no run took the lease"
        time.sleep(0.05)


def test_two_concurrent_runs_exactly_one_rotates(world: World, tmp_path: Path) -> None:
    for name in world.states:
        world.host.set_faults(name, Faults(latency_ms=300))
    first = start_run(world, tmp_path / "a")
    wait_for_lease(world)
    second = start_run(world, tmp_path / "b")
    _, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 3, err2
    assert "another run holds the lease" in err2
    holder_run = out1.split()[1].rstrip(":")  # "run <run_id>: ..."
    assert holder_run in err2
    assert not (tmp_path / "b").exists()  # refused before anything, even a report
    assert converged(world) == []
    # The lease was released at the end: the next run takes it at once.
    for name in world.states:
        world.host.set_faults(name, Faults())
    third = start_run(world, tmp_path / "c")
    third.communicate(timeout=120)
    assert third.returncode == 0


def test_lease_of_a_killed_run_is_taken_over_at_once(world: World, tmp_path: Path) -> None:
    for name in world.states:
        world.host.set_faults(name, Faults(latency_ms=150))
    victim = start_run(world, tmp_path / "a")
    wait_for_lease(world)
    time.sleep(0.5)
    victim.kill()
    victim.wait()
    lease = f"{world.settings.vault.lease_root}/{world.settings.run.lease_name}"
    left = world.store.read_record(lease)
    assert left is not None  # a SIGKILLed run cannot release its lease
    assert left[0]["pid"] == str(victim.pid)
    for name in world.states:
        world.host.set_faults(name, Faults())
    survivor = start_run(world, tmp_path / "b")
    _, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    assert converged(world) == []
