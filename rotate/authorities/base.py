"""The Authority protocol: where an account's password is checked, and changed.

An authority is one back end (an LDAP directory, Active Directory, a host over SSH, an
external rotator, or none at all). Its *type* is a plugin (`AuthorityType`): it parses its own
`[authorities.<name>]` section, checks the login names of the accounts that use it before
anything changes, and builds the `Authority` a run talks to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from rotate.configparse import build
from rotate.models import Account, Secret
from rotate.stores.base import DataPlane


@dataclass(frozen=True)
class AuthoritySettings:
    """The settings every authority has; each type adds its own fields in a subclass."""

    name: str
    type: str

    @property
    def changes(self) -> bool:
        """Whether rotate sets passwords there (False: copies only, or another rotator)."""
        return True

    def warnings(self) -> tuple[str, ...]:
        """What every report must say about this authority's settings (checks switched off)."""
        return ()

    @property
    def follows(self) -> bool:
        """Whether another rotator owns the password and rotate follows it (`Follower`)."""
        return False

    def required_env(self) -> tuple[str, ...]:
        """Environment variables that must be set for a run (its own credential's, when it
        is not read from Vault): checked before any network call."""
        return ()

    def unreadable_files(self) -> tuple[str, ...]:
        """The files it names that this machine cannot read now (a key, known hosts), each
        as `<key> '<path>' <why>`: checked before any network call, as the environment is,
        so a config can name files of the machine that runs it."""
        return ()


S = TypeVar("S", bound=AuthoritySettings)


def settings_from(
    cls: type[S], name: str, kind: str, table: Mapping[str, Any], errors: list[str]
) -> S | None:
    """`[authorities.<name>]` as the settings class `cls` of authority type `kind` (its
    `type` key names the type: no field); every problem appended to `errors`."""
    data = {k: v for k, v in table.items() if k != "type"}
    built: S | None = build(cls, data, f"authorities.{name}", errors, name=name, type=kind)
    return built


class SecretSource(Protocol):
    """Where a back end's own credential comes from: an environment variable or Vault."""

    def secret(self, env_var: str | None, vault_ref: str | None, what: str) -> Secret:
        """The secret named by `env_var` (if set) or `vault_ref` (`<path>#<key>`);
        ConfigError or StoreError naming `what` when neither gives one."""
        ...

    def vault(self) -> DataPlane:
        """The run's Vault, for a back end that reads another secrets engine there;
        StoreError when there is none."""
        ...


class Authority(Protocol):
    """One authority in a run. Errors: rotate.errors' RemoteError family."""

    name: str

    async def probe(self) -> str:
        """Log in as rotate's admin; AdminRefused (exit 3) or AuthorityUnavailable if not."""
        ...

    async def login(self, account: Account, password: Secret) -> bool:
        """Whether `password` logs in as the account; RemoteError when that cannot be told."""
        ...

    async def change(self, account: Account, password: Secret) -> None:
        """Set the account's password; Rejected (not set), OutcomeUnknown, RemoteError (not
        reached: not set)."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...


@dataclass(frozen=True, slots=True)
class Followed:
    """An account's password as the rotator that owns it has it now."""

    username: str  # the login name the rotator changes it for
    password: Secret = field(repr=False)
    rotated_at: datetime | None  # when the rotator last changed it, if it says


@runtime_checkable
class Follower(Protocol):
    """An authority whose passwords another rotator owns (OpenBao/Vault's LDAP engine):
    rotate never makes or changes one, it brings the usages to the rotator's."""

    async def followed(self, account: Account) -> Followed:
        """The rotator's current password of the account; RemoteError when not read."""
        ...


class AuthorityType(Protocol):
    """A kind of authority (`type = "ldap"`): a plugin the registry finds by its name."""

    name: str

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> AuthoritySettings | None:
        """Settings from `[authorities.<name>]`; every problem appended to `errors`."""
        ...

    def check_account(
        self,
        settings: AuthoritySettings,
        username: str,
        domain: str | None,
        host: str | None,
        *,
        account: str = "",
    ) -> list[tuple[str, str]]:
        """What makes these login names (and the inventory's `account` value, "" when the row
        names none) unusable here, as (column, message) pairs."""
        ...

    def build(self, settings: AuthoritySettings, secrets: SecretSource) -> Authority:
        """The authority a run talks to (its own credential read from `secrets`)."""
        ...
