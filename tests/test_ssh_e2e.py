"""The account runbook end to end for local accounts of hosts over SSH: a REAL sshd
(tests/plugins/sshd.py) whose real local users are the accounts, a real OpenBao, the vendor
simulators, the CLI.

The scene is test_accounts_e2e's (two accounts with 4 and 3 usages, a Vault prefix and
simulators of the test's own), with an `[authorities.dir] type = "ssh"` section and a `host`
column: the first account lives on 127.0.0.1, the second on 127.0.0.2 (one sshd, two
addresses, one known_hosts). Whether a host holds a password is read on the host side
(/etc/shadow), never through the code under test.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest

from rotate.authorities.ssh import SshAuthority
from rotate.devvault import DEV_MOUNT, DevVault
from rotate.models import Secret
from rotate.sim.faults import Faults
from rotate.sim.host import SimulatorHost
from rotate.stores.vault import VaultStore
from tests.plugins.sshd import QUALITY_MIN_LENGTH, Sshd, keygen, known_hosts_line, strong_password
from tests.test_accounts_e2e import (
    RealDirectory,
    Scene,
    User,
    in_sync,
    kill_once_the_authority_holds_the_candidates,
    record_generated,
    serve_usages,
    set_cli_environment,
    statuses,
)


@dataclass
class SshScene(Scene):
    """test_accounts_e2e's scene, its authority an ssh one."""

    sshd: Sshd | None = None
    hosts: tuple[str, str] = ("", "")  # the `host` of the first and of the second account
    known_hosts: Path | None = None
    command: str = "chpasswd"

    def authority_config(self) -> str:
        assert self.sshd is not None
        sshd = self.sshd
        return "\n".join(
            (
                'type = "ssh"',
                f'login_user = "{sshd.login_user}"',
                f'key_file = "{sshd.key_file}"',
                f'known_hosts = "{self.known_hosts or sshd.known_hosts}"',
                f'command = "{self.command}"',
            )
        )

    def host_of(self, user: User) -> str:
        return self.hosts[list(self.users.values()).index(user)]


def inventory_text(s: SshScene, rows: list[tuple[str, ...]] | None = None) -> str:
    """Two local accounts on two hosts: 4 usages and 3."""
    a, b = s.user(0), s.user(1)
    ha, hb = s.hosts
    header = "endpoint,kind,target,protocol,port,username,domain,account,authority,policy,host"
    if rows is None:
        rows = [
            ("rx", "connection", "C-A1", "RDP", "", a.username, "", a.name, "dir", "acct", ha),
            ("rx", "connection", "C-A2", "RDP", "", a.username, "", a.name, "dir", "acct", ha),
            ("rx", "computer", "1001", "RDP", "", a.username, "", a.name, "dir", "acct", ha),
            ("sv", "server", "srv-a", "RDP", "", a.username, "", a.name, "dir", "acct", ha),
            ("rx", "connection", "C-B1", "RDP", "", b.username, "", b.name, "dir", "default", hb),
            ("rx", "computer", "1002", "RDP", "3390", b.username, "", b.name, "dir", "default", hb),
            ("sv", "server", "srv-b", "RDP", "", b.username, "", b.name, "dir", "default", hb),
        ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header.split(","), *rows])
    return buf.getvalue()


