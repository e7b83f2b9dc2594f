"""LDAP messages of the directory stand-in: BER framing, request decoding, response encoding.

Decoded and encoded with pyasn1 on ldap3's ASN.1 definitions (rfc4511, rfc3062), except the
search filter, whose recursive definition in ldap3 only encodes: its and/or/not are decoded
one level at a time (see ldap_filters).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ldap3.protocol import rfc4511  # type: ignore[import-untyped,unused-ignore]
from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped,unused-ignore]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped,unused-ignore]
from pyasn1.type import namedtype, tag, univ  # type: ignore[import-untyped,unused-ignore]

#: the largest LDAP message accepted; a longer one drops the connection
MAX_MESSAGE = 1024 * 1024

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


# -- ASN.1: requests (decoded with a filter definition that decodes) ------------------------


def _ctx(number: int) -> Any:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, number)


# and/or/not hold raw filter encodings: ldap3's recursive Filter only works for encoding
_FILTER_SET = univ.SetOf(componentType=univ.Any())
FILTER = univ.Choice(
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
            namedtype.NamedType("filter", FILTER) if t.name == "filter" else t
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
REQUEST = univ.Sequence(
    componentType=namedtype.NamedTypes(
        namedtype.NamedType("messageID", rfc4511.MessageID()),
        namedtype.NamedType("protocolOp", _REQUEST_OP),
        namedtype.OptionalNamedType("controls", rfc4511.Controls()),
    )
)

#: the response to each request, by the request's name
RESPONSE_OF = {
    "bindRequest": ("bindResponse", rfc4511.BindResponse),
    "searchRequest": ("searchResDone", rfc4511.SearchResultDone),
    "modifyRequest": ("modifyResponse", rfc4511.ModifyResponse),
    "addRequest": ("addResponse", rfc4511.AddResponse),
    "delRequest": ("delResponse", rfc4511.DelResponse),
    "modDNRequest": ("modDNResponse", rfc4511.ModifyDNResponse),
    "compareRequest": ("compareResponse", rfc4511.CompareResponse),
    "extendedReq": ("extendedResp", rfc4511.ExtendedResponse),
}


class Garbage(Exception):
    """The peer sent something that is not an LDAP message: drop the connection."""


#: what decoding a client's bytes may raise (pyasn1's messages quote the input: never log)
BAD_INPUT: tuple[type[Exception], ...] = (
    Garbage,
    PyAsn1Error,
    ValueError,
    LookupError,
    TypeError,
    RecursionError,
)


def decode(spec: Any, data: bytes) -> Any:
    """`data` decoded as `spec`; Garbage when bytes are left over."""
    value, rest = decoder.decode(data, asn1Spec=spec)
    if rest:
        raise Garbage
    return value


def as_text(value: Any) -> str:
    """An LDAPString (or OCTET STRING) as text; UnicodeDecodeError when not UTF-8."""
    return bytes(value).decode("utf-8")


def is_present(value: Any) -> bool:
    """Whether an OPTIONAL component was sent."""
    return value is not None and bool(value.isValue)


async def read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One BER-framed LDAPMessage (tag, length, then exactly that many bytes); None at EOF."""
    try:
        head = await reader.readexactly(2)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise Garbage from None
        return None
    if head[0] != 0x30:  # SEQUENCE
        raise Garbage
    length = head[1]
    extra = b""
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:  # indefinite form, or absurd
            raise Garbage
        extra = await reader.readexactly(count)
        length = int.from_bytes(extra, "big")
    if length > MAX_MESSAGE:
        raise Garbage
    return head + extra + await reader.readexactly(length)


# -- ASN.1: responses (ldap3's definitions) -------------------------------------------------


def ldap_result(cls: Any, code: int, message: str = "", matched: str = "") -> Any:
    """An LDAPResult of type `cls` (BindResponse, ModifyResponse...)."""
    response = cls()
    response["resultCode"] = code
    response["matchedDN"] = matched
    response["diagnosticMessage"] = message
    return response


def encode(message_id: int, name: str, op: Any) -> bytes:
    """An LDAPMessage carrying the protocol operation `op` (named `name`), BER-encoded."""
    message = rfc4511.LDAPMessage()
    message["messageID"] = message_id
    message["protocolOp"] = rfc4511.ProtocolOp().setComponentByName(name, op)
    return bytes(encoder.encode(message))


def entry_message(message_id: int, dn: str, attrs: Iterable[tuple[str, list[str]]]) -> bytes:
    """A SearchResultEntry message."""
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
    return encode(message_id, "searchResEntry", entry)


def notice_of_disconnection() -> bytes:
    """The unsolicited notice sent before dropping a connection that sent garbage."""
    notice = ldap_result(rfc4511.ExtendedResponse, PROTOCOL_ERROR, "malformed request")
    notice["responseName"] = OID_NOTICE_OF_DISCONNECTION
    return encode(0, "extendedResp", notice)


def attr_name(description: Any) -> str:
    """An attribute description's type, lower-cased, options dropped (`cn;lang-en` -> cn)."""
    return as_text(description).split(";", 1)[0].strip().lower()
