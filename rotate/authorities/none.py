"""`authority = none`: the usages are the only place the password lives (copies only).

Nothing is changed on any host: the new password is generated, pushed to every usage and
kept in Vault. Plans and reports say so loudly, since the account on the host keeps its
old password unless someone changes it by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rotate.authorities.base import Authority, AuthoritySettings, SecretSource, settings_from
from rotate.errors import RemoteError
from rotate.models import NO_AUTHORITY, Account, Secret

WARNING = (
    "copy-only: the host account is NOT changed; only the copies stored in the "
    "remote-access systems (and Vault) get the new password"
)


class NoneSettings(AuthoritySettings):
    """Settings of a copy-only authority: nothing beyond its name."""

    @property
    def changes(self) -> bool:
        return False


class NoAuthority:
    """Checks nothing and changes nothing."""

    def __init__(self, name: str = NO_AUTHORITY) -> None:
        self.name = name

    async def probe(self) -> str:
        return WARNING

    async def login(self, account: Account, password: Secret) -> bool:
        raise RemoteError(f"authority {self.name}: copy-only, no login to check")

    async def change(self, account: Account, password: Secret) -> None:
        raise RemoteError(f"authority {self.name}: copy-only, nothing to change")

    async def aclose(self) -> None:
        pass


class NoneType:
    """The `none` authority type."""

    name = "none"

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> AuthoritySettings | None:
        return settings_from(NoneSettings, name, self.name, table, errors)

    def check_account(
        self,
        settings: AuthoritySettings,
        username: str,
        domain: str | None,
        host: str | None,
        *,
        account: str = "",
    ) -> list[tuple[str, str]]:
        return []

    def build(self, settings: AuthoritySettings, secrets: SecretSource) -> Authority:
        return NoAuthority(settings.name)


TYPE = NoneType()
DEFAULT = NoneSettings(name=NO_AUTHORITY, type="none")
