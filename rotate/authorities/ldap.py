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
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import re
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap3  # type: ignore[import-untyped,unused-ignore]
from ldap3.core import exceptions as lx  # type: ignore[import-untyped,unused-ignore]
from ldap3.operation.search import parse_filter  # type: ignore[import-untyped,unused-ignore]
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped,unused-ignore]
from ldap3.utils.dn import parse_dn  # type: ignore[import-untyped,unused-ignore]
from ldap3.utils.log import (  # type: ignore[import-untyped,unused-ignore]
    OFF,
    set_library_log_detail_level,
    set_library_log_hide_sensitive_data,
)

from rotate.authorities.base import Authority, AuthoritySettings, SecretSource
from rotate.configparse import build, positive, timeouts, unreadable
from rotate.errors import (
    AdminRefused,
    AuthorityUnavailable,
    ConfigError,
    OutcomeUnknown,
    Rejected,
    RemoteError,
)
from rotate.models import Account, Secret

log = logging.getLogger(__name__)

# ldap3 logs whole requests (bind passwords, new passwords) once its detail level is raised
set_library_log_detail_level(OFF)
set_library_log_hide_sensitive_data(True)

T = TypeVar("T")

MAX_CONNECTIONS = 64
#: characters a sAMAccountName may not contain (besides control characters)
AD_FORBIDDEN = '"/\\[]:;|=,+*?<>'
AD_MAX_NAME = 20
#: "data <hex>" of an AD invalidCredentials (49) bind: what it means beyond a wrong password
AD_BIND_DATA = {
    "525": "no such user",
    "530": "logon not permitted at this time",
    "531": "logon not permitted from this workstation",
    "532": "the password has expired",
    "533": "the account is disabled",
    "701": "the account has expired",
    "773": "the password must be changed at next logon",
    "775": "the account is locked out",
}
AD_WRONG_PASSWORD = "52e"  # noqa: S105 - an error code
AD_PASSWORD_POLICY = "0000052D"  # noqa: S105 - an error code
# result codes (RFC 4511 4.1.9)
_SUCCESS = 0
_SIZE_LIMIT_EXCEEDED = 4
_CONSTRAINT_VIOLATION = 19
_NO_SUCH_OBJECT = 32
_INVALID_CREDENTIALS = 49
_INSUFFICIENT_ACCESS = 50
_UNWILLING = 53
#: a bind answered with one of these: the admin credential itself is refused (exit 3)
_ADMIN_REFUSALS = frozenset({7, 8, 13, 48, 49, 50, 53})
#: the server did not do it, and may well do it when asked again later
_TRANSIENT = frozenset({1, 3, 11, 51, 52, 80})
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-2](\.[0-9]+)+")
_AD_DATA = re.compile(r"\bdata ([0-9a-fA-F]{1,8})\b")
_DIAGNOSTIC_LIMIT = 160
#: characters of RFC 4515 filters and RFC 4514 DNs, refused in an ldap login name (the
#: authority escapes them anyway: this keeps an injection attempt out of any directory)
LDAP_SPECIALS = frozenset('*()\\,=+<>;"#')


@dataclass(frozen=True)
class LdapSettings(AuthoritySettings):
    """[authorities.<name>] of type ldap (and, as AdSettings, ad)."""

    url: str = ""  # ldaps://host[:port] or ldap://host[:port]
    starttls: bool = False
    bind_dn: str = ""
    bind_password_env: str | None = None
    bind_password_vault: str | None = None  # "<path>#<key>" in the KV mount
    base_dn: str = ""
    ca_bundle: str | None = None  # PEM file of the CA(s) of the directory's certificate
    insecure: bool = False  # TLS without certificate checks (or a clear-text bind off loopback)
    user_attr: str = ""  # default: uid (ldap), sAMAccountName (ad)
    user_filter: str = ""  # default: (objectClass=inetOrgPerson) / AD's users
    timeout_s: float = 10.0
    connections: int = 4  # LDAP connections of each kind, and threads

    @property
    def tls(self) -> bool:
        return self.url.lower().startswith("ldaps://") or self.starttls

    def warnings(self) -> tuple[str, ...]:
        if self.insecure:
            return (
                f"authority {self.name}: TLS certificate checks are OFF (insecure = true); "
                "anyone on the path can read the passwords sent",
            )
        return ()

    def required_env(self) -> tuple[str, ...]:
        if self.bind_password_env and not self.bind_password_vault:
            return (self.bind_password_env,)
        return ()


