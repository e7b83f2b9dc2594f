"""The account runbook end to end against the REAL directories: slapd (authority type `ldap`)
and a Samba AD DC (type `ad`), a real OpenBao, the vendor simulators, the CLI.

Each test builds a small world of its own: two accounts, each created in the directory and
seeded on its usages with one initial password (4 and 3 usages over a Remotix endpoint and a
Spark View gateway), a Vault prefix and simulators of the test's own. The contract is
/work/shared/accounts.md (the runbook for one account, invariants 6-9, hostile input).

The authority's own contract (injected user names finding nothing when `change` is called
directly, refusals, timeouts) is tests/test_authority_ldap.py; here the CLI drives it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import ldap3
import pytest

from rotate import passwords
from rotate.authorities.ldap import LdapAuthority
from rotate.cli import main
from rotate.demo import sim_password
from rotate.devvault import DEV_MOUNT, DevVault
from rotate.inventory import account_vault_path, load_inventory
from rotate.models import Row, Secret
from rotate.settings import PolicySettings, VaultSettings, load_settings
from rotate.sim.faults import Faults
from rotate.sim.host import SimulatorHost
from rotate.sim.seed import seed_states
from rotate.stores.kv import utc_iso
from rotate.stores.vault import VaultStore
from tests.plugins.samba import SambaDC
from tests.plugins.scene import journal_candidates, log_text, sync
from tests.plugins.slapd import Slapd, strong_password

ROOT = Path(__file__).resolve().parent.parent
BIND_ENV = "E2E_DIR_BIND"
GW_ENV = "E2E_GW_PASSWORD"
GATEWAY_PASSWORD = "e2e-Gateway-pass-7"


# --- the real directories ------------------------------------------------------------------


@dataclass
class RealDirectory:
    """One real directory server, as these tests use it."""

    kind: str  # the authority type: ldap | ad
    url: str
    base_dn: str
    admin_dn: str
    admin_password: str = field(repr=False)
    ca_file: Path
    domain: str  # the RDP domain of its accounts' usages ("" for ldap)
    add_user: Callable[[str, str], str]  # (login name, password) -> DN
    can_bind: Callable[[str, str], bool]  # (DN, password) -> bound?
    reset: Callable[[str, str], None]  # an admin reset behind rotate's back: (DN, password)
    weak_policy: str  # a [policies.<name>] body whose passwords the directory refuses


def _slapd_reset(slapd: Slapd) -> Callable[[str, str], None]:
    def reset(dn: str, password: str) -> None:
        conn = slapd.admin()
        try:
            assert conn.extend.standard.modify_password(dn, new_password=password)
        finally:
            conn.unbind()

    return reset


def _samba_reset(samba: SambaDC) -> Callable[[str, str], None]:
    def reset(dn: str, password: str) -> None:
        conn = samba.admin()
        try:
            value = f'"{password}"'.encode("utf-16-le")
            assert conn.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [value])]})
        finally:
            conn.unbind()

    return reset


def _slapd(request: pytest.FixtureRequest) -> RealDirectory:
    slapd: Slapd = request.getfixturevalue("slapd")
    return RealDirectory(
        kind="ldap",
        url=slapd.ldaps_url,
        base_dn=slapd.base_dn,
        admin_dn=slapd.admin_dn,
        admin_password=slapd.admin_password.reveal(),
        ca_file=slapd.ca_file,
        domain="",
        add_user=slapd.add_user,
        can_bind=slapd.can_bind,
        reset=_slapd_reset(slapd),
        weak_policy="length = 6",  # ppolicy's pwdMinLength is 8
    )


def _samba(request: pytest.FixtureRequest) -> RealDirectory:
    samba: SambaDC = request.getfixturevalue("samba")
    return RealDirectory(
        kind="ad",
        url=samba.url,
        base_dn=samba.base_dn,
        admin_dn=samba.admin_dn,
        admin_password=samba.admin_password.reveal(),
        ca_file=samba.ca_file,
        domain="EXAMPLE",
        add_user=samba.add_user,
        can_bind=samba.can_bind,
        reset=_samba_reset(samba),
        # one character class: AD's complexity rule asks for three of four
        weak_policy="length = 12\nlower = true\nupper = false\ndigits = false\nsymbols = false",
    )


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.integration) for n in ("slapd", "samba")])
def real_directory(request: pytest.FixtureRequest) -> RealDirectory:
    """slapd or Samba AD (the plugins skip without the server, and fail in CI)."""
    return _slapd(request) if request.param == "slapd" else _samba(request)


# --- the world -----------------------------------------------------------------------------


@dataclass
class User:
    """An account of the test: its directory entry and its initial password."""

    name: str  # the inventory's `account`
    username: str
    dn: str
    initial: str = field(repr=False)
    path: str = ""  # its Vault secret, relative to the mount


@dataclass
class Scene:
    d: RealDirectory
    tmp: Path
    vault: VaultSettings
    client: hvac.Client  # root: looks behind rotate's back
    store: VaultStore
    host: SimulatorHost
    users: dict[str, User]  # by account name
    config: Path
    inventory: Path
    out: Path
    token: str = field(repr=False)
    rows: list[Row] = field(default_factory=list)
    generated: list[str] = field(default_factory=list, repr=False)  # every candidate made
    changes: list[str] = field(default_factory=list)  # user names changed at the directory
    extra_secrets: list[str] = field(default_factory=list, repr=False)
    runs: int = 0

    @property
    def prefix(self) -> str:
        return self.vault.prefix

    def write_config(self, *, policy: str = "length = 24", extra: str = "") -> None:
        """The config on this scene's Vault prefix, directory and simulators. `policy` is the
        body of `[policies.acct]`, the policy of the first account."""
        urls = self.host.urls
        self.config.write_text(
            f"""
