"""`rotate simulate`: serve one seeded simulator per configured endpoint until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from rotate.errors import EXIT_ITEMS_FAILED, EXIT_OK, EXIT_USAGE
from rotate.models import Row, System
from rotate.settings import EndpointSettings, Settings
from rotate.sim.faults import Faults
from rotate.sim.host import LOOPBACK, AsyncSimulatorHost, serve_until_signalled
from rotate.sim.remotix import RemotixState
from rotate.sim.seed import new_state, seed_states
from rotate.sim.sparkview import SparkViewState
from rotate.sim.tls import make_tls


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


def configured_port(endpoint: EndpointSettings) -> int:
    """The port of an `http://` loopback endpoint URL, else 0 (any free port)."""
    parts = urlsplit(endpoint.url)
    try:
        port = parts.port
    except ValueError:
        return 0
    if parts.scheme == "http" and parts.hostname in (LOOPBACK, "localhost") and port:
        return port
    return 0


def gateway_passwords(
    endpoints: Iterable[EndpointSettings], env: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Each Spark View endpoint's gateway password from its variable, and the problems."""
    passwords: dict[str, str] = {}
    problems: list[str] = []
    for e in endpoints:
        if e.system is not System.SPARKVIEW:
            continue
        if not e.gateway_password_env:
            problems.append(
                f"endpoint {e.name}: the simulator needs gateway_password_env "
                "(it cannot read gateway_password_vault)"
            )
        elif not env.get(e.gateway_password_env):
            problems.append(
                f"endpoint {e.name}: set the environment variable {e.gateway_password_env} "
                "to the gateway password the simulator should expect"
            )
        else:
            passwords[e.name] = env[e.gateway_password_env]
    return passwords, problems


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
    passwords, problems = gateway_passwords(endpoints, env)
    states: dict[str, RemotixState | SparkViewState] = {}
    try:
        states = seed_states(rows, settings.endpoints, rng_seed=args.seed)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        for problem in problems:
            print(f"rotate simulate: {problem}", file=sys.stderr)
        return EXIT_USAGE
    for e in endpoints:
        states.setdefault(e.name, new_state(e.system))
    try:
        asyncio.run(_serve(args, endpoints, states, passwords, env, out))
    except OSError as exc:
        print(f"rotate simulate: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ITEMS_FAILED
    return EXIT_OK


async def _serve(
    args: argparse.Namespace,
    endpoints: list[EndpointSettings],
    states: Mapping[str, RemotixState | SparkViewState],
    passwords: Mapping[str, str],
    env: Mapping[str, str],
    out: Callable[[str], None],
) -> None:
    tls = make_tls(args.tls_dir) if args.tls_dir is not None else None
    if tls is not None:
        out(f"TLS: trust {tls.ca_file} (ca_bundle)")
    host = AsyncSimulatorHost(tls=tls.server if tls else None)
    try:
        for index, e in enumerate(endpoints):
            token = e.bearer_token(env)
            url = await host.add_endpoint(
                e,
                states[e.name],
                _faults(args, index),
                token=token.reveal() if token else None,
                gateway_password=passwords.get(e.name),
                port=0 if args.free_ports else configured_port(e),
            )
            out(f"{e.name} {e.system.value} {url}")
        sys.stdout.flush()
    except BaseException:
        await host.close()
        raise
    await serve_until_signalled(host)
