"""Pytest plugin: a `World` (the CLI in-process against a real OpenBao, the vendor simulators,
the directory and SSH host stand-ins on loopback, on the demo inventory) and the helpers that
look at it: what Vault, the targets and the authorities hold, whether anyone is locked out,
and whether a secret reached any output."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import pytest

from rotate import passwords
from rotate.cli import main
from rotate.demo import sim_password
from rotate.devvault import DEV_MOUNT, DevVault
from rotate.inventory import group_accounts, load_inventory
from rotate.models import Account, Row, Secret
from rotate.registry import vendor_of
from rotate.settings import PolicySettings, Settings, VaultSettings, load_settings
from rotate.sim.base import SimCounters
from rotate.sim.host import SimulatorHost
from rotate.sim.seed import SeededDirectory, seed_directories, seed_ssh_hosts, seed_states
from rotate.sim.sshhost import SshHostState, new_key_pair
from rotate.sim.tls import make_tls
from rotate.stores.vault import VaultStore

ROOT = Path(__file__).resolve().parent.parent.parent
DEMO_CSV = ROOT / "inventories" / "demo.csv"
DEMO_TOML = ROOT / "inventories" / "demo.toml"
GATEWAYS = {"GW1_PASSWORD": "gw1-Secret-pass", "GW2_PASSWORD": "gw2-Secret-pass"}
#: the thread the simulators serve from: its log records are theirs, not the product's
SIM_THREAD = "rotate-sim"


@dataclass
class World:
    """A scene: config file on the simulators, env for the CLI, the rows and their states."""

    config: Path
    inventory: Path
    settings: Settings
    rows: list[Row]
    states: dict[str, SimCounters]
    host: SimulatorHost
    store: VaultStore  # straight to the server, even when the CLI goes through a proxy
    token: str = field(repr=False)
    out: Path
    vault: DevVault
    client: hvac.Client  # root, straight to the server: to set a scene up or look behind
    initial: dict[str, str] = field(default_factory=dict, repr=False)  # label -> seeded password
    generated: list[str] = field(default_factory=list, repr=False)  # every candidate made
    extra_secrets: list[str] = field(default_factory=list, repr=False)  # e.g. other tokens
    directories: dict[str, SeededDirectory] = field(default_factory=dict, repr=False)
    ca_file: Path | None = None
    initial_accounts: dict[str, str] = field(default_factory=dict, repr=False)  # at the start
    ssh_hosts: dict[str, SshHostState] = field(default_factory=dict, repr=False)
    wiring: dict[str, str] = field(default_factory=dict)  # config edits pointing at stand-ins

    @property
    def accounts(self) -> list[Account]:
        return group_accounts(self.rows)

    def account(self, name: str) -> Account:
        return next(a for a in self.accounts if a.name == name)

    def authority_password(self, account: Account) -> str | None:
        """The password the account's directory or host checks (None: copy-only)."""
        directory = self.directories.get(account.authority)
        if directory is not None:
            return directory.state.password(account.username)
        host = self.ssh_hosts.get(account.authority)
        return host.password(account.username) if host is not None else None

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)

    def rows_of(self, endpoint: str) -> list[Row]:
        return [r for r in self.rows if r.endpoint == endpoint]

    def held(self, row: Row) -> str | None:
        """The password the simulator holds for a row (None: no such object there)."""
        return sim_password(self.states[row.endpoint], row)

    def current(self, row: Row) -> str | None:
        """Vault's current password of a row."""
        credential = sync(self.store).read_current(row.vault_path)
        return credential.password.reveal() if credential is not None else None

    def pending(self, row: Row) -> str | None:
        """The candidate a journal record holds for a row (even one promoted already)."""
        candidate = journal_candidates(self.client, self.settings.vault).get(row.vault_path)
        return candidate.reveal() if candidate is not None else None

    def history(self, row: Row) -> list[str]:
        """Every password version of the row's account secret that Vault still keeps."""
        try:
            meta = self.client.secrets.kv.v2.read_secret_metadata(
                path=row.vault_path, mount_point=DEV_MOUNT
            )
        except hvac.exceptions.InvalidPath:
            return []
        found = []
        for number in meta["data"]["versions"]:
            data = self.client.secrets.kv.v2.read_secret_version(
                path=row.vault_path,
                version=int(number),
                mount_point=DEV_MOUNT,
                raise_on_deleted_version=False,
            )["data"]["data"]
            if data and data.get("password"):
                found.append(data["password"])
        return found

    def version(self, row: Row) -> int | None:
        return sync(self.store).read_state(row.vault_path).current_version


