"""`type = "ssh"`: a host checks the password of one of its local accounts, and changes it.

Rotate logs in to the account's host (the inventory's `host` column) as `login_user` with its
own private key (from a file, or from Vault) and runs the configured `command` (default
`chpasswd`) with the account's line `user:password\\n` on stdin: never in argv, where any
user of the host could read it, and nothing of the account's composed into the command,
which the config fixes. Exit status 0 is done; any other is the host's "no" (a PAM or quality
refusal, an unknown user), with the command's stderr as the reason. A connection lost after
the line was written is an OutcomeUnknown: the next login tells which password the host has.

A login check is a password-only login as the account itself (no key, no agent).

Every host's key is checked against the configured known_hosts file: a host that is not in
it, or whose key changed, is refused with an error naming the host, never accepted, never
taken for a wrong password. Nothing of the user's SSH setup is used (no ~/.ssh/config, no
default keys, no agent, no GSSAPI).

Connections are opened per call and closed after it: at most `per_host` at once to one host
and `max_connections` over all. No secret is ever in a message or a log line: texts are
built from exit statuses, errors and the command's stderr cleaned of the password; asyncssh's
own logger (a line per connection at INFO) is kept at WARNING.

Beside it: ssh_settings (settings, and the checks of user names, hosts and passwords).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

from rotate.authorities.base import Authority, AuthoritySettings, SecretSource, settings_from
from rotate.authorities.ssh_settings import (
    HostPort,
    SshSettings,
    account_problems,
    parse_host,
    password_problem,
    settings_problems,
)
from rotate.errors import (
    AdminRefused,
    AuthorityUnavailable,
    ConfigError,
    OutcomeUnknown,
    Rejected,
    RemoteError,
)
from rotate.models import Account, Secret

with warnings.catch_warnings():
    # asyncssh imports cryptography's DSA names, which cryptography marks deprecated
    warnings.simplefilter("ignore")
    import asyncssh

__all__ = ["SSH", "SshAuthority", "SshSettings", "SshType"]

log = logging.getLogger(__name__)
logging.getLogger("asyncssh").setLevel(logging.WARNING)

_MESSAGE_LIMIT = 200


class SshType:
    """The `ssh` authority type."""

    name = "ssh"

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> AuthoritySettings | None:
        where = f"authorities.{name}"
        before = len(errors)
        built = settings_from(SshSettings, name, self.name, table, errors)
        if built is None:  # pragma: no cover - build only fails on a type it did not check
            return None
        errors += settings_problems(built, table, where)
        return built if len(errors) == before else None

    def check_account(
        self,
        settings: AuthoritySettings,
        username: str,
        domain: str | None,
        host: str | None,
        *,
        account: str = "",
    ) -> list[tuple[str, str]]:
        return account_problems(username, host)

    def build(self, settings: AuthoritySettings, secrets: SecretSource) -> Authority:
        if not isinstance(settings, SshSettings):  # pragma: no cover - parse made it
            raise ConfigError(f"authorities.{settings.name}: not ssh settings")
        key_text = None
        if settings.key_vault:
            key_text = secrets.secret(
                None, settings.key_vault, f"authority {settings.name}: the private key"
            )
        return SshAuthority(settings, key_text)


SSH = SshType()


def clean(text: str, secrets: Iterable[str], limit: int = _MESSAGE_LIMIT) -> str:
    """`text` with every secret masked, control characters and line breaks gone, trimmed."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Trust:
    """rotate's private key and the known hosts of one ssh authority."""

    def __init__(self, settings: SshSettings, key_text: Secret | None) -> None:
        self.name = settings.name
        self.settings = settings
        self._key_text = key_text
        self._key: asyncssh.SSHKey | None = None
        # the known_hosts file as last parsed: (mtime, size, inode), its hosts, its entries
        self._known: tuple[tuple[int, int, int], asyncssh.SSHKnownHosts, int] | None = None

    def key(self, error: type[RemoteError] | type[AdminRefused]) -> asyncssh.SSHKey:
        """rotate's private key (loaded once); `error` when it will not load."""
        if self._key is not None:
            return self._key
        where = (
            f"key_vault {self.settings.key_vault}"
            if self._key_text is not None
            else f"key_file {self.settings.key_file}"
        )
        secrets = [self._key_text.reveal()] if self._key_text is not None else []
        try:
            if self._key_text is not None:
                key = asyncssh.import_private_key(self._key_text.reveal())
            else:
                key = asyncssh.read_private_key(str(self.settings.key_file))
        except (asyncssh.KeyImportError, OSError, ValueError) as exc:
            why = clean(getattr(exc, "strerror", None) or str(exc), secrets)
            raise error(
                f"authority {self.name}: rotate's private key ({where}) cannot be loaded: {why} "
                "(an OpenSSH or PEM private key without a passphrase)"
            ) from None
        self._key = key
        return key

    def known_hosts(
        self, error: type[RemoteError] | type[AuthorityUnavailable]
    ) -> tuple[asyncssh.SSHKnownHosts, int]:
        """The known_hosts file and the number of its entries: parsed again only when the
        file changed (an edit applies to the next connection; thousands of accounts do not
        mean thousands of parses)."""
        path = self.settings.known_hosts
        try:
            stat = os.stat(path)
            version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if self._known is not None and self._known[0] == version:
                return self._known[1], self._known[2]
            text = Path(path).read_text()
            known = asyncssh.import_known_hosts(text)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            why = clean(getattr(exc, "strerror", None) or str(exc), ())
            raise error(
                f"authority {self.name}: known_hosts {path} cannot be read: {why}"
            ) from None
        entries = sum(1 for line in text.splitlines() if line.strip() and not line.startswith("#"))
        self._known = (version, known, entries)
        return known, entries

    def host_key_refusal(self, target: HostPort) -> str:
        """Why a host's key was refused: not in known_hosts, or another key than recorded."""
        path = self.settings.known_hosts
        try:
            known, _ = self.known_hosts(RemoteError)
            recorded = known.match(target.host, target.host, target.port)[0]
        except (RemoteError, ValueError):
            recorded = []
        if recorded:
            return (
                f"host key of {target} changed: it is not the one in known_hosts {path}; "
                "refused (check the new key, then update the file)"
            )
        return (
            f"host key of {target} not in known_hosts {path}: refused (add the host's key "
            "after checking its fingerprint)"
        )


