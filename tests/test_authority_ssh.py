"""The `ssh` authority against a real OpenSSH server (tests/plugins/sshd.py) and the demo's
in-process stand-in (rotate/sim/sshhost.py), and its checks.

The contract tests take an `ssh_host` (one parameter per host: sshd, the stand-in); another
host joins them by a fixture `<name>_ssh_host` returning a `Host` and its name in HOSTS.
Tests that need to look inside the host (the command lines it ran, its sessions, a session
killed mid-change) are sshd's.
The last section needs no server: config parsing, hostile login names, hosts and passwords,
refused before any connection (sockets are disabled there).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from rotate.authorities.ssh import SSH, SshAuthority, SshSettings, _Trust
from rotate.backends import check_environment
from rotate.errors import (
    AdminRefused,
    AuthorityUnavailable,
    ConfigError,
    OutcomeUnknown,
    Rejected,
    RemoteError,
)
from rotate.models import Account, Row, Secret
from rotate.registry import authority_type
from rotate.settings import EndpointSettings, Settings
from rotate.sim.host import SimulatorHost
from rotate.sim.sshhost_state import SshHostState
from tests.plugins.authority import exception_text, leaks
from tests.plugins.slapd import free_port
from tests.plugins.sshd import Sshd, keygen, known_hosts_line, strong_password


class FakeSecrets:
    """A SecretSource: Vault references from a dict."""

    def __init__(self, values: dict[str, Secret]) -> None:
        self.values = values

    def secret(self, env_var: str | None, vault_ref: str | None, what: str) -> Secret:
        if vault_ref and vault_ref in self.values:
            return self.values[vault_ref]
        raise RemoteError(f"{what}: not in Vault")


def account(username: str, host: str | None, name: str | None = None) -> Account:
    return Account(
        name=name or username,
        authority="hosts",
        username=username,
        domain=None,
        host=host,
        vault_path=f"accounts/{username}",
        policy="default",
        max_age_days=None,
        usages=(),
    )


@dataclass
class Host:
    """A host under test, as the contract tests see it."""

    address: str  # the inventory's `host` value (with :port)
    key_file: Path  # rotate's admin key
    known_hosts: Path
    login_user: str
    add_user: Callable[[str], str]  # password -> a new local user's name
    password_is: Callable[[str, str], bool]  # (user, password) -> held? (host side)
    refusing_command: str  # a `command` under which the host refuses `weak_password`
    weak_password: str
    public_key: str  # the host's key, "ssh-ed25519 AAAA..."

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def table(self, **overrides: Any) -> dict[str, Any]:
        table: dict[str, Any] = {
            "type": "ssh",
            "login_user": self.login_user,
            "key_file": str(self.key_file),
            "known_hosts": str(self.known_hosts),
            "timeout_s": 5.0,
        }
        table.update(overrides)
        return {k: v for k, v in table.items() if v is not None}

    def authority(self, **overrides: Any) -> SshAuthority:
        errors: list[str] = []
        settings = SSH.parse("hosts", self.table(**overrides), errors)
        assert errors == []
        assert settings is not None
        built = SSH.build(settings, FakeSecrets({}))
        assert isinstance(built, SshAuthority)
        return built

    def user(self) -> tuple[str, str]:
        """A new local account: (user name, password)."""
        password = strong_password()
        return self.add_user(password), password


@pytest.fixture
def sshd_ssh_host(sshd: Sshd) -> Host:
    return Host(
        address=sshd.address,
        key_file=sshd.key_file,
        known_hosts=sshd.known_hosts,
        login_user=sshd.login_user,
        add_user=sshd.add_user,
        password_is=sshd.password_is,
        refusing_command=sshd.quality_command(),
        weak_password="Short-1:x",  # under the quality command's 16 characters
        public_key=sshd.host_public_key,
    )


@pytest.fixture
def standin_ssh_host(sim_host: SimulatorHost, tmp_path: Path) -> Host:
    """The demo's SSH host stand-in (rotate/sim/sshhost.py), in this process: local users
    in its state, rotate's key authorized for root, its host key in a known_hosts file."""
    state = SshHostState(min_length=16)  # the quality command's rule, on the stand-in

    def add_user(password: str) -> str:
        name = f"rt{secrets.token_hex(4)}"
        state.add_user(name, password)
        return name

    key_file = tmp_path / "standin" / "id_ed25519"
    key_file.parent.mkdir()
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file.write_bytes(key.export_private_key())
    key_file.chmod(0o600)
    public = key.export_public_key("openssh").decode().strip()
    name = f"host-{secrets.token_hex(3)}"
    address = sim_host.add_ssh_host(name, state, authorized_key=public)
    line = sim_host.ssh_host(name).known_hosts_line
    known_hosts = tmp_path / "standin" / "known_hosts"
    known_hosts.write_text(line + "\n")
    return Host(
        address=address,
        key_file=key_file,
        known_hosts=known_hosts,
        login_user="root",
        add_user=add_user,
        password_is=lambda user, password: state.logs_in(user, password),
        refusing_command="chpasswd",
        weak_password="Short-1:x",
        public_key=line.split(" ", 1)[1],
    )


