"""An LDAP directory stand-in (OpenLDAP-like or Active-Directory-like) served by asyncio.

It speaks the real protocol (LDAPv3 over TCP, LDAPS, StartTLS), so ldap3 and OpenLDAP's
command-line clients can talk to it. Messages are decoded and encoded with pyasn1, using
ldap3's ASN.1 definitions (rfc4511, rfc3062), except the search filter, whose recursive
definition in ldap3 only encodes: it is decoded here one level at a time.

What it does (and the choices where real servers differ):

- Bind (simple): anonymous, or a DN with an empty password (an *unauthenticated* bind,
  RFC 4513 5.1.2: success, but the connection stays anonymous); wrong password or unknown
  DN -> invalidCredentials (49). AD flavour: also `user@domain` and `DOMAIN\\user` names,
  and a password bind on a connection without TLS -> strongerAuthRequired (8), like Samba.
  SASL -> authMethodNotSupported (7).
- Search: the root DSE (base scope, base `''`) for anyone; everything else needs an
  authenticated connection, else insufficientAccessRights (50). Filters: and, or, not,
  equality, approx (as equality), substrings, present, and AD's bitwise extensible matches;
  ordering matches are undefined. Password attributes are never stored as attributes, so
  never returned nor matched.
- Password Modify (RFC 3062, ldap flavour), WhoAmI, StartTLS (when given a context);
  Modify of `userPassword` (ldap, admin) or `unicodePwd` (ad, over TLS); anything else
  -> unwillingToPerform (53) or protocolError (2).
- Every password change (admin resets too) is checked against the state's policy.

Requests on one connection are answered in order, one at a time (as ldap3's synchronous
strategies and the OpenLDAP tools use them). Nothing a client sends is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ldap3.protocol import rfc3062, rfc4511  # type: ignore[import-untyped,unused-ignore]
from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped,unused-ignore]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped,unused-ignore]
from pyasn1.type import namedtype, tag, univ  # type: ignore[import-untyped,unused-ignore]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

Flavour = Literal["ldap", "ad"]
Refuse = Callable[[str, str], str | None]

#: the largest LDAP message accepted; a longer one drops the connection
MAX_MESSAGE = 1024 * 1024
#: how deeply and/or/not filters may nest
MAX_FILTER_DEPTH = 32

OID_PASSWORD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"  # noqa: S105
OID_WHOAMI = "1.3.6.1.4.1.4203.1.11.3"
OID_STARTTLS = "1.3.6.1.4.1.1466.20037"
OID_NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"
OID_AD_CAPABILITY = "1.2.840.113556.1.4.800"  # LDAP_CAP_ACTIVE_DIRECTORY_OID
OID_MATCH_BIT_AND = "1.2.840.113556.1.4.803"
OID_MATCH_BIT_OR = "1.2.840.113556.1.4.804"

# result codes (RFC 4511 4.1.9)
SUCCESS = 0
OPERATIONS_ERROR = 1
PROTOCOL_ERROR = 2
SIZE_LIMIT_EXCEEDED = 4
AUTH_METHOD_NOT_SUPPORTED = 7
STRONGER_AUTH_REQUIRED = 8
UNAVAILABLE_CRITICAL_EXTENSION = 12
CONSTRAINT_VIOLATION = 19
NO_SUCH_OBJECT = 32
INVALID_DN_SYNTAX = 34
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS_RIGHTS = 50
UNWILLING_TO_PERFORM = 53

# what the stand-in answers, in each flavour's words
AD_STRONG_AUTH = "BindSimple: Transport encryption required."
AD_INVALID_CREDENTIALS = (
    "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563"
)
AD_WILL_NOT_PERFORM = "0000001F: SvcErr: DSID-031A126C, problem 5003 (WILL_NOT_PERFORM), data 0"
AD_INSUFFICIENT_ACCESS = (
    "00000005: SecErr: DSID-03152E29, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0"
)
AD_NO_OBJECT = "0000208D: NameErr: DSID-03100241, problem 2001 (NO_OBJECT), data 0"
AD_WRONG_OLD_VALUE = (
    "00000056: AtrErr: DSID-03191083, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, "
    "Att 9005a (unicodePwd)"
)
AD_BAD_VALUE = (
    "00000057: LdapErr: DSID-0C090D11, comment: Error in attribute conversion operation, data 0"
)
AD_UNKNOWN_EXTENDED = (
    "0000203D: LdapErr: DSID-0C0C0120, comment: Unknown extended request OID, data 0, v4563"
)
AD_CONSTRAINT = "0000052D: Constraint violation - check_password_restrictions: "
LDAP_QUALITY = "Password fails quality checking policy"

#: attributes whose values match case-insensitively (AD: every attribute does)
CASE_IGNORE = frozenset(
    {"uid", "samaccountname", "cn", "objectclass", "mail", "sn", "givenname", "displayname",
     "userprincipalname", "ou", "dc", "o", "name"}
)  # fmt: skip
#: attributes holding DNs (matched by normalized DN)
DN_ATTRIBUTES = frozenset({"distinguishedname", "objectcategory", "member", "memberof"})


# -- DNs (RFC 4514) -------------------------------------------------------------------------

DNKey = tuple[tuple[tuple[str, str], ...], ...]

_SPECIAL = '"+,;<>\\'


def escape_rdn_value(value: str) -> str:
    """Escape an attribute value for a DN, per RFC 4514 section 2.4."""
    out: list[str] = []
    for i, ch in enumerate(value):
        if ch in _SPECIAL or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def parse_dn(dn: str) -> list[list[tuple[str, str]]]:
    """The RDNs of a DN (first the leaf), each a list of (type, unescaped value); ValueError
    when it is not a DN."""
    rdns: list[list[tuple[str, str]]] = []
    if not dn.strip():
        return rdns
    rdn: list[tuple[str, str]] = []
    i, n = 0, len(dn)
    while True:
        eq = dn.find("=", i)
        if eq < 0:
            raise ValueError("not a DN")
        attr = dn[i:eq].strip()
        if not attr or any(not (c.isalnum() or c in "-.;") for c in attr):
            raise ValueError("not a DN")
        i = eq + 1
        while i < n and dn[i] == " ":
            i += 1
        value = bytearray()
        trailing = 0  # unescaped spaces at the end of `value`, to strip
        while i < n and dn[i] not in ",;+":
            ch = dn[i]
            if ch == "\\":
                if i + 1 >= n:
                    raise ValueError("not a DN")
                pair = dn[i + 1 : i + 3]
                if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                    value.append(int(pair, 16))
                    i += 3
                else:
                    value += dn[i + 1].encode()
                    i += 2
                trailing = 0
                continue
            if ch == '"':
                raise ValueError("not a DN")
            value += ch.encode()
            trailing = trailing + 1 if ch == " " else 0
            i += 1
        if trailing:
            del value[-trailing:]
        try:
            rdn.append((attr, value.decode("utf-8")))
        except UnicodeDecodeError:
            raise ValueError("not a DN") from None
        if i >= n:
            rdns.append(rdn)
            return rdns
        if dn[i] != "+":
            rdns.append(rdn)
            rdn = []
        i += 1


def dn_key(dn: str) -> DNKey:
    """A DN's normalized form: types and values case-folded, multi-valued RDNs sorted."""
    return tuple(
        tuple(sorted((a.casefold(), v.casefold()) for a, v in rdn)) for rdn in parse_dn(dn)
    )


