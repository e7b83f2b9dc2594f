"""Search filters of the directory stand-in, compiled to three-valued tests of an entry.

Supported: and, or, not, equality, approx (as equality), substrings, present, and AD's
bitwise extensible matches; ordering matches are undefined (no ordering rules here). A test
answers True, False or None (undefined, RFC 4511 4.5.1.7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rotate.sim.ldap_codec import (
    FILTER,
    OID_MATCH_BIT_AND,
    OID_MATCH_BIT_OR,
    Garbage,
    as_text,
    attr_name,
    decode,
    is_present,
)
from rotate.sim.ldap_dn import parse_dn, same_dn

#: how deeply and/or/not filters may nest
MAX_FILTER_DEPTH = 32

#: attributes whose values match case-insensitively (AD: every attribute does)
CASE_IGNORE = frozenset(
    {"uid", "samaccountname", "cn", "objectclass", "mail", "sn", "givenname", "displayname",
     "userprincipalname", "ou", "dc", "o", "name"}
)  # fmt: skip
#: attributes holding DNs (matched by normalized DN)
DN_ATTRIBUTES = frozenset({"distinguishedname", "objectcategory", "member", "memberof"})

#: an entry's attributes: lower-case name -> (name as given, values)
Attrs = Mapping[str, tuple[str, list[str]]]
Predicate = Callable[[Attrs], bool | None]


@dataclass(frozen=True)
class Compiled:
    """A filter ready to test entries: True, False or None (undefined), and the equality
    assertions every matching entry satisfies (to look users up by index)."""

    test: Predicate
    equalities: tuple[tuple[str, str], ...] = ()


def compile_filter(flt: Any, fold_all: bool, depth: int = 0) -> Compiled:
    """Compile a decoded filter (nested and/or/not are decoded here, depth bounded);
    `fold_all`: every attribute matches case-insensitively (AD)."""
    if depth > MAX_FILTER_DEPTH:
        raise Garbage
    kind = flt.getName()
    node = flt.getComponent()
    if kind in ("and", "or", "notFilter"):
        subs = [compile_filter(decode(FILTER, bytes(raw)), fold_all, depth + 1) for raw in node]
        return _negation(subs) if kind == "notFilter" else _combination(subs, kind == "or")
    leaf = _LEAVES.get(kind)
    return leaf(node, fold_all) if leaf is not None else Compiled(_undefined)


def select_attributes(
    attrs: Attrs, requested: list[str], types_only: bool
) -> list[tuple[str, list[str]]]:
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


# -- and, or, not -------------------------------------------------------------------------------


def _negation(subs: list[Compiled]) -> Compiled:
    if len(subs) != 1:
        raise Garbage
    inner = subs[0].test

    def negate(attrs: Attrs) -> bool | None:
        result = inner(attrs)
        return None if result is None else not result

    return Compiled(negate)


def _combination(subs: list[Compiled], decisive: bool) -> Compiled:
    """An and (`decisive` False) or an or (True): `decisive` is the value that decides at once."""
    tests = [sub.test for sub in subs]

    def combine(attrs: Attrs) -> bool | None:
        undefined = False
        for test in tests:
            result = test(attrs)
            if result is decisive:
                return decisive
            undefined = undefined or result is None
        return None if undefined else not decisive

    # an or's branches are alternatives: none of their equalities is certain
    equalities = () if decisive else tuple(e for sub in subs for e in sub.equalities)
    return Compiled(combine, equalities)


# -- leaves -------------------------------------------------------------------------------------


def _undefined(attrs: Attrs) -> bool | None:
    return None


def _values(attrs: Attrs, attr: str) -> list[str]:
    return attrs.get(attr, ("", []))[1]


def _assertion(value: Any) -> str:
    return bytes(value).decode("utf-8", "replace")


def _presence(node: Any, fold_all: bool) -> Compiled:
    name = attr_name(node)
    return Compiled(lambda attrs: name in attrs)


def _equality(node: Any, fold_all: bool) -> Compiled:
    attr = attr_name(node["attributeDesc"])
    assertion = _assertion(node["assertionValue"])
    fold = fold_all or attr in CASE_IGNORE

    def equal(attrs: Attrs) -> bool | None:
        return any(_values_equal(attr, v, assertion, fold) for v in _values(attrs, attr))

    return Compiled(equal, ((attr, assertion),))


def _values_equal(attr: str, value: str, assertion: str, fold: bool) -> bool:
    if attr in DN_ATTRIBUTES:
        if attr == "objectcategory" and "=" not in assertion:  # AD: (objectCategory=person)
            rdn = parse_dn(value)[0][0][1] if value else ""
            return rdn.casefold() == assertion.casefold()
        return same_dn(value, assertion)
    if fold:
        return value.casefold() == assertion.casefold()
    return value == assertion


def _substrings(node: Any, fold_all: bool) -> Compiled:
    attr = attr_name(node["type"])
    fold = fold_all or attr in CASE_IGNORE
    initial: str | None = None
    final: str | None = None
    anys: list[str] = []
    for part in node["substrings"]:
        text = _assertion(part.getComponent())
        text = text.casefold() if fold else text
        which = part.getName()
        if which == "initial":
            initial = text
        elif which == "final":
            final = text
        else:
            anys.append(text)

    def substrings(attrs: Attrs) -> bool | None:
        return any(
            _substrings_match(v.casefold() if fold else v, initial, anys, final)
            for v in _values(attrs, attr)
        )

    return Compiled(substrings)


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


def _extensible(node: Any, fold_all: bool) -> Compiled:
    """AD's bitwise matching rules (LDAP_MATCHING_RULE_BIT_AND / _OR); others undefined."""
    rule = as_text(node["matchingRule"]) if is_present(node["matchingRule"]) else ""
    wanted = _bits(_assertion(node["matchValue"]))
    if rule not in (OID_MATCH_BIT_AND, OID_MATCH_BIT_OR) or not is_present(node["type"]):
        return Compiled(_undefined)
    if wanted is None:
        return Compiled(_undefined)
    attr = attr_name(node["type"])
    every = rule == OID_MATCH_BIT_AND

    def bits(attrs: Attrs) -> bool | None:
        for value in _values(attrs, attr):
            found = _bits(value)
            if found is not None and (found & wanted == wanted if every else found & wanted):
                return True
        return False

    return Compiled(bits)


def _bits(value: str) -> int | None:
    try:
        return int(value) & 0xFFFFFFFF
    except ValueError:
        return None


_LEAVES: dict[str, Callable[[Any, bool], Compiled]] = {
    "present": _presence,
    "equalityMatch": _equality,
    "approxMatch": _equality,
    "substringFilter": _substrings,
    "extensibleMatch": _extensible,
}
