"""The SSH host stand-in (rotate.sim.sshhost), driven by a plain asyncssh client."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from rotate.sim.host import SimulatorHost
from rotate.sim.sshhost import SshHostServer, SshHostState, known_hosts_line

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

ROOT_PW = "Root-pass-1"
ALICE_PW = "Alice-pass-1"
BOB_PW = "Bob-pass-12"

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


@dataclass
class Host:
    server: SshHostServer
    state: SshHostState
    admin: asyncssh.SSHKey
    known_hosts: asyncssh.SSHKnownHosts

    async def connect(self, username: str, **kw: Any) -> asyncssh.SSHClientConnection:
        kw.setdefault("client_keys", None)
        return await asyncssh.connect(
            "127.0.0.1",
            self.server.port,
            username=username,
            known_hosts=kw.pop("known_hosts", self.known_hosts),
            agent_path=None,
            config=None,
            **kw,
        )

    async def as_admin(self, command: str, stdin: str = "") -> asyncssh.SSHCompletedProcess:
        async with await self.connect("root", client_keys=[self.admin]) as conn:
            if not stdin:  # asyncssh sends no EOF for an empty input: an empty stdin instead
                return await conn.run(command, stdin=asyncssh.DEVNULL, check=False)
            return await conn.run(command, input=stdin, check=False)

    async def logs_in(self, username: str, password: str, method: str = "password") -> bool:
        try:
            conn = await self.connect(username, password=password, preferred_auth=method)
        except asyncssh.PermissionDenied:
            return False
        conn.close()
        await conn.wait_closed()
        return True


@pytest.fixture
def ssh_host(sim_host: SimulatorHost) -> Host:
    state = SshHostState()
    state.add_user("root", ROOT_PW)  # a local account too: its password must not log in
    state.add_user("alice", ALICE_PW)
    state.add_user("bob", BOB_PW)
    admin = asyncssh.generate_private_key("ssh-ed25519")
    address = sim_host.add_ssh_host("host", state, authorized_key=public_line(admin))
    server = sim_host.ssh_host("host")
    assert address == f"127.0.0.1:{server.port}"
    known = asyncssh.import_known_hosts(server.known_hosts_line + "\n")
    return Host(server, state, admin, known)


def public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


# -- logins -----------------------------------------------------------------------------------


def test_the_admin_logs_in_with_its_key(ssh_host: Host) -> None:
    result = run(ssh_host.as_admin("chpasswd"))  # nothing on stdin: nothing to change
    assert result.exit_status == 0
    assert ssh_host.state.counters.admin_logins == 1
    assert ssh_host.state.counters.changes == 0


def test_another_key_is_refused(ssh_host: Host) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        run(ssh_host.connect("root", client_keys=[stranger]))
    # ... and the admin's key is good for the admin only
    with pytest.raises(asyncssh.PermissionDenied):
        run(ssh_host.connect("alice", client_keys=[ssh_host.admin]))
    assert ssh_host.state.counters.admin_logins == 0


def test_the_admin_never_logs_in_with_a_password(ssh_host: Host) -> None:
    assert not run(ssh_host.logs_in("root", ROOT_PW))


@pytest.mark.parametrize("method", ["password", "keyboard-interactive"])
def test_a_local_account_logs_in_with_its_password_only(ssh_host: Host, method: str) -> None:
    assert run(ssh_host.logs_in("alice", ALICE_PW, method))
    assert not run(ssh_host.logs_in("alice", BOB_PW, method))
    assert not run(ssh_host.logs_in("nobody", ALICE_PW, method))
    assert ssh_host.state.counters.logins == 1
    assert ssh_host.state.counters.login_failures >= 2


def test_an_unknown_host_key_is_not_accepted_by_a_checking_client(ssh_host: Host) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    wrong = asyncssh.import_known_hosts(
        known_hosts_line("127.0.0.1", ssh_host.server.port, other) + "\n"
    )
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        run(ssh_host.connect("alice", password=ALICE_PW, known_hosts=wrong))


def test_the_known_hosts_line_names_the_port() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = public_line(key).split()
    assert known_hosts_line("127.0.0.1", 2222, key) == f"[127.0.0.1]:2222 {public[0]} {public[1]}"
    assert known_hosts_line("h1", 22, key).startswith("h1 ssh-ed25519 ")


# -- chpasswd ---------------------------------------------------------------------------------


def test_chpasswd_on_stdin_changes_the_password(ssh_host: Host) -> None:
    result = run(ssh_host.as_admin("chpasswd", "alice:Alice-new-2\n"))
    assert (result.exit_status, result.stderr) == (0, "")
    assert not run(ssh_host.logs_in("alice", ALICE_PW))
    assert run(ssh_host.logs_in("alice", "Alice-new-2"))
    assert ssh_host.state.password("bob") == BOB_PW
    assert ssh_host.state.counters.changes == 1


def test_several_lines_and_a_password_holding_colons(ssh_host: Host) -> None:
    result = run(ssh_host.as_admin("chpasswd", "alice:a:b:c:d:e:f\nbob:Bob-new-pass"))
    assert result.exit_status == 0
    assert ssh_host.state.password("alice") == "a:b:c:d:e:f"  # all after the first ':'
    assert ssh_host.state.password("bob") == "Bob-new-pass"  # no final newline needed


def test_a_refused_password_changes_nothing_and_exits_1(ssh_host: Host) -> None:
    result = run(ssh_host.as_admin("chpasswd", "alice:short\n"))
    assert result.exit_status == 1
    assert "BAD PASSWORD" in str(result.stderr)
    assert "password not changed" in str(result.stderr)
    assert "short" not in str(result.stderr).replace("shorter", "")
    assert ssh_host.state.password("alice") == ALICE_PW
    assert ssh_host.state.counters.refused_changes == 1


def test_the_refuse_hook_refuses_like_a_password_history(ssh_host: Host) -> None:
    ssh_host.state.refuse = lambda user, pw: "it was used before" if pw == "Used-before-1" else None
    result = run(ssh_host.as_admin("chpasswd", "alice:Used-before-1\n"))
    assert result.exit_status == 1
    assert "it was used before" in str(result.stderr)
    assert "Used-before-1" not in str(result.stderr)
    assert ssh_host.state.password("alice") == ALICE_PW


def test_an_unknown_user_and_a_malformed_line_exit_1(ssh_host: Host) -> None:
    result = run(ssh_host.as_admin("chpasswd", "ghost:Ghost-pass-1\n"))
    assert result.exit_status == 1
    assert "user 'ghost' does not exist" in str(result.stderr)
    result = run(ssh_host.as_admin("chpasswd", "Alice-new-pass\n"))  # no user: no ':'
    assert result.exit_status == 1
    assert "line 1: missing new password" in str(result.stderr)
    assert "Alice-new-pass" not in str(result.stderr)
    assert ssh_host.state.password("alice") == ALICE_PW
    assert ssh_host.state.counters.changes == 0


def test_each_line_stands_alone_so_an_injected_line_is_applied(ssh_host: Host) -> None:
    """What `bob\\nroot:x` as a user name would do: like real chpasswd, each line is parsed
    on its own, so the `root:` line is applied. Only the client, refusing such user names,
    prevents it; the stand-in changes nothing but the well-formed lines."""
    result = run(ssh_host.as_admin("chpasswd", "bob\nroot:Taken-over-1\n"))
    assert result.exit_status == 1
    assert "line 1: missing new password" in str(result.stderr)
    assert ssh_host.state.password("bob") == BOB_PW
    assert ssh_host.state.password("root") == "Taken-over-1"
    assert ssh_host.state.password("alice") == ALICE_PW
    assert ssh_host.state.counters.changes == 1


@pytest.mark.parametrize("command", ["passwd alice", "chpasswd -e", "chpasswd; id", "sh"])
def test_any_other_command_exits_127(ssh_host: Host, command: str) -> None:
    # (no input: like a shell's "command not found", it exits without reading stdin)
    result = run(ssh_host.as_admin(command))
    assert result.exit_status == 127
    assert "command not found" in str(result.stderr)
    assert ssh_host.state.commands == [command]


def test_a_shell_is_refused(ssh_host: Host) -> None:
    async def shell() -> int | None:
        async with await ssh_host.connect("root", client_keys=[ssh_host.admin]) as conn:
            process = await conn.create_process(stdin=asyncssh.DEVNULL)
            await process.wait()
            return process.exit_status

    assert run(shell()) == 127


def test_only_the_admin_may_run_the_command(ssh_host: Host) -> None:
    async def as_alice() -> asyncssh.SSHCompletedProcess:
        async with await ssh_host.connect("alice", password=ALICE_PW) as conn:
            # refused before stdin is read: no input, or the client may find the pipe closed
            return await conn.run("chpasswd", stdin=asyncssh.DEVNULL, check=False)

    result = run(as_alice())
    assert result.exit_status == 1
    assert "Permission denied" in str(result.stderr)
    assert ssh_host.state.password("bob") == BOB_PW


def test_the_recorded_commands_hold_no_password(ssh_host: Host) -> None:
    run(ssh_host.as_admin("chpasswd", "alice:Alice-new-2\nbob:short\n"))
    run(ssh_host.as_admin("id"))
    assert ssh_host.state.commands == ["chpasswd", "id"]
    secrets = ("Alice-new-2", "short", ALICE_PW, BOB_PW, ROOT_PW)
    assert not [c for c in ssh_host.state.commands for s in secrets if s in c]
    assert ssh_host.state.counters.commands == 2
    assert ssh_host.state.counters.max_sessions == 1
    assert ssh_host.state.counters.sessions_now == 0


# -- faults -----------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool]) -> Awaitable[None]:
    async def poll() -> None:
        # the counters are plain ints, set on the host's thread: polled
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    return poll()


def test_frozen_answers_nothing_until_thawed(ssh_host: Host) -> None:
    state = ssh_host.state

    async def scenario() -> None:
        state.frozen = True
        login = asyncio.ensure_future(ssh_host.logs_in("alice", ALICE_PW))
        await wait_for(lambda: state.counters.connections == 1)
        done, _ = await asyncio.wait({login}, timeout=0.3)
        assert not done  # the login waits while the host is stopped
        state.frozen = False
        assert await login

        async with await ssh_host.connect("root", client_keys=[ssh_host.admin]) as conn:
            state.frozen = True
            change = asyncio.ensure_future(
                conn.run("chpasswd", input="alice:Alice-new-2\n", check=False)
            )
            await wait_for(lambda: state.counters.sessions_now == 1)
            done, _ = await asyncio.wait({change}, timeout=0.3)
            assert not done
            assert state.password("alice") == ALICE_PW  # nothing applied while frozen
            state.frozen = False
            assert (await change).exit_status == 0
        assert state.password("alice") == "Alice-new-2"

    try:
        run(scenario())
    finally:
        state.frozen = False


# -- the state, without a server --------------------------------------------------------------


def test_the_state_never_shows_a_password() -> None:
    state = SshHostState()
    state.add_user("alice", ALICE_PW)
    assert ALICE_PW not in repr(state.__dict__)
    assert ALICE_PW not in repr(state._accounts)


@pytest.mark.parametrize("name", ["", "a:b", "bob\nroot", "tab\there", "-oProxyCommand=x"])
def test_a_user_name_chpasswd_cannot_carry_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a local user name"):
        SshHostState().add_user(name, ALICE_PW)


def test_chpasswd_input_is_read_line_by_line() -> None:
    state = SshHostState(min_length=4)
    state.add_user("alice", ALICE_PW)
    state.add_user("bob", BOB_PW)
    result = state.chpasswd("alice:abcd\n\nnobody:abcd\nbob:xy\n")
    assert result.status == 1
    assert result.stderr[0] == "chpasswd: line 2: missing new password"
    assert result.stderr[1] == "chpasswd: line 3: user 'nobody' does not exist"
    assert "line 4, user bob" in result.stderr[-1]
    assert (state.password("alice"), state.password("bob")) == ("abcd", BOB_PW)
    assert state.chpasswd("") == type(result)(0, ())


def test_the_admin_key_may_be_given_as_a_key() -> None:
    admin = asyncssh.generate_private_key("ssh-ed25519")
    server = SshHostServer(SshHostState(), admin.convert_to_public())
    assert server.authorized("root", admin)
    assert not server.authorized("alice", admin)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.address