@dataclass(frozen=True)
class AdSettings(LdapSettings):
    """[authorities.<name>] of type ad (Active Directory, Samba AD)."""


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (636 if scheme == "ldaps" else 389)
    return _Target(scheme, parts.hostname or "", port)


def ldap_url_problem(url: str) -> str | None:
    """What makes `url` unusable as a directory's address, or None; a password is never echoed."""
    shown = "the URL" if "@" in url else repr(url)
    if not url.lower().startswith(("ldap://", "ldaps://")):
        return f"{shown} is not an ldap:// or ldaps:// URL"
    if any(c.isspace() or not c.isprintable() for c in url):
        return f"{shown} contains a space or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError unless a number from 0 to 65535
    except ValueError:
        return f"{shown} has an invalid host or port"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password: secrets never live in the config file"
    if not parts.hostname:
        return f"{shown} has no host"
    if port == 0:
        return f"{shown} has an invalid host or port"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{shown} must be scheme://host[:port] only (the search base is base_dn)"
    return None


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _dn_problem(dn: str) -> str | None:
    try:
        parse_dn(dn)
    except (lx.LDAPException, ValueError, TypeError, IndexError) as exc:
        return f"{dn!r} is not a valid DN ({exc})"
    return None


def _filter_problem(text: str) -> str | None:
    try:
        parse_filter(text, None, False, False, None, False)
    except (lx.LDAPException, ValueError, TypeError, IndexError) as exc:
        return f"{text!r} is not a valid LDAP filter ({exc})"
    return None


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
        data = {k: v for k, v in table.items() if k != "type"}
        built: LdapSettings | None = build(
            self.settings_class, data, where, errors, name=name, type=self.name
        )
        if built is None:  # pragma: no cover - build only fails on a type it did not check
            return None
        for key in ("url", "bind_dn", "base_dn"):
            if key not in data:
                errors.append(f"{where}: missing required key {key!r}")
            elif isinstance(data[key], str) and not data[key].strip():
                errors.append(f"{where}.{key}: must not be empty")
        s = built
        if s.url and (why := ldap_url_problem(s.url)):
            errors.append(f"{where}.url: {why}")
        elif s.url:
            target = _target(s.url)
            if target.scheme == "ldaps" and s.starttls:
                errors.append(f"{where}: starttls = true with an ldaps:// URL (TLS from the start)")
            if target.scheme == "ldap" and not s.starttls:
                if self.ad:
                    errors.append(
                        f"{where}.url: Active Directory refuses simple binds without TLS: "
                        "use ldaps:// or starttls = true"
                    )
                elif not _loopback(target.host) and not s.insecure:
                    errors.append(
                        f"{where}.url: passwords would cross the network in clear text: use "
                        "ldaps:// or starttls = true (insecure = true allows it)"
                    )
                if s.ca_bundle is not None:
                    errors.append(f"{where}.ca_bundle: given, but the connection is not TLS")
        for key in ("bind_dn", "base_dn"):
            value = getattr(s, key)
            if value.strip() and (why := _dn_problem(value)):
                errors.append(f"{where}.{key}: {why}")
        if bool(s.bind_password_env) == bool(s.bind_password_vault):
            errors.append(
                f"{where}: give exactly one of bind_password_env and bind_password_vault "
                "(the bind password never lives in the config file)"
            )
        if s.bind_password_vault and "#" not in s.bind_password_vault:
            errors.append(f"{where}.bind_password_vault: expected '<path>#<key>'")
        if s.insecure and s.ca_bundle:
            errors.append(f"{where}: insecure = true and ca_bundle contradict each other")
        if s.ca_bundle is not None and (why := unreadable(s.ca_bundle)):
            errors.append(f"{where}.ca_bundle: {s.ca_bundle!r} {why}")
        if "user_attr" in data and not _ATTRIBUTE.fullmatch(s.user_attr):
            errors.append(f"{where}.user_attr: {s.user_attr!r} is not an attribute name")
        if "user_filter" in data and (why := _filter_problem(s.user_filter)):
            errors.append(f"{where}.user_filter: {why}")
        positive(errors, where, timeout_s=s.timeout_s, connections=s.connections)
        timeouts(errors, where, timeout_s=s.timeout_s)
        if s.connections > MAX_CONNECTIONS:
            errors.append(f"{where}.connections: at most {MAX_CONNECTIONS}, got {s.connections}")
        if len(errors) > before:
            return None
        return replace(
            s,
            user_attr=s.user_attr or self.default_attr,
            user_filter=s.user_filter or self.default_filter,
        )

    def check_account(
        self, settings: AuthoritySettings, username: str, domain: str | None, host: str | None
    ) -> list[tuple[str, str]]:
        attr = getattr(settings, "user_attr", "") or self.default_attr
        if not username.strip():
            return [("username", f"is empty: a {attr} is needed to find the account")]
        problems = []
        bad = [i for i, c in enumerate(username) if not c.isprintable() and c != " "]
        if bad:
            problems.append(
                ("username", f"contains a control character (or NUL) at position {bad[0] + 1}")
            )
        if username != username.strip():
            problems.append(("username", "has leading or trailing spaces"))
        if not self.ad:
            specials = sorted({c for c in username if c in LDAP_SPECIALS})
            if specials:
                problems.append(
                    (
                        "username",
                        f"contains {' '.join(specials)}: search-filter or DN metacharacters "
                        "are refused in a login name (a uid with them is an injection or a "
                        "typo far more often than a real account)",
                    )
                )
        if self.ad:
            if len(username) > AD_MAX_NAME:
                problems.append(
                    (
                        "username",
                        f"is {len(username)} characters long; a sAMAccountName has at most "
                        f"{AD_MAX_NAME}",
                    )
                )
            forbidden = sorted({c for c in username if c in AD_FORBIDDEN})
            if forbidden:
                shown = " ".join(forbidden)
                problems.append(
                    (
                        "username",
                        f"a sAMAccountName may not contain {shown} (found in {username!r})",
                    )
                )
            if username.strip(". ") == "" or username.endswith("."):
                problems.append(("username", "a sAMAccountName may not end with '.'"))
        return problems

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