#: hosts the contract runs on: "<name>" needs a fixture "<name>_ssh_host"
HOSTS = [
    pytest.param("sshd", marks=pytest.mark.integration),
    pytest.param("standin", marks=pytest.mark.integration),
]


@pytest.fixture(params=HOSTS)
def ssh_host(request: pytest.FixtureRequest) -> Host:
    found: Host = request.getfixturevalue(f"{request.param}_ssh_host")
    return found


# --- the contract, on every host ---------------------------------------------------------------


async def test_probe_loads_the_key_and_reads_known_hosts(ssh_host: Host, closing: Any) -> None:
    authority = ssh_host.authority()
    closing(authority)
    text = await authority.probe()
    assert "ssh-ed25519" in text
    assert "SHA256:" in text
    assert str(ssh_host.known_hosts) in text
    assert f"as {ssh_host.login_user}" in text


async def test_login_tells_right_from_wrong(ssh_host: Host, closing: Any) -> None:
    name, password = ssh_host.user()
    authority = ssh_host.authority()
    closing(authority)
    assert await authority.login(account(name, ssh_host.address), Secret(password)) is True
    assert await authority.login(account(name, ssh_host.address), Secret(password + "x")) is False
    assert await authority.login(account(name, ssh_host.address), Secret("")) is False


async def test_change_then_only_the_new_password_logs_in(ssh_host: Host, closing: Any) -> None:
    name, old = ssh_host.user()
    new = strong_password()
    authority = ssh_host.authority()
    closing(authority)
    await authority.change(account(name, ssh_host.address), Secret(new))
    assert await authority.login(account(name, ssh_host.address), Secret(new)) is True
    assert await authority.login(account(name, ssh_host.address), Secret(old)) is False
    # and the host says so itself
    assert ssh_host.password_is(name, new)
    assert not ssh_host.password_is(name, old)


async def test_refused_password_is_rejected_and_nothing_changes(
    ssh_host: Host, closing: Any
) -> None:
    name, old = ssh_host.user()
    weak = ssh_host.weak_password
    authority = ssh_host.authority(command=ssh_host.refusing_command)
    closing(authority)
    with pytest.raises(Rejected) as caught:
        await authority.change(account(name, ssh_host.address), Secret(weak))
    message = str(caught.value)
    assert "refused the password of" in message
    assert "exited with status 1" in message
    assert "BAD PASSWORD: The password is shorter than" in message  # the host's own words
    assert weak not in exception_text(caught.value)
    assert ssh_host.password_is(name, old)
    assert not ssh_host.password_is(name, weak)
    # the same command takes a good one
    new = strong_password()
    await authority.change(account(name, ssh_host.address), Secret(new))
    assert ssh_host.password_is(name, new)


