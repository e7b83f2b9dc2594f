"""`rotate simulate`: serve one seeded simulator per configured endpoint, a directory stand-in
per `ldap`/`ad` authority and an SSH host stand-in per `ssh` authority the inventory uses,
until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from rotate.authorities.ldap import LdapSettings
from rotate.errors import EXIT_ITEMS_FAILED, EXIT_OK, EXIT_USAGE
from rotate.inventory import group_accounts
from rotate.models import Row
from rotate.registry import vendor_of
from rotate.settings import Settings
from rotate.sim.base import SimCounters
from rotate.sim.faults import Faults
from rotate.sim.host import LOOPBACK, AsyncSimulatorHost, serve_until_signalled
from rotate.sim.seed import (
    SeededDirectory,
    new_state,
    seed_directories,
    seed_ssh_hosts,
    seed_states,
    ssh_settings,
)
from rotate.sim.sshhost import SshHostState, public_key_of
from rotate.sim.tls import SimTLS, make_tls
from rotate.vendors.base import EndpointSettings


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `rotate simulate` to its sub-parser."""
    g = parser.add_argument_group("fault injection (applied to every simulator)")
    g.add_argument("--latency-ms", type=_non_negative, default=0.0, help="added to each request")
    g.add_argument("--error-rate", type=_rate, default=0.0, help="share of requests answered 503")
    g.add_argument(
        "--rate-limit-rate", type=_rate, default=0.0, help="share answered 429 + Retry-After"
    )
    g.add_argument("--hang-rate", type=_rate, default=0.0, help="share that hang --hang-s first")
    g.add_argument("--hang-s", type=_non_negative, default=30.0, help="how long a hang lasts")
    g.add_argument("--drop-rate", type=_rate, default=0.0, help="share of connections dropped")
    g.add_argument(
        "--apply-then-fail-rate",
        type=_rate,
        default=0.0,
        help="share of writes applied and then answered 500",
    )
    g.add_argument("--seed", type=int, default=None, help="seed for faults and passwords")
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="listen on free ports even where an endpoint's URL names a loopback port",
    )
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve HTTPS with a new self-signed CA whose certificate is written to "
        "DIR/simulator-ca.pem (give it to the endpoints as ca_bundle)",
    )


def _faults(args: argparse.Namespace, index: int) -> Faults:
    return Faults(
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        hang_rate=args.hang_rate,
        hang_s=args.hang_s,
        drop_rate=args.drop_rate,
        apply_then_fail_rate=args.apply_then_fail_rate,
        seed=None if args.seed is None else args.seed + index,
    )


def configured_port(endpoint: EndpointSettings | str) -> int:
    """The port of a loopback endpoint (`http://`) or directory (`ldap(s)://`) URL, else 0
    (any free port)."""
    url = endpoint if isinstance(endpoint, str) else endpoint.url
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return 0
    local = parts.hostname in (LOOPBACK, "localhost")
    if parts.scheme in ("http", "ldap", "ldaps") and local and port:
        return port
    return 0


def directory_passwords(
    settings: Settings, rows: Iterable[Row], initial: Mapping[str, str] | None = None
) -> tuple[dict[str, SeededDirectory], list[str]]:
    """A seeded stand-in per `ldap`/`ad` authority the rows use (accounts on their `initial`
    passwords), its admin password (rotate's bind password) taken from the authority's
    bind_password_env; and the problems."""
    seeded = seed_directories(group_accounts(rows), settings.authorities, passwords=initial)
    env = settings.env or os.environ
    problems = []
    for name, directory in list(seeded.items()):
        config = settings.authorities[name]
        assert isinstance(config, LdapSettings)  # seed_directories serves only those
        var = config.bind_password_env
        if not var or not env.get(var):
            problems.append(
                f"authority {name}: set the environment variable "
                f"{var or '(bind_password_env)'} to the bind password the stand-in should expect"
            )
            continue
        seeded[name] = replace(directory, admin_password=env[var])
        directory.state.add_admin(config.bind_dn, env[var])
    return seeded, problems


@dataclass(frozen=True)
class SeededSshHost:
    """An SSH host stand-in's state, and the public key its login user logs in with."""

    state: SshHostState
    authorized_key: str


def ssh_hosts(
    settings: Settings, rows: Iterable[Row], initial: Mapping[str, str] | None = None
) -> tuple[dict[str, SeededSshHost], list[str]]:
    """A seeded stand-in per `ssh` authority the rows use (accounts on their `initial`
    passwords), its login user's public key read from the authority's key_file (its `.pub`
    beside it, else the private key itself); and the problems."""
    problems: list[str] = []
    try:
        states = seed_ssh_hosts(group_accounts(rows), settings.authorities, passwords=initial)
    except ValueError as exc:
        return {}, [str(exc)]
    seeded: dict[str, SeededSshHost] = {}
    for name, state in states.items():
        config = ssh_settings(settings.authorities[name])
        key_file = config.key_file if config is not None else None
        if not key_file:
            problems.append(
                f"authority {name}: the SSH host stand-in needs the login user's public key: "
                "give the authority a key_file (its private key, or <key_file>.pub beside it)"
            )
            continue
        try:
            seeded[name] = SeededSshHost(state, public_key_of(Path(key_file)))
        except ValueError as exc:
            problems.append(f"authority {name}: {exc}")
    return seeded, problems


