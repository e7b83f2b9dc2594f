"""Connections to a directory: TLS, opening and binding them with ldap3, pools of idle ones.

Everything here blocks: it runs on the authority's threads, never on the event loop. ldap3's
own logging is kept off (it logs whole requests, bind passwords and new passwords included,
once its detail level is raised), and a connection given back or thrown away forgets the
password and the request it last sent.
"""

from __future__ import annotations

import math
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import ldap3  # type: ignore[import-untyped,unused-ignore]
from ldap3.core import exceptions as lx  # type: ignore[import-untyped,unused-ignore]
from ldap3.utils.log import (  # type: ignore[import-untyped,unused-ignore]
    OFF,
    set_library_log_detail_level,
    set_library_log_hide_sensitive_data,
)

from rotate.authorities.ldap_errors import (
    BindRefused,
    Lost,
    NotReached,
    exc_text,
    result_text,
    tls_failure,
)
from rotate.authorities.ldap_settings import LdapSettings, ldap_target
from rotate.errors import ConfigError
from rotate.models import Secret

set_library_log_detail_level(OFF)
set_library_log_hide_sensitive_data(True)

T = TypeVar("T")


class Connector:
    """Opens connections to one directory and binds them as rotate's admin."""

    def __init__(self, settings: LdapSettings, bind_password: Secret) -> None:
        self.settings = settings
        self._bind_password = bind_password
        self.target = ldap_target(settings.url)
        self.url = self.target.url
        self._tls = _ContextTls(tls_context(settings), self.target.host) if settings.tls else None
        # ldap3 packs it into SO_RCVTIMEO as whole seconds
        self.receive_timeout = max(1, math.ceil(settings.timeout_s))

    def __repr__(self) -> str:
        return f"Connector({self.url!r})"

    def secrets(self, *more: Secret) -> tuple[str, ...]:
        """Every password a text about this call could echo: masked in every message."""
        return (self._bind_password.reveal(), *(s.reveal() for s in more))

    def connect(self, secrets: Iterable[str]) -> Any:
        """A new open connection (TLS started when configured), not bound yet."""
        # A Server of its own: ldap3 keeps the current address and a 5 s "unavailable" mark
        # on the Server, shared by every connection and thread that uses it
        server = ldap3.Server(
            self.target.host,
            port=self.target.port,
            use_ssl=self.target.scheme == "ldaps",
            tls=self._tls,
            get_info=ldap3.NONE,
            connect_timeout=self.settings.timeout_s,
        )
        conn = ldap3.Connection(
            server,
            authentication=ldap3.SIMPLE,
            client_strategy=ldap3.SYNC,
            raise_exceptions=False,
            receive_timeout=self.receive_timeout,
            auto_referrals=False,
            check_names=True,
        )
        try:
            conn.open(read_server_info=False)
            if self.settings.starttls and not conn.start_tls(read_server_info=False):
                raise lx.LDAPStartTLSError("StartTLS was not accepted")
        except (lx.LDAPException, OSError) as exc:
            discard(conn)
            what = "TLS with" if tls_failure(exc) else "connecting to"
            raise NotReached(f"{what} {self.url} failed: {exc_text(exc, secrets)}") from None
        return conn

    def bind_admin(self, secrets: Iterable[str]) -> Any:
        """A new connection bound as rotate's admin (NotReached, BindRefused)."""
        conn = self.connect(secrets)
        try:
            ok = conn.rebind(
                user=self.settings.bind_dn,
                password=self._bind_password.reveal(),
                read_server_info=False,
            )
        except (lx.LDAPException, OSError) as exc:
            discard(conn)
            raise NotReached(
                f"the admin bind at {self.url} failed: {exc_text(exc, secrets)}"
            ) from None
        finally:
            conn.password = None
        if not ok:
            result = dict(conn.result or {})
            discard(conn)
            raise BindRefused(result.get("result"), result_text(result, secrets))
        return conn


class Pool:
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
        discard(conn)

    def drain(self) -> list[Any]:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        return idle

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    def use(self, open_new: Callable[[], Any], work: Callable[[Any], T]) -> tuple[Any, T]:
        """`work` on an idle connection, else on a new one from `open_new`; the connection
        (for the caller to give back) and what `work` returned.

        `work` raises Lost when the connection failed: it is thrown away, and when it was
        an idle one (the server may have closed it meanwhile) `work` runs once more, on a
        fresh one. On any other failure the connection is given back.
        """
        for attempt in range(2):
            conn = self.take()
            reused = conn is not None
            if conn is None:
                conn = open_new()
            try:
                return conn, work(conn)
            except Lost:
                discard(conn)
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self.give(conn)
                raise
        raise AssertionError("unreachable")  # pragma: no cover


def discard(conn: Any) -> None:
    """Close a connection for good (and drop what it remembers of the last request)."""
    try:
        conn.password = None
        conn.request = None
        conn.unbind()
    except Exception:  # noqa: S110 - a broken connection is being thrown away
        pass


def discard_all(conns: Iterable[Any]) -> None:
    for conn in conns:
        discard(conn)


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


def tls_context(settings: LdapSettings) -> ssl.SSLContext:
    """The TLS context of a directory's connections (ConfigError if ca_bundle won't load)."""
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