def _same_dn(a: str, b: str) -> bool:
    try:
        return dn_key(a) == dn_key(b)
    except ValueError:
        return a.casefold() == b.casefold()


# -- the state ------------------------------------------------------------------------------


@dataclass
class _Entry:
    dn: str
    key: DNKey
    attrs: dict[str, tuple[str, list[str]]]  # lower-case name -> (name, values)
    password: str | None = field(default=None, repr=False)
    admin: bool = False
    username: str | None = None  # uid / sAMAccountName

    def set(self, name: str, values: str | Sequence[str]) -> None:
        vals = [values] if isinstance(values, str) else list(values)
        self.attrs[name.lower()] = (name, vals)


@dataclass
class DirectoryCounters:
    """What a directory counted since the last reset (read them from any thread)."""

    connections: int = 0  # accepted, dropped ones included
    binds: int = 0  # bind requests
    bind_failures: int = 0  # binds answered with an error
    searches: int = 0
    changes: int = 0  # password changes applied
    refused_changes: int = 0  # password changes refused by the policy or the refuse hook
    hung_changes: int = 0  # password changes never answered (hang_changes)
    in_flight: int = 0  # operations being answered now
    max_in_flight: int = 0


class DirectoryState:
    """The entries, passwords, policy, counters and faults of one directory stand-in.

    Thread-safe: the server mutates it on its loop, tests read it (and add users, set
    faults) from another thread. Passwords are kept in clear: it is a test double.

    Faults (plain attributes, read before each operation):
    - `latency_s`: sleep this long before answering each operation;
    - `hang_changes`: never answer a password change (the client times out: outcome
      unknown), applying it first when `apply_before_hang` is set;
    - `drop_connections`: close the next N connections right after accepting them.
    Policy: `min_length`, `complexity` (AD's rule: 3 of upper/lower/digit/other, and not the
    sAMAccountName), and `refuse(username, password) -> reason | None` (history-like).
    """

    def __init__(
        self,
        flavour: Flavour,
        base_dn: str,
        *,
        domain: str | None = None,
        min_length: int = 7,
        complexity: bool | None = None,
        refuse: Refuse | None = None,
    ) -> None:
        if flavour not in ("ldap", "ad"):
            raise ValueError(f"unknown directory flavour {flavour!r}")
        self.flavour: Flavour = flavour
        self.base_dn = base_dn
        self.base_key = dn_key(base_dn)
        if not self.base_key:
            raise ValueError("the base DN must not be empty")
        dcs = [v for rdn in parse_dn(base_dn) for a, v in rdn if a.lower() == "dc"]
        self.domain = domain if domain is not None else ".".join(dcs) or "example.org"
        self.netbios = self.domain.split(".")[0].upper()
        self.min_length = min_length
        self.complexity = complexity if complexity is not None else flavour == "ad"
        self.refuse = refuse
        self.latency_s = 0.0
        self.hang_changes = False
        self.apply_before_hang = False
        self.drop_connections = 0
        self.counters = DirectoryCounters()
        self.lock = threading.RLock()
        self._entries: dict[DNKey, _Entry] = {}
        self._by_username: dict[str, DNKey] = {}
        self._by_upn: dict[str, DNKey] = {}
        self._add_container(base_dn)
        container = "ou=people" if flavour == "ldap" else "CN=Users"
        self.users_dn = f"{container},{base_dn}"
        self._add_container(self.users_dn)

    # -- building ---------------------------------------------------------------------------
    def _add_container(self, dn: str) -> _Entry:
        """An entry for `dn` with the attributes of its RDN, and its missing parents under
        the base."""
        key = dn_key(dn)
        if key in self._entries:
            return self._entries[key]
        rdns = parse_dn(dn)
        if len(key) > len(self.base_key) and key[-len(self.base_key) :] == self.base_key:
            parent = dn[dn_split(dn) :]
            self._add_container(parent)
        entry = _Entry(dn=dn, key=key, attrs={})
        kind = rdns[0][0][0].lower()
        classes = {
            "dc": ["top", "domain"]
            if self.flavour == "ad"
            else ["top", "dcObject", "organization"],
            "ou": ["top", "organizationalUnit"],
            "o": ["top", "organization"],
        }.get(kind, ["top", "container"])
        entry.set("objectClass", classes)
        for attr, value in rdns[0]:
            entry.set(attr, value)
        if kind == "dc" and self.flavour == "ldap":
            entry.set("o", rdns[0][0][1])
        if self.flavour == "ad":
            entry.set("distinguishedName", dn)
        self._entries[key] = entry
        return entry

    def _user_attrs(self, entry: _Entry, username: str) -> None:
        if self.flavour == "ldap":
            entry.set("objectClass", ["top", "person", "organizationalPerson", "inetOrgPerson"])
            entry.set("uid", username)
            entry.set("cn", username)
            entry.set("sn", username)
        else:
            entry.set("objectClass", ["top", "person", "organizationalPerson", "user"])
            entry.set("cn", username)
            entry.set("name", username)
            entry.set("sAMAccountName", username)
            entry.set("userPrincipalName", f"{username}@{self.domain}")
            entry.set("distinguishedName", entry.dn)
            entry.set("objectCategory", f"CN=Person,CN=Schema,CN=Configuration,{self.base_dn}")
            entry.set("userAccountControl", "512")

    def _index(self, entry: _Entry) -> None:
        if entry.username is not None:
            self._by_username.setdefault(entry.username.casefold(), entry.key)
        upn = entry.attrs.get("userprincipalname")
        if upn:
            self._by_upn.setdefault(upn[1][0].casefold(), entry.key)

    def add_user(
        self,
        username: str,
        password: str,
        *,
        attributes: Mapping[str, str | Sequence[str]] | None = None,
    ) -> str:
        """Add a person (no policy check: this is provisioning); return its DN.

        ldap: `uid=<u>,ou=people,<base>` (inetOrgPerson); ad: `CN=<u>,CN=Users,<base>`
        (user, with sAMAccountName and userPrincipalName `<u>@<domain>`). `attributes` adds
        or replaces attributes (no password attribute).
        """
        if not username:
            raise ValueError("a username is needed")
        rdn = "uid" if self.flavour == "ldap" else "CN"
        dn = f"{rdn}={escape_rdn_value(username)},{self.users_dn}"
        with self.lock:
            key = dn_key(dn)
            if key in self._entries or username.casefold() in self._by_username:
                raise ValueError(f"user {username!r} already exists")
            entry = _Entry(dn=dn, key=key, attrs={}, password=password, username=username)
            self._user_attrs(entry, username)
            for name, values in (attributes or {}).items():
                if name.lower() in ("userpassword", "unicodepwd", "uid", "samaccountname"):
                    raise ValueError(f"{name} cannot be given as an attribute")
                entry.set(name, values)
            self._entries[key] = entry
            self._index(entry)
        return dn

    def add_admin(self, dn: str, password: str) -> None:
        """Add (or promote) an entry that may bind, search and reset any password."""
        with self.lock:
            key = dn_key(dn)
            entry = self._entries.get(key)
            if entry is None:
                rdn_attr, rdn_value = parse_dn(dn)[0][0]
                parent = dn[dn_split(dn) :]
                if len(key) > len(self.base_key) and key[-len(self.base_key) :] == self.base_key:
                    self._add_container(parent)
                entry = _Entry(dn=dn, key=key, attrs={})
                if self.flavour == "ad":
                    entry.username = rdn_value
                    self._user_attrs(entry, rdn_value)
                else:
                    entry.set("objectClass", ["simpleSecurityObject", "organizationalRole"])
                    entry.set(rdn_attr, rdn_value)
                self._entries[key] = entry
                self._index(entry)
            entry.password = password
            entry.admin = True

    # -- inspection -------------------------------------------------------------------------
    def _user(self, username: str) -> _Entry | None:
        key = self._by_username.get(username.casefold())
        return self._entries.get(key) if key is not None else None

    def password(self, username: str) -> str | None:
        """The current password of a user (uid / sAMAccountName, case-insensitive)."""
        with self.lock:
            entry = self._user(username)
            return entry.password if entry is not None else None

    def dn_password(self, dn: str) -> str | None:
        """The current password of the entry at `dn` (an admin, say)."""
        with self.lock:
            entry = self._entries.get(dn_key(dn))
            return entry.password if entry is not None else None

    def dn_of(self, username: str) -> str | None:
        """The DN of a user, or None."""
        with self.lock:
            entry = self._user(username)
            return entry.dn if entry is not None else None

    def logs_in(self, username: str, password: str) -> bool:
        """Whether `password` is the user's current (non-empty) password."""
        with self.lock:
            entry = self._user(username)
            return entry is not None and _password_ok(entry, password)

    def reset_counters(self) -> None:
        """Zero the counters (operations in flight stay counted)."""
        with self.lock:
            in_flight = self.counters.in_flight
            self.counters = DirectoryCounters(in_flight=in_flight, max_in_flight=in_flight)

    # -- what the server asks ---------------------------------------------------------------
    def find(self, dn: str) -> _Entry | None:
        """The entry at `dn` (ValueError if `dn` is not a DN)."""
        with self.lock:
            return self._entries.get(dn_key(dn))

    def resolve_bind_name(self, name: str) -> _Entry | None:
        """The entry a bind name designates: a DN, or (ad) `user@domain` / `DOMAIN\\user`."""
        with self.lock:
            if self.flavour == "ad" and "=" not in name:
                if "\\" in name:
                    domain, _, user = name.partition("\\")
                    if domain.casefold() in (self.netbios.casefold(), self.domain.casefold()):
                        return self._user(user)
                    return None
                key = self._by_upn.get(name.casefold())
                return self._entries.get(key) if key is not None else None
            return self._entries.get(dn_key(name))

    def find_key(self, key: DNKey) -> _Entry | None:
        """The entry with this normalized DN."""
        with self.lock:
            return self._entries.get(key)

    def candidates(self, equalities: Iterable[tuple[str, str]]) -> list[_Entry]:
        """The entries a search must test: the one user when the filter requires a login
        name (uid / sAMAccountName), else all. Entries' attributes never change once added,
        so the list may be read without the lock."""
        login = "uid" if self.flavour == "ldap" else "samaccountname"
        with self.lock:
            for attr, value in equalities:
                if attr == login:
                    entry = self._user(value)
                    return [entry] if entry is not None else []
            return list(self._entries.values())

    def closest(self, key: DNKey) -> str:
        """The DN of the nearest existing ancestor of `key` (for matchedDN)."""
        with self.lock:
            for i in range(1, len(key) + 1):
                entry = self._entries.get(key[i:])
                if entry is not None:
                    return entry.dn
            return ""

    def violation(self, entry: _Entry, password: str) -> str | None:
        """The diagnostic message refusing `password` for `entry`, or None if it may be set."""
        username = entry.username or next(iter(entry.key[0]))[1]
        reason: str | None = None
        if len(password) < self.min_length:
            reason = (
                "the password is too short. It should be equal or longer than "
                f"{self.min_length} characters"
            )
        elif self.complexity and not _complex(password, entry.username):
            reason = "the password does not meet the complexity requirements"
        if reason is not None:
            return AD_CONSTRAINT + reason + "!" if self.flavour == "ad" else LDAP_QUALITY
        refuse = self.refuse
        if refuse is not None:
            reason = refuse(username, password)
            if reason is not None:
                if self.flavour == "ad":
                    return AD_CONSTRAINT + (reason or "the password was refused") + "!"
                return reason or LDAP_QUALITY
        return None

    def change(self, entry: _Entry, password: str) -> str | None:
        """Set a password, checked by the policy; the refusal message, or None when set."""
        with self.lock:
            problem = self.violation(entry, password)
            if problem is not None:
                self.counters.refused_changes += 1
                return problem
            live = self._entries.get(entry.key)
            if live is None:
                return "no such object"
            live.password = password
            self.counters.changes += 1
            return None

    def take_drop(self) -> bool:
        """Count a new connection; whether it must be dropped (drop_connections fault)."""
        with self.lock:
            self.counters.connections += 1
            if self.drop_connections > 0:
                self.drop_connections -= 1
                return True
            return False


