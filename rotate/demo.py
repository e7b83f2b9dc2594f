"""The embedded default: a real OpenBao, both simulators, then plan, run and report."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from rotate.app import Invocation, Result, execute, summary_line
from rotate.devvault import DevVault
from rotate.errors import EXIT_ITEMS_FAILED, EXIT_OK, ConfigError
from rotate.inventory import load_inventory
from rotate.models import Kind, Row, System
from rotate.progress import NullProgress, Progress
from rotate.settings import Settings, load_settings
from rotate.sim.host import SimulatorHost
from rotate.sim.remotix import RemotixState
from rotate.sim.seed import seed_states
from rotate.sim.sparkview import SparkViewState
from rotate.stores.vault import VaultStore

_HERE = Path(__file__).resolve().parent


def demo_file(name: str, given: Path | None) -> Path:
    """The demo inventory/config: as given, else ./inventories/, else beside the package."""
    if given is not None:
        return given
    for base in (Path.cwd(), _HERE.parent):
        candidate = base / "inventories" / name
        if candidate.exists():
            return candidate
    raise ConfigError(f"demo file inventories/{name} not found; pass it explicitly")


def demo_environment(settings: Settings) -> dict[str, str]:
    """Fresh gateway passwords for the simulated gateways; the caller's Vault variables unset."""
    env = {k: v for k, v in settings.env.items() if not k.startswith("VAULT_")}
    for endpoint in settings.endpoints.values():
        if endpoint.system is System.SPARKVIEW and endpoint.gateway_password_env:
            env[endpoint.gateway_password_env] = secrets.token_urlsafe(18)
    return env


def sim_password(state: RemotixState | SparkViewState, row: Row) -> str | None:
    """The password a simulator holds for a row (the simulators' own inspection API)."""
    if isinstance(state, SparkViewState):
        return state.server_password(row.target)
    if row.kind is Kind.CONNECTION:
        return state.connection_password(row.target)
    return state.computer_password(row.target, row.protocol_suffix)


def convergence(
    rows: Sequence[Row], states: Mapping[str, RemotixState | SparkViewState], store: VaultStore
) -> list[str]:
    """Rows whose target does not hold Vault's current password, or that still have a pending."""

    async def check() -> list[str]:
        problems = []
        pending = await store.pending()
        for row in rows:
            current = await store.read_current(row.vault_path)
            held = sim_password(states[row.endpoint], row)
            if current is None or held != current.password.reveal():
                problems.append(f"{row.label}: target and Vault differ")
            if row.vault_path in pending:
                problems.append(f"{row.label}: a pending candidate is left")
        await store.aclose()
        return problems

    return asyncio.run(check())


def run_demo(out_dir: Path, inventory: Path | None, config: Path | None, progress: Progress) -> int:
    """Start OpenBao and the simulators on loopback, rotate the demo inventory, stop them."""
    inventory = demo_file("demo.csv", inventory)
    config = demo_file("demo.toml", config)
    base = load_settings(config)
    env = demo_environment(base)
    settings = load_settings(config, env=env)
    rows = load_inventory(inventory, settings)
    print(f"demo: {len(rows)} credential(s) from {inventory}, config {config}")
    with DevVault() as vault, SimulatorHost() as host:
        states = seed_states(rows, settings.endpoints)
        urls = {}
        for name, state in states.items():
            endpoint = settings.endpoints[name]
            if isinstance(state, SparkViewState):
                assert endpoint.gateway_password_env is not None
                urls[name] = host.add_sparkview(name, state, env[endpoint.gateway_password_env])
            else:
                urls[name] = host.add_remotix(name, state)
        settings = settings.with_endpoint_urls(urls)
        settings = replace(
            settings, vault=replace(settings.vault, addr=vault.addr, token=vault.token)
        )
        print(
            f"demo: OpenBao dev server at {vault.addr}; simulators: "
            + ", ".join(f"{n} {u}" for n, u in sorted(urls.items()))
        )
        results: dict[str, Result] = {}
        for mode in ("plan", "run", "report"):
            results[mode] = execute(
                Invocation(
                    mode=mode,
                    inventory=inventory,
                    settings=settings,
                    out_dir=out_dir,
                    progress=progress if mode == "run" else NullProgress(),
                )
            )
            print(summary_line(results[mode].record))
            print(f"  report: {results[mode].reports.html}")
        store = VaultStore(settings.vault)
        try:
            problems = convergence(rows, states, store)
        finally:
            store.close()
    if problems:
        print(f"demo: {len(problems)} problem(s) after the run:")
        for p in problems:
            print(f"  - {p}")
        return EXIT_ITEMS_FAILED
    print(
        f"demo: every target holds the password Vault has as current, nothing pending; "
        f"reports in {out_dir}/"
    )
    return results["run"].exit_code or EXIT_OK