class _Sync:
    """A store's coroutines called from plain code: each in its own event loop."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            async def once() -> Any:
                try:
                    return await method(*args, **kwargs)
                finally:
                    await self._store.aclose()

            return asyncio.run(once())

        return call


def sync(store: Any) -> Any:
    """`sync(store).read_current(path)`: a data-plane call from a synchronous test."""
    return _Sync(store)


def journal_candidates(client: hvac.Client, vault: VaultSettings) -> dict[str, Secret]:
    """Every candidate listed in a journal record, read as root behind rotate's back."""
    try:
        names = client.secrets.kv.v2.list_secrets(path=vault.pending_root, mount_point=DEV_MOUNT)
    except hvac.exceptions.InvalidPath:
        return {}
    found: dict[str, Secret] = {}
    for name in names["data"]["keys"]:
        record = client.secrets.kv.v2.read_secret_version(
            path=f"{vault.pending_root}/{name}",
            mount_point=DEV_MOUNT,
            raise_on_deleted_version=False,
        )
        for path, entry in ((record["data"]["data"] or {}).get("candidates") or {}).items():
            found[path] = Secret(entry["password"])
    return found


def write_config(
    path: Path,
    vault: VaultSettings,
    urls: dict[str, str],
    replace: dict[str, str] | None = None,
    ca_file: Path | None = None,
) -> Path:
    """The demo config on this test's Vault prefix, simulators and directory stand-ins
    (`urls` by endpoint or authority name; `ca_file` the stand-ins' CA)."""
    text = DEMO_TOML.read_text()
    # Point the demo config at this test's Vault prefix and simulators.
    text = text.replace('prefix = "rotate"', f'prefix = "{vault.prefix}"')
    for name, url in urls.items():
        marker = f"[endpoints.{name}]\n"
        if marker not in text:
            marker = f"[authorities.{name}]\n"
            if ca_file is not None:
                url = f'{url}"\nca_bundle = "{ca_file}'
        head, tail = text.split(marker)
        first, rest = tail.split("\n", 2)[:2], tail.split("\n", 2)[2]
        lines = [ln if not ln.startswith("url =") else f'url = "{url}"' for ln in first]
        text = head + marker + "\n".join(lines) + "\n" + rest
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    return path


def reconfigure(world: World, replace: dict[str, str]) -> Path:
    """Rewrite the world's config file (same Vault prefix and simulators) with replacements."""
    return write_config(
        world.config,
        world.settings.vault,
        dict(world.host.urls),
        {**world.wiring, **replace},
        world.ca_file,
    )


