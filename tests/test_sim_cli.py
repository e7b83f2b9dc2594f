"""`rotate simulate` (rotate.sim.cli): seeded simulators per endpoint, served until a signal."""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from rotate.models import Row
from rotate.settings import Settings
from rotate.sim import cli
from rotate.vendors.remotix import RemotixSettings
from rotate.vendors.sparkview import SparkViewSettings

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
