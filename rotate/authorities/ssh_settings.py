"""Settings of the ssh authority, and the checks of its config, login names, hosts and passwords.

Everything an inventory or a followed password could smuggle into a host is refused here,
before any connection: `chpasswd` reads `user:password` lines on stdin, so a user name with
`:`, a line break or any control character would set another account's password
(`bob\\nroot:x`), and a password with a line break or a control character cannot be carried
(a `:` in a password can: chpasswd splits a line at its first `:`, and rotate's default
symbols include it).
A `host` is a name, an IPv4 address or a bracketed IPv6 address, with an optional `:port`:
never anything an SSH client could read as an option (`-oProxyCommand=...`) or a login
(`user@host`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rotate.authorities.base import AuthoritySettings
from rotate.configparse import positive, timeouts, unreadable

MAX_CONNECTIONS = 256
MAX_COMMAND = 1024
#: a host name: dot-separated labels of letters, digits, `-` and `_` (not leading `-`)
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")

Problem = tuple[str, str]  # (column or field, what is wrong with it)


@dataclass(frozen=True)
class SshSettings(AuthoritySettings):
    """[authorities.<name>] of type ssh: local accounts of hosts, changed by a privileged login."""

    login_user: str = "root"  # a login that may set other users' passwords
    key_file: str | None = None  # its private key (OpenSSH or PEM, no passphrase)
    key_vault: str | None = None  # or "<path>#<key>" in the KV mount: the key's text
    known_hosts: str = ""  # OpenSSH known_hosts: every host's key is checked against it
    command: str = "chpasswd"  # run as login_user; reads "user:password\n" on stdin
    port: int = 22  # where a host without `:port` listens
    timeout_s: float = 10.0
    per_host: int = 2  # connections at once to one host
    max_connections: int = 16  # connections at once, all hosts together

    def required_env(self) -> tuple[str, ...]:
        return ()

    def unreadable_files(self) -> tuple[str, ...]:
        files = [("known_hosts", self.known_hosts), ("key_file", self.key_file)]
        return tuple(
            f"{key} {path!r} {why}" for key, path in files if path and (why := unreadable(path))
        )


@dataclass(frozen=True)
class HostPort:
    """Where an account's host listens (`host` is bare: an IPv6 address without brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def settings_problems(s: SshSettings, data: Mapping[str, Any], where: str) -> list[str]:
    """Every problem of an ssh authority's built settings (`data`: its table)."""
    errors: list[str] = []
    if "known_hosts" not in data:
        errors.append(
            f"{where}: missing required key 'known_hosts' (host keys are always checked: "
            "an OpenSSH known_hosts file with the key of every host)"
        )
    elif not s.known_hosts.strip():
        errors.append(f"{where}.known_hosts: must not be empty")
    if bool(s.key_file) == bool(s.key_vault):
        errors.append(
            f"{where}: give exactly one of key_file and key_vault (rotate's private key for "
            f"logging in as {s.login_user!r})"
        )
    if s.key_vault is not None:
        path, _, key = s.key_vault.partition("#")
        if not path.strip() or not key.strip():
            errors.append(f"{where}.key_vault: expected '<path>#<key>'")
    if why := _login_user_problem(s.login_user):
        errors.append(f"{where}.login_user: {why}")
    if why := command_problem(s.command):
        errors.append(f"{where}.command: {why}")
    if not 1 <= s.port <= 65535:
        errors.append(f"{where}.port: must be from 1 to 65535, got {s.port}")
    positive(
        errors,
        where,
        timeout_s=s.timeout_s,
        per_host=s.per_host,
        max_connections=s.max_connections,
    )
    timeouts(errors, where, timeout_s=s.timeout_s)
    if s.max_connections > MAX_CONNECTIONS:
        errors.append(
            f"{where}.max_connections: at most {MAX_CONNECTIONS}, got {s.max_connections}"
        )
    if 0 < s.max_connections < s.per_host:
        errors.append(
            f"{where}.per_host: {s.per_host} is more than max_connections ({s.max_connections})"
        )
    return errors