class SshAuthority:
    """Hosts over SSH in a run: an admin login that runs the command, password logins that
    check."""

    def __init__(self, settings: SshSettings, key_text: Secret | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self._trust = _Trust(settings, key_text)
        self._all = asyncio.Semaphore(settings.max_connections)
        self._hosts: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._open: set[asyncssh.SSHClientConnection] = set()
        self._closed = False

    def __repr__(self) -> str:
        s = self.settings
        return f"SshAuthority({self.name!r}, {s.login_user!r}, known_hosts={s.known_hosts!r})"

    # -- the Authority protocol ------------------------------------------------------------

    async def probe(self) -> str:
        key = self._trust.key(AdminRefused)
        entries = self._trust.known_hosts(AuthorityUnavailable)[1]
        if not entries:
            raise AuthorityUnavailable(
                f"authority {self.name}: known_hosts {self.settings.known_hosts} has no host "
                "key: every host would be refused"
            )
        return (
            f"ssh as {self.settings.login_user} with key {key.get_algorithm()} "
            f"{key.get_fingerprint()}; {entries} host key(s) in {self.settings.known_hosts} "
            "(each host is reached per account)"
        )

    async def login(self, account: Account, password: Secret) -> bool:
        target = self._target(account)
        if not password.reveal():
            return False  # proves nothing: never sent
        async with self._slot(target):
            try:
                conn = await self._connect(
                    target,
                    account.username,
                    f"log in as {account.username!r}",
                    password,
                    password=password.reveal(),
                    client_keys=None,
                    preferred_auth="password,keyboard-interactive",
                )
            except asyncssh.PermissionDenied:
                return False
            await self._close(conn)
        return True

    async def change(self, account: Account, password: Secret) -> None:
        target = self._target(account)
        if why := password_problem(password.reveal()):
            raise Rejected(f"authority {self.name}: {why}; nothing was sent to {target}")
        key = self._trust.key(RemoteError)
        async with self._slot(target):
            what = f"log in as {self.settings.login_user!r}"
            try:
                conn = await self._connect(
                    target,
                    self.settings.login_user,
                    what,
                    password,
                    client_keys=[key],
                    password_auth=False,
                    kbdint_auth=False,
                    preferred_auth="publickey",
                )
            except asyncssh.PermissionDenied:
                raise RemoteError(
                    f"authority {self.name}: {target} refused rotate's key for "
                    f"{self.settings.login_user!r}; the password of {account.username!r} was "
                    "not changed"
                ) from None
            try:
                await self._run(conn, target, account.username, password)
            finally:
                await self._close(conn)

    async def aclose(self) -> None:
        self._closed = True
        opened, self._open = list(self._open), set()
        for conn in opened:
            conn.abort()

    # -- connections -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _slot(self, target: HostPort) -> AsyncIterator[None]:
        """A connection's place: one of the host's `per_host`, then one of `max_connections`
        (in this order, so no call holds an overall place while it waits for its host)."""
        if self._closed:
            raise RemoteError(f"authority {self.name}: closed")
        key = (target.host.casefold(), target.port)
        host = self._hosts.setdefault(key, asyncio.Semaphore(self.settings.per_host))
        async with host, self._all:
            yield

    async def _connect(
        self, target: HostPort, username: str, what: str, secret: Secret, **auth: Any
    ) -> asyncssh.SSHClientConnection:
        """A connection to `target` authenticated as `username`; PermissionDenied passes
        through, every other failure is a RemoteError naming the host (nothing was run)."""
        known, _ = self._trust.known_hosts(RemoteError)
        lead = f"authority {self.name}: cannot {what} at {target}"
        try:
            conn = await asyncssh.connect(
                target.host,
                target.port,
                username=username,
                known_hosts=known,
                config=[],
                agent_path=None,
                agent_forwarding=False,
                x509_trusted_certs=None,
                gss_host=None,
                host_based_auth=False,
                connect_timeout=self.settings.timeout_s,
                **auth,
            )
        except asyncssh.PermissionDenied:
            raise
        except asyncssh.HostKeyNotVerifiable:
            raise RemoteError(
                f"authority {self.name}: {self._trust.host_key_refusal(target)}"
            ) from None
        except TimeoutError:
            raise RemoteError(f"{lead}: no answer in {self.settings.timeout_s:g} s") from None
        except asyncssh.Error as exc:
            raise RemoteError(f"{lead}: {clean(exc.reason, [secret.reveal()])}") from None
        except OSError as exc:
            # asyncio's "Connect call failed (addr)" keeps the errno's meaning in errno only
            why = os.strerror(exc.errno) if exc.errno else exc.strerror or type(exc).__name__
            raise RemoteError(f"{lead}: {clean(why, [secret.reveal()])}") from None
        if self._closed:
            conn.abort()
            raise RemoteError(f"authority {self.name}: closed")
        self._open.add(conn)
        return conn

    async def _close(self, conn: asyncssh.SSHClientConnection) -> None:
        self._open.discard(conn)
        conn.close()
        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            await asyncio.wait_for(conn.wait_closed(), self.settings.timeout_s)

    async def _run(
        self, conn: asyncssh.SSHClientConnection, target: HostPort, username: str, password: Secret
    ) -> None:
        """The command with the account's line on stdin; returns when its exit status is 0."""
        command = self.settings.command
        secrets = [password.reveal()]
        try:
            process = await conn.create_process(command, encoding="utf-8", errors="replace")
        except (asyncssh.Error, OSError) as exc:
            why = clean(getattr(exc, "reason", "") or str(exc), secrets)
            raise RemoteError(
                f"authority {self.name}: {target} did not start {command!r} ({why}); the "
                f"password of {username!r} was not sent"
            ) from None
        unknown = (
            f"authority {self.name}: the password of {username!r} was sent to {command!r} on "
            f"{target}, then"
        )
        try:
            process.stdin.write(f"{username}:{password.reveal()}\n")
            process.stdin.write_eof()
            result = await process.wait(timeout=self.settings.timeout_s)
        except TimeoutError:
            process.close()
            raise OutcomeUnknown(
                f"{unknown} no exit status in {self.settings.timeout_s:g} s; the host may or "
                "may not hold the new password"
            ) from None
        except (asyncssh.Error, OSError) as exc:
            why = clean(getattr(exc, "reason", "") or type(exc).__name__, secrets)
            raise OutcomeUnknown(
                f"{unknown} the connection failed ({why}); the host may or may not hold the "
                "new password"
            ) from None
        status = result.exit_status
        if status == 0:
            log.info("authority %s: password of %s on %s changed", self.name, username, target)
            return
        stderr = result.stderr if isinstance(result.stderr, str) else ""
        said = clean(stderr, secrets) or "nothing on stderr"
        if status is None or status < 0:
            signal = f"signal {result.exit_signal[0]}" if result.exit_signal else "no exit status"
            raise OutcomeUnknown(
                f"{unknown} the command ended with {signal} ({said}); the host may or may "
                "not hold the new password"
            )
        raise Rejected(
            f"authority {self.name}: {target} refused the password of {username!r}: "
            f"{command!r} exited with status {status}: {said}"
        )

    def _target(self, account: Account) -> HostPort:
        """The account's host; Rejected when its login names could not be used safely."""
        problems = account_problems(account.username, account.host)
        if problems:
            shown = "; ".join(f"{column} {message}" for column, message in problems)
            raise Rejected(f"authority {self.name}: account {account.name!r}: {shown}")
        assert account.host is not None  # account_problems says so
        return parse_host(account.host, self.settings.port)