def serve_ssh_hosts(
    sim_host: SimulatorHost, hosts: dict[str, SshHostState], keys: Path
) -> dict[str, str]:
    """Serve the demo's SSH host stand-ins with a fresh admin key; the demo config's edits
    that point its ssh authority at them (key_file, known_hosts, port)."""
    if not hosts:
        return {}
    keys.mkdir()
    key_file, public = new_key_pair(keys / "id_ed25519")
    known_hosts = keys / "known_hosts"
    lines, wiring = [], {}
    for name, state in hosts.items():
        sim_host.add_ssh_host(name, state, authorized_key=public)
        server = sim_host.ssh_host(name)
        lines.append(server.known_hosts_line + "\n")
        section = tomllib.loads(DEMO_TOML.read_text())["authorities"][name]
        for key, value in (
            ("key_file", key_file),
            ("known_hosts", known_hosts),
            ("port", server.port),
        ):
            old = section[key]
            old_line = f"{key} = {old}" if isinstance(old, int) else f'{key} = "{old}"'
            new_line = f"{key} = {value}" if isinstance(value, int) else f'{key} = "{value}"'
            wiring[old_line] = new_line
    known_hosts.write_text("".join(lines))
    return wiring


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sim_host: SimulatorHost,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[WorldFactory]:
    """Build the test's World on a given OpenBao server (once per test: the simulators are
    named after the endpoints). `addr` is where the CLI reaches Vault (a proxy, say)."""
    made: list[World] = []

    def make(vault: DevVault, *, addr: str | None = None) -> World:
        assert not made, "one World per test"
        vault_settings = vault.settings(prefix=f"rotate-test-{uuid.uuid4().hex[:8]}", timeout_s=5.0)
        monkeypatch.setenv("VAULT_ADDR", addr or vault.addr)
        monkeypatch.setenv("VAULT_TOKEN", vault.token.reveal())
        monkeypatch.delenv("ROTATE_CONFIG", raising=False)
        for k, v in GATEWAYS.items():
            monkeypatch.setenv(k, v)
        # The URLs are placeholders until the simulators have ports.
        settings = load_settings(DEMO_TOML, env={**os.environ})
        rows = load_inventory(DEMO_CSV, settings)
        initial: dict[str, str] = {}  # one password per account, on its usages and directory
        states = seed_states(rows, settings.endpoints, rng_seed=7, passwords=initial)
        directories = seed_directories(
            group_accounts(rows), settings.authorities, rng_seed=7, passwords=initial
        )
        ssh_hosts = seed_ssh_hosts(
            group_accounts(rows), settings.authorities, rng_seed=7, passwords=initial
        )
        wiring = serve_ssh_hosts(sim_host, ssh_hosts, tmp_path / "ssh")
        tls = make_tls(tmp_path / "tls")
        urls = {}
        for name, state in states.items():
            endpoint = settings.endpoints[name]
            expected = vendor_of(endpoint).simulator.secrets(endpoint, GATEWAYS)
            urls[name] = sim_host.add_endpoint(endpoint, state, **expected)
        for name, directory in directories.items():
            authority = settings.authorities[name]
            monkeypatch.setenv(authority.bind_password_env, directory.admin_password)
            if authority.type == "ad":
                urls[name] = sim_host.add_directory(name, directory.state, tls=tls.server)
            else:
                urls[name] = sim_host.add_directory(name, directory.state, starttls=tls.server)
        config = write_config(
            tmp_path / "rotate.toml", vault_settings, urls, wiring, ca_file=tls.ca_file
        )
        settings = load_settings(config)
        # Explicit vault paths get this test's prefix too, so tests never share a secret.
        inventory = tmp_path / "inventory.csv"
        inventory.write_text(DEMO_CSV.read_text().replace(",rotate/", f",{vault_settings.prefix}/"))
        rows = load_inventory(inventory, settings)
        world = World(
            config=config,
            inventory=inventory,
            settings=settings,
            rows=rows,
            states=states,
            host=sim_host,
            store=VaultStore(vault_settings),
            token=vault.token.reveal(),
            out=tmp_path / "reports",
            vault=vault,
            client=hvac.Client(url=vault.addr, token=vault.token.reveal()),
            directories=directories,
            ca_file=tls.ca_file,
            ssh_hosts=ssh_hosts,
            wiring=wiring,
        )
        world.initial = {r.label: p for r in rows if (p := world.held(r)) is not None}
        world.initial_accounts = {
            a.name: p for a in world.accounts if (p := world.authority_password(a)) is not None
        }
        # Every candidate the pipeline makes, so a discarded one is still looked for.
        generate = passwords.generate

        def recording(policy: PolicySettings) -> Secret:
            secret = generate(policy)
            world.generated.append(secret.reveal())
            return secret

        monkeypatch.setattr(passwords, "generate", recording)
        # Every level, so a secret in a debug line is caught too.
        caplog.set_level(logging.DEBUG)
        made.append(world)
        return world

    yield make
    for world in made:
        world.store.close()
        world.client.adapter.close()


@pytest.fixture
def world(make_world: WorldFactory, openbao: DevVault) -> World:
    """The demo inventory on the session's OpenBao (a prefix of its own) and fresh simulators."""
    return make_world(openbao)


def cli(world: World, *args: str, config: Path | None = None) -> int:
    """`rotate <args[0]> INVENTORY --config ... --out-dir ... <args[1:]>`, in-process."""
    return main(
        [
            args[0],
            str(world.inventory),
            "--config",
            str(config or world.config),
            "--out-dir",
            str(world.out),
            *args[1:],
        ]
    )


def snapshot(world: World, client: hvac.Client) -> dict[str, Any]:
    """Everything a run could change: Vault's secrets (current and pending) and target state."""
    vault: dict[str, Any] = {}
    for row in world.rows:
        try:
            meta = client.secrets.kv.v2.read_secret_metadata(
                path=row.vault_path, mount_point=DEV_MOUNT
            )
            vault[row.vault_path] = meta["data"]["current_version"], meta["data"]["updated_time"]
        except hvac.exceptions.InvalidPath:
            vault[row.vault_path] = None
    pending = journal_candidates(client, world.settings.vault)
    vault["journal"] = sorted((p, c.reveal()) for p, c in pending.items())
    targets = {row.label: sim_password(world.states[row.endpoint], row) for row in world.rows}
    return {"vault": vault, "targets": targets}