@pytest.fixture
def ssh_scene(
    sshd: Sshd,
    openbao: DevVault,
    sim_host: SimulatorHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[SshScene]:
    tag = uuid.uuid4().hex[:8]
    vault = openbao.settings(prefix=f"rotate-ssh-e2e-{tag}", timeout_s=5.0)
    key_text = sshd.key_file.read_text()
    host_side = RealDirectory(
        kind="ssh",
        url="",
        base_dn="",
        admin_dn="",
        admin_password=key_text,  # rotate's own credential: never in an output
        ca_file=sshd.key_file,
        domain="",
        add_user=lambda name, password: sshd.add_user(password, name),
        can_bind=sshd.password_is,  # the "DN" of a local account is its user name
        reset=lambda name, password: None,
        weak_policy=f"length = {QUALITY_MIN_LENGTH - 4}",
    )
    users = {}
    for letter in "ab":
        username = f"rte2e{tag}{letter}"
        initial = strong_password()
        name = f"ssh-{username}"
        users[name] = User(name, username, host_side.add_user(username, initial), initial)
    token = openbao.token.reveal()
    client = hvac.Client(url=openbao.addr, token=token)
    store = VaultStore(vault)
    s = SshScene(
        d=host_side,
        tmp=tmp_path,
        vault=vault,
        client=client,
        store=store,
        host=sim_host,
        users=users,
        config=tmp_path / "rotate.toml",
        inventory=tmp_path / "inventory.csv",
        out=tmp_path / "reports",
        token=token,
        sshd=sshd,
        hosts=(sshd.address, sshd.second_address),
    )
    # the key's lines, each a secret of its own (a partial leak is a leak)
    s.extra_secrets += [ln for ln in key_text.splitlines() if len(ln) > 20]
    set_cli_environment(monkeypatch, openbao)
    s.inventory.write_text(inventory_text(s))
    serve_usages(s)
    for u in users.values():
        assert s.holds(u) == {u.initial}
        assert s.binds(u, u.initial)

    record_generated(s, monkeypatch)
    change = SshAuthority.change

    async def counting(self: SshAuthority, account: Any, password: Secret) -> None:
        s.changes.append(account.username)
        await change(self, account, password)

    monkeypatch.setattr(SshAuthority, "change", counting)
    caplog.set_level("DEBUG")
    try:
        yield s
    finally:
        store.close()
        client.adapter.close()


def lockouts(s: SshScene) -> list[str]:
    """Usages and hosts holding a password that is neither Vault's current nor the pending
    candidate of their account (invariants 1 and 6; scene.py's `lockouts` for this scene)."""
    problems = []
    pending = s.pending()
    for user in s.users.values():
        known = {s.current(user)[0], pending.get(user.path)} - {None}
        if not known:
            continue  # rotate never got to it (a test checks that it is untouched)
        for row in s.usages(user):
            if s.held(row) not in known:
                problems.append(f"{row.label}: holds a password Vault does not have")
        if not any(s.binds(user, p) for p in known):
            problems.append(f"{user.name}: its host holds a password Vault does not have")
    return problems


def adopt(s: SshScene) -> None:
    """Vault learns each account's password (the one its host and usages hold) as its current
    version, as after a first run (scene.py's `adopt` for this scene)."""
    for user in s.users.values():
        s.client.secrets.kv.v2.create_or_update_secret(
            user.path,
            {"username": user.username, "password": user.initial},
            cas=0,
            mount_point=DEV_MOUNT,
        )
        s.age(user, days=365)  # due by age


# --- 1. rotation of local accounts, verified by a login ----------------------------------------


def test_run_changes_each_host_account_once_and_every_usage_follows(
    ssh_scene: SshScene, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    s = ssh_scene
    code, record = s.cli("run")
    assert code == 0, capsys.readouterr().err
    assert sorted(s.changes) == sorted(u.username for u in s.users.values())  # once each
    for user in s.users.values():
        current = in_sync(s, user)  # every usage holds Vault's current, the host takes it
        assert current in s.generated
        assert not s.binds(user, user.initial)
    accounts = {a["account"]: a for a in record["accounts"]}
    for user in s.users.values():
        a = accounts[user.name]
        assert a["status"] == "rotated", a
        assert a["login_verified"] is True, a
        assert a["authority_type"] == "ssh"
        assert a["host"] == s.host_of(user)
        assert a["in_sync"] == a["usages"]
    assert set(statuses(record, "items").values()) == {"rotated"}
    assert s.pending() == {}
    assert lockouts(s) == []

    before, changes = s.snapshot(), len(s.changes)
    code, plan = s.cli("plan")  # verify-before-change logs in with Vault's current
    assert code == 0
    assert set(statuses(plan).values()) == {"not_due"}
    assert s.snapshot() == before
    assert len(s.changes) == changes
    s.assert_no_secret(capsys.readouterr(), caplog)


# --- 2. the host refuses the new password ------------------------------------------------------


def test_refused_password_fails_the_account_and_changes_nothing(
    ssh_scene: SshScene, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    s = ssh_scene
    assert s.sshd is not None
    assert s.cli("run")[0] == 0
    a, b = s.user(0), s.user(1)
    # the hosts now check quality (see Sshd.quality_command); the first account's policy
    # makes passwords they refuse
    s.command = s.sshd.quality_command()
    s.write_config(policy=s.d.weak_policy)
    before, made = s.snapshot(), len(s.generated)
    code, record = s.cli("run", "--force")
    assert code == 1
    accounts = {x["account"]: x for x in record["accounts"]}
    assert accounts[a.name]["status"] == "failed"
    assert "BAD PASSWORD: The password is shorter than" in accounts[a.name]["error"]
    assert "candidate discarded" in accounts[a.name]["error"]
    assert accounts[b.name]["status"] == "rotated"  # the other account goes on
    items = statuses(record, "items")
    assert {items[f"{r.endpoint}/{r.target}"] for r in s.usages(a)} == {"failed"}
    assert s.pending() == {}
    assert s.current(a) == before["vault"][a.name]
    assert {r.label: s.held(r) for r in s.usages(a)} == {
        r.label: before["usages"][r.label] for r in s.usages(a)
    }
    assert in_sync(s, a) == before["vault"][a.name][0]  # the host still has Vault's current
    refused = [p for p in s.generated[made:] if p != s.current(b)[0]]
    assert len(refused) == 1
    assert not s.binds(a, refused[0])
    assert s.current(b)[1] == 2
    assert lockouts(s) == []
    s.assert_no_secret(capsys.readouterr(), caplog)


# --- 3. a host whose key changed ----------------------------------------------------------------


def test_changed_host_key_fails_the_account_with_the_reason_and_changes_nothing(
    ssh_scene: SshScene, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    s = ssh_scene
    assert s.sshd is not None
    a, b = s.user(0), s.user(1)
    # known_hosts holds another key for the first account's host (a new machine answering
    # at its address, or a man in the middle): its account must not be touched
    other = keygen(s.tmp / "other_host_key")
    s.known_hosts = s.tmp / "known_hosts"
    s.known_hosts.write_text(
        known_hosts_line(other, s.sshd.port, "127.0.0.1")
        + known_hosts_line(s.sshd.host_public_key, s.sshd.port, "127.0.0.2")
    )
    s.write_config()
    code, record = s.cli("run")
    assert code == 1, capsys.readouterr().err
    accounts = {x["account"]: x for x in record["accounts"]}
    assert accounts[a.name]["status"] == "failed"
    error = accounts[a.name]["error"]
    assert f"host key of {s.host_of(a)} changed" in error
    assert "refused" in error
    assert accounts[b.name]["status"] == "rotated"
    # the first account: nothing anywhere
    assert s.current(a) == (None, None)
    assert s.holds(a) == {a.initial}
    assert s.binds(a, a.initial)
    assert s.pending() == {}
    in_sync(s, b)
    assert lockouts(s) == []
    s.assert_no_secret(capsys.readouterr(), caplog)


# --- 4. a crash between the host change and the usage pushes -----------------------------------


def test_crash_after_the_host_change_rolls_forward_without_lockouts(
    ssh_scene: SshScene, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    s = ssh_scene
    adopt(s)
    killed = kill_once_the_authority_holds_the_candidates(s, timeout_s=60)
    candidates, users = killed.candidates, list(s.users.values())
    for u in users:
        # mid-crash: the host is on the candidate, which Vault holds as pending only; the
        # usages on Vault's current
        assert s.current(u) == (u.initial, 1)
        assert s.holds(u) == {u.initial}
        assert not s.binds(u, u.initial)
    assert lockouts(s) == []  # Vault has what every host and usage holds

    for name in ("rx", "sv"):
        s.host.set_faults(name, Faults())
    code, record = s.cli("run")
    assert code == 0, capsys.readouterr().err
    assert s.generated == [], "a fresh password was made while the host held the candidate"
    assert s.changes == [], "the host already held the candidate: no second change"
    for u in users:
        assert in_sync(s, u) == candidates[u.name]
        assert s.current(u)[1] == 2
    assert set(statuses(record).values()) == {"rotated"}
    assert all(a["login_verified"] is True for a in record["accounts"])
    assert s.pending() == {}
    assert lockouts(s) == []
    s.assert_no_secret(
        capsys.readouterr(),
        caplog,
        killed_stdout=killed.stdout.read_text(errors="replace"),
        killed_stderr=killed.stderr.read_text(errors="replace"),
    )


# --- 5. hostile values in the inventory -----------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "username", "host"),
    [
        ("username", "bob\nroot:x", None),
        ("username", "a:b", None),
        ("username", "-oProxyCommand=x", None),
        ("host", None, "-oProxyCommand=nc evil 22"),
        ("host", None, "root@127.0.0.1"),
        ("host", None, "127.0.0.1;reboot"),
        ("host", None, "$(reboot)"),
        ("host", None, ""),
    ],
)
def test_hostile_inventory_values_are_refused_before_anything(
    ssh_scene: SshScene,
    capsys: pytest.CaptureFixture[str],
    column: str,
    username: str | None,
    host: str | None,
) -> None:
    s = ssh_scene
    a = s.user(0)
    rows = [
        ("rx", "connection", "C-A1", "RDP", "", a.username, "", a.name, "dir", "acct", s.hosts[0]),
        (
            "rx",
            "connection",
            "C-X1",
            "RDP",
            "",
            username if username is not None else "alice",
            "",
            "hostile",
            "dir",
            "default",
            host if host is not None else s.hosts[1],
        ),
    ]
    s.inventory.write_text(inventory_text(s, rows))
    code, _ = s.cli("run", "--force")
    err = capsys.readouterr().err
    assert code == 2, err
    expected_column = column if "\n" not in (username or "") else "username"
    assert f"row 3, column '{expected_column}'" in err, err
    assert s.changes == []
    assert s.generated == []
    assert s.vault_paths() == []
    assert s.writes() == 0
    for u in s.users.values():
        assert s.binds(u, u.initial)
        assert s.holds(u) == {u.initial}
