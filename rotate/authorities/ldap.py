"""`type = "ldap"` and `type = "ad"`: a directory checks the account's password and changes it.

An LDAP directory (OpenLDAP, 389-DS...) or Active Directory (Windows, Samba). Rotate binds as
its own admin (`bind_dn`, password from the environment or Vault), finds the account under
`base_dn` by an escaped search filter (`uid` / `sAMAccountName`) and uses the DN the directory
returns, never one composed from the login name. Then:

- change: ldap -> the Password Modify extended operation (RFC 3062) as the admin;
  ad -> a replace of `unicodePwd` (the quoted password in UTF-16-LE), over TLS only;
- login: a simple bind as the account with the password, on a connection of its own.

ldap3 is synchronous: every call runs on a bounded thread pool (`connections` threads), never
on the event loop. Admin connections (bound once) and login connections (rebound per check)
are kept and reused; a broken one is replaced, and a read (search, bind) is tried once more on
a fresh connection. A change is never retried here: after it was sent, a lost connection or a
timeout is an OutcomeUnknown (the next login tells).

No secret is ever in a message: texts are built from result codes and the directory's
diagnostic, cleaned of every password this module knows, and trimmed; ldap3's own logging is
kept off (its Connection repr carries the bind password).

This module is the plugin (the type, and the authority's async face); beside it:
ldap_settings (settings and their checks), ldap_pool (TLS, connections, idle pools),
ldap_ops (probe, search, login, change, on the threads) and ldap_errors (secret-free texts,
and what each answer means).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from rotate.authorities.base import Authority, AuthoritySettings, SecretSource, settings_from
from rotate.authorities.ldap_errors import NOTHING_DONE, probe_failure
from rotate.authorities.ldap_ops import LdapOperations
from rotate.authorities.ldap_pool import Connector, Pool, discard_all
from rotate.authorities.ldap_settings import (
    LDAP_SPECIALS,
    AdSettings,
    LdapSettings,
    ldap_url_problem,
    settings_problems,
    username_problems,
)
from rotate.errors import ConfigError, Rejected, RemoteError
from rotate.models import Account, Secret

__all__ = [
    "AD",
    "LDAP",
    "LDAP_SPECIALS",
    "AdSettings",
    "LdapAuthority",
    "LdapSettings",
    "LdapType",
    "ldap_url_problem",
]

T = TypeVar("T")


class LdapType:
    """The `ldap` or the `ad` authority type."""

    def __init__(self, name: str, ad: bool) -> None:
        self.name = name
        self.ad = ad
        self.settings_class: type[LdapSettings] = AdSettings if ad else LdapSettings
        self.default_attr = "sAMAccountName" if ad else "uid"
        self.default_filter = (
            "(&(objectClass=user)(objectCategory=person))" if ad else "(objectClass=inetOrgPerson)"
        )

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> AuthoritySettings | None:
        where = f"authorities.{name}"
        before = len(errors)
        built = settings_from(self.settings_class, name, self.name, table, errors)
        if built is None:  # pragma: no cover - build only fails on a type it did not check
            return None
        errors += settings_problems(built, table, where, self.ad)
        if len(errors) > before:
            return None
        return replace(
            built,
            user_attr=built.user_attr or self.default_attr,
            user_filter=built.user_filter or self.default_filter,
        )

    def check_account(
        self,
        settings: AuthoritySettings,
        username: str,
        domain: str | None,
        host: str | None,
        *,
        account: str = "",
    ) -> list[tuple[str, str]]:
        attr = getattr(settings, "user_attr", "") or self.default_attr
        return username_problems(username, self.ad, attr)

    def build(self, settings: AuthoritySettings, secrets: SecretSource) -> Authority:
        if not isinstance(settings, LdapSettings):  # pragma: no cover - parse made it
            raise ConfigError(f"authorities.{settings.name}: not {self.name} settings")
        password = secrets.secret(
            settings.bind_password_env,
            settings.bind_password_vault,
            f"authority {settings.name}: the bind password",
        )
        return LdapAuthority(settings, password)


LDAP = LdapType("ldap", ad=False)
AD = LdapType("ad", ad=True)


class LdapAuthority:
    """One directory in a run: an admin that resets passwords, binds that check them."""

    def __init__(self, settings: LdapSettings, bind_password: Secret) -> None:
        self.name = settings.name
        self.settings = settings
        self.ad = settings.type == "ad"
        connector = Connector(settings, bind_password)
        self.url = connector.url
        self._executor = ThreadPoolExecutor(
            max_workers=settings.connections, thread_name_prefix=f"authority-{settings.name}"
        )
        self._admins = Pool(settings.connections)
        self._logins = Pool(settings.connections)
        self._ops = LdapOperations(settings, connector, self._admins, self._logins)
        self._closed = False

    def __repr__(self) -> str:
        return f"LdapAuthority({self.name!r}, {self.settings.type!r}, {self.url!r})"

    async def probe(self) -> str:
        try:
            return await self._run(self._ops.probe)
        except NOTHING_DONE as exc:
            raise probe_failure(self.name, self.url, self.settings.bind_dn, exc) from None

    async def login(self, account: Account, password: Secret) -> bool:
        if not password.reveal():
            # RFC 4513 5.1.2: a DN with an empty password is an unauthenticated bind, which
            # some servers answer with success: it proves nothing
            return False
        try:
            return await self._run(self._ops.login, account.username, password)
        except NOTHING_DONE as exc:
            raise RemoteError(
                f"authority {self.name}: cannot check the password of {account.username!r}: {exc}"
            ) from None

    async def change(self, account: Account, password: Secret) -> None:
        if not password.reveal():
            raise Rejected(f"authority {self.name}: an empty password is never set")
        try:
            await self._run(self._ops.change, account.username, password)
        except NOTHING_DONE as exc:
            raise RemoteError(
                f"authority {self.name}: the password of {account.username!r} was not changed "
                f"(not sent): {exc}"
            ) from None

    async def aclose(self) -> None:
        self._closed = True
        idle = self._admins.drain() + self._logins.drain()
        if idle:
            await asyncio.to_thread(discard_all, idle)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the authority's threads: ldap3 blocks, the event loop must not."""
        if self._closed:
            raise RemoteError(f"authority {self.name}: closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
