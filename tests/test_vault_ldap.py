"""The `vault-ldap` authority (follow OpenBao/Vault's LDAP secrets engine), unit level: an
in-memory store that answers `ldap/static-cred/<role>` and fake targets. The real engine
(OpenBao 2.6.2 over a real slapd) is in test_vault_ldap_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rotate.authorities.vault_ldap import VAULT_LDAP, VaultLdapAuthority, VaultLdapSettings
from rotate.following import carry_problems
from rotate.inventory import group_accounts
from rotate.models import Account, Credential, PendingCandidate, Row, Secret, Status
from rotate.registry import authority_type
from rotate.runbook import Options, Runbook
from rotate.settings import EndpointSettings, PolicySettings, RunSettings, Settings
from rotate.stores.memory import MemoryStore
from tests.fakes import FakeTarget

PATH = "rotate/accounts/svc-fin"
ROLE = "svc-fin"
CRED = f"ldap/static-cred/{ROLE}"
ENGINE = VaultLdapSettings(name="engine", type="vault-ldap")


def usage(i: int, *, kind: str = "computer", protocol: str = "RDP") -> Row:
    return Row(
        line=2 + i,
        endpoint=f"ep{1 + i % 2}",
        kind=kind,
        target=f"pc{i}",
        username="svc-fin",
        protocol=protocol,
        vault_path=PATH,
        account=ROLE,
        authority="engine",
    )


class Scene:
    """Three usages of one followed account over two endpoints, the engine in the store."""

    def __init__(self, rows: list[Row] | None = None) -> None:
        self.store = MemoryStore()
        self.targets = {n: FakeTarget(n, self.store) for n in ("ep1", "ep2")}
        self.rows = rows or [usage(i) for i in range(3)]
        self.accounts = group_accounts(self.rows)
        self.engine_rotates("engine-Pass-1")

    def engine_rotates(self, password: str, username: str = "svc-fin") -> None:
        self.store.engines[CRED] = {
            "username": username,
            "password": password,
            "last_vault_rotation": "2026-12-06T04:50:37.134297166Z",
            "ttl": 86400,
        }

    def book(self, mode: str = "run", **options: Any) -> Runbook:
        settings = Settings(
            run=RunSettings(max_age_days=30, retries=0),
            policies={"default": PolicySettings(name="default", length=20)},
            endpoints={
                n: EndpointSettings(name=n, system="remotix", url=f"http://127.0.0.1:{i}")
                for i, n in enumerate(("ep1", "ep2"), start=1)
            },
            authorities={"engine": ENGINE},
        )
        return Runbook(
            settings,
            self.store,
            self.targets,  # type: ignore[arg-type]
            Options(run_id=f"r-{mode}", mode=mode, **options),
            authorities={"engine": VaultLdapAuthority(ENGINE, self.store)},
        )

    async def run(self, mode: str = "run", **options: Any) -> list[Status]:
        book = self.book(mode, **options)
        out = await (book.run(self.accounts) if mode == "run" else book.plan(self.accounts))
        self.last = out
        return [i.status for i in out.items]

    def held(self) -> set[str]:
        return {self.targets[r.endpoint].held.get(r.target, "") for r in self.rows}

    def current(self) -> str | None:
        versions = self.store.versions(PATH)
        return versions[-1].password.reveal() if versions else None

    @property
    def pushes(self) -> int:
        return sum(t.pushes for t in self.targets.values())


async def test_first_run_brings_every_usage_to_the_engines_password_and_keeps_a_copy() -> None:
    scene = Scene()
    assert await scene.run() == [Status.ROTATED] * 3
    assert scene.held() == {"engine-Pass-1"}
    assert scene.current() == "engine-Pass-1"
    assert not scene.store.pending_paths()
    assert scene.last.accounts[0].authority_type == "vault-ldap"


async def test_a_second_run_without_an_engine_rotation_changes_nothing() -> None:
    scene = Scene()
    await scene.run()
    versions, pushes = len(scene.store.versions(PATH)), scene.pushes
    assert await scene.run() == [Status.SKIPPED] * 3
    assert scene.pushes == pushes
    assert len(scene.store.versions(PATH)) == versions
    assert "every usage holds the engine's password" in scene.last.items[0].reason


async def test_an_engine_rotation_is_followed_by_one_run() -> None:
    scene = Scene()
    await scene.run()
    scene.engine_rotates("engine-Pass-2")
    assert await scene.run() == [Status.ROTATED] * 3
    assert scene.held() == {"engine-Pass-2"}
    assert scene.current() == "engine-Pass-2"
    assert "the engine rotated it at 2026-12-06 04:50 UTC" in scene.last.items[0].reason


async def test_rotate_never_makes_a_password_for_a_followed_account() -> None:
    scene = Scene()
    book = scene.book()
    await book.run(scene.accounts)
    assert scene.current() == "engine-Pass-1"  # not one of the default policy's 20 characters
    assert await book.generate(scene.accounts[0]) == Secret("engine-Pass-1")


async def test_a_usage_that_did_not_take_it_is_stale_and_repaired_with_the_engines() -> None:
    scene = Scene()
    scene.targets["ep2"].behaviour["pc1"] = "unreachable"
    assert await scene.run() == [Status.ROTATED, Status.STALE, Status.ROTATED]
    assert scene.current() == "engine-Pass-1"  # the engine holds it: the copy is kept
    del scene.targets["ep2"].behaviour["pc1"]
    assert await scene.run() == [Status.SKIPPED, Status.REPAIRED, Status.SKIPPED]
    assert scene.held() == {"engine-Pass-1"}


async def test_plan_says_due_and_writes_nothing() -> None:
    scene = Scene()
    assert await scene.run("plan") == [Status.DUE] * 3
    assert scene.pushes == 0
    assert scene.store.versions(PATH) == []
    assert not scene.store.pending_paths()
    assert "never copied" in scene.last.items[0].reason


async def test_a_missing_role_fails_the_account_and_sends_nothing() -> None:
    scene = Scene()
    del scene.store.engines[CRED]
    assert await scene.run() == [Status.FAILED] * 3
    assert scene.pushes == 0
    assert "no static role 'svc-fin' at ldap/" in scene.last.items[0].error


async def test_a_role_for_another_login_sends_nothing() -> None:
    scene = Scene()
    scene.engine_rotates("engine-Pass-1", username="someone-else")
    assert await scene.run() == [Status.FAILED] * 3
    assert scene.pushes == 0
    assert "'someone-else'" in scene.last.items[0].error


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("line\nroot:x", "control character"),
        ("tab\there-is-it", "control character"),
        ("x" * 9, "takes at most 8 characters for VNC; the engine's has 9"),
    ],
)
async def test_a_password_a_usage_cannot_carry_fails_the_account_before_any_push(
    password: str, expected: str
) -> None:
    scene = Scene([usage(0), usage(1, protocol="VNC")])
    scene.engine_rotates(password)
    assert await scene.run() == [Status.FAILED] * 2
    assert scene.pushes == 0
    assert expected in scene.last.items[0].error
    assert password not in repr(scene.last.items) + repr(scene.last.accounts)


async def test_an_unfinished_copy_of_an_older_password_is_replaced() -> None:
    scene = Scene()
    await scene.run()
    # A run that staged the engine's password of then, and stopped before promoting it.
    writer = MemoryStore()
    writer._memory.entries = scene.store._memory.entries
    old = PendingCandidate(
        Credential("svc-fin", Secret("engine-Pass-2")), "r-old", datetime.now(UTC), 1
    )
    await writer.stage("r-old", {PATH: old})
    scene.engine_rotates("engine-Pass-3")
    assert await scene.run("plan") == [Status.DUE] * 3
    assert "run r-old's unfinished copy of an older one is replaced" in scene.last.items[0].reason
    assert await scene.run() == [Status.ROTATED] * 3
    assert scene.held() == {"engine-Pass-3"}
    assert scene.current() == "engine-Pass-3"
    assert not scene.store.pending_paths()


async def test_an_unfinished_copy_of_the_engines_password_is_resumed() -> None:
    scene = Scene()
    writer = MemoryStore()
    writer._memory.entries = scene.store._memory.entries
    pending = PendingCandidate(
        Credential("svc-fin", Secret("engine-Pass-1")), "r-old", datetime.now(UTC), None
    )
    await writer.stage("r-old", {PATH: pending})
    scene.targets["ep1"].held["pc0"] = "engine-Pass-1"  # delivered before the stop
    assert await scene.run() == [Status.ROTATED] * 3
    assert "resume it" in scene.last.items[0].reason
    assert scene.current() == "engine-Pass-1"


async def test_change_is_refused_and_login_compares_with_the_engine() -> None:
    store = MemoryStore()
    store.engines[CRED] = {"username": "svc-fin", "password": "engine-Pass-1"}
    authority = VaultLdapAuthority(ENGINE, store)
    account = group_accounts([usage(0)])[0]
    assert await authority.login(account, Secret("engine-Pass-1")) is True
    assert await authority.login(account, Secret("engine-Pass-0")) is False
    with pytest.raises(Exception, match="never changes it"):
        await authority.change(account, Secret("x"))


def test_registry_finds_it_and_settings_are_checked() -> None:
    assert authority_type("vault-ldap") is VAULT_LDAP
    errors: list[str] = []
    parsed = VAULT_LDAP.parse("engine", {"type": "vault-ldap", "mount": "/ldap-corp/"}, errors)
    assert errors == []
    assert isinstance(parsed, VaultLdapSettings)
    assert parsed.mount == "ldap-corp"
    assert not parsed.changes
    assert parsed.follows
    for bad in ("../sys", "ldap/../sys", "a b", ""):
        errors = []
        assert VAULT_LDAP.parse("engine", {"mount": bad}, errors) is None
        assert len(errors) == 1
        assert "mount" in errors[0]
    errors = []
    VAULT_LDAP.parse("engine", {"mount": "ldap", "unknown": 1}, errors)
    assert errors


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        ("", "names the engine's static role"),
        ("../../sys/raw", "is not a Vault path"),
        ("svc fin", "is not a Vault path"),
        ("svc\nfin", "is not a Vault path"),
        ("CORP\\svc", "is not a Vault path"),
    ],
)
def test_unusable_role_names_are_refused_before_any_connection(account: str, expected: str) -> None:
    problems = VAULT_LDAP.check_account(ENGINE, "svc", None, None, account=account)
    assert [c for c, _ in problems] == ["account"]
    assert expected in problems[0][1]


def test_usable_role_names() -> None:
    for account in ("svc-fin", "org/team/svc.fin", "svc_fin@corp"):
        assert VAULT_LDAP.check_account(ENGINE, "svc", None, None, account=account) == []


def test_carry_problems_name_each_usage() -> None:
    account: Account = group_accounts([usage(0), usage(1, protocol="VNC")])[0]
    assert carry_problems(account, Secret("short")) == []
    problems = carry_problems(account, Secret("x" * 12))
    assert len(problems) == 1
    assert "ep2/computer/pc1/VNC (line 3)" in problems[0]
