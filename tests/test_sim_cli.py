"""`rotate simulate` (rotate.sim.cli): seeded simulators per endpoint, served until a signal."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from rotate.authorities.ssh_settings import SshSettings
from rotate.demo import start_ssh_hosts
from rotate.inventory import group_accounts
from rotate.models import Row
from rotate.settings import Settings
from rotate.sim import cli
from rotate.sim.host import AsyncSimulatorHost, SimulatorHost
from rotate.sim.seed import seed_ssh_hosts
from rotate.sim.sshhost import new_key_pair
from rotate.vendors.remotix import RemotixSettings
from rotate.vendors.sparkview import SparkViewSettings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

SCRIPT = textwrap.dedent(
    """
    import argparse, sys
    from rotate.models import Row
    from rotate.settings import load_settings
    from rotate.sim import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(sys.argv[2:])
    settings = load_settings(sys.argv[1])
    rows = [
        Row(line=2, endpoint="mac", kind="computer", target="42", username="admin",
            protocol="RDP"),
        Row(line=3, endpoint="gw", kind="server", target="srv1", username="demo",
            protocol="RDP"),
    ]
    sys.exit(cli.run(args, settings, rows))
    """
)

pytestmark = pytest.mark.integration  # simulators served on loopback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_simulate_serves_each_endpoint_until_sigterm(tmp_path: Path):
    port = _free_port()
    config = tmp_path / "rotate.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [endpoints.mac]
            system = "remotix"
            url = "http://127.0.0.1:{port}"
            token_env = "SIM_TEST_TOKEN"

            [endpoints.gw]
            system = "sparkview"
            url = "https://gw.example.net"
            gateway_password_env = "SIM_TEST_GW"
            """
        )
    )
    env = {**os.environ, "SIM_TEST_GW": "gw-pass", "SIM_TEST_TOKEN": "tok"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(config), "--latency-ms", "1", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().split() for _ in range(2)]
        urls = {name: url for name, _, url in lines}
        assert [(name, system) for name, system, _ in lines] == [
            ("mac", "remotix"),
            ("gw", "sparkview"),
        ]
        assert urls["mac"] == f"http://127.0.0.1:{port}"  # the configured loopback port
        assert urls["gw"].startswith("http://127.0.0.1:")  # a non-loopback URL: a free port
        headers = {"Authorization": "Bearer tok"}
        r = httpx.get(f"{urls['mac']}/computer/42/RDP/credentials", headers=headers)
        assert r.json()["rdp.username"] == "admin"
        assert httpx.get(f"{urls['mac']}/groups").status_code == 401
        md5 = hashlib.md5(b"gw-pass", usedforsecurity=False).hexdigest()
        r = httpx.get(
            f"{urls['gw']}/SERVER", params={"action": "list", "id": "srv1", "gatewayPwd": md5}
        )
        assert r.json()["rdp"]["username"] == "demo"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "gw-pass" not in out + err


def test_simulate_requires_the_gateway_password_variable(capsys: pytest.CaptureFixture[str]):
    settings = Settings(
        endpoints={
            "gw": SparkViewSettings(
                name="gw",
                system="sparkview",
                url="http://127.0.0.1:1",
                gateway_password_env="SIM_TEST_UNSET",
            )
        },
        env={"PATH": "/usr/bin"},
    )
    rows = [Row(line=2, endpoint="gw", kind="server", target="s", username="u", protocol="RDP")]
    assert cli.run(_parse(), settings, rows) == 2
    assert "SIM_TEST_UNSET" in capsys.readouterr().err


def test_simulate_refuses_a_row_on_the_wrong_system(capsys: pytest.CaptureFixture[str]):
    settings = Settings(
        endpoints={"mac": RemotixSettings(name="mac", system="remotix", url="http://127.0.0.1:1")},
        env={"PATH": "/usr/bin"},
    )
    rows = [Row(line=7, endpoint="mac", kind="server", target="s", username="u", protocol="RDP")]
    assert cli.run(_parse(), settings, rows) == 2
    assert "line 7" in capsys.readouterr().err


def test_fault_options_are_validated():
    args = _parse("--error-rate", "0.25", "--drop-rate", "1", "--seed", "9")
    faults = cli._faults(args, 1)
    assert (faults.error_rate, faults.drop_rate, faults.seed) == (0.25, 1.0, 10)
    with pytest.raises(SystemExit):
        _parse("--error-rate", "1.5")


# -- SSH host stand-ins -------------------------------------------------------------------------


def _ssh_rows() -> list[Row]:
    def row(line: int, target: str, user: str, host: str) -> Row:
        return Row(
            line=line,
            endpoint="gw",
            kind="server",
            target=target,
            username=user,
            protocol="RDP",
            account=f"{host}\\{user}",
            authority="hosts",
            host=host,
        )

    return [row(2, "s1", "kiosk", "h1"), row(3, "s2", "kiosk", "h1"), row(4, "s3", "lab", "h2")]


def _ssh_settings(key_file: str | None, port: int = 22) -> Settings:
    hosts = SshSettings(
        name="hosts", type="ssh", key_file=key_file, known_hosts="/dev/null", port=port
    )
    return Settings(authorities={"hosts": hosts}, env={"PATH": "/usr/bin"})