# --- the invariants -----------------------------------------------------------------------


def adopt(world: World) -> None:
    """Vault learns every account's password (the one its usages and directory hold) as its
    current version, as after a first run, so "the target holds Vault's current or the
    pending candidate" can be checked for each row."""
    for account in world.accounts:
        held = next((p for r in account.usages if (p := world.held(r)) is not None), None)
        if held is None:
            continue
        data = {"username": account.username, "password": held}
        if account.domain:
            data["domain"] = account.domain
        world.client.secrets.kv.v2.create_or_update_secret(
            account.vault_path, data, cas=0, mount_point=DEV_MOUNT
        )


def lockouts(world: World) -> list[str]:
    """Rows whose target, and accounts whose directory, hold a password that is neither
    Vault's current nor the pending candidate (invariants 1 and 6)."""
    problems = []
    stale = sync(world.store).stale()
    for row in world.rows:
        held = world.held(row)
        if held is None:
            continue  # no such object on the target: nothing to lock out of
        known = {world.current(row), world.pending(row)} - {None}
        if row.label in stale.get(row.vault_path, {}):
            # A usage recorded stale holds an earlier version (named in the record, or
            # unknown when its push was in doubt): Vault keeps every version.
            known |= set(world.history(row))
        if held not in known:
            problems.append(f"{row.label}: the target holds a password Vault does not have")
    for account in world.accounts:
        held = world.authority_password(account)
        if held is None or account.name not in {r.account for r in world.rows}:
            continue
        usage = account.usages[0]
        known = {world.current(usage), world.pending(usage)} - {None}
        if known and held not in known:
            problems.append(
                f"account {account.name}: its directory holds a password Vault does not have"
            )
    return problems


def converged(world: World, rows: list[Row] | None = None) -> list[str]:
    """What keeps the world from having converged: a usage not holding its account's current
    password, a password not logging in at its directory, a candidate or stale usage left."""
    from rotate.demo import convergence

    problems, _ = convergence(
        group_accounts(world.rows if rows is None else rows),
        world.states,
        world.directories,
        world.store,
        world.ssh_hosts,
    )
    return problems


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- no secret in any output --------------------------------------------------------------


def all_secrets(world: World) -> list[str]:
    """Every secret that must never reach an output: tokens, gateway passwords and their MD5,
    and every password a target or Vault ever held or the pipeline ever made in this test."""
    values = [world.token, *GATEWAYS.values(), *world.extra_secrets]
    values += [
        hashlib.md5(v.encode(), usedforsecurity=False).hexdigest() for v in GATEWAYS.values()
    ]
    values += [*world.initial.values(), *world.generated, *world.initial_accounts.values()]
    values += [d.admin_password for d in world.directories.values()]
    for account in world.accounts:
        if (held := world.authority_password(account)) is not None:
            values.append(held)
    for row in world.rows:
        for value in (world.held(row), world.current(row), world.pending(row)):
            if value:
                values.append(value)
    return values


def outputs(world: World, captured: pytest.CaptureResult[str]) -> str:
    """stdout, stderr and every file in the report directory (HTML, JSON, CSV, --json)."""
    text = captured.out + captured.err
    for f in sorted(world.out.glob("*")):
        text += f.read_text()
    return text


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """The product's log records (the simulators' own are left out), tracebacks included."""
    formatter = logging.Formatter()
    parts = []
    for record in caplog.records:
        if record.threadName == SIM_THREAD:
            continue
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def assert_no_secret_in_outputs(
    world: World,
    captured: pytest.CaptureResult[str],
    caplog: pytest.LogCaptureFixture,
    *files: Path,
) -> None:
    """No secret of `all_secrets` in stdout, stderr, the log, the reports or `files`."""
    places = {
        "stdout": captured.out,
        "stderr": captured.err,
        "log": log_text(caplog),
        **{f.name: f.read_text() for f in sorted({*world.out.glob("*"), *files})},
    }
    secrets = [s for s in all_secrets(world) if len(s) >= 6]
    assert len(secrets) > len(world.rows), "the secrets to look for were not collected"
    leaks = [
        f"secret #{i} in {where}"
        for where, text in places.items()
        for i, secret in enumerate(secrets)
        if secret in text
    ]
    assert leaks == [], leaks  # names the place, never the secret


def record_of(path: Path) -> dict[str, Any]:
    """A `--json` record."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data
