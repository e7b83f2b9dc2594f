"""`type = "vault-ldap"`: follow OpenBao/Vault's LDAP secrets engine (its static roles).

The engine owns the password: it changes it at the directory on its own schedule (or when
someone writes `ldap/rotate-role/<role>`). rotate never makes or changes one for such an
account. Each run reads `<mount>/static-cred/<role>` (the inventory's `account` value names
the role) and brings every usage that holds an older password to the engine's, then keeps
the KV copy of the account (for readers that look there) once the usages took it. A run in
which the engine rotated nothing changes nothing.

The engine's password was not made by rotate, so before it goes anywhere it is checked
against what every usage can carry (rotate/following.py).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rotate.authorities.base import (
    Authority,
    AuthoritySettings,
    Followed,
    SecretSource,
    settings_from,
)
from rotate.errors import ConfigError, Rejected, RemoteError, StoreError
from rotate.models import Account, Secret
from rotate.stores.base import DataPlane

#: a role name or mount path: segments of letters, digits and `._@-`, none of them `.`/`..`
_SEGMENT = re.compile(r"[A-Za-z0-9_@-][A-Za-z0-9._@-]*")


def _path_problem(value: str, what: str) -> str:
    """Why `value` is not a safe Vault path (segments joined by `/`), or ""."""
    if not value:
        return f"{what} is empty"
    if any(not _SEGMENT.fullmatch(part) for part in value.split("/")):
        return (
            f"{what} {value!r} is not a Vault path of letters, digits and `._@-` "
            "(segments joined by `/`, none of them `.` or `..`)"
        )
    return ""


@dataclass(frozen=True)
class VaultLdapSettings(AuthoritySettings):
    """`[authorities.<name>]` of type vault-ldap: where the engine is mounted."""

    mount: str = "ldap"

    @property
    def changes(self) -> bool:
        return False

    @property
    def follows(self) -> bool:
        return True


class VaultLdapAuthority:
    """The engine's static roles, read through the run's Vault; nothing is ever written."""

    def __init__(self, settings: VaultLdapSettings, vault: DataPlane) -> None:
        self.name = settings.name
        self.settings = settings
        self._vault = vault

    async def probe(self) -> str:
        return (
            f"follows OpenBao/Vault's LDAP secrets engine at {self.settings.mount}/: its "
            "static roles' passwords are read, never made or changed by rotate"
        )

    async def followed(self, account: Account) -> Followed:
        """`<mount>/static-cred/<role>`: the engine's current password of the role."""
        where = f"{self.settings.mount}/static-cred/{account.name}"
        try:
            data = await self._vault.read_engine(where)
        except StoreError as exc:
            raise RemoteError(f"the engine's password not read ({exc})") from None
        if data is None:
            raise RemoteError(
                f"Vault has no static role {account.name!r} at {self.settings.mount}/ "
                "(the account's `account` value names the role)"
            )
        password, username = data.get("password"), data.get("username")
        if not isinstance(password, str) or not password:
            raise RemoteError(f"{where} answered without a password")
        if not isinstance(username, str):
            raise RemoteError(f"{where} answered without a username")
        return Followed(username, Secret(password), _rotated_at(data.get("last_vault_rotation")))

    async def login(self, account: Account, password: Secret) -> bool:
        """Whether `password` is the engine's current one (the engine checked it logs in)."""
        held = await self.followed(account)
        return hmac.compare_digest(held.password.reveal().encode(), password.reveal().encode())

    async def change(self, account: Account, password: Secret) -> None:
        raise Rejected(
            f"authority {self.name}: the LDAP secrets engine owns this password; rotate "
            "follows it and never changes it"
        )

    async def aclose(self) -> None:
        pass


def _rotated_at(value: object) -> datetime | None:
    """`last_vault_rotation` (RFC 3339 with nanoseconds), or None when it has none."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python takes at most 6 digits of fraction
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class VaultLdapType:
    """The `vault-ldap` authority type."""

    name = "vault-ldap"

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> AuthoritySettings | None:
        built = settings_from(VaultLdapSettings, name, self.name, table, errors)
        if built is None:
            return None
        mount = built.mount.strip("/")
        if problem := _path_problem(mount, "mount"):
            errors.append(f"authorities.{name}: {problem}")
            return None
        return replace(built, mount=mount)

    def check_account(
        self,
        settings: AuthoritySettings,
        username: str,
        domain: str | None,
        host: str | None,
        *,
        account: str = "",
    ) -> list[tuple[str, str]]:
        if not account:
            return [
                (
                    "account",
                    f"authority {settings.name} follows the LDAP secrets engine: the "
                    "`account` column names the engine's static role",
                )
            ]
        problem = _path_problem(account, "the static role name")
        return [("account", problem)] if problem else []

    def build(self, settings: AuthoritySettings, secrets: SecretSource) -> Authority:
        if not isinstance(settings, VaultLdapSettings):  # pragma: no cover - parse made it
            raise ConfigError(f"authorities.{settings.name}: not {self.name} settings")
        return VaultLdapAuthority(settings, secrets.vault())


VAULT_LDAP = VaultLdapType()