def test_simulate_serves_an_ssh_host_stand_in_per_ssh_authority(tmp_path: Path) -> None:
    key_file, _ = new_key_pair(tmp_path / "id_ed25519")
    (tmp_path / "id_ed25519.pub").unlink()  # the public key is read from the private one
    settings = _ssh_settings(str(key_file), port=22)
    initial = {"h1\\kiosk": "Kiosk-pass-1"}
    seeded, problems = cli.ssh_hosts(settings, _ssh_rows(), initial)
    assert problems == []
    state = seeded["hosts"].state
    assert state.users() == ["kiosk", "lab"]
    assert state.password("kiosk") == "Kiosk-pass-1"
    assert len(state.password("lab") or "") >= state.min_length  # none given: a random one
    lines: list[str] = []

    async def serve_and_change() -> int | None:
        host = AsyncSimulatorHost()
        try:
            await cli.serve_ssh_hosts(_parse(), host, settings, seeded, lines.append)
            port = host.ssh_host("hosts").port
            known = asyncssh.import_known_hosts(lines[1].split(": ", 1)[1] + "\n")
            async with asyncssh.connect(
                "127.0.0.1",
                port,
                username="root",
                client_keys=[str(key_file)],
                known_hosts=known,
                agent_path=None,
                config=None,
            ) as conn:
                result = await conn.run("chpasswd", input="kiosk:Kiosk-new-2\n", check=False)
                return result.exit_status
        finally:
            await host.close()

    assert asyncio.run(serve_and_change()) == 0
    assert state.password("kiosk") == "Kiosk-new-2"
    name, kind, address = lines[0].split()
    assert (name, kind) == ("hosts", "ssh")
    port = int(address.removeprefix("127.0.0.1:"))
    assert port != 22  # privileged: a free port instead
    assert lines[1].startswith(f"hosts known_hosts: [127.0.0.1]:{port} ssh-ed25519 ")


def test_simulate_serves_the_ssh_authority_s_own_unprivileged_port(tmp_path: Path) -> None:
    key_file, _ = new_key_pair(tmp_path / "id_ed25519")
    port = _free_port()
    settings = _ssh_settings(str(key_file), port=port)
    seeded, _ = cli.ssh_hosts(settings, _ssh_rows())
    lines: list[str] = []

    async def serve() -> None:
        host = AsyncSimulatorHost()
        try:
            await cli.serve_ssh_hosts(_parse(), host, settings, seeded, lines.append)
        finally:
            await host.close()

    asyncio.run(serve())
    assert lines[0] == f"hosts ssh 127.0.0.1:{port}"


def test_simulate_needs_the_ssh_admin_s_key(tmp_path: Path) -> None:
    _, problems = cli.ssh_hosts(_ssh_settings(None), _ssh_rows())
    assert "give the authority a key_file" in problems[0]
    _, problems = cli.ssh_hosts(_ssh_settings(str(tmp_path / "missing")), _ssh_rows())
    assert "cannot read the SSH key" in problems[0]


def test_one_ssh_stand_in_cannot_hold_one_user_name_of_two_hosts() -> None:
    rows = _ssh_rows()
    rows.append(replace(rows[2], line=5, target="s4", account="h3\\lab", host="h3"))
    _, problems = cli.ssh_hosts(_ssh_settings("/nonexistent"), rows)
    assert "user 'lab' is on host 'h2' and 'h3'" in problems[0]


def test_the_demo_points_an_ssh_authority_at_its_stand_in(
    tmp_path: Path, sim_host: SimulatorHost
) -> None:
    settings = _ssh_settings("/etc/rotate/id_ed25519")
    initial = {"h1\\kiosk": "Kiosk-pass-1", "h2\\lab": "Lab-pass-12"}
    hosts = seed_ssh_hosts(group_accounts(_ssh_rows()), settings.authorities, passwords=initial)
    wired = start_ssh_hosts(sim_host, settings, hosts, tmp_path)
    config = wired.authorities["hosts"]
    assert isinstance(config, SshSettings)
    assert config.port == sim_host.ssh_host("hosts").port
    assert config.key_file is not None
    assert stat.S_IMODE(os.stat(config.key_file).st_mode) == 0o600
    unchanged = settings.authorities["hosts"]
    assert isinstance(unchanged, SshSettings)
    assert unchanged.key_file == "/etc/rotate/id_ed25519"  # a copy was changed

    async def change() -> int | None:
        async with asyncssh.connect(
            "127.0.0.1",
            config.port,
            username="root",
            client_keys=[config.key_file],
            known_hosts=config.known_hosts,  # the file the demo wrote
            agent_path=None,
            config=None,
        ) as conn:
            result = await conn.run("chpasswd", input="lab:Lab-new-pass\n", check=False)
            return result.exit_status

    assert asyncio.run(change()) == 0
    assert hosts["hosts"].logs_in("lab", "Lab-new-pass")
    assert hosts["hosts"].logs_in("kiosk", "Kiosk-pass-1")
