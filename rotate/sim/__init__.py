"""What every simulator shares (state counters, faults, TLS, the host serving them on
loopback, seeding from an inventory) and the directory stand-ins; each vendor's simulator
lives with its vendor (rotate/vendors/<vendor>/simulator.py)."""

from rotate.sim.base import SimCounters, SimError, Simulator
from rotate.sim.faults import Faults, fault_middleware
from rotate.sim.host import AsyncSimulatorHost, SimulatorHost, run_forever, serve_until_signalled
from rotate.sim.seed import seed_states

__all__ = [
    "AsyncSimulatorHost",
    "Faults",
    "SimCounters",
    "SimError",
    "Simulator",
    "SimulatorHost",
    "fault_middleware",
    "run_forever",
    "seed_states",
    "serve_until_signalled",
]
