"""An SSH host stand-in: an in-process asyncssh server keeping local accounts and running a
`chpasswd`-like command, on loopback.

What it does (and the choices where real hosts differ):

- Its own host key (ed25519), made when it is built unless one is given; `known_hosts_line`
  is the OpenSSH known_hosts entry a client needs (`[127.0.0.1]:<port> ssh-ed25519 ...`).
- Logins: the state's `login_user` with the authorized public key only (no password, as
  with `PermitRootLogin prohibit-password`); the local accounts with their password
  (keyboard-interactive too, asking for the password); everything else is refused.
- An exec request of exactly the state's `command`, by the login user: its stdin is read to
  the end and answered like chpasswd (`SshHostState.chpasswd`): exit 0, or 1 with the
  problems on stderr. The same command by another user: "Permission denied", exit 1. Any
  other command, a shell or a subsystem: exit 127. No PTY, no forwarding, no SFTP.
- Every command line a client sends is recorded in the state (a test looks for passwords in
  them); nothing a client sends is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import warnings
from pathlib import Path

from rotate.sim.sshhost_state import CommandResult, SshHostCounters, SshHostState

with warnings.catch_warnings():
    # asyncssh imports cryptography's DSA names, which cryptography marks deprecated: not
    # ours to fix, and not for the demo's reader to see
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

__all__ = [
    "LOOPBACK",
    "MAX_INPUT",
    "CommandResult",
    "SshHostCounters",
    "SshHostServer",
    "SshHostState",
    "known_hosts_line",
    "new_key_pair",
    "public_key_of",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: the most stdin a command reads (a chpasswd line is short; a fleet's worth is still small)
MAX_INPUT = 1 << 20
_POLL_S = 0.01


def known_hosts_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    """An OpenSSH known_hosts entry for `key` at host:port (`[host]:port` unless port 22)."""
    name = host if port == 22 else f"[{host}]:{port}"
    public = key.export_public_key("openssh").decode().split()
    return f"{name} {public[0]} {public[1]}"


def new_key_pair(path: Path) -> tuple[Path, str]:
    """A new ed25519 key pair: the private key written to `path` (OpenSSH format, mode 0600,
    never over an existing file), the public one to `<path>.pub`; (path, public key line)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="rotate-admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as private:
        private.write(key.export_private_key("openssh"))
    public = key.export_public_key("openssh").decode().strip()
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return path, public


def public_key_of(key_file: Path) -> str:
    """The OpenSSH public key line of a private key file: `<key_file>.pub` when it is there,
    else read from the (unencrypted) private key; ValueError saying why not."""
    pub = key_file.with_name(key_file.name + ".pub")
    try:
        if pub.exists():
            key = asyncssh.import_public_key(pub.read_bytes())
        else:
            key = asyncssh.read_private_key(key_file).convert_to_public()
    except (OSError, asyncssh.KeyImportError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"cannot read the SSH key {key_file} ({why})") from None
    return key.export_public_key("openssh").decode().strip()


