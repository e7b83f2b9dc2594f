"""What a directory's answers and ldap3's errors mean for rotate, in texts without secrets.

Every text is built from result codes and the directory's diagnostic, cleaned of every
password the caller knows, stripped of control characters and trimmed; an ldap3 object
(whose repr carries the bind password) is never formatted.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

from ldap3.core import exceptions as lx  # type: ignore[import-untyped,unused-ignore]

from rotate.errors import AdminRefused, AuthorityUnavailable, Rejected, RemoteError, RotateError

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
SUCCESS = 0
SIZE_LIMIT_EXCEEDED = 4
CONSTRAINT_VIOLATION = 19
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS = 50
UNWILLING = 53
#: a bind answered with one of these: the admin credential itself is refused (exit 3)
ADMIN_REFUSALS = frozenset({7, 8, 13, 48, 49, 50, 53})
#: the server did not do it, and may well do it when asked again later
TRANSIENT = frozenset({1, 3, 11, 51, 52, 80})
_AD_DATA = re.compile(r"\bdata ([0-9a-fA-F]{1,8})\b")
_DIAGNOSTIC_LIMIT = 160


class NotReached(Exception):
    """No connection (refused, unreachable, TLS failed): nothing was sent."""


class BindRefused(Exception):
    """The admin bind was answered with a failure."""

    def __init__(self, code: int | None, text: str) -> None:
        super().__init__(text)
        self.code = code


class Lost(Exception):
    """An established connection failed (reset, closed, timed out) during a read."""


#: the failures above: nothing was changed (a change's own failures are translated where
#: it is sent, as only there is it known whether it went out)
NOTHING_DONE = (NotReached, Lost, BindRefused)


# -- texts ------------------------------------------------------------------------------------


def clean(text: str, secrets: Iterable[str], limit: int = _DIAGNOSTIC_LIMIT) -> str:
    """`text` with every secret masked, control characters gone, trimmed to `limit`."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_text(result: Mapping[str, Any] | None, secrets: Iterable[str]) -> str:
    """`description (code): diagnostic` of an LDAP result."""
    if not result:
        return "no result"
    code = result.get("result")
    description = result.get("description") or "error"
    message = clean(str(result.get("message") or ""), secrets)
    return f"{description} ({code})" + (f": {message}" if message else "")


def exc_text(exc: BaseException, secrets: Iterable[str]) -> str:
    """What went wrong on the wire (ldap3's socket and TLS errors), without request data."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) == 2 and isinstance(args[1], list) and args[1]:
        # "unable to open socket" with the history of every address tried: the last one
        last = args[1][-1]
        exc = last[0] if isinstance(last, tuple) and last else exc
    text = clean(str(exc), secrets)
    if _timed_out(exc):
        return f"no answer in time ({text})" if text else "no answer in time"
    return text or type(exc).__name__


def _timed_out(exc: BaseException) -> bool:
    """Whether the error, or one it was raised from, is a wait that ran out: ldap3's rebind
    reports a bind that timed out as "the server abruptly closed the connection"."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never a cycle
        if seen is None:
            return False
        if isinstance(seen, lx.LDAPResponseTimeoutError | TimeoutError):
            return True
        if "timed out" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def tls_failure(exc: BaseException) -> bool:
    """Whether a failure to connect was TLS's (the handshake, the certificate, StartTLS)."""
    if isinstance(exc, ssl.SSLError | lx.LDAPStartTLSError | lx.LDAPCertificateError):
        return True
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) == 2 and isinstance(args[1], list):
        return any(isinstance(h[0], ssl.SSLError) for h in args[1] if isinstance(h, tuple) and h)
    return "ssl" in str(exc).lower()


# -- meanings ---------------------------------------------------------------------------------


def probe_failure(name: str, url: str, bind_dn: str, exc: Exception) -> RotateError:
    """A failed probe: the admin credential refused (AdminRefused), or the directory not
    usable now (AuthorityUnavailable)."""
    if isinstance(exc, BindRefused):
        if exc.code in ADMIN_REFUSALS:
            return AdminRefused(
                f"authority {name}: {url} refused rotate's admin bind as {bind_dn}: {exc}"
            )
        return AuthorityUnavailable(f"authority {name}: the admin bind as {bind_dn} failed: {exc}")
    return AuthorityUnavailable(f"authority {name}: {exc}")


def search_failure(
    name: str, where: str, result: Mapping[str, Any], secrets: Iterable[str]
) -> Lost | Rejected:
    """A search for an account answered with an error: Lost when worth a new try."""
    text = result_text(result, secrets)
    if result.get("result") in TRANSIENT:
        return Lost(f"searching for {where} failed: {text}")
    return Rejected(f"authority {name}: searching for {where} failed: {text}")


def failed_login(
    name: str, username: str, result: Mapping[str, Any], secrets: Iterable[str], ad: bool
) -> RemoteError | None:
    """What a failed bind as the account means: None for a plain wrong password, else why
    it cannot tell (an AD account locked, expired, disabled..., or another error)."""
    if result.get("result") == INVALID_CREDENTIALS:
        data = _AD_DATA.search(str(result.get("message") or ""))
        if ad and data and data.group(1).lower() != AD_WRONG_PASSWORD:
            why = AD_BIND_DATA.get(data.group(1).lower(), "not a plain wrong password")
            return RemoteError(
                f"authority {name}: cannot tell whether the password of "
                f"{username!r} is right: {why} (data {data.group(1)})"
            )
        return None
    return RemoteError(
        f"authority {name}: the bind as {username!r} was answered "
        f"{result_text(result, secrets)}: cannot tell"
    )


def change_refusal(
    name: str, username: str, result: Mapping[str, Any], secrets: Iterable[str]
) -> RemoteError:
    """A change answered with an error: Rejected (definite), or RemoteError when transient."""
    code = result.get("result")
    text = result_text(result, secrets)
    message = str(result.get("message") or "")
    lead = f"authority {name}: {username!r}:"
    if code == CONSTRAINT_VIOLATION or AD_PASSWORD_POLICY in message.upper():
        return Rejected(
            f"{lead} the directory refused the password: complexity, length or history ({text})"
        )
    if code == INSUFFICIENT_ACCESS:
        return Rejected(f"{lead} rotate's admin may not reset this password ({text})")
    if code == UNWILLING:
        return Rejected(f"{lead} the directory is unwilling to set this password ({text})")
    if code == NO_SUCH_OBJECT:
        return Rejected(f"{lead} the account's entry is gone ({text})")
    if code in TRANSIENT:
        return RemoteError(f"{lead} the directory did not change the password ({text})")
    return Rejected(f"{lead} the directory refused the change ({text})")
