"""The directory stand-in's answers to decoded requests: bind, search, WhoAmI, StartTLS.

Password changes are PasswordChanges' (directory_passwords); this module dispatches to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rotate.sim.directory_passwords import Answer, PasswordChanges
from rotate.sim.directory_state import DirectoryState, Entry, Session
from rotate.sim.ldap_codec import (
    AUTH_METHOD_NOT_SUPPORTED,
    BAD_INPUT,
    INSUFFICIENT_ACCESS_RIGHTS,
    INVALID_CREDENTIALS,
    INVALID_DN_SYNTAX,
    NO_SUCH_OBJECT,
    OID_AD_CAPABILITY,
    OID_PASSWORD_MODIFY,
    OID_STARTTLS,
    OID_WHOAMI,
    OPERATIONS_ERROR,
    PROTOCOL_ERROR,
    RESPONSE_OF,
    SIZE_LIMIT_EXCEEDED,
    STRONGER_AUTH_REQUIRED,
    SUCCESS,
    UNAVAILABLE_CRITICAL_EXTENSION,
    UNWILLING_TO_PERFORM,
    as_text,
    encode,
    entry_message,
    is_present,
    ldap_result,
)
from rotate.sim.ldap_dn import dn_key
from rotate.sim.ldap_filters import compile_filter, select_attributes

AD_STRONG_AUTH = "BindSimple: Transport encryption required."
AD_INVALID_CREDENTIALS = (
    "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563"
)
AD_UNKNOWN_EXTENDED = (
    "0000203D: LdapErr: DSID-0C0C0120, comment: Unknown extended request OID, data 0, v4563"
)
AD_BIND_FIRST = (
    "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this "
    "operation a successful bind must be completed on the connection., data 0"
)
LDAP_BIND_FIRST = "anonymous search is not allowed: bind first"

_BASE, _ONE_LEVEL = 0, 1  # search scopes (RFC 4511 4.5.1.2); 2 is the subtree


@dataclass
class Reply:
    """What an operation answers: encoded messages, then what to do after sending them."""

    messages: list[bytes]
    start_tls: bool = False
    close: bool = False


class DirectoryOperations:
    """How one directory stand-in answers each request (`starttls`: StartTLS is offered)."""

    def __init__(self, state: DirectoryState, *, starttls: bool) -> None:
        self.state = state
        self.starttls = starttls
        self.passwords = PasswordChanges(state)

    async def answer(self, message: Any, session: Session) -> Reply | None:
        """The reply to a decoded LDAPMessage (None: no reply, as for an abandon)."""
        op = message["protocolOp"]
        name = op.getName()
        request = op.getComponent()
        message_id = int(message["messageID"])
        if name == "unbindRequest":
            return Reply([], close=True)
        if name == "abandonRequest":
            return None
        with _in_flight(self.state):
            latency = self.state.latency_s
            if latency > 0:
                await asyncio.sleep(latency)
            # set from the test's thread, which cannot wake an asyncio.Event: polled
            while self.state.frozen:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            controls = message["controls"]
            if is_present(controls) and any(bool(c["criticality"]) for c in controls):
                code = UNAVAILABLE_CRITICAL_EXTENSION
                return Reply([_response(message_id, name, code, "critical control unsupported")])
            return await self._dispatch(name, message_id, request, session)

    async def _dispatch(self, name: str, message_id: int, request: Any, session: Session) -> Reply:
        def answer(code_and_text: Answer) -> Reply:
            return Reply([_response(message_id, name, *code_and_text)])

        if name == "bindRequest":
            return answer(self._bind(request, session))
        if name == "searchRequest":
            return self._search(message_id, request, session)
        if name == "modifyRequest":
            return answer(await self.passwords.modify(request, session))
        if name == "extendedReq":
            reply = self._extended(message_id, request, session)
            if reply is None:  # Password Modify
                reply = answer(await self.passwords.password_modify(request, session))
            return reply
        return answer((UNWILLING_TO_PERFORM, "operation not supported by this directory"))

    # -- bind -------------------------------------------------------------------------------
    def _bind(self, request: Any, session: Session) -> Answer:
        state = self.state
        with state.lock:
            state.counters.binds += 1
        session.bound = None  # a bind (even a failed one) starts anonymous
        code, text = self._authenticate(request, session)
        if code != SUCCESS:
            with state.lock:
                state.counters.bind_failures += 1
        return code, text

    def _authenticate(self, request: Any, session: Session) -> Answer:
        ad = self.state.flavour == "ad"
        if int(request["version"]) != 3:
            return PROTOCOL_ERROR, "requested protocol version not allowed"
        auth = request["authentication"]
        if auth.getName() != "simple":
            return AUTH_METHOD_NOT_SUPPORTED, "only simple binds are supported"
        name = as_text(request["name"])
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
            ok = entry is not None and entry.password_is(password)
        if not ok or entry is None:
            return INVALID_CREDENTIALS, AD_INVALID_CREDENTIALS if ad else ""
        session.bound = entry
        return SUCCESS, ""

    # -- search -----------------------------------------------------------------------------
    def _search(self, message_id: int, request: Any, session: Session) -> Reply:
        state = self.state
        with state.lock:
            state.counters.searches += 1

        def done(code: int, text: str = "", matched: str = "") -> bytes:
            return _response(message_id, "searchRequest", code, text, matched)

        try:
            base_key = dn_key(as_text(request["baseObject"]))
        except ValueError:
            return Reply([done(INVALID_DN_SYNTAX, "invalid DN")])
        scope = int(request["scope"])
        try:
            flt = compile_filter(request["filter"], state.flavour == "ad")
        except BAD_INPUT:
            return Reply([done(PROTOCOL_ERROR, "bad search filter")])
        if base_key:
            if session.bound is None:
                return Reply([done(INSUFFICIENT_ACCESS_RIGHTS, self._bind_first())])
            if state.find_key(base_key) is None:
                return Reply([done(NO_SUCH_OBJECT, "", state.closest(base_key))])
            entries = state.candidates(flt.equalities)
        elif scope == _BASE:  # the root DSE, for anyone
            entries = [Entry("", (), self._root_dse())]
        else:
            return Reply([done(NO_SUCH_OBJECT)])
        size_limit = int(request["sizeLimit"])
        types_only = bool(request["typesOnly"])
        requested = [as_text(a) for a in request["attributes"]]
        depth = len(base_key)
        chunks: list[bytes] = []
        for entry in entries:
            key = entry.key
            if key[len(key) - depth :] != base_key:
                continue
            if (scope == _BASE and len(key) != depth) or (
                scope == _ONE_LEVEL and len(key) != depth + 1
            ):
                continue
            if not flt.test(entry.attrs):
                continue
            if size_limit and len(chunks) >= size_limit:
                return Reply([*chunks, done(SIZE_LIMIT_EXCEEDED)])
            selected = select_attributes(entry.attrs, requested, types_only)
            chunks.append(entry_message(message_id, entry.dn, selected))
        return Reply([*chunks, done(SUCCESS)])

    def _root_dse(self) -> dict[str, tuple[str, list[str]]]:
        state = self.state
        extensions = [OID_WHOAMI]
        if state.flavour == "ldap":
            extensions.insert(0, OID_PASSWORD_MODIFY)
        if self.starttls:
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

    def _bind_first(self) -> str:
        return AD_BIND_FIRST if self.state.flavour == "ad" else LDAP_BIND_FIRST

    # -- extended operations ----------------------------------------------------------------
    def _extended(self, message_id: int, request: Any, session: Session) -> Reply | None:
        """WhoAmI, StartTLS and unknown operations; None for Password Modify."""
        oid = as_text(request["requestName"])
        ad = self.state.flavour == "ad"

        def reply(code: int, text: str = "", value: bytes | None = None) -> Reply:
            return Reply([_response(message_id, "extendedReq", code, text, value=value)])

        if oid == OID_PASSWORD_MODIFY and not ad:
            return None
        if oid == OID_WHOAMI:
            bound = session.bound
            if bound is None:
                return reply(SUCCESS, value=b"")
            if ad and bound.username:
                return reply(SUCCESS, value=f"u:{self.state.netbios}\\{bound.username}".encode())
            return reply(SUCCESS, value=f"dn:{bound.dn}".encode())
        if oid == OID_STARTTLS and self.starttls:
            if session.tls:
                return reply(OPERATIONS_ERROR, "TLS already started")
            response = reply(SUCCESS)
            response.start_tls = True
            return response
        if ad:
            return reply(PROTOCOL_ERROR, AD_UNKNOWN_EXTENDED)
        return reply(PROTOCOL_ERROR, "unsupported extended operation")


def _response(
    message_id: int,
    request_name: str,
    code: int,
    text: str = "",
    matched: str = "",
    *,
    value: bytes | None = None,
) -> bytes:
    """The encoded response to a request named `request_name` (`value`: an extended one's)."""
    response_name, response_cls = RESPONSE_OF[request_name]
    response = ldap_result(response_cls, code, text, matched)
    if value is not None:
        response["responseValue"] = value
    return encode(message_id, response_name, response)


@contextlib.contextmanager
def _in_flight(state: DirectoryState) -> Iterator[None]:
    """Count an operation in flight while it is answered."""
    with state.lock:
        state.counters.in_flight += 1
        state.counters.max_in_flight = max(state.counters.max_in_flight, state.counters.in_flight)
    try:
        yield
    finally:
        with state.lock:
            state.counters.in_flight -= 1