def dn_split(dn: str) -> int:
    """The index where a DN's parent starts (after the first unescaped comma), or len(dn)."""
    i = 0
    while i < len(dn):
        if dn[i] == "\\":
            i += 2
            continue
        if dn[i] in ",;":
            return i + 1
        i += 1
    return len(dn)


def _password_ok(entry: _Entry, password: str) -> bool:
    if not password or entry.password is None:
        return False
    return secrets.compare_digest(entry.password.encode(), password.encode())


def _complex(password: str, username: str | None) -> bool:
    """AD's complexity rule: 3 of the 5 categories, and not containing the account name."""
    if username and len(username) >= 3 and username.casefold() in password.casefold():
        return False
    categories = (
        any(c.isupper() for c in password),
        any(c.islower() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
        any(c.isalpha() and not (c.isupper() or c.islower()) for c in password),
    )
    return sum(categories) >= 3


# -- ASN.1: requests (decoded with a filter definition that decodes) ------------------------


def _ctx(number: int) -> Any:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, number)


# and/or/not hold raw filter encodings: ldap3's recursive Filter only works for encoding
_FILTER_SET = univ.SetOf(componentType=univ.Any())
_FILTER = univ.Choice(
    componentType=namedtype.NamedTypes(
        namedtype.NamedType("and", _FILTER_SET.subtype(implicitTag=_ctx(0))),
        namedtype.NamedType("or", _FILTER_SET.subtype(implicitTag=_ctx(1))),
        namedtype.NamedType("notFilter", _FILTER_SET.subtype(implicitTag=_ctx(2))),
        namedtype.NamedType("equalityMatch", rfc4511.EqualityMatch()),
        namedtype.NamedType("substringFilter", rfc4511.SubstringFilter()),
        namedtype.NamedType("greaterOrEqual", rfc4511.GreaterOrEqual()),
        namedtype.NamedType("lessOrEqual", rfc4511.LessOrEqual()),
        namedtype.NamedType("present", rfc4511.Present()),
        namedtype.NamedType("approxMatch", rfc4511.ApproxMatch()),
        namedtype.NamedType("extensibleMatch", rfc4511.ExtensibleMatch()),
    )
)
_SEARCH_REQUEST = univ.Sequence(
    tagSet=rfc4511.SearchRequest.tagSet,
    componentType=namedtype.NamedTypes(
        *(
            namedtype.NamedType("filter", _FILTER) if t.name == "filter" else t
            for t in rfc4511.SearchRequest.componentType.namedTypes
        )
    ),
)
_REQUEST_OP = univ.Choice(
    componentType=namedtype.NamedTypes(
        namedtype.NamedType("bindRequest", rfc4511.BindRequest()),
        namedtype.NamedType("unbindRequest", rfc4511.UnbindRequest()),
        namedtype.NamedType("searchRequest", _SEARCH_REQUEST),
        namedtype.NamedType("modifyRequest", rfc4511.ModifyRequest()),
        namedtype.NamedType("addRequest", rfc4511.AddRequest()),
        namedtype.NamedType("delRequest", rfc4511.DelRequest()),
        namedtype.NamedType("modDNRequest", rfc4511.ModifyDNRequest()),
        namedtype.NamedType("compareRequest", rfc4511.CompareRequest()),
        namedtype.NamedType("abandonRequest", rfc4511.AbandonRequest()),
        namedtype.NamedType("extendedReq", rfc4511.ExtendedRequest()),
    )
)
_REQUEST = univ.Sequence(
    componentType=namedtype.NamedTypes(
        namedtype.NamedType("messageID", rfc4511.MessageID()),
        namedtype.NamedType("protocolOp", _REQUEST_OP),
        namedtype.OptionalNamedType("controls", rfc4511.Controls()),
    )
)