class SshHostServer:
    """Serve an SshHostState over SSH on loopback; `authorized_key` is the login user's
    public key (an asyncssh key or an OpenSSH public key line)."""

    def __init__(
        self,
        state: SshHostState,
        authorized_key: asyncssh.SSHKey | str,
        *,
        host_key: asyncssh.SSHKey | None = None,
    ) -> None:
        self.state = state
        if isinstance(authorized_key, str):
            authorized_key = asyncssh.import_public_key(authorized_key)
        self._authorized = authorized_key.public_data
        self.host_key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the SSH host stand-in is not started")
        return self._port

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def known_hosts_line(self) -> str:
        """This host's known_hosts entry: `[127.0.0.1]:<port> ssh-ed25519 <key>`."""
        return known_hosts_line(LOOPBACK, self.port, self.host_key)

    async def start(self, sock: socket.socket | None = None, *, port: int = 0) -> str:
        """Listen on `sock` (bound, not listening) or on a new loopback socket; the address."""
        if sock is None:
            sock = socket.create_server((LOOPBACK, port))
        self._acceptor = await asyncssh.listen(
            sock=sock,
            server_factory=lambda: _Connection(self),
            server_host_keys=[self.host_key],
            process_factory=self._run,
            encoding="utf-8",
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            line_editor=False,
            backlog=1024,
        )
        self._port = int(sock.getsockname()[1])
        return self.address

    async def close(self, grace: float = 0.5) -> None:
        """Stop listening and end every connection."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is None:
            return
        acceptor.close()
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        waits = [asyncio.ensure_future(conn.wait_closed()) for conn in connections]
        waits.append(asyncio.ensure_future(acceptor.wait_closed()))
        _, late = await asyncio.wait(waits, timeout=grace)
        for task in late:
            task.cancel()

    # -- what a connection asks -------------------------------------------------------------
    def authorized(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Whether `key` is the login user's (asked once for the offer, once signed)."""
        return username == self.state.login_user and key.public_data == self._authorized

    def opened(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.add(conn)
        with self.state.lock:
            self.state.counters.connections += 1

    def closed(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.discard(conn)

    async def pause(self) -> None:
        """The latency and frozen faults, before a login or a command."""
        if self.state.latency_s > 0:
            await asyncio.sleep(self.state.latency_s)
        # set from the test's thread, which cannot wake an asyncio.Event: polled
        while self.state.frozen:  # noqa: ASYNC110
            await asyncio.sleep(_POLL_S)

    # -- one command ------------------------------------------------------------------------
    async def _run(self, process: asyncssh.SSHServerProcess[str]) -> None:
        state = self.state
        state.session_started()
        reason = "done"
        try:
            await self.pause()
            command = process.command
            state.record_command(command if command is not None else "")
            result = await self._answer(process, command)
            for line in result.stderr:
                process.stderr.write(line + "\n")
            process.exit(result.status)
        except (asyncssh.Error, OSError, asyncio.IncompleteReadError) as exc:
            reason = type(exc).__name__
            process.close()
        except Exception as exc:  # a bug here must not kill the server, nor log client data
            reason = f"internal error ({type(exc).__name__})"
            process.exit(1)
        finally:
            state.session_ended()
            log.debug("ssh host command ended: %s", reason)

    async def _answer(
        self, process: asyncssh.SSHServerProcess[str], command: str | None
    ) -> CommandResult:
        state = self.state
        if command != state.command:
            what = "a shell" if command is None else f"{command.split(' ', 1)[0][:40]!r}"
            return CommandResult(127, (f"stand-in: {what}: command not found",))
        if process.get_extra_info("username") != state.login_user:
            return CommandResult(1, (f"{command}: Permission denied.",))
        text = await _read_all(process)
        if text is None:
            return CommandResult(1, (f"{command}: input too long",))
        return state.chpasswd(text)


async def _read_all(process: asyncssh.SSHServerProcess[str]) -> str | None:
    """The whole of stdin (until the client's EOF), or None past MAX_INPUT characters."""
    chunks: list[str] = []
    size = 0
    while True:
        data = await process.stdin.read(65536)
        if not data:
            return "".join(chunks)
        size += len(data)
        if size > MAX_INPUT:
            return None
        chunks.append(data)


class _Connection(asyncssh.SSHServer):
    """One client connection: who may log in, and how."""

    def __init__(self, server: SshHostServer) -> None:
        self._server = server
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._server.opened(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._server.closed(self._conn)

    async def begin_auth(self, username: str) -> bool:
        await self._server.pause()
        return True  # every user must authenticate

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = self._server.authorized(username, key)
        if not ok:
            with self._server.state.lock:
                self._server.state.counters.login_failures += 1
        return ok

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        await self._server.pause()
        return self._server.state.password_login(username, password)

    def host_based_auth_supported(self) -> bool:
        return False

    def auth_completed(self) -> None:
        if self._conn is not None and self._conn.get_extra_info("username") == (
            self._server.state.login_user
        ):
            with self._server.state.lock:
                self._server.state.counters.admin_logins += 1
