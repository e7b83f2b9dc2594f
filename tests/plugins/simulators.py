"""Pytest plugin: `sim_host`, a started SimulatorHost on loopback, closed after the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotate.sim.host import SimulatorHost


@pytest.fixture
def sim_host() -> Iterator[SimulatorHost]:
    """A SimulatorHost with no simulator yet; add them with `add_endpoint`/`add_simulator`."""
    host = SimulatorHost(shutdown_timeout=0.2)
    try:
        yield host
    finally:
        host.close()
