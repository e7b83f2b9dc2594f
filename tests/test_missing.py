"""Usages whose target is not at its endpoint, against an in-memory store and fake targets:
the run skips them (`not_attempted`, reason named), records them nowhere as stale, and goes
on."""

from __future__ import annotations

from dataclasses import replace

from rotate.inventory import group_accounts
from rotate.models import Row, Status
from rotate.runbook import Threshold, exit_trouble
from rotate.stores.memory import MemoryStore
from tests.fakes import FakeTarget
from tests.test_pipeline import make_rows, runbook, runbook_with


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
