"""Distinguished names for the directory stand-in (RFC 4514): parse, escape, normalize."""

from __future__ import annotations

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


def same_dn(a: str, b: str) -> bool:
    """Whether two DNs name the same entry (compared as text when one is not a DN)."""
    try:
        return dn_key(a) == dn_key(b)
    except ValueError:
        return a.casefold() == b.casefold()


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
