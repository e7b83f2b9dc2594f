"""The circuit breaker trips when the failures happen: `--max-failures` and `--canary` stop
new pushes the moment a failure is known, counted at the simulators."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from rotate.cli import main
from rotate.devvault import DevVault
from rotate.inventory import load_inventory
from rotate.settings import load_settings
from rotate.sim.faults import Faults
from rotate.sim.host import SimulatorHost
from rotate.sim.seed import seed_states

ENDPOINTS = ("ep0", "ep1", "ep2", "ep3")
UNDER_WAY = re.compile(r"(\d+) account\(s\) already under way were let finish")


def write_world(tmp_path: Path, vault: DevVault, rows: int) -> tuple[Path, Path]:
    """400 copy-only usages over four Remotix endpoints (placeholder URLs), a config."""
    inventory = tmp_path / "inventory.csv"
    lines = ["endpoint,kind,target,protocol,username,authority"]
    lines += [f"{ENDPOINTS[i % 4]},connection,C-{i:04d},RDP,user{i},none" for i in range(rows)]
    inventory.write_text("\n".join(lines) + "\n")
    config = tmp_path / "rotate.toml"
    text = [
        "[vault]",
        f'prefix = "breaker-{tmp_path.name[-12:].replace("_", "-")}"',
        "[run]",
        "retries = 0",
        "per_endpoint_concurrency = 8",
    ]
    for name in ENDPOINTS:
        text += [f"[endpoints.{name}]", 'system = "remotix"', 'url = "http://127.0.0.1:9"']
    config.write_text("\n".join(text) + "\n")
    return inventory, config


def serve(sim_host: SimulatorHost, inventory: Path, config: Path, rejecting: float) -> set[str]:
    """Simulators holding every row, a share of the targets refusing every write; the
    config pointed at them. Returns the refusing targets."""
    settings = load_settings(config, env={"VAULT_TOKEN": "t"})
    rows = load_inventory(inventory, settings)
    states = seed_states(rows, settings.endpoints, rng_seed=1)
    refusing = {r.target for r in random.Random(3).sample(rows, int(len(rows) * rejecting))}
    text = config.read_text()
    for name, state in states.items():
        url = sim_host.add_endpoint(settings.endpoints[name], state)
        sim_host.set_faults(name, Faults(latency_ms=20, reject_targets=refusing))
        text = text.replace(
            f'[endpoints.{name}]\nsystem = "remotix"\nurl = "http://127.0.0.1:9"',
            f'[endpoints.{name}]\nsystem = "remotix"\nurl = "{url}"',
        )
    config.write_text(text)
    return refusing


def run(tmp_path: Path, inventory: Path, config: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    record = tmp_path / "record.json"
    argv = ["run", str(inventory), "--config", str(config), "--out-dir", str(tmp_path / "out")]
    code = main([*argv, "--json", str(record), *args])
    return code, json.loads(record.read_text())


@pytest.mark.parametrize("flag", [("--max-failures", "5"), ("--canary", "40")])
def test_the_breaker_stops_new_pushes_once_a_failure_is_known(
    tmp_path: Path,
    openbao: DevVault,
    sim_host: SimulatorHost,
    monkeypatch: pytest.MonkeyPatch,
    flag: tuple[str, str],
) -> None:
    monkeypatch.setenv("VAULT_ADDR", openbao.addr)
    monkeypatch.setenv("VAULT_TOKEN", openbao.token.reveal())
    inventory, config = write_world(tmp_path, openbao, 400)
    serve(sim_host, inventory, config, rejecting=0.3)
    code, record = run(tmp_path, inventory, config, *flag)  # default concurrency: 64
    assert code == 3
    tolerated = 5 if flag[0] == "--max-failures" else 0
    aborted = record["aborted"]
    assert ("failure threshold crossed" if tolerated else "canary failed") in aborted
    under_way = int(UNDER_WAY.search(aborted)[1])  # type: ignore[index]
    statuses = [i["status"] for i in record["items"]]
    failed = statuses.count("failed") + statuses.count("in_doubt")
    attempted = len(statuses) - statuses.count("not_attempted")
    # At most the tolerated failures, and those of the accounts already under way when the
    # one too many was known (that one among them); nothing new started after it.
    assert failed <= tolerated + under_way
    assert under_way <= 64
    # One push per attempted usage (applied or refused), none for the rest: every request
    # but the endpoints' probes.
    pushes = sum(sim_host.simulator(n).counters.requests for n in ENDPOINTS) - len(ENDPOINTS)
    assert pushes == attempted
    assert statuses.count("not_attempted") >= 400 - 64 - 40 - tolerated * 4