async def test_unknown_user_is_rejected(ssh_host: Host, closing: Any) -> None:
    """chpasswd itself (through PAM) refuses a user the host does not have."""
    authority = ssh_host.authority()
    closing(authority)
    ghost = f"rt{secrets.token_hex(5)}"
    new = strong_password()
    with pytest.raises(Rejected) as caught:
        await authority.change(account(ghost, ssh_host.address), Secret(new))
    assert "exited with status 1" in str(caught.value)
    assert new not in exception_text(caught.value)


@pytest.mark.parametrize("case", ["unknown", "changed"])
async def test_host_key_not_in_known_hosts_is_refused(
    ssh_host: Host, closing: Any, tmp_path: Path, case: str
) -> None:
    name, old = ssh_host.user()
    known = tmp_path / "known_hosts"
    if case == "unknown":  # the file knows another host only
        known.write_text(known_hosts_line(ssh_host.public_key, ssh_host.port, "127.0.0.9"))
    else:  # the file has another key for this very host
        other = keygen(tmp_path / "other_host_key")
        known.write_text(known_hosts_line(other, ssh_host.port))
    authority = ssh_host.authority(known_hosts=str(known))
    closing(authority)
    assert "0 host key" not in await authority.probe()
    new = strong_password()
    expected = "not in known_hosts" if case == "unknown" else "changed"
    with pytest.raises(RemoteError) as caught:
        await authority.change(account(name, ssh_host.address), Secret(new))
    assert not isinstance(caught.value, Rejected | OutcomeUnknown)
    assert f"host key of {ssh_host.address} {expected}" in str(caught.value)
    assert "refused" in str(caught.value)
    # a login is not a "wrong password": it cannot be told
    with pytest.raises(RemoteError, match=f"host key of {ssh_host.address} {expected}"):
        await authority.login(account(name, ssh_host.address), Secret(old))
    assert ssh_host.password_is(name, old)
    assert not ssh_host.password_is(name, new)


async def test_admin_key_refused_changes_nothing(
    ssh_host: Host, closing: Any, tmp_path: Path
) -> None:
    name, old = ssh_host.user()
    keygen(tmp_path / "stranger")
    authority = ssh_host.authority(key_file=str(tmp_path / "stranger"))
    closing(authority)
    new = strong_password()
    with pytest.raises(RemoteError) as caught:
        await authority.change(account(name, ssh_host.address), Secret(new))
    assert not isinstance(caught.value, Rejected | OutcomeUnknown)
    assert "refused rotate's key" in str(caught.value)
    assert ssh_host.password_is(name, old)


async def test_nothing_listening_is_not_reached(ssh_host: Host, closing: Any) -> None:
    name, _ = ssh_host.user()
    authority = ssh_host.authority()
    closing(authority)
    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(RemoteError) as caught:
        await authority.change(account(name, nowhere), Secret(strong_password()))
    assert not isinstance(caught.value, Rejected | OutcomeUnknown)
    assert nowhere in str(caught.value)
    assert "refused" in str(caught.value).lower()


