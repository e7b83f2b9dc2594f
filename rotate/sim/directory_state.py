"""What a directory stand-in holds: entries, passwords, password policy, counters and faults."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rotate.sim.ldap_dn import DNKey, dn_key, dn_split, escape_rdn_value, parse_dn

Flavour = Literal["ldap", "ad"]
Refuse = Callable[[str, str], str | None]

# a refused password, in each flavour's words
AD_CONSTRAINT = "0000052D: Constraint violation - check_password_restrictions: "
LDAP_QUALITY = "Password fails quality checking policy"


@dataclass
class Entry:
    """One entry of the directory; its password is never an attribute (never returned)."""

    dn: str
    key: DNKey
    attrs: dict[str, tuple[str, list[str]]]  # lower-case name -> (name, values)
    password: str | None = field(default=None, repr=False)
    admin: bool = False
    username: str | None = None  # uid / sAMAccountName

    def set(self, name: str, values: str | Sequence[str]) -> None:
        vals = [values] if isinstance(values, str) else list(values)
        self.attrs[name.lower()] = (name, vals)

    def password_is(self, password: str) -> bool:
        """Whether `password` is this entry's (non-empty) password, compared in constant time."""
        if not password or self.password is None:
            return False
        return secrets.compare_digest(self.password.encode(), password.encode())


@dataclass
class Session:
    """One connection's state: whether it is encrypted, and who it is bound as."""

    tls: bool
    bound: Entry | None = None  # None: anonymous

    @property
    def admin(self) -> bool:
        return self.bound is not None and self.bound.admin


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
    - `drop_connections`: close the next N connections right after accepting them;
    - `frozen`: answer nothing while set, as a stopped server (SIGSTOP): requests wait and
      are answered once it is cleared, to whoever still listens.
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
        self.frozen = False
        self.counters = DirectoryCounters()
        self.lock = threading.RLock()
        self._entries: dict[DNKey, Entry] = {}
        self._by_username: dict[str, DNKey] = {}
        self._by_upn: dict[str, DNKey] = {}
        self._add_container(base_dn)
        container = "ou=people" if flavour == "ldap" else "CN=Users"
        self.users_dn = f"{container},{base_dn}"
        self._add_container(self.users_dn)

    # -- building ---------------------------------------------------------------------------
    def _add_parents(self, dn: str, key: DNKey) -> None:
        """The containers above `dn`, up to the base (nothing above the base is made)."""
        if len(key) > len(self.base_key) and key[-len(self.base_key) :] == self.base_key:
            self._add_container(dn[dn_split(dn) :])

    def _add_container(self, dn: str) -> Entry:
        """An entry for `dn` with the attributes of its RDN, and its missing parents under
        the base."""
        key = dn_key(dn)
        if key in self._entries:
            return self._entries[key]
        self._add_parents(dn, key)
        entry = _container(self.flavour, dn, key)
        self._entries[key] = entry
        return entry

    def _index(self, entry: Entry) -> None:
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
            entry = Entry(dn=dn, key=key, attrs={}, password=password, username=username)
            _user_attrs(entry, username, self.flavour, self.base_dn, self.domain)
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
                self._add_parents(dn, key)
                entry = Entry(dn=dn, key=key, attrs={})
                if self.flavour == "ad":
                    entry.username = rdn_value
                    _user_attrs(entry, rdn_value, self.flavour, self.base_dn, self.domain)
                else:
                    entry.set("objectClass", ["simpleSecurityObject", "organizationalRole"])
                    entry.set(rdn_attr, rdn_value)
                self._entries[key] = entry
                self._index(entry)
            entry.password = password
            entry.admin = True

    # -- inspection -------------------------------------------------------------------------
    def user(self, username: str) -> Entry | None:
        """The entry of a user (uid / sAMAccountName, case-insensitive), or None."""
        with self.lock:
            key = self._by_username.get(username.casefold())
            return self._entries.get(key) if key is not None else None

    def password(self, username: str) -> str | None:
        """The current password of a user (uid / sAMAccountName, case-insensitive)."""
        with self.lock:
            entry = self.user(username)
            return entry.password if entry is not None else None

    def dn_password(self, dn: str) -> str | None:
        """The current password of the entry at `dn` (an admin, say)."""
        with self.lock:
            entry = self._entries.get(dn_key(dn))
            return entry.password if entry is not None else None

    def dn_of(self, username: str) -> str | None:
        """The DN of a user, or None."""
        entry = self.user(username)
        return entry.dn if entry is not None else None

    def logs_in(self, username: str, password: str) -> bool:
        """Whether `password` is the user's current (non-empty) password."""
        with self.lock:
            entry = self.user(username)
            return entry is not None and entry.password_is(password)

    def reset_counters(self) -> None:
        """Zero the counters (operations in flight stay counted)."""
        with self.lock:
            in_flight = self.counters.in_flight
            self.counters = DirectoryCounters(in_flight=in_flight, max_in_flight=in_flight)

    # -- what the server asks ---------------------------------------------------------------
    def find(self, dn: str) -> Entry | None:
        """The entry at `dn` (ValueError if `dn` is not a DN)."""
        return self.find_key(dn_key(dn))

    def resolve_bind_name(self, name: str) -> Entry | None:
        """The entry a bind name designates: a DN, or (ad) `user@domain` / `DOMAIN\\user`."""
        with self.lock:
            if self.flavour == "ad" and "=" not in name:
                if "\\" in name:
                    domain, _, user = name.partition("\\")
                    if domain.casefold() in (self.netbios.casefold(), self.domain.casefold()):
                        return self.user(user)
                    return None
                key = self._by_upn.get(name.casefold())
                return self._entries.get(key) if key is not None else None
            return self._entries.get(dn_key(name))

    def find_key(self, key: DNKey) -> Entry | None:
        """The entry with this normalized DN."""
        with self.lock:
            return self._entries.get(key)

    def candidates(self, equalities: Iterable[tuple[str, str]]) -> list[Entry]:
        """The entries a search must test: the one user when the filter requires a login
        name (uid / sAMAccountName), else all. Entries' attributes never change once added,
        so the list may be read without the lock."""
        login = "uid" if self.flavour == "ldap" else "samaccountname"
        with self.lock:
            for attr, value in equalities:
                if attr == login:
                    entry = self.user(value)
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

    def violation(self, entry: Entry, password: str) -> str | None:
        """The diagnostic message refusing `password` for `entry`, or None if it may be set."""
        reason = _weakness(password, entry.username, self.min_length, self.complexity)
        if reason is not None:
            return AD_CONSTRAINT + reason + "!" if self.flavour == "ad" else LDAP_QUALITY
        refuse = self.refuse
        if refuse is not None:
            username = entry.username or next(iter(entry.key[0]))[1]
            reason = refuse(username, password)
            if reason is not None:
                if self.flavour == "ad":
                    return AD_CONSTRAINT + (reason or "the password was refused") + "!"
                return reason or LDAP_QUALITY
        return None

    def change(self, entry: Entry, password: str) -> str | None:
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