# --- texts without secrets ---------------------------------------------------------------


def _clean(text: str, secrets: Iterable[str], limit: int = _DIAGNOSTIC_LIMIT) -> str:
    """`text` with every secret masked, control characters gone, trimmed to `limit`."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _result_text(result: Mapping[str, Any] | None, secrets: Iterable[str]) -> str:
    """`description (code): diagnostic` of an LDAP result."""
    if not result:
        return "no result"
    code = result.get("result")
    description = result.get("description") or "error"
    message = _clean(str(result.get("message") or ""), secrets)
    return f"{description} ({code})" + (f": {message}" if message else "")


def _exc_text(exc: BaseException, secrets: Iterable[str]) -> str:
    """What went wrong on the wire (ldap3's socket and TLS errors), without request data."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) == 2 and isinstance(args[1], list) and args[1]:
        # "unable to open socket" with the history of every address tried: the last one
        last = args[1][-1]
        exc = last[0] if isinstance(last, tuple) and last else exc
    text = _clean(str(exc), secrets)
    if isinstance(exc, lx.LDAPResponseTimeoutError) or "timed out" in text:
        return f"no answer in time ({text})" if text else "no answer in time"
    return text or type(exc).__name__


def _tls_failure(exc: BaseException) -> bool:
    if isinstance(exc, ssl.SSLError | lx.LDAPStartTLSError | lx.LDAPCertificateError):
        return True
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) == 2 and isinstance(args[1], list):
        return any(isinstance(h[0], ssl.SSLError) for h in args[1] if isinstance(h, tuple) and h)
    return "ssl" in str(exc).lower()


# --- connections ---------------------------------------------------------------------------