#: the response to each request, by the request's name
_RESPONSE_OF = {
    "bindRequest": ("bindResponse", rfc4511.BindResponse),
    "searchRequest": ("searchResDone", rfc4511.SearchResultDone),
    "modifyRequest": ("modifyResponse", rfc4511.ModifyResponse),
    "addRequest": ("addResponse", rfc4511.AddResponse),
    "delRequest": ("delResponse", rfc4511.DelResponse),
    "modDNRequest": ("modDNResponse", rfc4511.ModifyDNResponse),
    "compareRequest": ("compareResponse", rfc4511.CompareResponse),
    "extendedReq": ("extendedResp", rfc4511.ExtendedResponse),
}


class _Garbage(Exception):
    """The peer sent something that is not an LDAP message: drop the connection."""


#: what decoding a client's bytes may raise (pyasn1's messages quote the input: never log)
_BAD_INPUT: tuple[type[Exception], ...] = (
    _Garbage,
    PyAsn1Error,
    ValueError,
    LookupError,
    TypeError,
    RecursionError,
)


def _decode(spec: Any, data: bytes) -> Any:
    value, rest = decoder.decode(data, asn1Spec=spec)
    if rest:
        raise _Garbage
    return value


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8")


def _present(value: Any) -> bool:
    return value is not None and bool(value.isValue)


