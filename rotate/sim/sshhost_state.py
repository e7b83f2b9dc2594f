"""What an SSH host stand-in holds: local accounts, password policy, counters, the commands it
ran, and faults; and how it answers `chpasswd`'s input."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

Refuse = Callable[[str, str], str | None]

#: what a local user name may not hold: chpasswd's separator, line breaks, controls
_BAD_NAME = re.compile(r"[:\x00-\x1f\x7f]")


@dataclass
class LocalAccount:
    """One local account; its password is never shown (repr) and compared in constant time."""

    username: str
    password: str = field(repr=False)

    def password_is(self, password: str) -> bool:
        """Whether `password` is this account's (non-empty) password."""
        if not password or not self.password:
            return False
        return secrets.compare_digest(self.password.encode(), password.encode())


@dataclass
class SshHostCounters:
    """What a host stand-in counted since the last reset (read them from any thread)."""

    connections: int = 0  # accepted
    admin_logins: int = 0  # public-key logins as the login user
    logins: int = 0  # password logins that succeeded
    login_failures: int = 0  # password and public-key attempts refused
    commands: int = 0  # exec requests, the configured command or not
    changes: int = 0  # passwords set by the command
    refused_changes: int = 0  # lines refused by the policy or the refuse hook
    sessions_now: int = 0  # commands running now
    max_sessions: int = 0


@dataclass(frozen=True)
class CommandResult:
    """What the command answers: its exit status and its lines on stderr (no password)."""

    status: int
    stderr: tuple[str, ...] = ()


class SshHostState:
    """The local accounts, policy, counters and faults of one SSH host stand-in.

    Thread-safe: the server mutates it on its loop, tests read it (and add users, set
    faults) from another thread. Passwords are kept in clear: it is a test double.

    `login_user` logs in with its key only (never with a password, as with sshd's
    `PermitRootLogin prohibit-password`) and is the only one who may run `command`.
    Policy: `min_length`, and `refuse(username, password) -> reason | None` (history-like).
    Faults (plain attributes, read before each login and each command):
    - `latency_s`: sleep this long first;
    - `frozen`: answer nothing while set, as a stopped server (SIGSTOP): logins and commands
      wait, and go on once it is cleared, for whoever still waits.
    `commands` lists every command line a client asked to run, as it asked.
    """

    def __init__(
        self,
        *,
        login_user: str = "root",
        command: str = "chpasswd",
        min_length: int = 8,
        refuse: Refuse | None = None,
    ) -> None:
        self.login_user = login_user
        self.command = command
        self.min_length = min_length
        self.refuse = refuse
        self.latency_s = 0.0
        self.frozen = False
        self.counters = SshHostCounters()
        self.commands: list[str] = []
        self.lock = threading.RLock()
        self._accounts: dict[str, LocalAccount] = {}

    # -- building ---------------------------------------------------------------------------
    def add_user(self, username: str, password: str) -> None:
        """Add a local account (no policy check: this is provisioning)."""
        if not username or _BAD_NAME.search(username) or username.startswith("-"):
            raise ValueError(f"{username!r} is not a local user name")
        with self.lock:
            if username in self._accounts:
                raise ValueError(f"user {username!r} already exists")
            self._accounts[username] = LocalAccount(username, password)

    # -- what tests read --------------------------------------------------------------------
    def users(self) -> list[str]:
        """The local user names, in the order they were added."""
        with self.lock:
            return list(self._accounts)

    def password(self, username: str) -> str | None:
        """A user's current password (None: no such user)."""
        with self.lock:
            account = self._accounts.get(username)
            return account.password if account is not None else None

    def logs_in(self, username: str, password: str) -> bool:
        """Whether `password` is the user's current (non-empty) password."""
        with self.lock:
            account = self._accounts.get(username)
            return account is not None and account.password_is(password)

    def reset_counters(self) -> None:
        """Zero the counters (commands running stay counted)."""
        with self.lock:
            now = self.counters.sessions_now
            self.counters = SshHostCounters(sessions_now=now, max_sessions=now)

    # -- what the server asks ---------------------------------------------------------------
    def password_login(self, username: str, password: str) -> bool:
        """A password login: counted; never for the login user (keys only)."""
        with self.lock:
            ok = username != self.login_user and self.logs_in(username, password)
            if ok:
                self.counters.logins += 1
            else:
                self.counters.login_failures += 1
            return ok

    def violation(self, username: str, password: str) -> str | None:
        """Why the policy refuses `password` for `username` (PAM's words), or None."""
        if len(password) < self.min_length:
            return f"BAD PASSWORD: The password is shorter than {self.min_length} characters"
        refuse = self.refuse
        if refuse is not None:
            reason = refuse(username, password)
            if reason is not None:
                return f"BAD PASSWORD: {reason or 'the password was refused'}"
        return None

    def change(self, username: str, password: str) -> str | None:
        """Set a password, checked by the policy; the refusal, or None when set."""
        with self.lock:
            account = self._accounts.get(username)
            if account is None:
                return "no such user"
            problem = self.violation(username, password)
            if problem is not None:
                self.counters.refused_changes += 1
                return problem
            account.password = password
            self.counters.changes += 1
            return None

    def chpasswd(self, text: str) -> CommandResult:
        """Answer `chpasswd`'s input like Debian's chpasswd (with PAM): each `user:password`
        line is applied on its own, or not at all; any bad line makes the status 1. The
        password is everything after the first `:`. No message ever holds a password."""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the newline that ends the last line
        errors: list[str] = []
        for number, line in enumerate(lines, start=1):
            username, colon, password = line.partition(":")
            if not colon:
                errors.append(f"chpasswd: line {number}: missing new password")
                continue
            with self.lock:
                known = username in self._accounts
            if not known:
                errors.append(f"chpasswd: line {number}: user {username!r} does not exist")
                continue
            problem = self.change(username, password)
            if problem is not None:
                errors += [
                    f"chpasswd: (user {username}) pam_chauthtok() failed, error:",
                    problem,
                    f"chpasswd: (line {number}, user {username}) password not changed",
                ]
        return CommandResult(1 if errors else 0, tuple(errors))

    def record_command(self, command: str) -> None:
        """Note a command a client asked to run."""
        with self.lock:
            self.commands.append(command)
            self.counters.commands += 1

    def session_started(self) -> None:
        with self.lock:
            self.counters.sessions_now += 1
            self.counters.max_sessions = max(self.counters.max_sessions, self.counters.sessions_now)

    def session_ended(self) -> None:
        with self.lock:
            self.counters.sessions_now -= 1