class _ContextTls(ldap3.Tls):  # type: ignore[misc,unused-ignore]
    """ldap3's Tls on an SSLContext of ours: Python checks the chain and the host name."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(validate=context.verify_mode)
        self.context = context
        self.server_hostname = server_hostname

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self.server_hostname,
        )


def _tls_context(settings: LdapSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"authorities.{settings.name}.ca_bundle: {settings.ca_bundle!r} cannot be loaded: {exc}"
        ) from None
    if settings.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _NotReached(Exception):
    """No connection (refused, unreachable, TLS failed): nothing was sent."""


class _BindRefused(Exception):
    """The admin bind was answered with a failure."""

    def __init__(self, code: int | None, text: str) -> None:
        super().__init__(text)
        self.code = code


class _Lost(Exception):
    """An established connection failed (reset, closed, timed out) during a read."""


def _discard(conn: Any) -> None:
    """Close a connection for good (and drop what it remembers of the last request)."""
    try:
        conn.password = None
        conn.request = None
        conn.unbind()
    except Exception:  # noqa: S110 - a broken connection is being thrown away
        pass


def _discard_all(conns: Iterable[Any]) -> None:
    for conn in conns:
        _discard(conn)


class _Pool:
    """Idle connections of one kind, reused across calls (at most `size` kept)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> Any | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def give(self, conn: Any) -> None:
        conn.password = None
        conn.request = None
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        _discard(conn)

    def drain(self) -> list[Any]:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        return idle

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)


