"""Usages whose target is not at its endpoint, against an in-memory store and fake targets:
the plan names them (and stored usernames that are not the account's) writing nothing; the
run skips them (`not_attempted`, reason named), records them nowhere as stale, and goes on."""

from __future__ import annotations

from dataclasses import replace

from rotate.inventory import group_accounts
from rotate.models import Row, Status
from rotate.runbook import Options, Runbook, Threshold, exit_trouble
from rotate.stores.memory import MemoryStore
from rotate.vendors.base import UsageCheck
from tests.fakes import FakeTarget
from tests.test_pipeline import make_rows, runbook, runbook_with, settings


def one_account(rows: list[Row], name: str = "shared") -> list[Row]:
    """The rows as usages of one copy-only account."""
    return [replace(r, account=name, vault_path="rotate/accounts/shared") for r in rows]


async def test_run_skips_a_missing_usage_and_rotates_the_others() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = one_account(make_rows(3))
    target.behaviour["t1"] = "missing"
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert [i.status for i in out.items] == [Status.ROTATED, Status.NOT_ATTEMPTED, Status.ROTATED]
    skipped = out.items[1]
    assert skipped.error.startswith("target missing at ep1: ")
    assert "computer not found" in skipped.error
    (account,) = out.accounts
    assert account.status is Status.ROTATED
    assert account.stale == 0
    assert "1 usage(s) not attempted: target missing" in account.error
    assert await store.stale() == {}  # not stale: the next run does not repair it
    assert len(store.versions(rows[0].vault_path)) == 1
    assert exit_trouble("run", out.items)  # a usage not attempted: exit 1


async def test_copy_only_account_all_of_whose_targets_are_missing_discards_its_candidate() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = one_account(make_rows(2))
    for r in rows:
        target.behaviour[r.target] = "missing"
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert [i.status for i in out.items] == [Status.NOT_ATTEMPTED] * 2
    (account,) = out.accounts
    assert account.status is Status.NOT_ATTEMPTED
    assert "candidate discarded" in account.error
    assert store.versions(rows[0].vault_path) == []  # nothing promoted
    assert store.pending_paths() == []
    assert store.journal_records() == []


async def test_missing_targets_do_not_count_towards_the_failure_threshold() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(10)
    for r in rows:
        target.behaviour[r.target] = "missing"
    book = runbook_with(store, {"ep1": target}, concurrency=1, max_failures=Threshold.parse("1"))
    out = await book.run(group_accounts(rows))
    assert out.aborted == ""
    assert target.pushes == 10
    assert {i.status for i in out.items} == {Status.NOT_ATTEMPTED}


class LookingTarget(FakeTarget):
    """A fake target that can `inspect`: `absent` targets are not there, `users` stored."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.absent: set[str] = set()
        self.users: dict[str, str] = {}
        self.inspected: list[str] = []

    async def inspect(self, row: Row) -> UsageCheck:
        self.inspected.append(row.target)
        if row.target in self.absent:
            return UsageCheck(False, detail="HTTP 404: computer not found")
        return UsageCheck(True, self.users.get(row.target))


def plan_book(store: MemoryStore, targets: dict[str, FakeTarget]) -> Runbook:
    return Runbook(settings(), store, targets, Options(run_id="p", mode="plan"))  # type: ignore[arg-type]


async def test_plan_names_missing_targets_and_other_usernames_and_writes_nothing() -> None:
    store = MemoryStore()
    target = LookingTarget("ep1", store)
    rows = make_rows(4)
    await runbook(store, {"ep1": target}).run(group_accounts(rows[3:]))  # t3 not due
    pushed = target.pushes
    target.absent = {"t0", "t3"}
    target.users = {"t1": "someone", "t2": "ADMIN"}  # case alone is no problem
    out = await plan_book(store, {"ep1": target}).plan(group_accounts(rows))
    assert sorted(target.inspected) == ["t0", "t1", "t2", "t3"]  # every usage, due or not
    by = {i.row.target: i for i in out.items}
    assert by["t0"].status is Status.NOT_ATTEMPTED
    assert by["t0"].problem.startswith("target missing at its endpoint (HTTP 404")
    assert by["t0"].problem.endswith("a run skips it")
    assert by["t1"].status is Status.DUE
    assert by["t1"].problem.startswith("stored username 'someone' differs from the account's")
    assert by["t2"].problem == ""
    assert by["t3"].status is Status.NOT_DUE  # not due: a run would not touch it anyway
    assert "target missing" in by["t3"].problem
    assert exit_trouble("plan", out.items)
    # Reads only: no push, nothing staged, no new version.
    assert target.pushes == pushed
    assert store.pending_paths() == []
    assert len(store.versions(rows[3].vault_path)) == 1
    assert store.versions(rows[0].vault_path) == []


async def test_plan_of_a_target_that_cannot_look_checks_nothing_and_finds_nothing() -> None:
    """A vendor whose target has no `inspect` (an older plugin) still plans."""
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    target.behaviour["t0"] = "missing"  # not looked at: nothing to say
    out = await plan_book(store, {"ep1": target}).plan(group_accounts(make_rows(2)))
    assert [i.status for i in out.items] == [Status.DUE, Status.DUE]
    assert not any(i.problem for i in out.items)
    assert not exit_trouble("plan", out.items)


async def test_plan_notes_a_usage_it_could_not_check_without_calling_it_a_problem() -> None:
    from rotate.errors import RemoteError

    class Failing(LookingTarget):
        async def inspect(self, row: Row) -> UsageCheck:
            raise RemoteError("GET /groups: HTTP 503")

    store = MemoryStore()
    out = await plan_book(store, {"ep1": Failing("ep1", store)}).plan(group_accounts(make_rows(1)))
    (item,) = out.items
    assert item.status is Status.DUE
    assert "usage not checked: GET /groups: HTTP 503" in item.error
    assert item.problem == ""
