"""Build simulator states holding every object an inventory refers to, with random passwords."""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Callable, Iterable, Mapping

from rotate.models import VNC_MAX_LENGTH, VNC_TYPE_PROTOCOLS, Kind, Row, System
from rotate.settings import EndpointSettings
from rotate.sim.remotix import RemotixState
from rotate.sim.sparkview import SparkViewState

_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 16
SEED_GROUP = "Imported"


def new_state(system: System) -> RemotixState | SparkViewState:
    """An empty state for an endpoint of `system`."""
    return RemotixState() if system is System.REMOTIX else SparkViewState()


def seed_states(
    rows: Iterable[Row],
    endpoints: Mapping[str, EndpointSettings],
    rng_seed: int | None = None,
) -> dict[str, RemotixState | SparkViewState]:
    """One state per endpoint named in `rows`, holding every object the rows refer to.

    Each credential gets the row's username and domain and a random initial password
    (`secrets`, or a seeded generator when `rng_seed` is given; 8 characters for VNC types).
    A row naming an endpoint absent from `endpoints`, or of another system, is a ValueError.
    """
    choose: Callable[[str], str] = (
        secrets.choice if rng_seed is None else random.Random(rng_seed).choice
    )

    def password(protocol: str) -> str:
        length = VNC_MAX_LENGTH if protocol in VNC_TYPE_PROTOCOLS else PASSWORD_LENGTH
        return "".join(choose(_ALPHABET) for _ in range(length))

    states: dict[str, RemotixState | SparkViewState] = {}
    for row in rows:
        endpoint = endpoints.get(row.endpoint)
        if endpoint is None:
            raise ValueError(f"line {row.line}: unknown endpoint {row.endpoint!r}")
        state = states.get(row.endpoint)
        if state is None:
            state = states[row.endpoint] = new_state(endpoint.system)
        if isinstance(state, RemotixState) and row.kind is Kind.CONNECTION:
            group = _group(state)
            state.add_connection(
                row.target,
                row.target,
                row.protocol,
                group_uid=group,
                username=row.username,
                password=password(row.protocol),
                domain=row.domain,
            )
        elif isinstance(state, RemotixState) and row.kind is Kind.COMPUTER:
            if row.target not in state.computers:
                state.add_computer(row.target, row.target)
            keys = {"username": row.username, "password": password(row.protocol)}
            if row.domain is not None:
                keys["domain"] = row.domain
            state.add_computer_connection(row.target, row.protocol_suffix, keys)
        elif isinstance(state, SparkViewState) and row.kind is Kind.SERVER:
            state.add_server(
                row.target,
                row.target,
                f"{row.target}.example.test",
                username=row.username,
                password=password(row.protocol),
                domain=row.domain,
            )
        else:
            raise ValueError(
                f"line {row.line}: a {row.kind.value} row cannot live on "
                f"{endpoint.system.value} endpoint {row.endpoint!r}"
            )
    return states


def _group(state: RemotixState) -> str:
    for group in state.groups.values():
        if group.name == SEED_GROUP:
            return group.uid
    return state.add_group(SEED_GROUP)