async def test_no_secret_in_errors_or_logs(
    ssh_host: Host, closing: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("asyncssh").setLevel(logging.DEBUG)
    try:
        name, old = ssh_host.user()
        new, weak = strong_password(), ssh_host.weak_password
        authority = ssh_host.authority()
        refusing = ssh_host.authority(command=ssh_host.refusing_command)
        blind = tmp_path / "known_hosts"
        blind.write_text("")
        unknown = ssh_host.authority(known_hosts=str(blind))
        for a in (authority, refusing, unknown):
            closing(a)
        assert await authority.login(account(name, ssh_host.address), Secret(new)) is False
        await authority.change(account(name, ssh_host.address), Secret(new))
        assert await authority.login(account(name, ssh_host.address), Secret(old)) is False
        raised: list[BaseException] = []
        for call in (
            refusing.change(account(name, ssh_host.address), Secret(weak)),
            unknown.change(account(name, ssh_host.address), Secret(old)),
            unknown.login(account(name, ssh_host.address), Secret(new)),
            authority.change(account(name, ssh_host.address), Secret("bad\npassword")),
        ):
            try:
                await call
            except RemoteError as exc:
                raised.append(exc)
        assert len(raised) == 4
    finally:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
    key_text = ssh_host.key_file.read_text()
    texts = [exception_text(e) for e in raised]
    values = [new, old, weak, "bad\npassword", key_text]
    assert not leaks(values, *texts, caplog.text, repr(authority), repr(authority.settings))
    assert any("changed" in r.getMessage() for r in caplog.records)  # logging was captured
    assert any(r.name.startswith("asyncssh") for r in caplog.records)  # and asyncssh's own


# --- sshd only: what the host saw, sessions at once, a session lost mid-change -----------------


def recorded(records: Path) -> tuple[list[str], list[str], list[int]]:
    """(argv lines, every process command line seen, sessions seen at once) of the command."""
    argv, procs, seen = [], [], []
    for f in sorted(records.glob("*.procs")):
        lines = f.read_text(errors="replace").splitlines()
        argv += [ln for ln in lines if ln.startswith("argv:")]
        procs += lines
    for f in sorted(records.glob("*.seen")):
        seen.append(int(f.read_text().strip()))
    return argv, procs, seen


async def test_the_host_never_sees_the_password_in_a_command_line(
    sshd_ssh_host: Host, sshd: Sshd, closing: Any
) -> None:
    host = sshd_ssh_host
    name, _ = host.user()
    command, records = sshd.record_command("argv")
    new = strong_password()
    authority = host.authority(command=command)
    closing(authority)
    await authority.change(account(name, host.address), Secret(new))
    assert host.password_is(name, new)
    argv, procs, _ = recorded(records)
    # the command ran as configured, word for word, and it saw the host's processes
    assert argv == [f"argv: {command}"]
    assert any("sshd" in p for p in procs)
    assert any("record-chpasswd" in p for p in procs)
    assert any(p.strip() == "chpasswd" for p in procs)  # chpasswd itself, no arguments
    assert [p for p in procs if new in p] == []
    assert [p for p in procs if name in p] == []  # not even the user name: it is on stdin


async def test_sessions_per_host_are_bounded(sshd_ssh_host: Host, sshd: Sshd, closing: Any) -> None:
    host = sshd_ssh_host
    users = [host.user() for _ in range(10)]
    command, records = sshd.record_command("per-host")
    authority = host.authority(command=command, per_host=2, max_connections=16)
    closing(authority)
    news = {name: strong_password() for name, _ in users}
    await asyncio.gather(
        *(authority.change(account(n, host.address), Secret(p)) for n, p in news.items())
    )
    assert all(host.password_is(n, p) for n, p in news.items())
    _, _, seen = recorded(records)
    assert len(seen) == 10
    assert max(seen) <= 2
    assert max(seen) == 2  # the bound was reached: sessions did run at once


async def test_sessions_overall_are_bounded(sshd_ssh_host: Host, sshd: Sshd, closing: Any) -> None:
    """Two hosts (127.0.0.1 and 127.0.0.2, one sshd), 2 per host, 3 overall."""
    host = sshd_ssh_host
    users = [host.user() for _ in range(10)]
    command, records = sshd.record_command("overall")
    authority = host.authority(command=command, per_host=2, max_connections=3)
    closing(authority)
    addresses = [sshd.address, sshd.second_address]
    news = {name: strong_password() for name, _ in users}
    await asyncio.gather(
        *(
            authority.change(account(n, addresses[i % 2]), Secret(p))
            for i, (n, p) in enumerate(news.items())
        )
    )
    assert all(host.password_is(n, p) for n, p in news.items())
    _, _, seen = recorded(records)
    assert len(seen) == 10
    assert max(seen) <= 3
    assert max(seen) >= 3  # more than one host's worth ran at once


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        # the session's sshd dies once the line is read: the connection is lost
        ("sh -c 'read line; kill -9 $PPID; sleep 5'", "the command ended with no exit status"),
        # the command is killed by a signal: no exit status
        ("sh -c 'read line; kill -9 $$'", "the command ended with signal KILL"),
        # the command never ends
        ("sh -c 'read line; sleep 30'", "no exit status in 1 s"),
    ],
)
async def test_lost_after_the_line_was_sent_is_outcome_unknown(
    sshd_ssh_host: Host, closing: Any, command: str, expected: str
) -> None:
    host = sshd_ssh_host
    name, old = host.user()
    new = strong_password()
    authority = host.authority(command=command, timeout_s=1.0)
    closing(authority)
    with pytest.raises(OutcomeUnknown, match=expected) as caught:
        await authority.change(account(name, host.address), Secret(new))
    assert "may or may not" in str(caught.value)
    assert new not in exception_text(caught.value)
    assert host.password_is(name, old)  # (this command never changed it)


