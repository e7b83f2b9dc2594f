"""Build simulator and directory states holding every object an inventory refers to, with
random initial passwords."""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from rotate.authorities.base import AuthoritySettings
from rotate.authorities.ldap import LdapSettings
from rotate.models import VNC_MAX_LENGTH, VNC_TYPE_PROTOCOLS, Account, Kind, Row, System
from rotate.settings import EndpointSettings
from rotate.sim.directory import DirectoryState
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
    *,
    links: bool = False,
    passwords: dict[str, str] | None = None,
) -> dict[str, RemotixState | SparkViewState]:
    """One state per endpoint named in `rows`, holding every object the rows refer to.

    Each credential gets the row's username and domain and its account's initial password:
    the usages of one account hold one password, as in a fleet that was in sync before
    rotate came (`secrets`, or a seeded generator when `rng_seed` is given; 8 characters for
    VNC types). `passwords` (account name -> password) is read and filled in, so that the
    directories can be seeded with the same ones (`seed_directories`).
    With `links`, each Spark View server also gets access links (see `add_access_links`).
    A row naming an endpoint absent from `endpoints`, or of another system, is a ValueError.
    """
    choose: Callable[[str], str] = (
        secrets.choice if rng_seed is None else random.Random(rng_seed).choice
    )
    known = passwords if passwords is not None else {}

    def fresh(protocol: str) -> str:
        length = VNC_MAX_LENGTH if protocol in VNC_TYPE_PROTOCOLS else PASSWORD_LENGTH
        return "".join(choose(_ALPHABET) for _ in range(length))

    def password(row: Row) -> str:
        name = row.account_name
        if name not in known:
            known[name] = fresh(row.protocol)
        return known[name]

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
                password=password(row),
                domain=row.domain,
            )
        elif isinstance(state, RemotixState) and row.kind is Kind.COMPUTER:
            if row.target not in state.computers:
                state.add_computer(row.target, row.target)
            keys = {"username": row.username, "password": password(row)}
            if row.domain is not None:
                keys["domain"] = row.domain
            state.add_computer_connection(row.target, row.protocol_suffix, keys)
        elif isinstance(state, SparkViewState) and row.kind is Kind.SERVER:
            state.add_server(
                row.target,
                row.target,
                f"{row.target}.example.test",
                username=row.username,
                password=password(row),
                domain=row.domain,
            )
        else:
            raise ValueError(
                f"line {row.line}: a {row.kind.value} row cannot live on "
                f"{endpoint.system.value} endpoint {row.endpoint!r}"
            )
    if links:
        for name, state in states.items():
            if isinstance(state, SparkViewState):
                add_access_links(state, endpoints[name], lambda: fresh("RDP"))
    return states


def add_access_links(
    state: SparkViewState,
    endpoint: EndpointSettings,
    new_password: Callable[[], str] | None = None,
) -> list[str]:
    """Access links for every server with a stored logon, as a gateway often has them.

    `<id>-link` embeds the server's logon (user, password and domain, in the endpoint's
    parameter names, between other parameters); `<id>-other` logs on to the same server as
    another account with a password of its own; `<id>-prompt` names the user but no password.
    Returns the ids of the links that embed a server's logon (those a rotation updates).
    """
    make = new_password or (lambda: "".join(secrets.choice(_ALPHABET) for _ in range(16)))
    embedding = []
    for server in list(state.servers.values()):
        username = server.rdp.get("username")
        password = server.rdp.get("password")
        if not username or not password:
            continue
        logon = [(endpoint.user_param, username), (endpoint.password_param, password)]
        if server.rdp.get("domain"):
            logon.append((endpoint.domain_param, server.rdp["domain"]))
        around = [("width", "1280"), *logon, ("height", "800")]
        state.add_symlink(
            f"{server.id}-link", server.id, urlencode(around), "5d", comment="helpdesk"
        )
        embedding.append(f"{server.id}-link")
        other = [(endpoint.user_param, f"{username}-other"), (endpoint.password_param, make())]
        state.add_symlink(f"{server.id}-other", server.id, urlencode(other), "8h")
        state.add_symlink(
            f"{server.id}-prompt", server.id, urlencode([(endpoint.user_param, username)])
        )
    return embedding


def _group(state: RemotixState) -> str:
    for group in state.groups.values():
        if group.name == SEED_GROUP:
            return group.uid
    return state.add_group(SEED_GROUP)


@dataclass(frozen=True)
class SeededDirectory:
    """A directory stand-in's state for one authority, and rotate's admin password there."""

    state: DirectoryState
    admin_password: str = field(repr=False)


def naming_context(base_dn: str) -> str:
    """The directory's root under which `base_dn` searches: its trailing `dc=` parts
    (`ou=people,dc=example,dc=org` -> `dc=example,dc=org`)."""
    parts = [p.strip() for p in base_dn.split(",")]
    first_dc = next((i for i, p in enumerate(parts) if p.lower().startswith("dc=")), 0)
    return ",".join(parts[first_dc:])


def seed_directories(
    accounts: Iterable[Account],
    authorities: Mapping[str, AuthoritySettings],
    rng_seed: int | None = None,
    passwords: Mapping[str, str] | None = None,
) -> dict[str, SeededDirectory]:
    """A directory stand-in per `ldap`/`ad` authority the accounts use, holding rotate's
    admin (the authority's `bind_dn`) and every account, with its initial password from
    `passwords` (account name -> password: the one its usages hold, see `seed_states`), else
    a random one (Vault knows neither yet)."""
    choose: Callable[[str], str] = (
        secrets.choice if rng_seed is None else random.Random(rng_seed).choice
    )

    def password() -> str:
        # one of each class first: 3 of 4 classes is what AD's complexity rule asks
        return "Aa1-" + "".join(choose(_ALPHABET) for _ in range(PASSWORD_LENGTH))

    seeded: dict[str, SeededDirectory] = {}
    for account in accounts:
        config = authorities.get(account.authority)
        if not isinstance(config, LdapSettings):
            continue
        directory = seeded.get(account.authority)
        if directory is None:
            state = DirectoryState(
                "ad" if config.type == "ad" else "ldap", naming_context(config.base_dn)
            )
            directory = seeded[account.authority] = SeededDirectory(state, password())
            state.add_admin(config.bind_dn, directory.admin_password)
        if directory.state.password(account.username) is None:
            initial = (passwords or {}).get(account.name) or password()
            directory.state.add_user(account.username, initial)
    return seeded