def simulator_secrets(
    endpoints: Iterable[EndpointSettings], env: Mapping[str, str]
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """What each endpoint's simulator must expect (its gateway password, its token), from
    the variables its settings name; and the problems."""
    found: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for e in endpoints:
        try:
            found[e.name] = vendor_of(e).simulator.secrets(e, env)
        except ValueError as exc:
            problems.append(str(exc))
    return found, problems


def run(
    args: argparse.Namespace,
    settings: Settings,
    rows: Iterable[Row],
    *,
    out: Callable[[str], None] = print,
) -> int:
    """Serve one simulator per endpoint of `settings`, seeded from `rows`, until a signal."""
    env = settings.env or os.environ
    endpoints = list(settings.endpoints.values())
    if not endpoints:
        print("rotate simulate: the config names no endpoint", file=sys.stderr)
        return EXIT_USAGE
    rows = list(rows)
    secrets, problems = simulator_secrets(endpoints, env)
    states: dict[str, SimCounters] = {}
    initial: dict[str, str] = {}
    try:
        states = seed_states(rows, settings.endpoints, rng_seed=args.seed, passwords=initial)
    except ValueError as exc:
        problems.append(str(exc))
    directories, more = directory_passwords(settings, rows, initial)
    problems += more
    hosts, more = ssh_hosts(settings, rows, initial)
    problems += more
    if problems:
        for problem in problems:
            print(f"rotate simulate: {problem}", file=sys.stderr)
        return EXIT_USAGE
    for e in endpoints:
        states.setdefault(e.name, new_state(e))
    try:
        asyncio.run(_serve(args, settings, states, secrets, directories, hosts, out))
    except OSError as exc:
        print(f"rotate simulate: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ITEMS_FAILED
    return EXIT_OK


async def _serve(
    args: argparse.Namespace,
    settings: Settings,
    states: Mapping[str, SimCounters],
    secrets: Mapping[str, Mapping[str, str]],
    directories: Mapping[str, SeededDirectory],
    hosts: Mapping[str, SeededSshHost],
    out: Callable[[str], None],
) -> None:
    endpoints = list(settings.endpoints.values())
    tls = make_tls(args.tls_dir) if args.tls_dir is not None else None
    if tls is not None:
        out(f"TLS: trust {tls.ca_file} (ca_bundle)")
    host = AsyncSimulatorHost(tls=tls.server if tls else None)
    with tempfile.TemporaryDirectory(prefix="rotate-sim-tls-") as scratch:
        try:
            await _start(args, host, endpoints, states, secrets, out)
            await _directories(args, host, settings, directories, tls, Path(scratch), out)
            await serve_ssh_hosts(args, host, settings, hosts, out)
            sys.stdout.flush()
        except BaseException:
            await host.close()
            raise
        await serve_until_signalled(host)


async def _directories(
    args: argparse.Namespace,
    host: AsyncSimulatorHost,
    settings: Settings,
    directories: Mapping[str, SeededDirectory],
    tls: SimTLS | None,
    scratch: Path,
    out: Callable[[str], None],
) -> None:
    """Serve the directory stand-ins (LDAPS for `ad`; StartTLS where the authority asks)."""
    if not directories:
        return
    if tls is None:  # Active Directory refuses binds without TLS: the stand-ins need a CA
        tls = make_tls(scratch)
        out(f"TLS: directories: trust {tls.ca_file} (ca_bundle)")
    for name, directory in directories.items():
        config = settings.authorities[name]
        assert isinstance(config, LdapSettings)
        directory.state.latency_s = args.latency_ms / 1000
        port = 0 if args.free_ports else configured_port(config.url)
        if config.type == "ad":
            url = await host.add_directory(name, directory.state, tls=tls.server, port=port)
        elif config.starttls:
            url = await host.add_directory(name, directory.state, starttls=tls.server, port=port)
        else:
            url = await host.add_directory(name, directory.state, port=port)
        out(f"{name} {config.type} {url}")


async def serve_ssh_hosts(
    args: argparse.Namespace,
    host: AsyncSimulatorHost,
    settings: Settings,
    hosts: Mapping[str, SeededSshHost],
    out: Callable[[str], None],
) -> None:
    """Serve the SSH host stand-ins: on the authority's `port` when it is not a privileged
    one (below 1024: a free port), and print the known_hosts line a client must trust."""
    for name, seeded in hosts.items():
        seeded.state.latency_s = args.latency_ms / 1000
        config = ssh_settings(settings.authorities[name])
        port = config.port if config is not None else 22
        if args.free_ports or port < 1024:
            port = 0
        address = await host.add_ssh_host(
            name, seeded.state, authorized_key=seeded.authorized_key, port=port
        )
        out(f"{name} ssh {address}")
        out(f"{name} known_hosts: {host.ssh_host(name).known_hosts_line}")


async def _start(
    args: argparse.Namespace,
    host: AsyncSimulatorHost,
    endpoints: list[EndpointSettings],
    states: Mapping[str, SimCounters],
    secrets: Mapping[str, Mapping[str, str]],
    out: Callable[[str], None],
) -> None:
    """Serve one simulator per endpoint, expecting the secrets its vendor's simulator reads."""
    for index, e in enumerate(endpoints):
        sim = vendor_of(e).simulator.serve(e, states[e.name], _faults(args, index), secrets[e.name])
        port = 0 if args.free_ports else configured_port(e)
        url = await host.add_simulator(e.name, sim, system=e.system, port=port)
        out(f"{e.name} {e.system} {url}")