[vault]
addr = "http://127.0.0.1:1"
mount = "{DEV_MOUNT}"
prefix = "{self.prefix}"
auth = "token"

[run]
concurrency = 8
per_endpoint_concurrency = 4
timeout_s = 5
retries = 1
backoff_s = 0.05
max_age_days = 90

[authorities.dir]
{self.authority_config()}
timeout_s = 5

[policies.default]
length = 24

[policies.acct]
{policy}

[endpoints.rx]
system = "remotix"
url = "{urls.get("rx", "http://127.0.0.1:1")}"

[endpoints.sv]
system = "sparkview"
url = "{urls.get("sv", "http://127.0.0.1:1")}"
gateway_password_env = "{GW_ENV}"
{extra}
"""
        )

    def authority_config(self) -> str:
        """The body of `[authorities.dir]`, the scene's authority (timeout aside)."""
        d = self.d
        return "\n".join(
            (
                f'type = "{d.kind}"',
                f'url = "{d.url}"',
                f'ca_bundle = "{d.ca_file}"',
                f'bind_dn = "{d.admin_dn}"',
                f'bind_password_env = "{BIND_ENV}"',
                f'base_dn = "{d.base_dn}"',
            )
        )

    # -- the CLI ---------------------------------------------------------------------------

    def argv(self, command: str, *args: str) -> tuple[list[str], Path]:
        self.runs += 1
        record = self.tmp / "records" / f"{self.runs}-{command}.json"
        record.parent.mkdir(exist_ok=True)
        argv = [
            command,
            str(self.inventory),
            "--config",
            str(self.config),
            "--out-dir",
            str(self.out),
            "--json",
            str(record),
            *args,
        ]
        return argv, record

    def cli(self, command: str, *args: str) -> tuple[int, dict[str, Any]]:
        """`rotate <command> INVENTORY ... --json FILE <args>` in-process: (exit, record)."""
        argv, record = self.argv(command, *args)
        code = main(argv)
        data = json.loads(record.read_text()) if record.exists() else {}
        return code, data

    # -- looking behind rotate's back ------------------------------------------------------

    def user(self, index: int) -> User:
        return list(self.users.values())[index]

    def usages(self, user: User) -> list[Row]:
        return [r for r in self.rows if r.account == user.name]

    def held(self, row: Row) -> str | None:
        return sim_password(self.host.state(row.endpoint), row)

    def holds(self, user: User) -> set[str | None]:
        """The passwords its usages hold (one, when they are in sync)."""
        return {self.held(r) for r in self.usages(user)}

    def current(self, user: User) -> tuple[str | None, int | None]:
        """Vault's current password of the account and its version."""
        try:
            read = self.client.secrets.kv.v2.read_secret_version(
                path=user.path, mount_point=DEV_MOUNT, raise_on_deleted_version=False
            )
        except hvac.exceptions.InvalidPath:
            return None, None
        data = read["data"]["data"] or {}
        return data.get("password"), read["data"]["metadata"]["version"]

    def binds(self, user: User, password: str | None) -> bool:
        return password is not None and self.d.can_bind(user.dn, password)

    def pending(self) -> dict[str, str]:
        return {p: s.reveal() for p, s in journal_candidates(self.client, self.vault).items()}

    def stale(self) -> dict[str, Any]:
        found: dict[str, Any] = sync(self.store).stale()
        return found

    def stale_listing(self) -> list[str]:
        """The records under `<prefix>/_stale/` that still hold data."""
        try:
            names = self.client.secrets.kv.v2.list_secrets(
                path=self.vault.stale_root, mount_point=DEV_MOUNT
            )["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return []
        held = []
        for name in names:
            read = self.client.secrets.kv.v2.read_secret_version(
                path=f"{self.vault.stale_root}/{name}",
                mount_point=DEV_MOUNT,
                raise_on_deleted_version=False,
            )
            if read["data"]["data"]:
                held.append(name)
        return held

    def vault_paths(self) -> list[str]:
        """Every secret under the prefix (anything rotate wrote, journal and lease included)."""
        found, folders = [], [self.prefix]
        while folders:
            folder = folders.pop()
            try:
                keys = self.client.secrets.kv.v2.list_secrets(path=folder, mount_point=DEV_MOUNT)[
                    "data"
                ]["keys"]
            except hvac.exceptions.InvalidPath:
                continue
            for key in keys:
                (folders if key.endswith("/") else found).append(f"{folder}/{key}".rstrip("/"))
        return sorted(found)

    def writes(self) -> int:
        """Writes the simulators applied."""
        return sum(self.host.state(n).writes for n in ("rx", "sv"))

    def metadata(self, user: User) -> tuple[Any, ...] | None:
        """The account secret's metadata: versions, last update, custom_metadata."""
        try:
            meta = self.client.secrets.kv.v2.read_secret_metadata(
                path=user.path, mount_point=DEV_MOUNT
            )["data"]
        except hvac.exceptions.InvalidPath:
            return None
        custom = sorted((meta.get("custom_metadata") or {}).items())
        return meta["current_version"], meta["updated_time"], custom

    def snapshot(self) -> dict[str, Any]:
        """Everything a run could change: Vault (secrets, metadata, journal), the usages."""
        return {
            "vault": {u.name: self.current(u) for u in self.users.values()},
            "metadata": {u.name: self.metadata(u) for u in self.users.values()},
            "paths": self.vault_paths(),
            "pending": self.pending(),
            "usages": {r.label: self.held(r) for r in self.rows},
            "writes": self.writes(),
        }

    def age(self, user: User, days: float) -> None:
        """Make the account's current password `days` old in Vault's record (custom_metadata,
        as an imported rotation time), so a run finds it due without --force."""
        meta = self.client.secrets.kv.v2.read_secret_metadata(
            path=user.path, mount_point=DEV_MOUNT
        )["data"]
        custom = dict(meta.get("custom_metadata") or {})
        custom.update(
            rotated_version=str(meta["current_version"]),
            rotated_at=utc_iso(datetime.now(UTC) - timedelta(days=days)),
        )
        self.client.secrets.kv.v2.update_metadata(
            path=user.path, mount_point=DEV_MOUNT, custom_metadata=custom
        )

    # -- no secret in any output -----------------------------------------------------------

    def secrets(self) -> list[str]:
        values = [self.token, self.d.admin_password, GATEWAY_PASSWORD, *self.extra_secrets]
        values.append(hashlib.md5(GATEWAY_PASSWORD.encode(), usedforsecurity=False).hexdigest())
        values += [u.initial for u in self.users.values()]
        values += self.generated
        values += [p for u in self.users.values() if (p := self.current(u)[0])]
        values += self.pending().values()
        values += [p for r in self.rows if (p := self.held(r))]
        return sorted({v for v in values if len(v) >= 6})

    def assert_no_secret(
        self,
        captured: pytest.CaptureResult[str],
        caplog: pytest.LogCaptureFixture,
        reports: bool = True,
        **more: str,
    ) -> None:
        """No secret in stdout, stderr, the log, the reports, the --json records, or `more`
        (`reports`: some were written)."""
        places = {"stdout": captured.out, "stderr": captured.err, "log": log_text(caplog), **more}
        for folder in (self.out, self.tmp / "records"):
            for f in sorted(folder.rglob("*")):
                if f.is_file():
                    places[str(f.relative_to(self.tmp))] = f.read_text(errors="replace")
        assert not reports or len(places) > 4, "no report or record was written"
        secrets = self.secrets()
        assert len(secrets) >= 2 + len(self.users) * 2, "the secrets were not collected"
        leaks = [
            f"secret #{i} in {where}"
            for where, text in places.items()
            for i, secret in enumerate(secrets)
            if secret in text
        ]
        assert leaks == [], leaks  # names the place, never the secret


def inventory_text(scene: Scene, rows: list[tuple[str, ...]] | None = None) -> str:
    """Two accounts: the first with 4 usages (Remotix connections and a computer, a Spark View
    server), the second with 3; `rows` replaces them."""
    a, b = scene.user(0), scene.user(1)
    dom = scene.d.domain
    header = "endpoint,kind,target,protocol,port,username,domain,account,authority,policy"
    if rows is None:
        rows = [
            ("rx", "connection", "C-A1", "RDP", "", a.username, dom, a.name, "dir", "acct"),
            ("rx", "connection", "C-A2", "RDP", "", a.username, dom, a.name, "dir", "acct"),
            ("rx", "computer", "1001", "RDP", "", a.username, dom, a.name, "dir", "acct"),
            ("sv", "server", "srv-a", "RDP", "", a.username, dom, a.name, "dir", "acct"),
            ("rx", "connection", "C-B1", "RDP", "", b.username, dom, b.name, "dir", "default"),
            ("rx", "computer", "1002", "RDP", "3390", b.username, dom, b.name, "dir", "default"),
            ("sv", "server", "srv-b", "RDP", "", b.username, dom, b.name, "dir", "default"),
        ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header.split(","), *rows])
    return buf.getvalue()


