"""Build simulator, directory and SSH host states holding every object an inventory refers
to, with random initial passwords."""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from rotate.authorities.base import AuthoritySettings
from rotate.authorities.ldap import LdapSettings
from rotate.authorities.ssh_settings import SshSettings
from rotate.models import Account, Row
from rotate.registry import vendor_of
from rotate.sim.base import SimCounters
from rotate.sim.directory import DirectoryState
from rotate.sim.sshhost_state import SshHostState
from rotate.vendors.base import EndpointSettings

_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 16


def new_state(endpoint: EndpointSettings) -> SimCounters:
    """An empty state for the simulator of `endpoint`'s vendor."""
    return vendor_of(endpoint).simulator.new_state()


def seed_states(
    rows: Iterable[Row],
    endpoints: Mapping[str, EndpointSettings],
    rng_seed: int | None = None,
    *,
    passwords: dict[str, str] | None = None,
) -> dict[str, SimCounters]:
    """One state per endpoint named in `rows`, holding every object the rows refer to.

    Each credential gets the row's username and domain and its account's initial password:
    the usages of one account hold one password, as in a fleet that was in sync before
    rotate came (`secrets`, or a seeded generator when `rng_seed` is given; no longer than
    the row's kind takes, such as 8 characters for VNC). `passwords` (account name ->
    password) is read and filled in, so that the directories can be seeded with the same ones
    (`seed_directories`). A row naming an endpoint absent from `endpoints`, or a kind its
    vendor does not serve, is a ValueError.
    """
    choose: Callable[[str], str] = (
        secrets.choice if rng_seed is None else random.Random(rng_seed).choice
    )
    known = passwords if passwords is not None else {}
    states: dict[str, SimCounters] = {}
    for row in rows:
        endpoint = endpoints.get(row.endpoint)
        if endpoint is None:
            raise ValueError(f"line {row.line}: unknown endpoint {row.endpoint!r}")
        vendor = vendor_of(endpoint)
        kind = vendor.kinds.get(row.kind)
        if kind is None:
            raise ValueError(
                f"line {row.line}: a {row.kind} row cannot live on "
                f"{endpoint.system} endpoint {row.endpoint!r}"
            )
        if row.account not in known:
            length = min(PASSWORD_LENGTH, kind.max_password(row.protocol) or PASSWORD_LENGTH)
            known[row.account] = "".join(choose(_ALPHABET) for _ in range(length))
        state = states.get(row.endpoint)
        if state is None:
            state = states[row.endpoint] = vendor.simulator.new_state()
        vendor.simulator.seed(state, row, known[row.account])
    return states


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


def ssh_settings(config: AuthoritySettings | None) -> SshSettings | None:
    """The settings of an ssh authority (None for any other)."""
    return config if isinstance(config, SshSettings) else None


def seed_ssh_hosts(
    accounts: Iterable[Account],
    authorities: Mapping[str, AuthoritySettings],
    rng_seed: int | None = None,
    passwords: Mapping[str, str] | None = None,
) -> dict[str, SshHostState]:
    """An SSH host stand-in per `ssh` authority the accounts use, holding every account as a
    local user with its initial password from `passwords` (account name -> password: the one
    its usages hold, see `seed_states`), else a random one; its login user and command are
    the authority's. One stand-in serves all the hosts of its authority: a user name found
    on two hosts of one authority is a ValueError."""
    choose: Callable[[str], str] = (
        secrets.choice if rng_seed is None else random.Random(rng_seed).choice
    )
    hosts: dict[str, SshHostState] = {}
    seen: dict[tuple[str, str], str | None] = {}  # (authority, user) -> its host
    for account in accounts:
        config = ssh_settings(authorities.get(account.authority))
        if config is None:
            continue
        state = hosts.get(account.authority)
        if state is None:
            state = hosts[account.authority] = SshHostState(
                login_user=config.login_user, command=config.command
            )
        key = (account.authority, account.username)
        if key in seen:
            raise ValueError(
                f"account {account.name}: user {account.username!r} is on host "
                f"{seen[key]!r} and {account.host!r}: one stand-in serves every host of "
                f"authority {account.authority}, so its user names must differ"
            )
        seen[key] = account.host
        initial = (passwords or {}).get(account.name)
        if not initial:
            initial = "".join(choose(_ALPHABET) for _ in range(PASSWORD_LENGTH))
        state.add_user(account.username, initial)
    return hosts
