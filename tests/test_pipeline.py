"""The runbook against an in-memory store and fake targets: order, outcomes, invariants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotate.inventory import group_accounts
from rotate.models import Credential, PendingCandidate, Row, Secret, Stage, Status
from rotate.runbook import Options, Runbook
from rotate.settings import EndpointSettings, PolicySettings, RunSettings, Settings
from rotate.stores.memory import MemoryStore
from tests.fakes import FakeTarget


def make_rows(n: int, endpoint: str = "ep1") -> list[Row]:
    return [
        Row(
            line=i + 2 + 1000 * int(endpoint[-1]),  # unique: items come back in line order
            endpoint=endpoint,
            kind="computer",
            target=f"t{i}",
            username="admin",
            protocol="RDP",
            vault_path=f"rotate/{endpoint}/computer/t{i}/RDP",
        )
        for i in range(n)
    ]


def settings(concurrency: int = 64) -> Settings:
    return Settings(
        run=RunSettings(concurrency=concurrency, max_age_days=30),
        policies={"default": PolicySettings(name="default", length=20)},
        endpoints={
            "ep1": EndpointSettings(name="ep1", system="remotix", url="http://127.0.0.1:1"),
            "ep2": EndpointSettings(name="ep2", system="remotix", url="http://127.0.0.1:2"),
        },
    )


def runbook(
    store: MemoryStore, targets: dict[str, FakeTarget], concurrency: int = 64, force: bool = False
) -> Runbook:
    return Runbook(
        settings(concurrency),
        store,
        targets,  # type: ignore[arg-type]
        Options(run_id="r1", mode="run", force=force),
    )


async def test_rotation_stages_before_push_then_promotes() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(5)
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert [i.status for i in out.items] == [Status.ROTATED] * 5
    assert all(target.pending_at_push)
    assert store.pending_paths() == []
    for row, item in zip(rows, out.items, strict=True):
        assert item.verified is True
        assert item.stage is Stage.PROMOTED
        assert item.vault_version == 1
        (current,) = store.versions(row.vault_path)
        assert current.password.reveal() == target.held[row.target]
        assert store.metadata(row.vault_path) == {}  # the version's own time is the rotation's
    assert store.journal_records() == []  # every batch record settled


async def test_second_rotation_keeps_previous_version() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(1)
    await runbook(store, {"ep1": target}).run(group_accounts(rows))
    out = await runbook(store, {"ep1": target}, force=True).run(group_accounts(rows))
    assert out.items[0].vault_version == 2
    first, second = store.versions(rows[0].vault_path)
    assert first.password != second.password
    assert second.password.reveal() == target.held["t0"]


async def test_not_due_rows_are_skipped() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(2)
    await runbook(store, {"ep1": target}).run(group_accounts(rows))
    pushes = target.pushes
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert [i.status for i in out.items] == [Status.SKIPPED, Status.SKIPPED]
    assert "within max 30 d" in out.items[0].reason
    assert target.pushes == pushes


async def test_rejection_discards_candidate_and_keeps_current() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(2)
    await runbook(store, {"ep1": target}).run(group_accounts(rows))
    before = store.versions(rows[0].vault_path)
    target.behaviour["t0"] = "reject"
    out = await runbook(store, {"ep1": target}, force=True).run(group_accounts(rows))
    assert out.items[0].status is Status.FAILED
    assert "candidate discarded" in out.items[0].error
    assert out.items[1].status is Status.ROTATED  # a neighbour's failure cancels nothing
    assert store.versions(rows[0].vault_path) == before
    assert store.pending_paths() == []
    assert target.held["t0"] == before[-1].password.reveal()


async def test_unknown_outcome_is_in_doubt_and_candidate_kept_then_resumed() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(1)
    target.behaviour["t0"] = "unknown"
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].status is Status.IN_DOUBT
    assert store.pending_paths() == [rows[0].vault_path]
    # Invariant 1: what the target may hold is readable from Vault.
    pending = store.candidates().get(rows[0].vault_path)
    assert pending is not None
    assert pending.password.reveal() == target.held["t0"]
    # The next run re-sends the same candidate, verifies and promotes it.
    target.behaviour.clear()
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].status is Status.ROTATED
    assert "unfinished rotation" in out.items[0].reason
    (current,) = store.versions(rows[0].vault_path)
    assert current.password == pending.password
    assert store.pending_paths() == []


async def test_unreachable_target_on_resume_keeps_candidate() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store, verifiable=False)
    rows = make_rows(1)
    target.behaviour["t0"] = "unknown"
    await runbook(store, {"ep1": target}).run(group_accounts(rows))
    target.behaviour["t0"] = "unreachable"
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].status is Status.FAILED
    assert store.pending_paths() == [rows[0].vault_path]


async def test_read_back_mismatch_is_in_doubt() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(1)
    target.behaviour["t0"] = "mismatch"
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].status is Status.IN_DOUBT
    assert store.versions(rows[0].vault_path) == []


async def test_write_only_target_is_pushed_not_verified() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store, verifiable=False)
    out = await runbook(store, {"ep1": target}).run(group_accounts(make_rows(1)))
    assert out.items[0].status is Status.ROTATED
    assert out.items[0].verified is False


async def test_failed_probe_means_no_writes_and_not_attempted() -> None:
    store = MemoryStore()
    good = FakeTarget("ep1", store)
    bad = FakeTarget("ep2", store, probe_ok=False)
    rows = make_rows(2) + make_rows(2, "ep2")
    out = await runbook(store, {"ep1": good, "ep2": bad}).run(group_accounts(rows))
    assert [i.status for i in out.items] == [Status.ROTATED] * 2 + [Status.NOT_ATTEMPTED] * 2
    assert bad.pushes == 0
    assert "HTTP 503" in out.items[2].error
    assert {p.endpoint: p.ok for p in out.probes} == {"ep1": True, "ep2": False}
    assert store.pending_paths() == []


async def test_stage_failure_leaves_target_untouched() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    store.fail_next("stage", times=1)
    out = await runbook(store, {"ep1": target}, concurrency=1).run(group_accounts(make_rows(2)))
    assert out.items[0].status is Status.FAILED
    assert "target untouched" in out.items[0].error
    assert out.items[1].status is Status.ROTATED
    assert target.pushes == 1


async def test_promote_failure_is_in_doubt_and_keeps_candidate() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(1)
    store.fail_next("promote", times=1)
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].status is Status.IN_DOUBT
    pending = store.candidates().get(rows[0].vault_path)
    assert pending is not None
    assert pending.password.reveal() == target.held["t0"]


async def test_global_concurrency_bound_holds() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    out = await runbook(store, {"ep1": target}, concurrency=3).run(group_accounts(make_rows(20)))
    assert all(i.status is Status.ROTATED for i in out.items)
    assert target.max_in_flight == 3


async def test_plan_reads_only() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(3)
    await runbook(store, {"ep1": target}).run(group_accounts(rows[:1]))
    before = [store.versions(r.vault_path) for r in rows]
    book = Runbook(
        settings(),
        store,
        {"ep1": target},  # type: ignore[dict-item]
        Options(run_id="p", mode="plan"),
    )
    out = await book.plan(group_accounts(rows))
    assert [i.status for i in out.items] == [Status.NOT_DUE, Status.DUE, Status.DUE]
    assert out.items[1].reason == "never rotated"
    assert [store.versions(r.vault_path) for r in rows] == before
    assert target.pushes == 1
    assert store.pending_paths() == []


async def test_report_statuses() -> None:
    store = MemoryStore()
    rows = make_rows(3)
    old = datetime.now(UTC) - timedelta(days=45)
    await store.promote(rows[0].vault_path, Credential("admin", Secret("x" * 12)), None, old)
    await store.promote(rows[1].vault_path, Credential("admin", Secret("y" * 12)), None)
    book = Runbook(settings(), store, {}, Options(run_id="c", mode="report"))
    out = await book.report(group_accounts(rows))
    assert [i.status for i in out.items] == [Status.OVERDUE, Status.COMPLIANT, Status.NEVER_ROTATED]


@pytest.mark.parametrize("how", ["reject", "unknown", "unreachable", "mismatch", "ok"])
async def test_no_password_in_any_item_record(how: str) -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    target.behaviour["t0"] = how
    out = await runbook(store, {"ep1": target}).run(group_accounts(make_rows(1)))
    text = repr(out.items) + str([i.as_record() for i in out.items])
    for held in list(target.held.values()):
        assert held not in text
    pending = store.candidates().get("rotate/ep1/computer/t0/RDP")
    if pending is not None:
        assert pending.password.reveal() not in text


def test_interleave_round_robins_endpoints() -> None:
    from rotate.runbook import interleave

    items = ["a1", "a2", "a3", "b1", "c1", "c2"]
    assert interleave(items, key=lambda s: s[0]) == ["a1", "b1", "c1", "a2", "c2", "a3"]


async def test_items_spread_over_endpoints_under_a_small_global_bound() -> None:
    store = MemoryStore()
    t1, t2 = FakeTarget("ep1", store), FakeTarget("ep2", store)
    rows = make_rows(6) + make_rows(6, "ep2")
    out = await runbook(store, {"ep1": t1, "ep2": t2}, concurrency=2).run(group_accounts(rows))
    assert all(i.status is Status.ROTATED for i in out.items)
    # With endpoints interleaved, both endpoints work side by side rather than one after other.
    assert t1.max_in_flight == 1
    assert t2.max_in_flight == 1


def runbook_with(store: MemoryStore, targets: dict[str, FakeTarget], **options: object) -> Runbook:
    return Runbook(
        settings(options.pop("concurrency", 64)),  # type: ignore[arg-type]
        store,
        targets,
        Options(run_id="r1", mode="run", **options),
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["2", "10%"])
async def test_max_failures_stops_starting_items_once_crossed(spec: str) -> None:
    from rotate.runbook import Threshold

    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(30)
    for row in rows:
        target.behaviour[row.target] = "reject"
    book = runbook_with(store, {"ep1": target}, concurrency=1, max_failures=Threshold.parse(spec))
    out = await book.run(group_accounts(rows))
    statuses = [i.status for i in out.items]
    # 2 failures are tolerated (2, or 10 % of 30 = 3 -> 3); the next one crosses the line.
    tolerated = 2 if spec == "2" else 3
    assert statuses.count(Status.FAILED) == tolerated + 1
    assert statuses.count(Status.NOT_ATTEMPTED) == 30 - tolerated - 1
    assert target.pushes == tolerated + 1
    assert "failure threshold crossed" in out.aborted
    assert f"--max-failures {spec}" in out.aborted
    skipped = next(i for i in out.items if i.status is Status.NOT_ATTEMPTED)
    assert "run aborted" in skipped.reason
    assert store.pending_paths() == []


def test_threshold_parsing() -> None:
    from rotate.runbook import Threshold

    assert Threshold.parse("5").limit(100) == 5
    assert Threshold.parse("2.5%").limit(200) == 5
    for bad in ("x", "-1", "1.5", "%"):
        with pytest.raises(ValueError, match="count"):
            Threshold.parse(bad)


async def test_canary_failure_stops_the_rest() -> None:
    store = MemoryStore()
    t1, t2 = FakeTarget("ep1", store), FakeTarget("ep2", store)
    rows = make_rows(5) + make_rows(5, "ep2")
    t2.behaviour["t0"] = "reject"  # the second canary item (interleaved: ep1 t0, ep2 t0)
    out = await runbook_with(store, {"ep1": t1, "ep2": t2}, canary=2).run(group_accounts(rows))
    assert "canary failed: 1 of the first 2" in out.aborted
    assert t1.pushes + t2.pushes == 2
    statuses = [i.status for i in out.items]
    assert statuses.count(Status.ROTATED) == 1
    assert statuses.count(Status.FAILED) == 1
    assert statuses.count(Status.NOT_ATTEMPTED) == 8


async def test_canary_success_goes_on_with_the_rest() -> None:
    store = MemoryStore()
    t1, t2 = FakeTarget("ep1", store), FakeTarget("ep2", store)
    rows = make_rows(5) + make_rows(5, "ep2")
    out = await runbook_with(store, {"ep1": t1, "ep2": t2}, canary=3).run(group_accounts(rows))
    assert out.aborted == ""
    assert all(i.status is Status.ROTATED for i in out.items)


async def test_plan_hash_approves_a_run_and_refuses_a_changed_plan() -> None:
    from rotate.errors import PlanChanged

    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(4)
    plan = await runbook_with(store, {"ep1": target}, inputs_digest="abc").plan(
        group_accounts(rows)
    )
    assert len(plan.plan_hash) == 16
    # Other inputs: refused before any write.
    with pytest.raises(PlanChanged, match="plan changed since it was approved"):
        await runbook_with(
            store, {"ep1": target}, inputs_digest="abd", expected_plan_hash=plan.plan_hash
        ).run(group_accounts(rows))
    # Another due set (one row fewer): refused too.
    with pytest.raises(PlanChanged):
        await runbook_with(
            store, {"ep1": target}, inputs_digest="abc", expected_plan_hash=plan.plan_hash
        ).run(group_accounts(rows[:3]))
    assert target.pushes == 0
    assert store.pending_paths() == []
    out = await runbook_with(
        store, {"ep1": target}, inputs_digest="abc", expected_plan_hash=plan.plan_hash
    ).run(group_accounts(rows))
    assert all(i.status is Status.ROTATED for i in out.items)


async def test_report_shows_last_attempt_failed_schedule_and_drift() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(4)
    await runbook(store, {"ep1": target}).run(group_accounts(rows[:3]))
    target.behaviour["t1"] = "reject"
    await runbook(store, {"ep1": target}, force=True).run(group_accounts(rows[1:2]))
    # A secret under the prefix that no row names.
    await store.promote("rotate/ep1/computer/gone/RDP", Credential("x", Secret("y" * 12)), None)
    book = Runbook(settings(), store, {}, Options(run_id="c", mode="report", schedule_days=31))
    out = await book.report(group_accounts(rows))
    statuses = [i.status for i in out.items]
    assert statuses == [
        Status.COMPLIANT,
        Status.LAST_ATTEMPT_FAILED,
        Status.COMPLIANT,
        Status.NEVER_ROTATED,
    ]
    assert out.items[1].last_failure_at is not None
    # max age 30 d, next run in 31 d: every row will be overdue by then.
    assert [i.due_before_next_run for i in out.items] == [True] * 4
    assert out.items[0].age_days is not None
    assert out.items[0].age_days < 0.01
    assert out.items[0].max_age_days == 30
    assert out.drift is not None
    assert out.drift.secrets_without_row == ("rotate/ep1/computer/gone/RDP",)
    assert out.drift.rows_without_secret == (rows[3].label,)


async def test_follow_ups_are_recorded_and_their_failure_noted_not_fatal() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(2)
    target.behaviour["t1"] = "followup-fails"
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].followups == ("access link of t0 updated",)
    assert out.items[0].as_record()["followups"] == ["access link of t0 updated"]
    assert out.items[1].status is Status.ROTATED  # the password itself did rotate
    assert "follow-up failed" in out.items[1].error


async def test_resume_looks_first_and_promotes_what_the_target_already_holds() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(1)
    target.behaviour["t0"] = "unknown"  # delivered, then the answer was lost
    await runbook(store, {"ep1": target}).run(group_accounts(rows))
    pushes = target.pushes
    target.behaviour["t0"] = "reject"  # e.g. a target refusing to set the password it has
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].status is Status.ROTATED
    assert target.pushes == pushes  # no re-send was needed
    assert store.pending_paths() == []


async def test_resume_refused_on_a_write_only_target_keeps_the_candidate() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store, verifiable=False)
    rows = make_rows(1)
    target.behaviour["t0"] = "unknown"
    await runbook(store, {"ep1": target}).run(group_accounts(rows))
    delivered = target.held["t0"]
    target.behaviour["t0"] = "reject"
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].status is Status.FAILED
    assert "stays pending" in out.items[0].error
    pending = store.candidates().get(rows[0].vault_path)
    assert pending is not None
    assert pending.password.reveal() == delivered  # no lockout


async def test_resume_refused_where_the_target_holds_something_else_discards() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(1)
    candidate = Credential("admin", Secret("never-delivered-1"))
    await store.stage(
        "old", {rows[0].vault_path: PendingCandidate(candidate, "old", datetime.now(UTC))}
    )
    target.held["t0"] = "the-current-one"
    target.behaviour["t0"] = "reject"
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert out.items[0].status is Status.FAILED
    assert "candidate discarded" in out.items[0].error
    assert store.pending_paths() == []


def batched(stage_batch: int, concurrency: int = 64) -> Settings:
    base = settings(concurrency)
    return replace(base, run=replace(base.run, stage_batch=stage_batch))


async def test_a_batch_of_candidates_is_staged_in_one_journal_record_before_any_push() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(23)
    staged_before_push: list[int] = []
    push = target.push

    async def push_and_count(row: Row, credential: Credential) -> None:
        # Every candidate of the item's batch is in Vault when the first of them is pushed.
        staged_before_push.append(len(store.pending_paths()))
        await push(row, credential)

    target.push = push_and_count  # type: ignore[method-assign]
    book = Runbook(batched(10), store, {"ep1": target}, Options(run_id="r1", mode="run"))  # type: ignore[dict-item]
    out = await book.run(group_accounts(rows))
    assert [i.status for i in out.items] == [Status.ROTATED] * 23
    assert all(target.pending_at_push)
    assert staged_before_push[0] >= 10  # the whole first batch, not one candidate at a time
    assert store.journal_records() == []  # each record deleted once its batch was done
    assert store.calls("stage") == 3  # 10 + 10 + 3
    assert store.calls("settle") == 1 + 3 + 1  # before staging, per batch, at the end
    # Vault round trips: per credential one metadata read and one promotion; per batch one
    # record written and one deleted; one LIST of the journal area and one of the stale area.
    assert store.requests == 2 * 23 + 2 * 3 + 2


async def test_a_promoted_candidate_left_in_its_record_is_recognised_and_cleared() -> None:
    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(4)
    # The run promotes every candidate but stops before its journal record is cleared.

    async def stopped_before_settling(name: str | None = None) -> None:
        return None

    store.settle = stopped_before_settling  # type: ignore[method-assign]
    out = await runbook(store, {"ep1": target}).run(group_accounts(rows))
    assert {i.status for i in out.items} == {Status.ROTATED}
    assert len(store.journal_records()) == 1
    assert sorted(store.candidates()) == sorted(r.vault_path for r in rows)
    # A new run (a new store instance over the same Vault) sees the candidates are the
    # current versions already: nothing to resume, and the record goes before any staging.
    fresh = MemoryStore()
    fresh._memory.entries = store._memory.entries  # the same Vault
    pushes = target.pushes
    out = await runbook(fresh, {"ep1": target}, force=True).run(group_accounts(rows))
    assert {i.status for i in out.items} == {Status.ROTATED}
    assert all("unfinished rotation" not in i.reason for i in out.items)
    assert target.pushes == pushes + 4  # fresh candidates, none re-sent
    assert fresh.journal_records() == []
    for row in rows:
        assert [c.password.reveal() for c in fresh.versions(row.vault_path)][-1] == target.held[
            row.target
        ]


async def test_an_aborted_run_drops_the_candidates_it_staged_but_never_sent() -> None:
    from rotate.runbook import Threshold

    store = MemoryStore()
    target = FakeTarget("ep1", store)
    rows = make_rows(12)
    target.behaviour[rows[0].target] = "reject"
    book = Runbook(
        batched(6, concurrency=2),
        store,
        {"ep1": target},  # type: ignore[dict-item]
        Options(run_id="r1", mode="run", max_failures=Threshold.parse("0")),
    )
    out = await book.run(group_accounts(rows))
    statuses = [i.status for i in out.items]
    assert statuses.count(Status.NOT_ATTEMPTED) >= 6
    assert "failure threshold crossed" in out.aborted
    # Staged candidates that no target saw are gone; the others were promoted.
    assert store.pending_paths() == []
    assert store.journal_records() == []
    for row, item in zip(rows, out.items, strict=True):
        if item.status is Status.NOT_ATTEMPTED:
            assert store.versions(row.vault_path) == []