async def test_key_from_vault(sshd_ssh_host: Host, closing: Any) -> None:
    host = sshd_ssh_host
    name, _ = host.user()
    key_text = host.key_file.read_text()
    errors: list[str] = []
    settings = SSH.parse(
        "hosts", host.table(key_file=None, key_vault="rotate/ssh#private_key"), errors
    )
    assert settings is not None, errors
    authority = SSH.build(settings, FakeSecrets({"rotate/ssh#private_key": Secret(key_text)}))
    assert isinstance(authority, SshAuthority)
    closing(authority)
    assert "SHA256:" in await authority.probe()
    new = strong_password()
    await authority.change(account(name, host.address), Secret(new))
    assert host.password_is(name, new)
    assert key_text not in repr(authority)


# --- config, login names, hosts, passwords (no server, no socket) -----------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    known = tmp_path / "known_hosts"
    known.write_text(
        "[127.0.0.1]:2222 ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    key = tmp_path / "id_ed25519"
    key.write_text("not a key")
    return {"known_hosts": str(known), "key_file": str(key)}


def write(path: Path, text: str) -> None:
    path.write_text(text)


def parse(files: dict[str, str], **table: Any) -> tuple[SshSettings | None, list[str]]:
    errors: list[str] = []
    base: dict[str, Any] = {"type": "ssh", **files}
    base.update(table)
    settings = SSH.parse("hosts", {k: v for k, v in base.items() if v is not None}, errors)
    assert settings is None or isinstance(settings, SshSettings)
    return settings, errors


def test_registry_finds_ssh() -> None:
    assert authority_type("ssh") is SSH


def test_defaults(files: dict[str, str]) -> None:
    settings, errors = parse(files)
    assert errors == []
    assert settings is not None
    assert (settings.login_user, settings.command, settings.port) == ("root", "chpasswd", 22)
    assert (settings.timeout_s, settings.per_host, settings.max_connections) == (10.0, 2, 16)
    assert settings.changes is True
    assert settings.required_env() == ()


def test_known_hosts_is_parsed_once_until_the_file_changes(files: dict[str, str]) -> None:
    """Thousands of accounts reuse one parse of known_hosts; an edit applies at once."""
    settings, errors = parse(files)
    assert errors == []
    assert settings is not None
    trust = _Trust(settings, None)
    first, entries = trust.known_hosts(RemoteError)
    assert entries == 1
    assert trust.known_hosts(RemoteError)[0] is first  # not read again
    path = Path(files["known_hosts"])
    line = path.read_text()
    path.write_text(line + line.replace("2222", "2223"))
    again, entries = trust.known_hosts(RemoteError)
    assert again is not first
    assert entries == 2
    path.unlink()
    with pytest.raises(RemoteError, match="cannot be read"):
        trust.known_hosts(RemoteError)


def test_unreadable_files_are_named_before_any_network_call(
    files: dict[str, str], tmp_path: Path
) -> None:
    """Files are the machine's, like the environment: a config may name files of the machine
    that runs it, and the run checks them before any connection (exit 2, each named)."""
    settings, errors = parse(
        files, known_hosts="/nonexistent/known_hosts", key_file=str(tmp_path / "missing")
    )
    assert errors == []
    assert settings is not None
    assert settings.unreadable_files() == (
        "known_hosts '/nonexistent/known_hosts' does not exist",
        f"key_file '{tmp_path / 'missing'}' does not exist",
    )
    good, _ = parse(files)
    assert good is not None
    assert good.unreadable_files() == ()
    # what a run does with them, before it opens any connection
    row = Row(2, "ep", "computer", "1", "localadmin", "RDP", authority="hosts", host="h1")
    endpoint = EndpointSettings(name="ep", system="remotix", url="http://127.0.0.1:1")
    config = Settings(authorities={"hosts": settings}, endpoints={"ep": endpoint})
    with pytest.raises(ConfigError) as refused:
        check_environment([row], config)
    assert str(refused.value).splitlines() == [
        "authority hosts: known_hosts '/nonexistent/known_hosts' does not exist",
        f"authority hosts: key_file '{tmp_path / 'missing'}' does not exist",
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    settings, errors = parse(
        {},
        key_file=str(tmp_path / "missing"),
        key_vault="no-hash",
        private_key="-----BEGIN OPENSSH PRIVATE KEY-----",
        login_user="-oProxyCommand=x",
        command="",
        port=70000,
        timeout_s=0,
        per_host=0,
        max_connections=1000,
        colour="blue",
    )
    assert settings is None
    text = "\n".join(errors)
    for expected in (
        "authorities.hosts.private_key: secrets never live in the config file",
        "missing required key 'known_hosts'",
        "give exactly one of key_file and key_vault",
        "key_vault: expected '<path>#<key>'",
        "login_user: starts with '-'",
        "command: must not be empty",
        "port: must be from 1 to 65535",
        "timeout_s: must be greater than 0",
        "per_host: must be greater than 0",
        "max_connections: at most 256",
        "unknown key 'colour'",
    ):
        assert expected in text, (expected, errors)
    assert "BEGIN OPENSSH" not in text


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"known_hosts": ""}, "known_hosts: must not be empty"),
        ({"command": "chpasswd\nrm -rf /"}, "one line without control characters"),
        ({"command": "   "}, "must not be empty"),
        ({"command": 5}, "expected str"),
        ({"per_host": 20, "max_connections": 4}, "per_host: 20 is more than max_connections"),
        ({"login_user": "ro ot"}, "login_user: contains a space"),
        ({"timeout_s": 1e9}, "timeout_s: must be at most"),
        ({"insecure": True}, "unknown key 'insecure'"),  # host keys are always checked
    ],
)
def test_config_problems(files: dict[str, str], table: dict[str, Any], expected: str) -> None:
    settings, errors = parse(files, **table)
    assert settings is None
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("", "is empty"),
        ("bob\nroot:x", "control character at position 4"),
        ("a:b", "contains ':'"),
        ("bob\x00", "control character"),
        ("bob\t", "control character"),
        ("bob smith", "contains a space"),
        ("-oProxyCommand=x", "starts with '-'"),
    ],
)
def test_unusable_usernames(files: dict[str, str], username: str, expected: str) -> None:
    settings, _ = parse(files)
    assert settings is not None
    problems = SSH.check_account(settings, username, None, "host1")
    assert [c for c, _ in problems] == ["username"]
    assert expected in problems[0][1]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "is empty: an ssh account needs the host"),
        ("", "is empty"),
        ("-oProxyCommand=nc evil 22", "space"),
        ("-oProxyCommand=x", "starts with '-'"),
        ("root@host1", "contains '@'"),
        ("host1 -p 2222", "space"),
        ("host1;reboot", "not a host name or address"),
        ("$(reboot)", "not a host name or address"),
        ("`id`", "not a host name or address"),
        ("host1|x", "not a host name or address"),
        ("host1/../x", "not a host name or address"),
        ("host1\nx", "control character"),
        ("host1:0", "port 0 is not from 1 to 65535"),
        ("host1:65536", "port 65536"),
        ("host1:22x", "expected :port"),
        ("host1:", "expected :port"),
        ("::1", "IPv6 address goes in brackets"),
        ("[::1", "'[' without ']'"),
        ("[not-v6]:22", "is not an IPv6 address"),
        ("[::1]x", "expected :port"),
        ("-host", "starts with '-'"),
        ("host-.example", "not a host name"),
        ("..", "not a host name"),
    ],
)
def test_unusable_hosts(files: dict[str, str], host: str | None, expected: str) -> None:
    settings, _ = parse(files)
    assert settings is not None
    problems = SSH.check_account(settings, "alice", None, host)
    assert [c for c, _ in problems] == ["host"], problems
    assert expected in problems[0][1], problems


