"""The embedded default: a real OpenBao, both vendor simulators, directory and SSH host
stand-ins on loopback, then plan, run and report, and a proof that every account converged."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from rotate.app import Invocation, Result, execute, summary_line
from rotate.authorities.ldap import LdapSettings
from rotate.devvault import DevVault
from rotate.errors import EXIT_ITEMS_FAILED, EXIT_OK, ConfigError
from rotate.inventory import group_accounts, load_inventory
from rotate.models import Account, Row
from rotate.progress import NullProgress, Progress
from rotate.registry import vendor_of, vendor_of_kind
from rotate.settings import Settings, load_settings
from rotate.sim.base import SimCounters
from rotate.sim.host import SimulatorHost
from rotate.sim.seed import (
    SeededDirectory,
    seed_directories,
    seed_ssh_hosts,
    seed_states,
    ssh_settings,
)
from rotate.sim.sshhost import SshHostState, new_key_pair
from rotate.sim.tls import make_tls
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


def demo_environment(
    settings: Settings, directories: Mapping[str, SeededDirectory] | None = None
) -> dict[str, str]:
    """Fresh secrets for the simulated endpoints (the variables their vendors require: the
    gateways' passwords) and the directories' admin passwords as bind passwords; the
    caller's Vault variables unset."""
    env = {k: v for k, v in settings.env.items() if not k.startswith("VAULT_")}
    for endpoint in settings.endpoints.values():
        for var in vendor_of(endpoint).required_env(endpoint):
            env[var] = secrets.token_urlsafe(18)
    for name, directory in (directories or {}).items():
        for var in settings.authorities[name].required_env():
            env[var] = directory.admin_password
    return env


def start_directories(
    host: SimulatorHost,
    settings: Settings,
    directories: Mapping[str, SeededDirectory],
    tls_dir: Path,
) -> Settings:
    """Serve each directory stand-in (LDAPS for `ad`, StartTLS where the authority asks for
    it, with a throw-away CA) and point its authority at it."""
    tls = make_tls(tls_dir)
    authorities = dict(settings.authorities)
    for name, directory in directories.items():
        config = authorities[name]
        assert isinstance(config, LdapSettings)  # seed_directories serves only those
        if config.type == "ad":
            url = host.add_directory(name, directory.state, tls=tls.server)
        elif config.starttls:
            url = host.add_directory(name, directory.state, starttls=tls.server)
        else:
            url = host.add_directory(name, directory.state)
        authorities[name] = replace(config, url=url, ca_bundle=str(tls.ca_file))
    return replace(settings, authorities=authorities)


def start_ssh_hosts(
    host: SimulatorHost,
    settings: Settings,
    hosts: Mapping[str, SshHostState],
    key_dir: Path,
) -> Settings:
    """Serve each `ssh` authority's host stand-in and point the authority at it: a fresh
    admin key pair (ed25519; the private key mode 0600) and a known_hosts file holding each
    stand-in's host key, both in `key_dir`, and the stand-in's port as the authority's
    `port` (the demo inventory's ssh rows name host 127.0.0.1, without a port)."""
    if not hosts:
        return settings
    key_file, public = new_key_pair(key_dir / "rotate-admin-ed25519")
    known_hosts = key_dir / "known_hosts"
    lines = []
    authorities = dict(settings.authorities)
    for name, state in hosts.items():
        host.add_ssh_host(name, state, authorized_key=public)
        server = host.ssh_host(name)
        lines.append(server.known_hosts_line)
        config = ssh_settings(authorities[name])
        assert config is not None  # seed_ssh_hosts made a stand-in for ssh authorities only
        authorities[name] = replace(
            config, key_file=str(key_file), known_hosts=str(known_hosts), port=server.port
        )
    known_hosts.write_text("".join(line + "\n" for line in lines))
    return replace(settings, authorities=authorities)


class _Login(Protocol):
    def logs_in(self, username: str, password: str) -> bool: ...


def sim_password(state: SimCounters, row: Row) -> str | None:
    """The password a simulator holds for a row (its vendor's simulator reads its state)."""
    vendor = vendor_of_kind(row.kind)
    if vendor is None:
        raise ValueError(f"{row.label}: no vendor serves kind {row.kind!r}")
    return vendor.simulator.password(state, row)


def convergence(
    accounts: Sequence[Account],
    states: Mapping[str, SimCounters],
    directories: Mapping[str, SeededDirectory],
    store: VaultStore,
    ssh_hosts: Mapping[str, SshHostState] | None = None,
) -> tuple[list[str], list[str]]:
    """(problems, proofs): each account's usages must hold Vault's current password, that
    password must log in at its authority (directory or SSH host stand-in), and nothing may
    be left pending or stale."""
    checks: dict[str, _Login] = {name: d.state for name, d in directories.items()}
    checks.update(ssh_hosts or {})

    async def check() -> tuple[list[str], list[str]]:
        problems, proofs = [], []
        pending = await store.pending()
        stale = await store.stale()
        for account in accounts:
            current = await store.read_current(account.vault_path)
            if current is None:
                problems.append(f"account {account.name}: Vault has no password")
                continue
            password = current.password.reveal()
            for row in account.usages:
                if sim_password(states[row.endpoint], row) != password:
                    problems.append(f"{row.label}: does not hold account {account.name}'s password")
            if account.vault_path in pending:
                problems.append(f"account {account.name}: a pending candidate is left")
            if account.vault_path in stale:
                problems.append(f"account {account.name}: stale usages are left")
            authority = checks.get(account.authority)
            where = "no host account changed (copy-only)"
            if authority is not None:
                if not authority.logs_in(account.username, password):
                    problems.append(
                        f"account {account.name}: its password does not log in at "
                        f"{account.authority}"
                    )
                where = f"it logs in at {account.authority}"
            if len(account.usages) > 1 or authority is not None:
                proofs.append(
                    f"{account.name}: {len(account.usages)} usage(s) hold one password; {where}"
                )
        await store.aclose()
        return problems, proofs

    return asyncio.run(check())


def start_simulators(
    host: SimulatorHost, settings: Settings, states: Mapping[str, SimCounters]
) -> dict[str, str]:
    """Serve each endpoint's simulator, expecting the secrets the demo's environment holds;
    their URLs by endpoint."""
    urls = {}
    for name, state in states.items():
        endpoint = settings.endpoints[name]
        sim = vendor_of(endpoint).simulator
        served = sim.serve(endpoint, state, None, sim.secrets(endpoint, settings.env))
        urls[name] = host.add_simulator(name, served, system=endpoint.system)
    return urls


MODES = ("plan", "run", "report")


def _invoke(
    mode: str, inventory: Path, settings: Settings, out_dir: Path, progress: Progress
) -> Result:
    """One `rotate <mode>` of the demo, its summary printed."""
    result = execute(
        Invocation(
            mode=mode,
            inventory=inventory,
            settings=settings,
            out_dir=out_dir,
            progress=progress if mode == "run" else NullProgress(),
        )
    )
    print(summary_line(result.record))
    print(f"  report: {result.reports.html}")
    return result


def _say_where(
    vault_addr: str,
    urls: Mapping[str, str],
    settings: Settings,
    directories: Mapping[str, object],
    host: SimulatorHost,
    ssh_hosts: Mapping[str, SshHostState],
) -> None:
    """Where the demo's OpenBao, simulators and stand-ins listen."""
    print(
        f"demo: OpenBao dev server at {vault_addr}; simulators: "
        + ", ".join(f"{n} {u}" for n, u in sorted(urls.items()))
    )
    print(
        "demo: directory stand-ins: "
        + ", ".join(
            f"{n} ({a.type}) {a.url}"
            for n, a in sorted(settings.authorities.items())
            if n in directories and isinstance(a, LdapSettings)
        )
    )
    if ssh_hosts:
        print(
            "demo: SSH host stand-ins: "
            + ", ".join(
                f"{n} 127.0.0.1:{host.ssh_host(n).port} ({len(s.users())} local account(s))"
                for n, s in sorted(ssh_hosts.items())
            )
        )


def run_demo(out_dir: Path, inventory: Path | None, config: Path | None, progress: Progress) -> int:
    """Start OpenBao and the simulators on loopback, rotate the demo inventory, stop them."""
    inventory = demo_file("demo.csv", inventory)
    config = demo_file("demo.toml", config)
    base = load_settings(config)
    seeded = load_inventory(inventory, base)
    accounts = group_accounts(seeded)
    # One initial password per account, held by its usages and its directory alike (a
    # fleet in sync before rotate came; Vault knows none of them yet).
    initial: dict[str, str] = {}
    states = seed_states(seeded, base.endpoints, passwords=initial)
    directories = seed_directories(accounts, base.authorities, passwords=initial)
    ssh_hosts = seed_ssh_hosts(accounts, base.authorities, passwords=initial)
    env = demo_environment(base, directories)
    settings = load_settings(config, env=env)
    rows = load_inventory(inventory, settings)
    print(
        f"demo: {len(rows)} usage(s) of {len(accounts)} account(s) from {inventory}, "
        f"config {config}"
    )
    with (
        DevVault() as vault,
        SimulatorHost() as host,
        tempfile.TemporaryDirectory(prefix="rotate-demo-tls-") as tls_dir,
        tempfile.TemporaryDirectory(prefix="rotate-demo-ssh-") as key_dir,
    ):
        settings = start_directories(host, settings, directories, Path(tls_dir))
        settings = start_ssh_hosts(host, settings, ssh_hosts, Path(key_dir))
        urls = start_simulators(host, settings, states)
        settings = settings.with_endpoint_urls(urls)
        settings = replace(
            settings, vault=replace(settings.vault, addr=vault.addr, token=vault.token)
        )
        _say_where(vault.addr, urls, settings, directories, host, ssh_hosts)
        results = {mode: _invoke(mode, inventory, settings, out_dir, progress) for mode in MODES}
        store = VaultStore(settings.vault)
        try:
            problems, proofs = convergence(accounts, states, directories, store, ssh_hosts)
        finally:
            store.close()
    if problems:
        print(f"demo: {len(problems)} problem(s) after the run:")
        for p in problems:
            print(f"  - {p}")
        return EXIT_ITEMS_FAILED
    for proof in proofs:
        print(f"  {proof}")
    print(
        f"demo: every account's usages hold the one password Vault has as current, and it "
        f"logs in at its directory or host; nothing pending or stale; reports in {out_dir}/"
    )
    return results["run"].exit_code or EXIT_OK