def set_cli_environment(monkeypatch: pytest.MonkeyPatch, vault: DevVault, **more: str) -> None:
    """The CLI's environment for a scene: its Vault and token, the gateway password, `more`,
    and none of the user's own rotate or Vault settings."""
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    monkeypatch.setenv("VAULT_TOKEN", vault.token.reveal())
    monkeypatch.setenv(GW_ENV, GATEWAY_PASSWORD)
    for var, value in more.items():
        monkeypatch.setenv(var, value)
    for var in ("ROTATE_CONFIG", "VAULT_CACERT", "VAULT_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)


def serve_usages(s: Scene, *, extra: str = "") -> None:
    """The scene's inventory (written already) on simulators whose usages hold their
    accounts' initial passwords; the config rewritten with the simulators' ports (and
    `extra`), each user's Vault path set."""
    s.write_config(extra=extra)
    settings = load_settings(s.config)
    s.rows = load_inventory(s.inventory, settings)
    initial = {u.name: u.initial for u in s.users.values()}
    states = seed_states(s.rows, settings.endpoints, passwords=initial)
    for name, state in states.items():
        gateway = GATEWAY_PASSWORD if name == "sv" else None
        s.host.add_endpoint(settings.endpoints[name], state, gateway_password=gateway)
    s.write_config(extra=extra)
    for u in s.users.values():
        u.path = account_vault_path(settings, u.name)


def record_generated(s: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate the run makes in this process lands in `s.generated`."""
    generate = passwords.generate

    def recording(policy: PolicySettings) -> Secret:
        secret = generate(policy)
        s.generated.append(secret.reveal())
        return secret

    monkeypatch.setattr(passwords, "generate", recording)


@dataclass
class Killed:
    """A `rotate run` killed once the authority held every account's pending candidate."""

    candidates: dict[str, str] = field(repr=False)  # account name -> its pending candidate
    stdout: Path
    stderr: Path


def kill_once_the_authority_holds_the_candidates(s: Scene, timeout_s: float) -> Killed:
    """Every vendor write hangs, so a `rotate run` subprocess stops after the authority's
    change; it is SIGKILLed once every account logs in there with its pending candidate.
    The candidates join the scene's secrets."""
    for name in ("rx", "sv"):
        s.host.set_faults(name, Faults(hang_rate=1.0, hang_s=30.0, writes_only=True))
    argv, _ = s.argv("run")
    stdout, stderr = s.tmp / "killed.out", s.tmp / "killed.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rotate", *argv],
            cwd=ROOT,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    users = list(s.users.values())
    candidates: dict[str, str] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, stderr.read_text()
            journal = s.pending()
            candidates = {u.name: journal[u.path] for u in users if u.path in journal}
            if len(candidates) == len(users) and all(s.binds(u, candidates[u.name]) for u in users):
                break  # the authority holds every pending candidate
            assert time.monotonic() < deadline, "the authority never got the candidates"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    s.extra_secrets += candidates.values()
    return Killed(candidates, stdout, stderr)


@pytest.fixture
def scene(
    real_directory: RealDirectory,
    openbao: DevVault,
    sim_host: SimulatorHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Scene]:
    d = real_directory
    tag = uuid.uuid4().hex[:8]
    vault = openbao.settings(prefix=f"rotate-e2e-{tag}", timeout_s=5.0)
    users = {}
    for letter in "ab":
        username = f"e2e{tag}{letter}"  # 12 characters: within AD's 20
        initial = strong_password()
        name = f"{d.kind}-{username}"
        users[name] = User(name, username, d.add_user(username, initial), initial)
    token = openbao.token.reveal()
    client = hvac.Client(url=openbao.addr, token=token)
    store = VaultStore(vault)
    s = Scene(
        d=d,
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
    )
    set_cli_environment(monkeypatch, openbao, **{BIND_ENV: d.admin_password})

    # The usages hold the accounts' initial passwords; then the simulators get their ports.
    s.inventory.write_text(inventory_text(s))
    serve_usages(s)
    for u in users.values():
        assert u.path == f"{vault.prefix}/accounts/{u.name}"
        assert s.holds(u) == {u.initial}
        assert s.binds(u, u.initial)

    # Every candidate made, and every change sent to the directory, in this process.
    record_generated(s, monkeypatch)
    change = LdapAuthority.change

    async def counting(self: LdapAuthority, account: Any, password: Secret) -> None:
        s.changes.append(account.username)
        await change(self, account, password)

    monkeypatch.setattr(LdapAuthority, "change", counting)
    caplog.set_level("DEBUG")
    try:
        yield s
    finally:
        store.close()
        client.adapter.close()


def statuses(record: dict[str, Any], key: str = "accounts") -> dict[str, str]:
    """account name -> status (accounts), or usage `endpoint/target` -> status (items)."""
    if key == "accounts":
        return {a["account"]: a["status"] for a in record["accounts"]}
    return {f"{i['endpoint']}/{i['target']}": i["status"] for i in record["items"]}


def in_sync(s: Scene, user: User) -> str:
    """The account's one password: Vault's current, on every usage, logging in at the
    directory (the initial one no longer does)."""
    current, _ = s.current(user)
    assert current is not None
    assert s.holds(user) == {current}, f"{user.name}: a usage does not hold Vault's current"
    assert s.binds(user, current), f"{user.name}: Vault's current does not log in"
    return current


# --- 1. rotation, verified by a login -----------------------------------------------------


def test_run_changes_each_account_once_and_every_usage_follows(
    scene: Scene, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    s = scene
    code, record = s.cli("run")
    assert code == 0, capsys.readouterr().err
    assert sorted(s.changes) == sorted(u.username for u in s.users.values())  # once each
    assert len(s.generated) == len(s.users)
    for user in s.users.values():
        current = in_sync(s, user)
        assert current in s.generated
        assert s.current(user)[1] == 1
        assert not s.binds(user, user.initial)
    accounts = {a["account"]: a for a in record["accounts"]}
    assert set(accounts) == set(s.users)
    for a in accounts.values():
        assert a["status"] == "rotated", a
        assert a["login_verified"] is True, a
        assert a["authority_type"] == s.d.kind
        assert a["in_sync"] == a["usages"]
        assert a["stale"] == 0
    assert set(statuses(record, "items").values()) == {"rotated"}
    assert s.pending() == {}
    assert s.stale() == {}

    # A plan afterwards only reads: nothing due, nothing written anywhere.
    before, changes = s.snapshot(), len(s.changes)
    code, plan = s.cli("plan")
    assert code == 0
    assert set(statuses(plan).values()) == {"not_due"}
    assert s.snapshot() == before
    assert len(s.changes) == changes
    assert len(s.generated) == len(s.users)
    for user in s.users.values():
        in_sync(s, user)

    s.assert_no_secret(capsys.readouterr(), caplog)


# --- 2. a crash between the authority change and the usage pushes --------------------------


def test_crash_after_the_change_rolls_forward_with_the_same_candidate(
    scene: Scene, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    s = scene
    killed = kill_once_the_authority_holds_the_candidates(s, timeout_s=30)
    candidates, users = killed.candidates, list(s.users.values())
    for u in users:
        # Mid-crash: the directory is on the candidate, which Vault holds as pending only.
        assert s.current(u) == (None, None)
        assert s.holds(u) == {u.initial}

    for name in ("rx", "sv"):
        s.host.set_faults(name, Faults())
    code, record = s.cli("run")
    assert code == 0, capsys.readouterr().err
    assert s.generated == [], "a fresh password was made while the directory held the candidate"
    assert s.changes == [], "the directory already held the candidate: no second change"
    for u in users:
        assert in_sync(s, u) == candidates[u.name]
    assert set(statuses(record).values()) == {"rotated"}
    assert all(a["login_verified"] is True for a in record["accounts"])
    assert s.pending() == {}
    assert s.stale() == {}
    assert s.stale_listing() == []

    s.assert_no_secret(
        capsys.readouterr(),
        caplog,
        killed_stdout=killed.stdout.read_text(errors="replace"),
        killed_stderr=killed.stderr.read_text(errors="replace"),
    )


# --- 3. a usage endpoint down ----------------------------------------------------------------


def test_usage_on_a_down_endpoint_is_stale_then_repaired(
    scene: Scene,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = scene
    wrong = "wrong-Gateway-pass-1"
    s.extra_secrets.append(wrong)
    monkeypatch.setenv(GW_ENV, wrong)  # the Spark View gateway fails its probe
    code, record = s.cli("run")
    assert code == 1
    users = list(s.users.values())
    assert sorted(s.changes) == sorted(u.username for u in users)
    items = statuses(record, "items")
    for u in users:
        current, version = s.current(u)
        assert version == 1
        assert s.binds(u, current)
        assert not s.binds(u, u.initial)
        for row in s.usages(u):
            label = f"{row.endpoint}/{row.target}"
            if row.endpoint == "sv":
                assert items[label] == "stale"
                assert s.held(row) == u.initial
            else:
                assert items[label] == "rotated"
                assert s.held(row) == current
    assert set(statuses(record).values()) == {"stale"}
    assert sorted(s.stale()) == sorted(u.path for u in users)
    assert len(s.stale_listing()) == len(users)
    assert s.pending() == {}

    monkeypatch.setenv(GW_ENV, GATEWAY_PASSWORD)  # the gateway is back
    before = {u.name: s.current(u) for u in users}
    generated, changes = list(s.generated), list(s.changes)
    code, record = s.cli("run")
    assert code == 0, capsys.readouterr().err
    assert set(statuses(record).values()) == {"repaired"}
    items = statuses(record, "items")
    assert {items[f"sv/{r.target}"] for r in s.rows if r.endpoint == "sv"} == {"repaired"}
    for u in users:
        assert s.current(u) == before[u.name]  # no new version
        in_sync(s, u)
    assert s.changes == changes, "the directory was changed again"
    assert s.generated == generated
    assert s.stale() == {}
    assert s.stale_listing() == []

    s.assert_no_secret(capsys.readouterr(), caplog)


# --- 4. the authority refuses the new password ------------------------------------------------


def test_refused_password_fails_the_account_and_changes_nothing(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    s = scene
    assert s.cli("run")[0] == 0
    a, b = s.user(0), s.user(1)
    s.write_config(policy=s.d.weak_policy)  # the first account's policy: refused there
    before, made = s.snapshot(), len(s.generated)
    code, record = s.cli("run", "--force")
    assert code == 1
    accounts = {x["account"]: x for x in record["accounts"]}
    assert accounts[a.name]["status"] == "failed"
    assert "refused" in accounts[a.name]["error"]
    assert "candidate discarded" in accounts[a.name]["error"]
    assert accounts[b.name]["status"] == "rotated"  # the other account goes on
    items = statuses(record, "items")
    assert {items[f"{r.endpoint}/{r.target}"] for r in s.usages(a)} == {"failed"}
    assert s.pending() == {}
    # the first account: Vault, its usages and the directory all as before
    assert s.current(a) == before["vault"][a.name]
    assert {r.label: s.held(r) for r in s.usages(a)} == {
        r.label: before["usages"][r.label] for r in s.usages(a)
    }
    assert s.changes.count(a.username) == 2  # the first run's, and the refused one
    assert in_sync(s, a) == before["vault"][a.name][0]  # still logs in, on every usage
    refused = [p for p in s.generated[made:] if p != s.current(b)[0]]
    assert len(refused) == 1
    assert not s.binds(a, refused[0])
    assert s.current(b)[1] == 2
    capsys.readouterr()


# --- 5. a wrong admin credential -------------------------------------------------------------


def test_wrong_admin_password_refuses_the_run_before_any_change(
    scene: Scene,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = scene
    wrong = strong_password()
    s.extra_secrets.append(wrong)
    monkeypatch.setenv(BIND_ENV, wrong)
    code, _ = s.cli("run")
    captured = capsys.readouterr()
    assert code == 3
    assert "authority dir" in captured.err
    assert s.changes == []
    assert s.generated == []
    assert s.writes() == 0
    assert [p for p in s.vault_paths() if "/_lease/" not in p] == []  # no journal, no secret
    for u in s.users.values():
        assert s.holds(u) == {u.initial}
        assert s.binds(u, u.initial)
    s.assert_no_secret(captured, caplog, reports=False)  # refused before any report


# --- 6. drift -----------------------------------------------------------------------------------


def test_password_changed_out_of_band_is_drift_until_forced(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    s = scene
    assert s.cli("run")[0] == 0
    a = s.user(0)
    rotated = in_sync(s, a)
    out_of_band = strong_password()
    s.extra_secrets.append(out_of_band)
    s.d.reset(a.dn, out_of_band)
    s.age(a, days=365)  # due by age: no --force needed to try it

    before = s.snapshot()
    code, plan = s.cli("plan")
    assert code == 1
    assert statuses(plan)[a.name] == "drift"
    assert statuses(plan)[s.user(1).name] == "not_due"

    changes = len(s.changes)
    code, record = s.cli("run")
    assert code == 1
    accounts = {x["account"]: x for x in record["accounts"]}
    assert accounts[a.name]["status"] == "drift"
    assert accounts[a.name]["login_verified"] is False
    assert len(s.changes) == changes
    assert s.snapshot() == before  # nothing changed: Vault, journal, usages
    assert s.binds(a, out_of_band)
    assert not s.binds(a, rotated)

    code, record = s.cli("run", "--force")
    assert code == 0, capsys.readouterr().err
    assert statuses(record)[a.name] == "rotated"
    current = in_sync(s, a)
    assert current not in (rotated, out_of_band)
    assert not s.binds(a, out_of_band)
    assert s.current(a)[1] == 2
    capsys.readouterr()


# --- 7. hostile values against the real server -----------------------------------------------
# Calling the authority's `change` directly with injected user names (`*)(uid=*`, a DN, ...)
# finds nothing and changes nobody: tests/test_authority_ldap.py::test_injected_usernames_*.


def _refused(s: Scene, capsys: pytest.CaptureFixture[str], rows: list[tuple[str, ...]]) -> str:
    """Run the inventory `rows`: exit 2 and nothing touched anywhere; the stderr."""
    s.inventory.write_text(inventory_text(s, rows))
    code, _ = s.cli("run", "--force")
    err = capsys.readouterr().err
    assert code == 2, err
    assert s.changes == []
    assert s.generated == []
    assert s.vault_paths() == []
    assert s.writes() == 0
    for u in s.users.values():
        assert s.binds(u, u.initial)
        assert s.holds(u) == {u.initial}
    return err


def test_hostile_inventory_values_are_refused_before_anything(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    s = scene
    a = s.user(0)
    dom = s.d.domain
    hostile = ["*)(uid=*"]
    hostile.append("alice,ou=people,dc=example,dc=org" if s.d.kind == "ldap" else "admin*")

    def row(target: str, username: str, account: str) -> tuple[str, ...]:
        return ("rx", "connection", target, "RDP", "", username, dom, account, "dir", "default")

    for i, name in enumerate(hostile):
        rows = [row("C-A1", a.username, a.name), row("C-X1", name, f"hostile-{i}")]
        err = _refused(s, capsys, rows)
        assert "row 3, column 'username'" in err, err

    err = _refused(s, capsys, [row("C-A1", a.username, a.name), row("C-X1", "bob", "../../x")])
    assert "row 3, column 'account'" in err, err

    other = s.user(1).username
    err = _refused(s, capsys, [row("C-A1", a.username, a.name), row("C-A2", other, a.name)])
    assert "row 3, column 'username'" in err, err
    assert "on line 2" in err, err  # both rows named