async def _read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One BER-framed LDAPMessage (tag, length, then exactly that many bytes); None at EOF."""
    try:
        head = await reader.readexactly(2)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise _Garbage from None
        return None
    if head[0] != 0x30:  # SEQUENCE
        raise _Garbage
    length = head[1]
    extra = b""
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:  # indefinite form, or absurd
            raise _Garbage
        extra = await reader.readexactly(count)
        length = int.from_bytes(extra, "big")
    if length > MAX_MESSAGE:
        raise _Garbage
    return head + extra + await reader.readexactly(length)


# -- ASN.1: responses (ldap3's definitions) -------------------------------------------------


def _result(cls: Any, code: int, message: str = "", matched: str = "") -> Any:
    result = cls()
    result["resultCode"] = code
    result["matchedDN"] = matched
    result["diagnosticMessage"] = message
    return result


def _encode(message_id: int, name: str, op: Any) -> bytes:
    message = rfc4511.LDAPMessage()
    message["messageID"] = message_id
    message["protocolOp"] = rfc4511.ProtocolOp().setComponentByName(name, op)
    return bytes(encoder.encode(message))


def _entry_message(message_id: int, dn: str, attrs: Iterable[tuple[str, list[str]]]) -> bytes:
    entry = rfc4511.SearchResultEntry()
    entry["object"] = dn
    attributes = rfc4511.PartialAttributeList()
    for i, (name, values) in enumerate(attrs):
        attribute = rfc4511.PartialAttribute()
        attribute["type"] = name
        vals = rfc4511.Vals()
        for j, value in enumerate(values):
            vals[j] = value.encode("utf-8")
        attribute["vals"] = vals
        attributes[i] = attribute
    entry["attributes"] = attributes
    return _encode(message_id, "searchResEntry", entry)


def _notice_of_disconnection() -> bytes:
    notice = _result(rfc4511.ExtendedResponse, PROTOCOL_ERROR, "malformed request")
    notice["responseName"] = OID_NOTICE_OF_DISCONNECTION
    return _encode(0, "extendedResp", notice)


# -- search filters ---------------------------------------------------------------------------

Attrs = Mapping[str, tuple[str, list[str]]]


def _attr_name(description: Any) -> str:
    """An attribute description's type, lower-cased, options dropped (`cn;lang-en` -> cn)."""
    return _text(description).split(";", 1)[0].strip().lower()


def _values_equal(attr: str, value: str, assertion: str, fold: bool) -> bool:
    if attr in DN_ATTRIBUTES:
        if attr == "objectcategory" and "=" not in assertion:  # AD: (objectCategory=person)
            rdn = parse_dn(value)[0][0][1] if value else ""
            return rdn.casefold() == assertion.casefold()
        return _same_dn(value, assertion)
    if fold:
        return value.casefold() == assertion.casefold()
    return value == assertion


def _substrings_match(value: str, initial: str | None, anys: list[str], final: str | None) -> bool:
    start, end = 0, len(value)
    if initial is not None:
        if not value.startswith(initial):
            return False
        start = len(initial)
    if final is not None:
        if not value.endswith(final) or end - len(final) < start:
            return False
        end -= len(final)
    for part in anys:
        found = value.find(part, start, end)
        if found < 0:
            return False
        start = found + len(part)
    return True


def _bits(value: str) -> int | None:
    try:
        return int(value) & 0xFFFFFFFF
    except ValueError:
        return None


Predicate = Callable[[Attrs], bool | None]


@dataclass(frozen=True)
class _Compiled:
    """A filter ready to test entries: True, False or None (undefined), and the equality
    assertions every matching entry satisfies (to look users up by index)."""

    test: Predicate
    equalities: tuple[tuple[str, str], ...] = ()


def _undefined(attrs: Attrs) -> bool | None:
    return None


def _compile(flt: Any, fold_all: bool, depth: int = 0) -> _Compiled:
    """Compile a decoded filter (nested and/or/not are decoded here, depth bounded)."""
    if depth > MAX_FILTER_DEPTH:
        raise _Garbage
    kind = flt.getName()
    node = flt.getComponent()
    if kind in ("and", "or", "notFilter"):
        subs = [_compile(_decode(_FILTER, bytes(raw)), fold_all, depth + 1) for raw in node]
        if kind == "notFilter":
            if len(subs) != 1:
                raise _Garbage
            inner = subs[0].test

            def negate(attrs: Attrs) -> bool | None:
                result = inner(attrs)
                return None if result is None else not result

            return _Compiled(negate)
        # the value that decides at once: True for or, False for and
        decisive: bool = kind == "or"
        tests = [sub.test for sub in subs]

        def combine(attrs: Attrs) -> bool | None:
            undefined = False
            for test in tests:
                result = test(attrs)
                if result is decisive:
                    return decisive
                undefined = undefined or result is None
            return None if undefined else not decisive

        equalities = () if decisive else tuple(e for sub in subs for e in sub.equalities)
        return _Compiled(combine, equalities)
    if kind == "present":
        name = _attr_name(node)
        return _Compiled(lambda attrs: name in attrs)
    if kind in ("equalityMatch", "approxMatch"):
        attr = _attr_name(node["attributeDesc"])
        assertion = bytes(node["assertionValue"]).decode("utf-8", "replace")
        fold = fold_all or attr in CASE_IGNORE

        def equal(attrs: Attrs) -> bool | None:
            values = attrs.get(attr, ("", []))[1]
            return any(_values_equal(attr, v, assertion, fold) for v in values)

        return _Compiled(equal, ((attr, assertion),))
    if kind == "substringFilter":
        attr = _attr_name(node["type"])
        fold = fold_all or attr in CASE_IGNORE
        initial: str | None = None
        final: str | None = None
        anys: list[str] = []
        for part in node["substrings"]:
            text = bytes(part.getComponent()).decode("utf-8", "replace")
            text = text.casefold() if fold else text
            which = part.getName()
            if which == "initial":
                initial = text
            elif which == "final":
                final = text
            else:
                anys.append(text)

        def substrings(attrs: Attrs) -> bool | None:
            values = attrs.get(attr, ("", []))[1]
            return any(
                _substrings_match(v.casefold() if fold else v, initial, anys, final) for v in values
            )

        return _Compiled(substrings)
    if kind == "extensibleMatch":
        rule = _text(node["matchingRule"]) if _present(node["matchingRule"]) else ""
        wanted = _bits(bytes(node["matchValue"]).decode("utf-8", "replace"))
        if rule not in (OID_MATCH_BIT_AND, OID_MATCH_BIT_OR) or not _present(node["type"]):
            return _Compiled(_undefined)
        if wanted is None:
            return _Compiled(_undefined)
        attr = _attr_name(node["type"])
        every = rule == OID_MATCH_BIT_AND

        def bits(attrs: Attrs) -> bool | None:
            for value in attrs.get(attr, ("", []))[1]:
                found = _bits(value)
                if found is not None and (found & wanted == wanted if every else found & wanted):
                    return True
            return False

        return _Compiled(bits)
    return _Compiled(_undefined)  # greaterOrEqual, lessOrEqual: no ordering rules here