def _container(flavour: Flavour, dn: str, key: DNKey) -> Entry:
    """A container entry (domain, organizational unit...) with the attributes of its RDN."""
    rdns = parse_dn(dn)
    entry = Entry(dn=dn, key=key, attrs={})
    kind = rdns[0][0][0].lower()
    classes = {
        "dc": ["top", "domain"] if flavour == "ad" else ["top", "dcObject", "organization"],
        "ou": ["top", "organizationalUnit"],
        "o": ["top", "organization"],
    }.get(kind, ["top", "container"])
    entry.set("objectClass", classes)
    for attr, value in rdns[0]:
        entry.set(attr, value)
    if kind == "dc" and flavour == "ldap":
        entry.set("o", rdns[0][0][1])
    if flavour == "ad":
        entry.set("distinguishedName", dn)
    return entry


def _user_attrs(entry: Entry, username: str, flavour: Flavour, base_dn: str, domain: str) -> None:
    """A person's attributes: inetOrgPerson (ldap) or user (ad)."""
    if flavour == "ldap":
        entry.set("objectClass", ["top", "person", "organizationalPerson", "inetOrgPerson"])
        entry.set("uid", username)
        entry.set("cn", username)
        entry.set("sn", username)
        return
    entry.set("objectClass", ["top", "person", "organizationalPerson", "user"])
    entry.set("cn", username)
    entry.set("name", username)
    entry.set("sAMAccountName", username)
    entry.set("userPrincipalName", f"{username}@{domain}")
    entry.set("distinguishedName", entry.dn)
    entry.set("objectCategory", f"CN=Person,CN=Schema,CN=Configuration,{base_dn}")
    entry.set("userAccountControl", "512")


def _weakness(password: str, username: str | None, min_length: int, complexity: bool) -> str | None:
    """Why the length or complexity rule refuses `password`, or None."""
    if len(password) < min_length:
        return (
            f"the password is too short. It should be equal or longer than {min_length} characters"
        )
    if complexity and not _complex(password, username):
        return "the password does not meet the complexity requirements"
    return None


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