@pytest.mark.parametrize(
    "host",
    ["fin-ws-01", "fin-ws-01.example.net", "10.0.0.5", "10.0.0.5:2222", "[::1]", "[fe80::1]:22"],
)
def test_usable_hosts(files: dict[str, str], host: str) -> None:
    settings, _ = parse(files)
    assert settings is not None
    assert SSH.check_account(settings, "localadmin", None, host) == []


async def test_hostile_values_are_refused_before_any_connection(files: dict[str, str]) -> None:
    """Sockets are disabled here: any attempt to connect would fail the test otherwise."""
    settings, _ = parse(files)
    assert settings is not None
    authority = SSH.build(settings, FakeSecrets({}))
    good = "Good-Password:1234"
    for hostile in (
        account("bob\nroot:x", "host1"),
        account("a:b", "host1"),
        account("alice", "-oProxyCommand=x"),
        account("alice", None),
        account("alice", "root@host1"),
    ):
        with pytest.raises(Rejected, match="authority hosts: account"):
            await authority.change(hostile, Secret(good))
        with pytest.raises(Rejected, match="authority hosts: account"):
            await authority.login(hostile, Secret(good))
    for password, why in (
        ("new\nroot:x", "line break"),
        ("new\rx", "line break"),
        ("new\x00x", "control character"),
        ("new\x1bx", "control character"),
        ("", "an empty password is never set"),
    ):
        with pytest.raises(Rejected, match=why) as caught:
            await authority.change(account("alice", "host1"), Secret(password))
        assert "nothing was sent" in str(caught.value)
        if password:
            assert password not in exception_text(caught.value)
    assert await authority.login(account("alice", "host1"), Secret("")) is False
    await authority.aclose()


