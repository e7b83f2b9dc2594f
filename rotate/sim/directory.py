"""An LDAP directory stand-in (OpenLDAP-like or Active-Directory-like) served by asyncio.

It speaks the real protocol (LDAPv3 over TCP, LDAPS, StartTLS), so ldap3 and OpenLDAP's
command-line clients can talk to it. Messages are decoded and encoded with pyasn1, using
ldap3's ASN.1 definitions (rfc4511, rfc3062), except the search filter, whose recursive
definition in ldap3 only encodes: it is decoded one level at a time.

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

This module listens and runs each connection; the rest lives beside it: ldap_codec (BER
framing, requests and responses), ldap_dn (DNs), ldap_filters (search filters),
directory_state (entries, policy, counters, faults), directory_ops (bind, search, WhoAmI,
StartTLS) and directory_passwords (Modify and Password Modify).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from rotate.sim.directory_ops import DirectoryOperations
from rotate.sim.directory_state import (
    DirectoryCounters,
    DirectoryState,
    Entry,
    Flavour,
    Refuse,
    Session,
)
from rotate.sim.ldap_codec import BAD_INPUT, REQUEST, decode, notice_of_disconnection, read_message
from rotate.sim.ldap_dn import DNKey, dn_key, dn_split, escape_rdn_value, parse_dn

__all__ = [
    "LOOPBACK",
    "DNKey",
    "DirectoryCounters",
    "DirectoryServer",
    "DirectoryState",
    "Entry",
    "Flavour",
    "Refuse",
    "dn_key",
    "dn_split",
    "escape_rdn_value",
    "parse_dn",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


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
        self._ops = DirectoryOperations(state, starttls=starttls is not None)
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
            # SO_REUSEADDR, as for a given socket; asyncio sets the backlog below
            sock = socket.create_server((LOOPBACK, port))
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
            session = Session(tls=writer.get_extra_info("ssl_object") is not None)
            while True:
                try:
                    data = await read_message(reader)
                    if data is None:
                        break
                    message = decode(REQUEST, data)
                except BAD_INPUT as exc:
                    reason = f"malformed request ({type(exc).__name__})"
                    writer.write(notice_of_disconnection())
                    await writer.drain()
                    break
                reply = await self._ops.answer(message, session)
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
