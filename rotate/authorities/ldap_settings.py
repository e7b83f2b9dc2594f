"""Settings of the ldap and ad authorities, and the checks of their values and account names."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ldap3.core import exceptions as lx  # type: ignore[import-untyped,unused-ignore]
from ldap3.operation.search import parse_filter  # type: ignore[import-untyped,unused-ignore]
from ldap3.utils.dn import parse_dn  # type: ignore[import-untyped,unused-ignore]

from rotate.authorities.base import AuthoritySettings
from rotate.configparse import positive, timeouts, unreadable, url_problem

MAX_CONNECTIONS = 64
#: characters a sAMAccountName may not contain (besides control characters)
AD_FORBIDDEN = '"/\\[]:;|=,+*?<>'
AD_MAX_NAME = 20
#: characters of RFC 4515 filters and RFC 4514 DNs, refused in an ldap login name (the
#: authority escapes them anyway: this keeps an injection attempt out of any directory)
LDAP_SPECIALS = frozenset('*()\\,=+<>;"#')
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-2](\.[0-9]+)+")

Problem = tuple[str, str]  # (field, what is wrong with it)


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
class LdapTarget:
    """Where a directory listens, from its URL (the default port filled in)."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def ldap_target(url: str) -> LdapTarget:
    """The target of a URL that ldap_url_problem accepted."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (636 if scheme == "ldaps" else 389)
    return LdapTarget(scheme, parts.hostname or "", port)


def ldap_url_problem(url: str) -> str | None:
    """What makes `url` unusable as a directory's address, or None; a password is never echoed."""
    if why := url_problem(url, ("ldap", "ldaps")):
        return why
    shown = "the URL" if "@" in url else repr(url)
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{shown} must be scheme://host[:port] only (the search base is base_dn)"
    return None


def settings_problems(s: LdapSettings, data: Mapping[str, Any], where: str, ad: bool) -> list[str]:
    """Every problem of an authority's built settings (`data`: its table)."""
    errors: list[str] = []
    for key in ("url", "bind_dn", "base_dn"):
        if key not in data:
            errors.append(f"{where}: missing required key {key!r}")
        elif isinstance(data[key], str) and not data[key].strip():
            errors.append(f"{where}.{key}: must not be empty")
    errors += _transport_problems(s, where, ad)
    for key in ("bind_dn", "base_dn"):
        value = getattr(s, key)
        if value.strip() and (why := _dn_problem(value)):
            errors.append(f"{where}.{key}: {why}")
    errors += _secret_problems(s, where)
    if "user_attr" in data and not _ATTRIBUTE.fullmatch(s.user_attr):
        errors.append(f"{where}.user_attr: {s.user_attr!r} is not an attribute name")
    if "user_filter" in data and (why := _filter_problem(s.user_filter)):
        errors.append(f"{where}.user_filter: {why}")
    positive(errors, where, timeout_s=s.timeout_s, connections=s.connections)
    timeouts(errors, where, timeout_s=s.timeout_s)
    if s.connections > MAX_CONNECTIONS:
        errors.append(f"{where}.connections: at most {MAX_CONNECTIONS}, got {s.connections}")
    return errors


def _transport_problems(s: LdapSettings, where: str, ad: bool) -> list[str]:
    """The URL, and whether passwords would cross the network in clear text."""
    if not s.url:
        return []
    if why := ldap_url_problem(s.url):
        return [f"{where}.url: {why}"]
    errors: list[str] = []
    target = ldap_target(s.url)
    if target.scheme == "ldaps" and s.starttls:
        errors.append(f"{where}: starttls = true with an ldaps:// URL (TLS from the start)")
    if target.scheme == "ldap" and not s.starttls:
        if ad:
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
    return errors


def _secret_problems(s: LdapSettings, where: str) -> list[str]:
    """Where the bind password comes from, and how the certificate is checked."""
    errors: list[str] = []
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
    return errors


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


# -- account names --------------------------------------------------------------------------


def username_problems(username: str, ad: bool, attr: str) -> list[Problem]:
    """What is wrong with an account's login name (`attr`: the attribute it is looked up by)."""
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
    return problems + (_sam_account_name_problems(username) if ad else _uid_problems(username))


def _uid_problems(username: str) -> list[Problem]:
    specials = sorted({c for c in username if c in LDAP_SPECIALS})
    if not specials:
        return []
    return [
        (
            "username",
            f"contains {' '.join(specials)}: search-filter or DN metacharacters "
            "are refused in a login name (a uid with them is an injection or a "
            "typo far more often than a real account)",
        )
    ]


def _sam_account_name_problems(username: str) -> list[Problem]:
    problems = []
    if len(username) > AD_MAX_NAME:
        problems.append(
            (
                "username",
                f"is {len(username)} characters long; a sAMAccountName has at most {AD_MAX_NAME}",
            )
        )
    forbidden = sorted({c for c in username if c in AD_FORBIDDEN})
    if forbidden:
        shown = " ".join(forbidden)
        problems.append(
            ("username", f"a sAMAccountName may not contain {shown} (found in {username!r})")
        )
    if username.strip(". ") == "" or username.endswith("."):
        problems.append(("username", "a sAMAccountName may not end with '.'"))
    return problems