class LdapAuthority:
    """One directory in a run: an admin that resets passwords, binds that check them."""

    def __init__(self, settings: LdapSettings, bind_password: Secret) -> None:
        self.name = settings.name
        self.settings = settings
        self.ad = settings.type == "ad"
        self._bind_password = bind_password
        self._target = _target(settings.url)
        self.url = self._target.url
        tls = _ContextTls(_tls_context(settings), self._target.host) if settings.tls else None
        self._tls = tls
        # ldap3 packs it into SO_RCVTIMEO as whole seconds
        self._receive_timeout = max(1, math.ceil(settings.timeout_s))
        self._executor = ThreadPoolExecutor(
            max_workers=settings.connections, thread_name_prefix=f"authority-{settings.name}"
        )
        self._admins = _Pool(settings.connections)
        self._logins = _Pool(settings.connections)
        self._dns: dict[str, str] = {}
        self._dns_lock = threading.Lock()
        self._closed = False
        self._kind = "active directory" if self.ad else "ldap directory"

    def __repr__(self) -> str:
        return f"LdapAuthority({self.name!r}, {self.settings.type!r}, {self.url!r})"

    # --- the Authority protocol (async: everything blocking runs on the pool) --------------

    async def probe(self) -> str:
        try:
            return await self._run(self._probe)
        except _NotReached as exc:
            raise AuthorityUnavailable(f"authority {self.name}: {exc}") from None
        except _Lost as exc:
            raise AuthorityUnavailable(f"authority {self.name}: {exc}") from None
        except _BindRefused as exc:
            if exc.code in _ADMIN_REFUSALS:
                raise AdminRefused(
                    f"authority {self.name}: {self.url} refused rotate's admin bind as "
                    f"{self.settings.bind_dn}: {exc}"
                ) from None
            raise AuthorityUnavailable(
                f"authority {self.name}: the admin bind as {self.settings.bind_dn} failed: {exc}"
            ) from None

    async def login(self, account: Account, password: Secret) -> bool:
        if not password.reveal():
            # RFC 4513 5.1.2: a DN with an empty password is an unauthenticated bind, which
            # some servers answer with success: it proves nothing
            return False
        try:
            return await self._run(self._login, account.username, password)
        except (_NotReached, _Lost, _BindRefused) as exc:
            raise RemoteError(
                f"authority {self.name}: cannot check the password of {account.username!r}: {exc}"
            ) from None

    async def change(self, account: Account, password: Secret) -> None:
        if not password.reveal():
            raise Rejected(f"authority {self.name}: an empty password is never set")
        try:
            await self._run(self._change, account.username, password)
        except (_NotReached, _Lost, _BindRefused) as exc:
            raise RemoteError(
                f"authority {self.name}: the password of {account.username!r} was not changed "
                f"(not sent): {exc}"
            ) from None

    async def aclose(self) -> None:
        self._closed = True
        idle = self._admins.drain() + self._logins.drain()
        if idle:
            await asyncio.to_thread(_discard_all, idle)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RemoteError(f"authority {self.name}: closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # --- on the pool's threads ---------------------------------------------------------------

    def _connect(self, secrets: Iterable[str]) -> Any:
        """A new open connection (TLS started when configured), not bound yet."""
        # A Server of its own: ldap3 keeps the current address and a 5 s "unavailable" mark
        # on the Server, shared by every connection and thread that uses it
        server = ldap3.Server(
            self._target.host,
            port=self._target.port,
            use_ssl=self._target.scheme == "ldaps",
            tls=self._tls,
            get_info=ldap3.NONE,
            connect_timeout=self.settings.timeout_s,
        )
        conn = ldap3.Connection(
            server,
            authentication=ldap3.SIMPLE,
            client_strategy=ldap3.SYNC,
            raise_exceptions=False,
            receive_timeout=self._receive_timeout,
            auto_referrals=False,
            check_names=True,
        )
        try:
            conn.open(read_server_info=False)
            if self.settings.starttls and not conn.start_tls(read_server_info=False):
                raise lx.LDAPStartTLSError("StartTLS was not accepted")
        except (lx.LDAPException, OSError) as exc:
            _discard(conn)
            what = "TLS with" if _tls_failure(exc) else "connecting to"
            raise _NotReached(f"{what} {self.url} failed: {_exc_text(exc, secrets)}") from None
        return conn

    def _bind_admin(self, secrets: Iterable[str]) -> Any:
        conn = self._connect(secrets)
        try:
            ok = conn.rebind(
                user=self.settings.bind_dn,
                password=self._bind_password.reveal(),
                read_server_info=False,
            )
        except (lx.LDAPException, OSError) as exc:
            _discard(conn)
            raise _NotReached(
                f"the admin bind at {self.url} failed: {_exc_text(exc, secrets)}"
            ) from None
        finally:
            conn.password = None
        if not ok:
            result = dict(conn.result or {})
            _discard(conn)
            raise _BindRefused(result.get("result"), _result_text(result, secrets))
        return conn

    def _admin(self, secrets: Iterable[str]) -> tuple[Any, bool]:
        """An admin connection: an idle one (True: reused) or a freshly bound one."""
        conn = self._admins.take()
        if conn is not None:
            return conn, True
        return self._bind_admin(secrets), False

    def _secrets(self, *more: Secret) -> tuple[str, ...]:
        return (self._bind_password.reveal(), *(s.reveal() for s in more))

    def _probe(self) -> str:
        secrets = self._secrets()
        conn = self._bind_admin(secrets)
        try:
            conn.search(
                self.settings.base_dn,
                "(objectClass=*)",
                search_scope=ldap3.BASE,
                attributes=[ldap3.NO_ATTRIBUTES],
                time_limit=self._receive_timeout,
            )
        except (lx.LDAPException, OSError) as exc:
            _discard(conn)
            raise _Lost(
                f"reading base_dn at {self.url} failed: {_exc_text(exc, secrets)}"
            ) from None
        result = dict(conn.result or {})
        self._admins.give(conn)
        if result.get("result") != _SUCCESS:
            raise _Lost(
                f"base_dn {self.settings.base_dn!r} cannot be read as {self.settings.bind_dn}: "
                f"{_result_text(result, secrets)}"
            )
        return f"{self._kind} at {self.url} answers, bound as {self.settings.bind_dn}"

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
                time_limit=self._receive_timeout,
            )
        except lx.LDAPInvalidFilterError:
            raise Rejected(
                f"authority {self.name}: {username!r} cannot be searched for as {s.user_attr}"
            ) from None
        except (lx.LDAPException, OSError) as exc:
            raise _Lost(f"searching {self.url} failed: {_exc_text(exc, secrets)}") from None
        result = dict(conn.result or {})
        found = [str(r["dn"]) for r in conn.response or () if r.get("type") == "searchResEntry"]
        code = result.get("result")
        where = f"{s.user_attr}={username!r} under {s.base_dn!r}"
        if code not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):
            text = _result_text(result, secrets)
            if code in _TRANSIENT:
                raise _Lost(f"searching for {where} failed: {text}")
            raise Rejected(f"authority {self.name}: searching for {where} failed: {text}")
        if not found:
            raise Rejected(f"authority {self.name}: no account with {where}")
        if len(found) > 1 or code == _SIZE_LIMIT_EXCEEDED:
            raise Rejected(f"authority {self.name}: more than one entry with {where}: ambiguous")
        with self._dns_lock:
            self._dns[username.casefold()] = found[0]
        return found[0]

    def _found(self, username: str, secrets: Iterable[str]) -> tuple[Any, str]:
        """An admin connection that just answered, and the account's DN found through it."""
        for attempt in range(2):
            conn, reused = self._admin(secrets)
            try:
                return conn, self._search_dn(conn, username, secrets)
            except _Lost:
                _discard(conn)
                if reused and attempt == 0:
                    continue  # an idle connection the server had closed: once more, afresh
                raise
            except BaseException:
                self._admins.give(conn)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _dn(self, username: str, secrets: Iterable[str]) -> str:
        with self._dns_lock:
            dn = self._dns.get(username.casefold())
        if dn is None:
            conn, dn = self._found(username, secrets)
            self._admins.give(conn)
        return dn

    def _login(self, username: str, password: Secret) -> bool:
        secrets = self._secrets(password)
        dn = self._dn(username, secrets)
        for attempt in range(2):
            conn = self._logins.take()
            reused = conn is not None
            if conn is None:
                conn = self._connect(secrets)
            try:
                ok = conn.rebind(user=dn, password=password.reveal(), read_server_info=False)
            except (lx.LDAPPasswordIsMandatoryError, lx.LDAPSASLPrepError):
                self._logins.give(conn)
                raise RemoteError(
                    f"authority {self.name}: this password cannot be sent in a simple bind "
                    "(characters SASLprep refuses): cannot tell"
                ) from None
            except (lx.LDAPException, OSError) as exc:
                _discard(conn)
                if reused and attempt == 0:
                    continue
                raise _Lost(f"the bind at {self.url} failed: {_exc_text(exc, secrets)}") from None
            finally:
                conn.password = None
            result = dict(conn.result or {})
            self._logins.give(conn)
            if ok:
                return True
            code = result.get("result")
            if code == _INVALID_CREDENTIALS:
                data = _AD_DATA.search(str(result.get("message") or ""))
                if self.ad and data and data.group(1).lower() != AD_WRONG_PASSWORD:
                    why = AD_BIND_DATA.get(data.group(1).lower(), "not a plain wrong password")
                    raise RemoteError(
                        f"authority {self.name}: cannot tell whether the password of "
                        f"{username!r} is right: {why} (data {data.group(1)})"
                    )
                return False
            raise RemoteError(
                f"authority {self.name}: the bind as {username!r} was answered "
                f"{_result_text(result, secrets)}: cannot tell"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _change(self, username: str, password: Secret) -> None:
        secrets = self._secrets(password)
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
                f"authority {self.name}: the change could not be built: {_exc_text(exc, secrets)}"
            ) from None
        except (lx.LDAPException, OSError) as exc:
            _discard(conn)
            raise OutcomeUnknown(
                f"authority {self.name}: the connection failed after the change of "
                f"{username!r} was sent ({_exc_text(exc, secrets)}); the directory may or may "
                "not hold the new password"
            ) from None
        result = dict(conn.result or {})
        self._admins.give(conn)
        code = result.get("result")
        if code == _SUCCESS:
            log.debug("authority %s: password of %s changed", self.name, dn)
            return
        raise self._refusal(username, result, secrets)

    def _refusal(
        self, username: str, result: Mapping[str, Any], secrets: Iterable[str]
    ) -> RemoteError:
        code = result.get("result")
        text = _result_text(result, secrets)
        message = str(result.get("message") or "")
        lead = f"authority {self.name}: {username!r}:"
        if code == _CONSTRAINT_VIOLATION or AD_PASSWORD_POLICY in message.upper():
            return Rejected(
                f"{lead} the directory refused the password: complexity, length or history ({text})"
            )
        if code == _INSUFFICIENT_ACCESS:
            return Rejected(f"{lead} rotate's admin may not reset this password ({text})")
        if code == _UNWILLING:
            return Rejected(f"{lead} the directory is unwilling to set this password ({text})")
        if code == _NO_SUCH_OBJECT:
            return Rejected(f"{lead} the account's entry is gone ({text})")
        if code in _TRANSIENT:
            return RemoteError(f"{lead} the directory did not change the password ({text})")
        return Rejected(f"{lead} the directory refused the change ({text})")
