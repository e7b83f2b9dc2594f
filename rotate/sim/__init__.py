"""The two vendor simulators (Remotix, Spark View): stateful, fault-injecting, loopback only."""

from rotate.sim.base import SimCounters, SimError, Simulator
from rotate.sim.faults import Faults, fault_middleware
from rotate.sim.host import AsyncSimulatorHost, SimulatorHost, run_forever, serve_until_signalled
from rotate.sim.remotix import RemotixSimulator, RemotixState, remotix_app
from rotate.sim.seed import seed_states
from rotate.sim.sparkview import (
    SparkViewSimulator,
    SparkViewState,
    gateway_password_hash,
    sparkview_app,
)

__all__ = [
    "AsyncSimulatorHost",
    "Faults",
    "RemotixSimulator",
    "RemotixState",
    "SimCounters",
    "SimError",
    "Simulator",
    "SimulatorHost",
    "SparkViewSimulator",
    "SparkViewState",
    "fault_middleware",
    "gateway_password_hash",
    "remotix_app",
    "run_forever",
    "seed_states",
    "serve_until_signalled",
    "sparkview_app",
]