async def test_unloadable_key_is_admin_refused(files: dict[str, str]) -> None:
    settings, _ = parse(files)
    assert settings is not None
    authority = SSH.build(settings, FakeSecrets({}))
    with pytest.raises(AdminRefused, match=r"rotate's private key .* cannot be loaded"):
        await authority.probe()
    key_text = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END"
    settings, _ = parse(files, key_file=None, key_vault="rotate/ssh#key")
    assert settings is not None
    authority = SSH.build(settings, FakeSecrets({"rotate/ssh#key": Secret(key_text)}))
    with pytest.raises(AdminRefused) as caught:
        await authority.probe()
    assert "key_vault rotate/ssh#key" in str(caught.value)
    assert "c2VjcmV0" not in exception_text(caught.value)
    assert "c2VjcmV0" not in repr(authority)


async def test_unreadable_known_hosts_is_authority_unavailable(
    files: dict[str, str], tmp_path: Path
) -> None:
    keygen(tmp_path / "id")
    files = {**files, "key_file": str(tmp_path / "id")}
    for text, expected in (
        ("[127.0.0.1]:22\n", "known_hosts .* cannot be read: Invalid known hosts entry"),
        ("# nothing\n", "has no host key: every host would be refused"),
    ):
        write(Path(files["known_hosts"]), text)
        settings, _ = parse(files)
        assert settings is not None
        authority = SSH.build(settings, FakeSecrets({}))
        with pytest.raises(AuthorityUnavailable, match=expected):
            await authority.probe()