def command_problem(command: str) -> str | None:
    """Why `command` cannot be the remote command (it is config, run as written)."""
    if not command.strip():
        return "must not be empty (the default is chpasswd)"
    if any(not c.isprintable() for c in command):
        return "must be one line without control characters"
    if len(command) > MAX_COMMAND:
        return f"at most {MAX_COMMAND} characters"
    return None


def _login_user_problem(user: str) -> str | None:
    if not user:
        return "must not be empty"
    return _name_problem(user)


# -- accounts, hosts, passwords ----------------------------------------------------------------


def _name_problem(name: str) -> str | None:
    """Why `name` cannot be a local user name sent on chpasswd's stdin or as an SSH login."""
    if not name:
        return "is empty: the local user name is needed"
    bad = [i for i, c in enumerate(name) if not c.isprintable() or c.isspace()]
    if bad:
        return (
            f"contains a space or a control character at position {bad[0] + 1} (a line "
            "break would start another `user:password` line on chpasswd's stdin)"
        )
    if ":" in name:
        return "contains ':', the separator of chpasswd's `user:password` lines"
    if name.startswith("-"):
        return "starts with '-' (a command would read it as an option)"
    return None


def username_problems(username: str) -> list[Problem]:
    """What makes `username` unusable as a local account's name."""
    why = _name_problem(username)
    return [("username", why)] if why else []


def host_problem(value: str) -> str | None:
    """Why `value` is not a host name, IPv4 or [IPv6] address with an optional `:port`."""
    try:
        parse_host(value, 22)
    except ValueError as exc:
        return str(exc)
    return None


def parse_host(value: str, default_port: int) -> HostPort:
    """`name`, `a.b.c.d` or `[v6]`, each with an optional `:port`; ValueError saying why not."""
    if not value:
        raise ValueError("is empty: an ssh account needs the host whose local account it is")
    bad = [i for i, c in enumerate(value) if not c.isprintable() or c.isspace()]
    if bad:
        raise ValueError(f"contains a space or a control character at position {bad[0] + 1}")
    if value.startswith("-"):
        raise ValueError("starts with '-': a host never becomes an SSH option")
    if "@" in value:
        raise ValueError("contains '@': the login is the authority's, not the host's")
    if value.startswith("["):
        inside, sep, rest = value[1:].partition("]")
        if not sep:
            raise ValueError("has '[' without ']'")
        try:
            address = ipaddress.IPv6Address(inside)
        except ValueError:
            raise ValueError(f"[{inside}] is not an IPv6 address") from None
        return HostPort(str(address), _port(rest, default_port))
    if value.count(":") > 1:
        raise ValueError("an IPv6 address goes in brackets: [address] or [address]:port")
    host, sep, port = value.partition(":")
    port_number = _port(sep + port, default_port)
    labels = host.rstrip(".").split(".")
    if not host.rstrip(".") or not all(_LABEL.fullmatch(label) for label in labels):
        odd = sorted({c for c in host if not (c.isalnum() or c in "._-")})
        shown = f" (found {' '.join(odd)})" if odd else ""
        raise ValueError(
            "is not a host name or address: letters, digits, '-', '_' and '.' only, "
            f"optionally with :port{shown}"
        )
    return HostPort(host, port_number)


def _port(text: str, default_port: int) -> int:
    if not text:
        return default_port
    if not text.startswith(":") or not _PORT.fullmatch(text[1:]):
        raise ValueError(f"has {text!r} after the host: expected :port (a number)")
    port = int(text[1:])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not from 1 to 65535")
    return port


def account_problems(username: str, host: str | None) -> list[Problem]:
    """What makes an inventory row's login names unusable at an ssh authority."""
    problems = username_problems(username)
    if host is None:
        problems.append(
            ("host", "is empty: an ssh account needs the host whose local account it is")
        )
    elif why := host_problem(host):
        problems.append(("host", why))
    return problems


def password_problem(password: str) -> str | None:
    """Why a password cannot travel as `user:password\\n` on the command's stdin."""
    if not password:
        return "an empty password is never set"
    if any(c in "\r\n" for c in password):
        return "the password contains a line break, which the command's format cannot carry"
    if any(not c.isprintable() and c != " " for c in password):
        return "the password contains a control character, which the command's format cannot carry"
    return None
