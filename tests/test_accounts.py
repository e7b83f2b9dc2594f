"""Accounts and their usages through the runbook: one change at the authority, one password
everywhere, stale usages recorded and repaired, crashes resolved by asking the authority.

Unit level: an in-memory store, fake targets and a fake authority (the real directories are
in test_authority_ldap.py and the end-to-end tests)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from rotate.errors import AdminRefused, OutcomeUnknown, Rejected, RemoteError
from rotate.inventory import group_accounts
from rotate.models import (
    Account,
    Credential,
    PendingCandidate,
    Row,
    Secret,
    Stage,
    Status,
)
from rotate.runbook import Options, Runbook, exit_trouble
from rotate.settings import EndpointSettings, PolicySettings, RunSettings, Settings
from rotate.stores.memory import MemoryStore
from tests.fakes import FakeTarget

PATH = "rotate/accounts/corp-admin"


class FakeAuthority:
    """A directory in a dict: `login` checks, `change` sets; behaviour injected by the test."""

    def __init__(self, store: MemoryStore, password: str = "initial-Pass-1") -> None:
        self.name = "corp"
        self.store = store
        self.password = password
        self.changes = 0
        self.logins = 0
        self.behaviour = "ok"  # ok | reject | unknown | unknown-applied | unreachable | drifted
        self.staged_at_change: list[bool] = []

    async def probe(self) -> str:
        if self.behaviour == "bad-admin":
            raise AdminRefused("authority corp: invalid credentials for rotate's admin")
        return "fake directory"

    async def login(self, account: Account, password: Secret) -> bool:
        self.logins += 1
        if self.behaviour == "cannot-tell":
            raise RemoteError("connection reset")
        return password.reveal() == self.password and bool(password.reveal())

    async def change(self, account: Account, password: Secret) -> None:
        self.changes += 1
        # Invariant 6: the candidate is in the journal before the authority sees it.
        self.staged_at_change.append(account.vault_path in self.store.pending_paths())
        await asyncio.sleep(0.001)
        if self.behaviour == "reject":
            raise Rejected("the directory refused the password: complexity (0000052D)")
        if self.behaviour == "unreachable":
            raise RemoteError("connection refused")
        if self.behaviour == "unknown-applied":
            self.password = password.reveal()
            raise OutcomeUnknown("no answer within the timeout")
        if self.behaviour == "unknown":
            raise OutcomeUnknown("no answer within the timeout")
        self.password = password.reveal()

    async def aclose(self) -> None:
        pass


def settings() -> Settings:
    return Settings(
        run=RunSettings(max_age_days=30, retries=0),
        policies={"default": PolicySettings(name="default", length=20)},
        endpoints={
            n: EndpointSettings(name=n, system="remotix", url=f"http://127.0.0.1:{i}")
            for i, n in enumerate(("ep1", "ep2"), start=1)
        },
    )


def usages(authority: str = "corp", account: str = "corp-admin", n: int = 3) -> list[Row]:
    """`n` usages of one account, spread over two endpoints."""
    return [
        Row(
            line=2 + i,
            endpoint=f"ep{1 + i % 2}",
            kind="computer",
            target=f"pc{i}",
            username="administrator",
            protocol="RDP",
            domain="CORP",
            vault_path=PATH,
            account=account,
            authority=authority,
        )
        for i in range(n)
    ]


class Scene:
    def __init__(self, *, authority: str = "corp", n: int = 3) -> None:
        self.store = MemoryStore()
        self.targets = {n: FakeTarget(n, self.store) for n in ("ep1", "ep2")}
        self.authority = FakeAuthority(self.store)
        self.rows = usages(authority, n=n)
        self.accounts = group_accounts(self.rows)

    def book(self, mode: str = "run", max_age: int = 30, **options: object) -> Runbook:
        base = settings()
        return Runbook(
            replace(base, run=replace(base.run, max_age_days=max_age)),
            self.store,
            self.targets,  # type: ignore[arg-type]
            Options(run_id=f"r-{mode}", mode=mode, **options),  # type: ignore[arg-type]
            authorities={"corp": self.authority},  # type: ignore[dict-item]
        )

    async def run(self, **options: object) -> list[Status]:
        out = await self.book(**options).run(self.accounts)
        self.last = out
        return [i.status for i in out.items]

    def held(self) -> set[str]:
        return {self.targets[r.endpoint].held.get(r.target, "") for r in self.rows}

    def current(self) -> str | None:
        versions = self.store.versions(PATH)
        return versions[-1].password.reveal() if versions else None

    def adopt(self, password: str) -> None:
        """Vault, the authority and every usage on `password` (as after an earlier run)."""
        self.store.put(PATH, {"username": "administrator", "password": password, "domain": "CORP"})
        self.authority.password = password
        for row in self.rows:
            self.targets[row.endpoint].held[row.target] = password

    async def stage(self, password: str) -> None:
        """A candidate left pending by a run that stopped."""
        version = len(self.store.versions(PATH)) or None
        candidate = PendingCandidate(
            Credential("administrator", Secret(password), "CORP"),
            "r-old",
            datetime.now(UTC),
            version,
        )
        # Another process's journal record: this store learns of it by reading the journal.
        writer = MemoryStore()
        writer._memory.entries = self.store._memory.entries
        await writer.stage("r-old", {PATH: candidate})


async def test_one_account_one_change_one_password_everywhere() -> None:
    scene = Scene()
    assert await scene.run() == [Status.ROTATED] * 3
    assert scene.authority.changes == 1
    assert scene.authority.staged_at_change == [True]
    new = scene.current()
    assert new is not None
    assert scene.held() == {new}
    assert scene.authority.password == new  # ... which is what the authority checks
    assert scene.store.journal_records() == []
    assert scene.store.pending_paths() == []
    (account,) = scene.last.accounts
    assert account.status is Status.ROTATED
    assert account.login_verified is True
    assert (account.in_sync, account.stale) == (3, 0)
    assert all(i.stage is Stage.PROMOTED and i.vault_path == PATH for i in scene.last.items)


async def test_the_authority_refusing_the_password_changes_nothing() -> None:
    scene = Scene()
    scene.adopt("old-Pass-1")
    scene.authority.behaviour = "reject"
    assert await scene.run(force=True) == [Status.FAILED] * 3
    assert "refused the new password" in scene.last.items[0].error
    assert "candidate discarded" in scene.last.items[0].error
    assert scene.held() == {"old-Pass-1"}
    assert scene.authority.password == "old-Pass-1"
    assert scene.current() == "old-Pass-1"
    assert scene.store.pending_paths() == []
    assert sum(t.pushes for t in scene.targets.values()) == 0
    assert exit_trouble("run", scene.last.items)


async def test_an_unknown_change_keeps_the_candidate_and_the_next_run_asks_the_authority() -> None:
    scene = Scene()
    scene.adopt("old-Pass-1")
    scene.authority.behaviour = "unknown-applied"  # it took it, but the answer was lost
    assert await scene.run(force=True) == [Status.IN_DOUBT] * 3
    candidate = scene.store.candidates()[PATH].password.reveal()
    assert scene.authority.password == candidate
    assert scene.current() == "old-Pass-1"
    assert scene.held() == {"old-Pass-1"}  # nothing pushed while in doubt
    scene.authority.behaviour = "ok"
    assert await scene.run() == [Status.ROTATED] * 3
    assert scene.authority.changes == 1  # it held the candidate: no second change
    assert scene.current() == candidate
    assert scene.held() == {candidate}


async def test_a_pending_candidate_the_authority_never_took_is_set_now_not_replaced() -> None:
    scene = Scene()
    scene.adopt("old-Pass-1")
    await scene.stage("staged-Pass-2")
    assert await scene.run() == [Status.ROTATED] * 3
    assert scene.authority.changes == 1
    assert scene.authority.password == "staged-Pass-2"
    assert scene.current() == "staged-Pass-2"
    assert scene.held() == {"staged-Pass-2"}


async def test_changed_out_of_band_is_in_doubt_and_only_force_resets_it() -> None:
    scene = Scene()
    scene.adopt("old-Pass-1")
    await scene.stage("staged-Pass-2")
    scene.authority.password = "someone-else-3"
    assert await scene.run() == [Status.IN_DOUBT] * 3
    assert "changed out of band" in scene.last.items[0].error
    assert scene.authority.changes == 0
    assert scene.store.pending_paths() == [PATH]
    assert await scene.run(force=True) == [Status.ROTATED] * 3
    assert scene.authority.password == "staged-Pass-2" == scene.current()


async def test_drift_is_listed_and_not_rotated_without_force() -> None:
    scene = Scene()
    scene.adopt("old-Pass-1")
    scene.authority.password = "changed-by-hand-9"
    plan = await scene.book("plan", max_age=0).plan(scene.accounts)
    assert [i.status for i in plan.items] == [Status.DRIFT] * 3
    assert exit_trouble("plan", plan.items)
    out = await scene.book(max_age=0).run(scene.accounts)
    assert [i.status for i in out.items] == [Status.DRIFT] * 3
    assert "does not log in" in out.items[0].error
    assert scene.authority.changes == 0
    assert scene.store.pending_paths() == []
    assert scene.held() == {"old-Pass-1"}
    assert exit_trouble("run", out.items)
    # --force: an admin reset needs no old password.
    assert await scene.run(force=True) == [Status.ROTATED] * 3
    assert scene.authority.password == scene.current() != "old-Pass-1"


async def test_a_usage_that_did_not_take_it_is_stale_recorded_and_repaired_first() -> None:
    scene = Scene()
    scene.adopt("old-Pass-1")
    scene.targets["ep2"].probe_ok = False  # pc1 lives on ep2
    statuses = await scene.run(force=True)
    assert statuses == [Status.ROTATED, Status.STALE, Status.ROTATED]
    new = scene.current()
    assert new is not None
    assert new != "old-Pass-1"
    assert scene.authority.password == new
    assert exit_trouble("run", scene.last.items)
    (account,) = scene.last.accounts
    assert (account.status, account.in_sync, account.stale) == (Status.STALE, 2, 1)
    stale = await scene.store.stale()
    assert list(stale[PATH]) == ["ep2/computer/pc1/RDP"]
    assert stale[PATH]["ep2/computer/pc1/RDP"].held_version == 1
    # The next run, with the endpoint back: the stale usage gets Vault's current, nothing new.
    scene.targets["ep2"].probe_ok = True
    assert await scene.run() == [Status.SKIPPED, Status.REPAIRED, Status.SKIPPED]
    assert scene.held() == {new}
    assert scene.authority.changes == 1
    assert await scene.store.stale() == {}
    assert not exit_trouble("run", scene.last.items)


async def test_no_new_password_while_a_stale_usage_cannot_be_repaired() -> None:
    scene = Scene()
    scene.adopt("old-Pass-1")
    scene.targets["ep2"].probe_ok = False
    await scene.run(force=True)
    first = scene.current()
    changes = scene.authority.changes
    statuses = await scene.run(force=True)  # ep2 still down, and the account is due again
    assert statuses == [Status.NOT_ATTEMPTED, Status.STALE, Status.NOT_ATTEMPTED]
    assert scene.authority.changes == changes
    assert scene.current() == first
    assert "no new password until" in scene.last.accounts[0].reason


async def test_copy_only_account_promotes_what_a_usage_took_and_marks_the_rest_stale() -> None:
    scene = Scene(authority="none")
    scene.targets["ep1"].behaviour["pc0"] = "reject"
    statuses = await scene.run()
    assert statuses == [Status.STALE, Status.ROTATED, Status.ROTATED]
    current = scene.current()
    assert scene.targets["ep2"].held["pc1"] == current == scene.targets["ep1"].held["pc2"]
    assert scene.authority.changes == 0  # no authority: nothing is changed on a host
    assert list((await scene.store.stale())[PATH]) == ["ep1/computer/pc0/RDP"]


async def test_copy_only_account_nobody_took_is_discarded() -> None:
    scene = Scene(authority="none", n=2)
    for row in scene.rows:
        scene.targets[row.endpoint].behaviour[row.target] = "reject"
    assert await scene.run() == [Status.FAILED] * 2
    assert scene.store.pending_paths() == []
    assert scene.current() is None


async def test_a_refused_admin_login_stops_the_run_before_any_change() -> None:
    scene = Scene()
    scene.authority.behaviour = "bad-admin"
    with pytest.raises(AdminRefused):
        await scene.run()
    assert scene.store.pending_paths() == []
    assert scene.store.journal_records() == []
    assert sum(t.pushes for t in scene.targets.values()) == 0


async def test_plan_checks_the_current_password_and_writes_nothing() -> None:
    scene = Scene()
    scene.adopt("old-Pass-1")
    out = await scene.book("plan").plan(scene.accounts)
    assert [i.status for i in out.items] == [Status.NOT_DUE] * 3
    assert scene.authority.logins == 1  # not due, and Vault's current still logs in
    assert out.accounts[0].login_verified is True
    assert "Vault's current logs in at authority corp" in out.items[0].reason
    out = await scene.book("plan", max_age=0).plan(scene.accounts)
    assert [i.status for i in out.items] == [Status.DUE] * 3
    assert scene.authority.logins == 2
    assert out.accounts[0].login_verified is True
    writes = ("stage", "promote", "discard", "mark_stale", "clear_stale", "record_failure")
    assert [scene.store.calls(c) for c in writes] == [0] * len(writes)
    assert scene.authority.changes == 0
    assert sum(t.pushes for t in scene.targets.values()) == 0


async def test_plan_finds_drift_on_an_account_that_is_not_due() -> None:
    """Someone reset the password at the authority: every usage holds one that no longer
    works, though no rotation is due; the plan says so (and exits 1), writing nothing."""
    scene = Scene()
    scene.adopt("old-Pass-1")
    scene.authority.password = "reset-by-hand-1"
    out = await scene.book("plan").plan(scene.accounts)
    assert [i.status for i in out.items] == [Status.DRIFT] * 3
    assert "does not log in at authority corp" in out.items[0].error
    assert exit_trouble("plan", out.items)
    assert scene.authority.changes == 0
    assert sum(t.pushes for t in scene.targets.values()) == 0


async def test_failure_threshold_counts_accounts() -> None:
    store = MemoryStore()
    targets = {n: FakeTarget(n, store) for n in ("ep1", "ep2")}
    authority = FakeAuthority(store)
    authority.behaviour = "reject"
    rows = []
    for a in range(10):
        for u in usages(account=f"acct{a}", n=2):
            rows.append(
                replace(
                    u,
                    line=100 * a + u.line,
                    target=f"{u.target}-{a}",
                    username=f"user{a}",
                    vault_path=f"rotate/accounts/acct{a}",
                )
            )
    from rotate.runbook import Threshold

    book = Runbook(
        settings(),
        store,
        targets,  # type: ignore[arg-type]
        Options(run_id="r", mode="run", max_failures=Threshold.parse("2"), concurrency=1),
        authorities={"corp": authority},  # type: ignore[dict-item]
    )
    out = await book.run(group_accounts(rows))
    assert out.aborted.startswith("failure threshold crossed: 3 of 10 account(s)")
    assert authority.changes == 3
    assert sum(a.status is Status.NOT_ATTEMPTED for a in out.accounts) == 7
    assert store.pending_paths() == []  # candidates staged for the rest were dropped
