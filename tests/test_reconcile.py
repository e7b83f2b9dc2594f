"""Reconcile against an in-memory store and fake targets: every branch, bounds, no secret shown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rotate.errors import StoreError
from rotate.models import (
    Credential,
    ItemResult,
    PendingCandidate,
    Row,
    Secret,
    Stage,
    Status,
)
from rotate.reconcile import reconcile, reconcile_exit_code
from rotate.runbook import Options, Outcome, Runbook
from rotate.settings import EndpointSettings, PolicySettings, RunSettings, Settings
from rotate.stores.memory import MemoryStore
from tests.fakes import FakeTarget

CURRENT = "current-Pass-0001"
PENDING = "pending-Pass-0002"
DRIFTED = "drifted-Pass-0003"
FOREIGN = "foreign-Pass-0004"


def make_rows(n: int, endpoint: str = "ep1") -> list[Row]:
    return [
        Row(
            line=i + 2,
            endpoint=endpoint,
            kind="computer",
            target=f"t{i}",
            username="admin",
            protocol="RDP",
            domain="CORP",
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


async def run(
    store: MemoryStore,
    targets: dict[str, FakeTarget],
    rows: list[Row],
    *,
    repush: bool = False,
    concurrency: int = 64,
    abort_after: str | None = None,
) -> Outcome:
    book = Runbook(
        settings(concurrency),
        store,
        targets,
        Options(run_id="rc1", mode="reconcile"),
    )
    if abort_after is not None:
        targets["ep1"].on_read = lambda: book.abort(abort_after)
    return await reconcile(book, rows, repush)


async def with_current(store: MemoryStore, row: Row, password: str = CURRENT) -> int:
    credential = Credential(row.username, Secret(password), row.domain)
    return await store.promote(row.vault_path, credential, None, datetime(2024, 1, 1, tzinfo=UTC))


async def with_pending(store: MemoryStore, row: Row, password: str = PENDING) -> None:
    credential = Credential(row.username, Secret(password), row.domain)
    version = len(store.versions(row.vault_path)) or None
    candidate = PendingCandidate(credential, "r1", datetime.now(UTC), version)
    await store.stage("r1", {row.vault_path: candidate})


async def current_password(store: MemoryStore, row: Row) -> str | None:
    current = await store.read_current(row.vault_path)
    return current.password.reveal() if current else None


# -- a target that reads back -------------------------------------------------------------


async def test_target_holding_current_is_in_sync_and_untouched() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    target.held["t0"] = CURRENT
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.IN_SYNC
    assert item.verified is True
    assert item.vault_version == 1
    assert item.vault_path == row.vault_path
    assert target.pushed == []
    assert store.calls("promote") == 1  # the seeding only
    assert store.calls("discard") == 0


async def test_target_holding_pending_promotes_it() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    await with_pending(store, row)
    target.held["t0"] = PENDING
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.REPAIRED
    assert item.reason == "target holds the pending candidate: promoted it (Vault repaired)"
    assert item.stage is Stage.PROMOTED
    assert item.verified is True
    assert item.vault_version == 2
    assert item.last_rotated is not None
    assert item.last_rotated.year > 2024
    assert await current_password(store, row) == PENDING
    assert store.versions(row.vault_path)[0].password.reveal() == CURRENT  # history kept
    assert store.pending_paths() == []
    state = await store.read_state(row.vault_path)
    assert state.rotated_at is not None
    assert state.rotated_at.year > 2024  # rotated now: version 2's own time, not the seeded one
    assert target.pushed == []


async def test_target_holding_current_discards_stale_pending() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    await with_pending(store, row)
    target.held["t0"] = CURRENT
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.REPAIRED
    assert item.reason == "target holds the current password: stale candidate discarded"
    assert item.vault_version == 1
    assert item.verified is True
    assert store.pending_paths() == []
    assert await current_password(store, row) == CURRENT
    assert target.pushed == []


async def test_pending_equal_to_current_is_discarded_not_promoted_again() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    await with_pending(store, row, CURRENT)  # a promotion that could not drop its candidate
    target.held["t0"] = CURRENT
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.REPAIRED
    assert "stale candidate discarded" in item.reason
    assert len(store.versions(row.vault_path)) == 1


@pytest.mark.parametrize("pending", [False, True])
async def test_drifted_target_gets_current_again_and_pending_goes(pending: bool) -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    if pending:
        await with_pending(store, row)
    target.held["t0"] = DRIFTED
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.REPAIRED
    assert item.reason == "target drifted: re-pushed Vault's current password"
    assert item.verified is True
    assert item.stage is Stage.VERIFIED
    assert item.vault_version == 1
    assert target.held["t0"] == CURRENT
    assert target.pushed == [("t0", "admin")]
    assert store.pending_paths() == []
    assert len(store.versions(row.vault_path)) == 1


@pytest.mark.parametrize(
    ("how", "status"),
    [
        ("reject", Status.FAILED),
        ("unknown", Status.IN_DOUBT),
        ("unreachable", Status.FAILED),
        ("mismatch", Status.IN_DOUBT),
    ],
)
async def test_drift_repush_failure_changes_nothing_in_vault(how: str, status: Status) -> None:
    store, target = MemoryStore(), FakeTarget()
    rows = make_rows(2)
    for row in rows:
        await with_current(store, row)
        await with_pending(store, row)
        target.held[row.target] = DRIFTED
    target.behaviour["t0"] = how
    items = (await run(store, {"ep1": target}, rows)).items
    assert items[0].status is status
    assert items[0].error
    assert items[1].status is Status.REPAIRED  # a neighbour's failure cancels nothing
    # The failed item keeps its candidate (nothing discarded) and its current version.
    assert store.pending_paths() == [rows[0].vault_path]
    assert await current_password(store, rows[0]) == CURRENT
    assert len(store.versions(rows[0].vault_path)) == 1


async def test_drift_repush_unverified_keeps_pending() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    await with_pending(store, row)
    target.held["t0"] = DRIFTED
    target.behaviour["t0"] = "read_error_after_push"
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.REPAIRED
    assert item.verified is False
    assert "read-back failed" in item.error
    assert "pending candidate is kept" in item.error
    assert store.pending_paths() == [row.vault_path]


async def test_never_stored_target_is_adopted() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    target.held["t0"] = FOREIGN
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.REPAIRED
    assert item.reason == "adopted the target's password into Vault"
    assert item.vault_version == 1
    assert item.stage is Stage.PROMOTED
    (current,) = store.versions(row.vault_path)
    assert current == Credential("admin", Secret(FOREIGN), "CORP")
    assert target.pushed == []


async def test_adopt_after_a_deleted_current_checks_and_sets_on_its_version() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    store.delete_latest(row.vault_path)  # metadata and version number stay, no readable value
    target.held["t0"] = FOREIGN
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.REPAIRED
    assert item.vault_version == 2
    assert await current_password(store, row) == FOREIGN


async def test_adopt_store_failure_is_failed() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    target.held["t0"] = FOREIGN
    store.fail_next("promote")
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.FAILED
    assert "could not be stored in Vault" in item.error
    assert (await store.read_state(row.vault_path)).current_version is None


async def test_no_current_pending_not_on_target_is_resent_and_promoted() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_pending(store, row)
    target.held["t0"] = FOREIGN
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.REPAIRED
    assert item.verified is True
    assert item.vault_version == 1
    assert target.held["t0"] == PENDING
    assert await current_password(store, row) == PENDING
    assert store.pending_paths() == []


async def test_promotion_failure_keeps_the_held_candidate_pending() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    await with_pending(store, row)
    target.held["t0"] = PENDING
    store.fail_next("promote")
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.IN_DOUBT
    assert "promotion failed" in item.error
    held = store.candidates().get(row.vault_path)
    assert held is not None
    assert held.password.reveal() == target.held["t0"]


async def test_discard_failure_is_failed_and_current_kept() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    await with_pending(store, row)
    target.held["t0"] = CURRENT
    store.fail_next("discard")
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.FAILED
    assert "could not be discarded" in item.error
    assert await current_password(store, row) == CURRENT


async def test_read_back_error_is_failed_and_nothing_written() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    target.behaviour["t0"] = "read_error"
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.FAILED
    assert "HTTP 502" in item.error
    assert target.pushed == []


async def test_vault_current_unreadable_is_failed() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    target.held["t0"] = DRIFTED
    store.fail_next("read_current")
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.FAILED
    assert "injected failure" in item.error
    assert target.pushed == []


# -- a write-only target ------------------------------------------------------------------


@pytest.mark.parametrize("pending", [False, True])
async def test_write_only_without_repush_is_skipped(pending: bool) -> None:
    store, target = MemoryStore(), FakeTarget(write_only=True)
    (row,) = make_rows(1)
    await with_current(store, row)
    if pending:
        await with_pending(store, row)
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.SKIPPED
    assert item.reason.startswith(
        "write-only target: cannot compare; --repush re-sends Vault's current password"
    )
    assert ("an unfinished candidate is pending" in item.reason) is pending
    assert target.pushed == []
    assert target.reads == 0
    assert store.pending_paths() == ([row.vault_path] if pending else [])


async def test_read_back_without_password_counts_as_write_only() -> None:
    store, target = MemoryStore(), FakeTarget()
    (row,) = make_rows(1)
    await with_current(store, row)
    target.behaviour["t0"] = "no_password"
    (item,) = (await run(store, {"ep1": target}, [row])).items
    assert item.status is Status.SKIPPED
    assert "write-only target: cannot compare" in item.reason
    assert "no password" in item.reason
    assert target.pushed == []


async def test_write_only_repush_sends_current() -> None:
    store, target = MemoryStore(), FakeTarget(write_only=True)
    (row,) = make_rows(1)
    await with_current(store, row)
    target.held["t0"] = DRIFTED
    (item,) = (await run(store, {"ep1": target}, [row], repush=True)).items
    assert item.status is Status.REPAIRED
    assert item.reason == "re-pushed Vault's current password (write-only target)"
    assert item.verified is False
    assert item.stage is Stage.PUSHED
    assert item.vault_version == 1
    assert target.held["t0"] == CURRENT


async def test_write_only_repush_finishes_the_pending_candidate() -> None:
    store, target = MemoryStore(), FakeTarget(write_only=True)
    (row,) = make_rows(1)
    await with_current(store, row)
    await with_pending(store, row)
    (item,) = (await run(store, {"ep1": target}, [row], repush=True)).items
    assert item.status is Status.REPAIRED
    assert item.vault_version == 2
    assert item.verified is False
    assert target.held["t0"] == PENDING
    assert await current_password(store, row) == PENDING
    assert store.pending_paths() == []


@pytest.mark.parametrize(
    ("how", "status"),
    [("reject", Status.FAILED), ("unknown", Status.IN_DOUBT), ("unreachable", Status.FAILED)],
)
async def test_write_only_repush_of_pending_never_drops_it(how: str, status: Status) -> None:
    store, target = MemoryStore(), FakeTarget(write_only=True)
    (row,) = make_rows(1)
    await with_current(store, row)
    await with_pending(store, row)
    target.behaviour["t0"] = how
    (item,) = (await run(store, {"ep1": target}, [row], repush=True)).items
    assert item.status is status
    assert "candidate kept pending" in item.error
    assert store.pending_paths() == [row.vault_path]
    assert await current_password(store, row) == CURRENT


@pytest.mark.parametrize(
    ("how", "status"),
    [("reject", Status.FAILED), ("unknown", Status.IN_DOUBT), ("unreachable", Status.FAILED)],
)
async def test_write_only_repush_of_current_failures(how: str, status: Status) -> None:
    store, target = MemoryStore(), FakeTarget(write_only=True)
    (row,) = make_rows(1)
    await with_current(store, row)
    target.behaviour["t0"] = how
    (item,) = (await run(store, {"ep1": target}, [row], repush=True)).items
    assert item.status is status
    assert len(store.versions(row.vault_path)) == 1


async def test_write_only_repush_with_nothing_in_vault_is_skipped() -> None:
    store, target = MemoryStore(), FakeTarget(write_only=True)
    (row,) = make_rows(1)
    (item,) = (await run(store, {"ep1": target}, [row], repush=True)).items
    assert item.status is Status.SKIPPED
    assert item.reason == "nothing in Vault to push"
    assert target.pushed == []


# -- the batch ----------------------------------------------------------------------------


async def test_failed_probe_means_no_reads_no_writes_not_attempted() -> None:
    store = MemoryStore()
    good, bad = FakeTarget("ep1"), FakeTarget("ep2", probe_ok=False)
    rows = make_rows(2) + make_rows(2, "ep2")
    for row in rows:
        await with_current(store, row)
        await with_pending(store, row)
    good.held = {"t0": PENDING, "t1": PENDING}
    out = await run(store, {"ep1": good, "ep2": bad}, rows, repush=True)
    assert [i.status for i in out.items] == [Status.REPAIRED] * 2 + [Status.NOT_ATTEMPTED] * 2
    assert "HTTP 503" in out.items[2].error
    assert out.items[2].vault_version == 1
    assert bad.reads == 0
    assert bad.pushed == []
    assert {p.endpoint: p.ok for p in out.probes} == {"ep1": True, "ep2": False}
    assert store.pending_paths() == [r.vault_path for r in rows[2:]]
    assert reconcile_exit_code(out) == 1


async def test_unreadable_vault_state_fails_that_row_only() -> None:
    store, target = MemoryStore(), FakeTarget()
    rows = make_rows(3)
    for row in rows:
        await with_current(store, row)
        target.held[row.target] = CURRENT
    store.fail_next("read_state")
    out = await run(store, {"ep1": target}, rows, concurrency=1)
    statuses = sorted(i.status.value for i in out.items)
    assert statuses == ["failed", "in_sync", "in_sync"]
    failed = next(i for i in out.items if i.status is Status.FAILED)
    assert "injected failure" in failed.error


async def test_one_state_read_per_row() -> None:
    store, target = MemoryStore(), FakeTarget()
    rows = make_rows(6)
    for row in rows[:3]:
        await with_current(store, row)
        await with_pending(store, row)
        target.held[row.target] = DRIFTED
    await run(store, {"ep1": target}, rows)
    assert store.calls("read_state") == len(rows)


async def test_concurrency_bound_holds() -> None:
    store, target = MemoryStore(), FakeTarget()
    rows = make_rows(20)
    for row in rows:
        await with_current(store, row)
        target.held[row.target] = DRIFTED
    out = await run(store, {"ep1": target}, rows, concurrency=3)
    assert all(i.status is Status.REPAIRED for i in out.items)
    assert target.max_in_flight == 3


async def test_results_keep_inventory_order_across_endpoints() -> None:
    store = MemoryStore()
    t1, t2 = FakeTarget("ep1"), FakeTarget("ep2")
    rows = make_rows(3) + make_rows(3, "ep2")
    for row in rows:
        await with_current(store, row)
    for t in (t1, t2):
        t.held = {"t0": CURRENT, "t1": DRIFTED, "t2": CURRENT}
    out = await run(store, {"ep1": t1, "ep2": t2}, rows, concurrency=2)
    assert [i.row for i in out.items] == rows
    assert [i.status for i in out.items] == [Status.IN_SYNC, Status.REPAIRED, Status.IN_SYNC] * 2
    assert reconcile_exit_code(out) == 0


async def test_abort_stops_new_items_and_in_flight_ones_finish() -> None:
    store, target = MemoryStore(), FakeTarget()
    rows = make_rows(4)
    for row in rows:
        await with_current(store, row)
        target.held[row.target] = DRIFTED
    out = await run(store, {"ep1": target}, rows, concurrency=1, abort_after="lease lost")
    assert out.aborted == "lease lost"
    assert [i.status for i in out.items] == [Status.REPAIRED] + [Status.NOT_ATTEMPTED] * 3
    assert out.items[1].error == "lease lost"
    assert target.pushed == [("t0", "admin")]
    assert reconcile_exit_code(out) == 3


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([], 0),
        ([Status.IN_SYNC, Status.REPAIRED, Status.SKIPPED], 0),
        ([Status.IN_SYNC, Status.FAILED], 1),
        ([Status.IN_DOUBT], 1),
        ([Status.REPAIRED, Status.NOT_ATTEMPTED], 1),
    ],
)
def test_exit_code(statuses: list[Status], code: int) -> None:
    (row,) = make_rows(1)
    assert reconcile_exit_code(Outcome([ItemResult(row, s) for s in statuses])) == code


SCENES = [
    "in_sync",
    "pending_held",
    "stale",
    "drift",
    "drift_reject",
    "drift_unknown",
    "drift_mismatch",
    "adopt",
    "adopt_fails",
    "resend",
    "promote_fails",
    "write_only",
    "write_only_repush",
    "write_only_pending_repush",
    "write_only_pending_repush_reject",
]


@pytest.mark.parametrize("scene", SCENES)
async def test_no_password_in_any_record_or_repr(scene: str) -> None:
    store = MemoryStore()
    write_only = scene.startswith("write_only")
    target = FakeTarget(write_only=write_only)
    (row,) = make_rows(1)
    if scene not in ("adopt", "adopt_fails", "resend"):
        await with_current(store, row)
    if scene in ("pending_held", "stale", "resend", "promote_fails") or "pending" in scene:
        await with_pending(store, row)
    target.held["t0"] = {
        "in_sync": CURRENT,
        "pending_held": PENDING,
        "promote_fails": PENDING,
        "stale": CURRENT,
    }.get(scene, DRIFTED if not scene.startswith("adopt") else FOREIGN)
    for fault in ("reject", "unknown", "mismatch"):
        if scene.endswith(fault):
            target.behaviour["t0"] = fault
    if scene in ("adopt_fails", "promote_fails"):
        store.fail_next("promote", error=StoreError("injected: permission denied"))
    out = await run(store, {"ep1": target}, [row], repush="repush" in scene)
    text = repr(out) + repr([i.as_record() for i in out.items]) + str(out.items)
    for secret in (CURRENT, PENDING, DRIFTED, FOREIGN, "something-else"):
        assert secret not in text, scene