def _select(attrs: Attrs, requested: list[str], types_only: bool) -> list[tuple[str, list[str]]]:
    """The attributes a search returns: all user ones for none or `*`, none for `1.1`."""
    wanted = [r.strip() for r in requested if r.strip() and r.strip() != "1.1"]
    if requested and not wanted:  # only 1.1
        return []
    everything = not wanted or any(r in ("*", "+") for r in wanted)
    names = {r.split(";", 1)[0].lower() for r in wanted}
    return [
        (name, [] if types_only else values)
        for lower, (name, values) in attrs.items()
        if everything or lower in names
    ]


# -- the server -------------------------------------------------------------------------------


@dataclass
class _Session:
    tls: bool
    bound: _Entry | None = None  # None: anonymous

    @property
    def admin(self) -> bool:
        return self.bound is not None and self.bound.admin


@dataclass
class _Reply:
    """What an operation answers: encoded messages, then what to do after sending them."""

    messages: list[bytes]
    start_tls: bool = False
    close: bool = False


class DirectoryServer:
    """Serve a DirectoryState over LDAP on loopback (LDAPS when `tls` is given; StartTLS
    offered on a plain port when `starttls` is)."""

    def __init__(
        self,
        state: DirectoryState,
        *,
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
    ) -> None:
        if tls is not None and starttls is not None:
            raise ValueError("give tls (LDAPS) or starttls, not both")
        self.state = state
        self._tls = tls
        self._starttls = starttls
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._url: str | None = None

    @property
    def url(self) -> str:
        """`ldap://127.0.0.1:<port>` or `ldaps://...`."""
        if self._url is None:
            raise RuntimeError("the directory server is not started")
        return self._url

    async def start(self, sock: socket.socket | None = None, *, port: int = 0) -> str:
        """Listen on `sock` (bound, not listening) or on a new loopback socket; the URL."""
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((LOOPBACK, port))
            except OSError:
                sock.close()
                raise
        self._server = await asyncio.start_server(
            self._serve,
            sock=sock,
            ssl=self._tls,
            backlog=1024,
            ssl_handshake_timeout=10.0 if self._tls is not None else None,
        )
        host, bound_port = sock.getsockname()[:2]
        scheme = "ldaps" if self._tls is not None else "ldap"
        self._url = f"{scheme}://{host}:{bound_port}"
        return self._url

    async def close(self, grace: float = 0.5) -> None:
        """Stop listening and end every connection (hung operations are cancelled)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), grace)

    # -- one connection ---------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        reason = "closed"
        try:
            if self.state.take_drop():
                reason = "dropped (fault)"
                writer.transport.abort()
                return
            session = _Session(tls=writer.get_extra_info("ssl_object") is not None)
            while True:
                try:
                    data = await _read_message(reader)
                    if data is None:
                        break
                    message = _decode(_REQUEST, data)
                except _BAD_INPUT as exc:
                    reason = f"malformed request ({type(exc).__name__})"
                    writer.write(_notice_of_disconnection())
                    await writer.drain()
                    break
                reply = await self._operation(message, session)
                if reply is None:
                    continue
                writer.write(b"".join(reply.messages))  # one write: no Nagle/delayed-ACK stall
                await writer.drain()
                if reply.close:
                    reason = "unbind"
                    break
                if reply.start_tls:
                    assert self._starttls is not None
                    await writer.start_tls(self._starttls, ssl_handshake_timeout=10.0)
                    session.tls = True
        except asyncio.CancelledError:  # the server is closing: not re-raised, as Python
            # 3.11's stream callback would report a cancelled connection task as an error
            reason = "server closing"
            writer.transport.abort()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError) as exc:
            reason = type(exc).__name__
        except Exception as exc:  # a bug here must not kill the server, nor log client data
            reason = f"internal error ({type(exc).__name__})"
        finally:
            if task is not None:
                self._tasks.discard(task)
            log.debug("directory connection ended: %s", reason)
            writer.close()

    async def _operation(self, message: Any, session: _Session) -> _Reply | None:
        op = message["protocolOp"]
        name = op.getName()
        request = op.getComponent()
        message_id = int(message["messageID"])
        if name == "unbindRequest":
            return _Reply([], close=True)
        if name == "abandonRequest":
            return None
        state = self.state
        with state.lock:
            state.counters.in_flight += 1
            state.counters.max_in_flight = max(
                state.counters.max_in_flight, state.counters.in_flight
            )
        try:
            latency = state.latency_s
            if latency > 0:
                await asyncio.sleep(latency)
            response_name, response_cls = _RESPONSE_OF[name]

            def answer(code: int, text: str = "", matched: str = "") -> _Reply:
                result = _result(response_cls, code, text, matched)
                return _Reply([_encode(message_id, response_name, result)])

            if _present(message["controls"]) and any(
                bool(c["criticality"]) for c in message["controls"]
            ):
                return answer(UNAVAILABLE_CRITICAL_EXTENSION, "critical control unsupported")
            if name == "bindRequest":
                return answer(*self._bind(request, session))
            if name == "searchRequest":
                return self._search(message_id, request, session)
            if name == "modifyRequest":
                return answer(*await self._modify(request, session))
            if name == "extendedReq":
                reply = self._extended(message_id, request, session)
                if reply is None:  # Password Modify
                    reply = answer(*await self._password_modify(request, session))
                return reply
            return answer(UNWILLING_TO_PERFORM, "operation not supported by this directory")
        finally:
            with state.lock:
                state.counters.in_flight -= 1

    # -- bind -------------------------------------------------------------------------------
    def _bind(self, request: Any, session: _Session) -> tuple[int, str]:
        state = self.state
        with state.lock:
            state.counters.binds += 1
        session.bound = None  # a bind (even a failed one) starts anonymous
        code, text = self._authenticate(request, session)
        if code != SUCCESS:
            with state.lock:
                state.counters.bind_failures += 1
        return code, text

    def _authenticate(self, request: Any, session: _Session) -> tuple[int, str]:
        ad = self.state.flavour == "ad"
        if int(request["version"]) != 3:
            return PROTOCOL_ERROR, "requested protocol version not allowed"
        auth = request["authentication"]
        if auth.getName() != "simple":
            return AUTH_METHOD_NOT_SUPPORTED, "only simple binds are supported"
        name = _text(request["name"])
        password = bytes(auth.getComponent()).decode("utf-8", "replace")
        if not password:
            # anonymous, or unauthenticated (a name, no password): RFC 4513 5.1.2
            return SUCCESS, ""
        if ad and not session.tls:
            return STRONGER_AUTH_REQUIRED, AD_STRONG_AUTH
        try:
            entry = self.state.resolve_bind_name(name)
        except ValueError:
            if ad:
                return INVALID_CREDENTIALS, AD_INVALID_CREDENTIALS
            return INVALID_DN_SYNTAX, "invalid DN"
        with self.state.lock:
            ok = entry is not None and _password_ok(entry, password)
        if not ok or entry is None:
            return INVALID_CREDENTIALS, AD_INVALID_CREDENTIALS if ad else ""
        session.bound = entry
        return SUCCESS, ""

    # -- search -----------------------------------------------------------------------------
    def _root_dse(self) -> dict[str, tuple[str, list[str]]]:
        state = self.state
        extensions = [OID_WHOAMI]
        if state.flavour == "ldap":
            extensions.insert(0, OID_PASSWORD_MODIFY)
        if self._starttls is not None:
            extensions.append(OID_STARTTLS)
        attrs: dict[str, tuple[str, list[str]]] = {
            "objectclass": ("objectClass", ["top"]),
            "namingcontexts": ("namingContexts", [state.base_dn]),
            "supportedextension": ("supportedExtension", extensions),
            "supportedldapversion": ("supportedLDAPVersion", ["3"]),
        }
        if state.flavour == "ad":
            attrs["defaultnamingcontext"] = ("defaultNamingContext", [state.base_dn])
            attrs["supportedcapabilities"] = ("supportedCapabilities", [OID_AD_CAPABILITY])
            attrs["dnshostname"] = ("dnsHostName", [f"dc1.{state.domain}"])
        return attrs

    def _search(self, message_id: int, request: Any, session: _Session) -> _Reply:
        state = self.state
        with state.lock:
            state.counters.searches += 1

        def done(code: int, text: str = "", matched: str = "") -> bytes:
            result = _result(rfc4511.SearchResultDone, code, text, matched)
            return _encode(message_id, "searchResDone", result)

        try:
            base_key = dn_key(_text(request["baseObject"]))
        except ValueError:
            return _Reply([done(INVALID_DN_SYNTAX, "invalid DN")])
        scope = int(request["scope"])
        try:
            flt = _compile(request["filter"], state.flavour == "ad")
        except _BAD_INPUT:
            return _Reply([done(PROTOCOL_ERROR, "bad search filter")])
        if base_key:
            if session.bound is None:
                return _Reply([done(INSUFFICIENT_ACCESS_RIGHTS, self._bind_first())])
            if state.find_key(base_key) is None:
                return _Reply([done(NO_SUCH_OBJECT, "", state.closest(base_key))])
            entries = state.candidates(flt.equalities)
        elif scope == 0:  # the root DSE, for anyone
            entries = [_Entry("", (), self._root_dse())]
        else:
            return _Reply([done(NO_SUCH_OBJECT)])
        size_limit = int(request["sizeLimit"])
        types_only = bool(request["typesOnly"])
        requested = [_text(a) for a in request["attributes"]]
        depth = len(base_key)
        chunks: list[bytes] = []
        for entry in entries:
            key = entry.key
            if key[len(key) - depth :] != base_key:
                continue
            if (scope == 0 and len(key) != depth) or (scope == 1 and len(key) != depth + 1):
                continue
            if not flt.test(entry.attrs):
                continue
            if size_limit and len(chunks) >= size_limit:
                return _Reply([*chunks, done(SIZE_LIMIT_EXCEEDED)])
            selected = _select(entry.attrs, requested, types_only)
            chunks.append(_entry_message(message_id, entry.dn, selected))
        return _Reply([*chunks, done(SUCCESS)])

    def _bind_first(self) -> str:
        if self.state.flavour == "ad":
            return (
                "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this "
                "operation a successful bind must be completed on the connection., data 0"
            )
        return "anonymous search is not allowed: bind first"

    # -- password changes -------------------------------------------------------------------
    async def _apply(self, entry: _Entry, password: str) -> tuple[int, str]:
        """Set a password (policy checked), or hang when the hang_changes fault is on."""
        state = self.state
        if state.hang_changes:
            if state.apply_before_hang:
                state.change(entry, password)
            with state.lock:
                state.counters.hung_changes += 1
            await asyncio.Event().wait()  # until the server closes
        problem = state.change(entry, password)
        if problem is not None:
            return CONSTRAINT_VIOLATION, problem
        return SUCCESS, ""

    def _target(self, dn: str) -> _Entry | None:
        try:
            return self.state.find(dn)
        except ValueError:
            return None

    async def _modify(self, request: Any, session: _Session) -> tuple[int, str]:
        ad = self.state.flavour == "ad"
        password_attr = "unicodepwd" if ad else "userpassword"
        changes = [
            (
                int(change["operation"]),
                _attr_name(change["modification"]["type"]),
                [bytes(v) for v in change["modification"]["vals"]],
            )
            for change in request["changes"]
        ]
        if not changes or any(attr != password_attr for _, attr, _ in changes):
            return UNWILLING_TO_PERFORM, "only password changes are supported by this directory"
        if ad and not session.tls:
            return UNWILLING_TO_PERFORM, AD_WILL_NOT_PERFORM
        if session.bound is None:
            return INSUFFICIENT_ACCESS_RIGHTS, AD_INSUFFICIENT_ACCESS if ad else "no write access"
        entry = self._target(_text(request["object"]))
        if entry is None:
            return NO_SUCH_OBJECT, AD_NO_OBJECT if ad else ""
        ops = [op for op, _, _ in changes]
        if ops == [2] and len(changes[0][2]) == 1:  # replace: an admin reset
            if not session.admin:
                return INSUFFICIENT_ACCESS_RIGHTS, (
                    AD_INSUFFICIENT_ACCESS if ad else "no write access to entry"
                )
            new = _ad_password(changes[0][2][0]) if ad else _utf8(changes[0][2][0])
            if new is None:
                return UNWILLING_TO_PERFORM, AD_BAD_VALUE
            return await self._apply(entry, new)
        if ad and ops == [1, 0] and all(len(vals) == 1 for _, _, vals in changes):
            # delete the old value, add the new one: a user changing their own password
            old = _ad_password(changes[0][2][0])
            new = _ad_password(changes[1][2][0])
            if old is None or new is None:
                return UNWILLING_TO_PERFORM, AD_BAD_VALUE
            if session.bound is None or session.bound.key != entry.key:
                return INSUFFICIENT_ACCESS_RIGHTS, AD_INSUFFICIENT_ACCESS
            with self.state.lock:
                old_ok = _password_ok(entry, old)
            if not old_ok:
                return CONSTRAINT_VIOLATION, AD_WRONG_OLD_VALUE
            return await self._apply(entry, new)
        return UNWILLING_TO_PERFORM, AD_WILL_NOT_PERFORM if ad else "unsupported modification"

    def _extended(self, message_id: int, request: Any, session: _Session) -> _Reply | None:
        """WhoAmI, StartTLS and unknown operations; None for Password Modify."""
        oid = _text(request["requestName"])
        ad = self.state.flavour == "ad"

        def reply(code: int, text: str = "", value: bytes | None = None) -> _Reply:
            response = _result(rfc4511.ExtendedResponse, code, text)
            if value is not None:
                response["responseValue"] = value
            return _Reply([_encode(message_id, "extendedResp", response)])

        if oid == OID_PASSWORD_MODIFY and not ad:
            return None
        if oid == OID_WHOAMI:
            bound = session.bound
            if bound is None:
                return reply(SUCCESS, value=b"")
            if ad and bound.username:
                return reply(SUCCESS, value=f"u:{self.state.netbios}\\{bound.username}".encode())
            return reply(SUCCESS, value=f"dn:{bound.dn}".encode())
        if oid == OID_STARTTLS and self._starttls is not None:
            if session.tls:
                return reply(OPERATIONS_ERROR, "TLS already started")
            response = reply(SUCCESS)
            response.start_tls = True
            return response
        if ad:
            return reply(PROTOCOL_ERROR, AD_UNKNOWN_EXTENDED)
        return reply(PROTOCOL_ERROR, "unsupported extended operation")

    async def _password_modify(self, request: Any, session: _Session) -> tuple[int, str]:
        """RFC 3062 Password Modify (ldap flavour), answered like slapd."""
        bound = session.bound
        if bound is None:
            return STRONGER_AUTH_REQUIRED, "only authenticated users may change passwords"
        value = request["requestValue"]
        identity = old = new = None
        if _present(value):
            try:
                fields = _decode(rfc3062.PasswdModifyRequestValue(), bytes(value))
            except _BAD_INPUT:
                return PROTOCOL_ERROR, "data decoding error"
            identity = (
                _utf8(bytes(fields["userIdentity"])) if _present(fields["userIdentity"]) else None
            )
            old = _utf8(bytes(fields["oldPasswd"])) if _present(fields["oldPasswd"]) else None
            new = _utf8(bytes(fields["newPasswd"])) if _present(fields["newPasswd"]) else None
        if identity is None:
            entry: _Entry | None = bound
        elif identity.startswith("u:"):
            with self.state.lock:
                entry = self.state._user(identity[2:])
        else:
            entry = self._target(identity.removeprefix("dn:"))
        if entry is None:
            return NO_SUCH_OBJECT, ""
        if new is None:
            return UNWILLING_TO_PERFORM, "password generation is not supported"
        is_self = entry.key == bound.key
        if not bound.admin and not is_self:
            return INSUFFICIENT_ACCESS_RIGHTS, "insufficient access"
        if old is None and not bound.admin:
            return UNWILLING_TO_PERFORM, "old password required"
        if old is not None:
            with self.state.lock:
                old_ok = _password_ok(entry, old)
            if not old_ok:
                return UNWILLING_TO_PERFORM, "unwilling to verify old password"
        return await self._apply(entry, new)


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _ad_password(raw: bytes) -> str | None:
    """A unicodePwd value: the password in double quotes, UTF-16-LE; None if not that."""
    try:
        text = raw.decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    return text[1:-1]
