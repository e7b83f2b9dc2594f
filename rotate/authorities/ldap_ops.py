"""The ldap/ad authority's work on its threads: probe, find an account, check, change.

The account is found by an escaped search filter under base_dn, and the DN the directory
returns is used, never one composed from the login name. A read (search, bind) is tried once
more on a fresh connection when an idle one turns out closed; a change is never retried.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import ldap3  # type: ignore[import-untyped,unused-ignore]
from ldap3.core import exceptions as lx  # type: ignore[import-untyped,unused-ignore]
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped,unused-ignore]

from rotate.authorities.ldap_errors import (
    SIZE_LIMIT_EXCEEDED,
    SUCCESS,
    Lost,
    change_refusal,
    exc_text,
    failed_login,
    result_text,
    search_failure,
)
from rotate.authorities.ldap_pool import Connector, Pool, discard
from rotate.authorities.ldap_settings import LdapSettings
from rotate.errors import OutcomeUnknown, Rejected, RemoteError
from rotate.models import Secret

log = logging.getLogger(__name__)


class LdapOperations:
    """What the authority does at one directory, blocking; `admins` and `logins` keep the
    idle admin connections (bound once) and login connections (rebound per check)."""

    def __init__(
        self, settings: LdapSettings, connector: Connector, admins: Pool, logins: Pool
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.ad = settings.type == "ad"
        self._connector = connector
        self._admins = admins
        self._logins = logins
        self._dns: dict[str, str] = {}
        self._dns_lock = threading.Lock()

    def probe(self) -> str:
        """Bind as the admin and read base_dn (NotReached, BindRefused, Lost)."""
        secrets = self._connector.secrets()
        url = self._connector.url
        conn = self._connector.bind_admin(secrets)
        try:
            conn.search(
                self.settings.base_dn,
                "(objectClass=*)",
                search_scope=ldap3.BASE,
                attributes=[ldap3.NO_ATTRIBUTES],
                time_limit=self._connector.receive_timeout,
            )
        except (lx.LDAPException, OSError) as exc:
            discard(conn)
            raise Lost(f"reading base_dn at {url} failed: {exc_text(exc, secrets)}") from None
        result = dict(conn.result or {})
        self._admins.give(conn)
        if result.get("result") != SUCCESS:
            raise Lost(
                f"base_dn {self.settings.base_dn!r} cannot be read as {self.settings.bind_dn}: "
                f"{result_text(result, secrets)}"
            )
        kind = "active directory" if self.ad else "ldap directory"
        return f"{kind} at {url} answers, bound as {self.settings.bind_dn}"

    def login(self, username: str, password: Secret) -> bool:
        """Whether a simple bind as the account with `password` succeeds."""
        secrets = self._connector.secrets(password)
        dn = self._dn(username, secrets)

        def bind(conn: Any) -> tuple[bool, dict[str, Any]]:
            try:
                ok = conn.rebind(user=dn, password=password.reveal(), read_server_info=False)
            except (lx.LDAPPasswordIsMandatoryError, lx.LDAPSASLPrepError):
                raise RemoteError(
                    f"authority {self.name}: this password cannot be sent in a simple bind "
                    "(characters SASLprep refuses): cannot tell"
                ) from None
            except (lx.LDAPException, OSError) as exc:
                url = self._connector.url
                raise Lost(f"the bind at {url} failed: {exc_text(exc, secrets)}") from None
            finally:
                conn.password = None
            return bool(ok), dict(conn.result or {})

        conn, (ok, result) = self._logins.use(lambda: self._connector.connect(secrets), bind)
        self._logins.give(conn)
        if ok:
            return True
        failure = failed_login(self.name, username, result, secrets, self.ad)
        if failure is not None:
            raise failure
        return False

    def change(self, username: str, password: Secret) -> None:
        """Set the account's password as the admin; sent at most once."""
        secrets = self._connector.secrets(password)
        # a fresh search (not the cached DN): the entry is still there, still one, and the
        # connection the change goes out on has just answered
        conn, dn = self._found(username, secrets)
        try:
            if self.ad:
                conn.extend.microsoft.modify_password(dn, password.reveal())
            else:
                conn.extend.standard.modify_password(user=dn, new_password=password.reveal())
        except (lx.LDAPSASLPrepError, lx.LDAPPasswordIsMandatoryError):
            self._admins.give(conn)  # refused before anything was sent
            raise Rejected(
                f"authority {self.name}: the password has characters LDAP's SASLprep refuses"
            ) from None
        except (lx.LDAPInvalidDnError, lx.LDAPInvalidValueError) as exc:
            self._admins.give(conn)
            raise Rejected(
                f"authority {self.name}: the change could not be built: {exc_text(exc, secrets)}"
            ) from None
        except (lx.LDAPException, OSError) as exc:
            discard(conn)
            raise OutcomeUnknown(
                f"authority {self.name}: the connection failed after the change of "
                f"{username!r} was sent ({exc_text(exc, secrets)}); the directory may or may "
                "not hold the new password"
            ) from None
        result = dict(conn.result or {})
        self._admins.give(conn)
        if result.get("result") == SUCCESS:
            log.debug("authority %s: password of %s changed", self.name, dn)
            return
        raise change_refusal(self.name, username, result, secrets)

    # -- finding the account ----------------------------------------------------------------
    def _dn(self, username: str, secrets: Iterable[str]) -> str:
        """The account's DN: the one found last time, else searched for."""
        with self._dns_lock:
            dn = self._dns.get(username.casefold())
        if dn is None:
            conn, dn = self._found(username, secrets)
            self._admins.give(conn)
        return dn

    def _found(self, username: str, secrets: Iterable[str]) -> tuple[Any, str]:
        """An admin connection that just answered, and the account's DN found through it."""
        return self._admins.use(
            lambda: self._connector.bind_admin(secrets),
            lambda conn: self._search_dn(conn, username, secrets),
        )

    def _search_dn(self, conn: Any, username: str, secrets: Iterable[str]) -> str:
        """The DN of the one entry whose user_attr is `username` (escaped, RFC 4515)."""
        s = self.settings
        if not username.strip() or any(not c.isprintable() for c in username.replace(" ", "")):
            # escaped or not, some servers cut a value at a NUL (Samba finds "bob" for
            # "bob\x00x"): such a name is never searched for
            raise Rejected(
                f"authority {self.name}: no account is looked up by an empty name or one with "
                "control characters"
            )
        flt = f"(&{s.user_filter}({s.user_attr}={escape_filter_chars(username)}))"
        try:
            conn.search(
                s.base_dn,
                flt,
                search_scope=ldap3.SUBTREE,
                dereference_aliases=ldap3.DEREF_NEVER,
                attributes=[ldap3.NO_ATTRIBUTES],
                size_limit=2,
                time_limit=self._connector.receive_timeout,
            )
        except lx.LDAPInvalidFilterError:
            raise Rejected(
                f"authority {self.name}: {username!r} cannot be searched for as {s.user_attr}"
            ) from None
        except (lx.LDAPException, OSError) as exc:
            url = self._connector.url
            raise Lost(f"searching {url} failed: {exc_text(exc, secrets)}") from None
        result = dict(conn.result or {})
        found = [str(r["dn"]) for r in conn.response or () if r.get("type") == "searchResEntry"]
        code = result.get("result")
        where = f"{s.user_attr}={username!r} under {s.base_dn!r}"
        if code not in (SUCCESS, SIZE_LIMIT_EXCEEDED):
            raise search_failure(self.name, where, result, secrets)
        if not found:
            raise Rejected(f"authority {self.name}: no account with {where}")
        if len(found) > 1 or code == SIZE_LIMIT_EXCEEDED:
            raise Rejected(f"authority {self.name}: more than one entry with {where}: ambiguous")
        with self._dns_lock:
            self._dns[username.casefold()] = found[0]
        return found[0]
