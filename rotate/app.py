"""One invocation end to end: inputs checked first, then Vault, targets, pipeline, reports."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rotate import __version__
from rotate.authorities.base import Authority
from rotate.backends import (
    build_authorities,
    build_targets,
    check_environment,
    settings_warnings,
)
from rotate.errors import EXIT_ITEMS_FAILED, EXIT_OK, EXIT_REFUSED, CasConflict, StoreError
from rotate.inventory import group_accounts, load_inventory
from rotate.lease import Lease
from rotate.models import Row, RunRecord
from rotate.planner import Shard
from rotate.progress import NullProgress, Progress
from rotate.report import ReportPaths, write_json, write_reports
from rotate.runbook import Options, Outcome, Runbook, Threshold, exit_trouble
from rotate.settings import Settings
from rotate.stores.base import SecretStore
from rotate.targets import Target

log = logging.getLogger(__name__)

StoreFactory = Callable[[Settings], SecretStore]


@dataclass(frozen=True)
class Invocation:
    """What to do, already parsed: the core never sees argv."""

    mode: str  # plan | run | report | reconcile
    inventory: Path
    settings: Settings
    out_dir: Path = Path("reports")
    json_path: Path | None = None
    force: bool = False
    concurrency: int | None = None
    max_failures: Threshold | None = None
    canary: int = 0
    repush: bool = False  # reconcile: re-send Vault's current password to write-only targets
    plan_hash: str | None = None  # run: refuse unless the approved plan still holds
    shard: Shard | None = None  # only this part of the inventory, under a lease of its own
    schedule_days: float | None = None  # report: days until the next scheduled run
    progress: Progress = field(default_factory=NullProgress)


@dataclass(frozen=True)
class Result:
    """The run record, where its reports went, and the exit code it earns."""

    record: RunRecord
    reports: ReportPaths
    exit_code: int


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks (an inventory may be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def default_store(settings: Settings) -> SecretStore:
    from rotate.stores.vault import VaultStore

    return VaultStore(settings.vault)


WRITERS = frozenset({"run", "reconcile"})  # the modes that change credentials: one at a time


async def _keep_lease(lease: Lease, runbook: Runbook) -> None:
    """Renew the lease every third of its life; abort the run if it is lost or runs out."""
    while True:
        await asyncio.sleep(lease.ttl.total_seconds() / 3)
        try:
            await asyncio.to_thread(lease.renew)
        except CasConflict:
            runbook.abort(f"the lease {lease.path} was taken over by another run")
            return
        except StoreError as exc:
            if lease.expired():
                runbook.abort(f"the lease {lease.path} ran out: it could not be renewed ({exc})")
                return
            log.warning("lease renewal failed (%s); retrying before it runs out", exc)


async def _drive(
    invocation: Invocation,
    rows: Sequence[Row],
    store: SecretStore,
    targets: Mapping[str, Target],
    authorities: Mapping[str, Authority],
    run_id: str,
    lease: Lease | None,
    inputs_digest: str,
) -> Outcome:
    options = Options(
        run_id=run_id,
        mode=invocation.mode,
        force=invocation.force,
        concurrency=invocation.concurrency,
        max_failures=invocation.max_failures,
        canary=invocation.canary,
        inputs_digest=inputs_digest,
        expected_plan_hash=invocation.plan_hash,
        schedule_days=invocation.schedule_days,
        check_drift=invocation.shard is None,
    )
    runbook = Runbook(
        invocation.settings, store, targets, options, invocation.progress, authorities
    )
    keeper = asyncio.create_task(_keep_lease(lease, runbook)) if lease else None
    accounts = group_accounts(rows)
    try:
        if invocation.mode == "plan":
            return await runbook.plan(accounts)
        if invocation.mode == "report":
            return await runbook.report(accounts)
        if invocation.mode == "reconcile":
            from rotate.reconcile import reconcile

            return await reconcile(runbook, rows, invocation.repush)
        return await runbook.run(accounts)
    finally:
        if keeper is not None:
            keeper.cancel()
        await asyncio.gather(
            store.aclose(),
            *(t.aclose() for t in targets.values()),
            *(a.aclose() for a in authorities.values()),
        )


def exit_code_for(mode: str, record: RunRecord) -> int:
    """3 aborted; 1 when an item failed or is in drift (or, when writing, is in doubt, not
    attempted or stale)."""
    if record.aborted:
        return EXIT_REFUSED
    return EXIT_ITEMS_FAILED if exit_trouble(mode, record.items) else EXIT_OK


def summary_line(record: RunRecord) -> str:
    counts = record.summary()
    seconds = (record.finished_at - record.started_at).total_seconds()
    shown = ", ".join(
        f"{v} {k.replace('_', ' ')}"
        for k, v in counts.items()
        if k != "total" and (v or k in ("rotated", "failed"))
    )
    accounts = f" of {len(record.accounts)} account(s)" if record.accounts else ""
    return (
        f"{record.mode} {record.run_id}: {counts['total']} item(s){accounts}: {shown} "
        f"in {seconds:.1f} s"
    )


def execute(invocation: Invocation, store_factory: StoreFactory = default_store) -> Result:
    """Check the inputs, then Vault, then drive the pipeline and write the reports."""
    settings = invocation.settings
    rows = load_inventory(invocation.inventory, settings)
    if invocation.shard is not None:
        rows = [r for r in rows if invocation.shard.holds(r)]
    if invocation.mode != "report":
        check_environment(rows, settings)
    warnings = settings_warnings(rows, settings)
    for warning in warnings:
        log.warning("%s", warning)
    inventory_sha = file_sha256(invocation.inventory)
    config_sha = file_sha256(Path(settings.source)) if settings.source != "<defaults>" else ""
    started = datetime.now(UTC)
    run_id = new_run_id(started)
    store = store_factory(settings)
    lease: Lease | None = None
    targets: dict[str, Target] = {}
    authorities: dict[str, Authority] = {}
    try:
        identity = store.check()
        log.info("run %s (%s) as %s on %s", run_id, invocation.mode, identity, settings.vault.addr)
        if invocation.mode in WRITERS:
            name = settings.run.lease_name
            if invocation.shard is not None:
                name = f"{name}-{invocation.shard.label}"
            lease = Lease(
                store,
                f"{settings.vault.lease_root}/{name}",
                run_id,
                invocation.mode,
                settings.run.lease_ttl_s,
            )
            if (preflight := getattr(store, "preflight", None)) is not None:  # VaultStore
                preflight([r.vault_path for r in rows], lease=lease.path)  # before any write
            lease.acquire()
        if invocation.mode != "report":
            targets = build_targets(rows, settings, store)
            authorities = build_authorities(group_accounts(rows), settings, store)
        outcome = asyncio.run(
            _drive(
                invocation,
                rows,
                store,
                targets,
                authorities,
                run_id,
                lease,
                inventory_sha + config_sha,
            )
        )
    finally:
        if lease is not None:
            lease.release()
        store.close()
    record = RunRecord(
        run_id=run_id,
        mode=invocation.mode,
        dry_run=invocation.mode not in WRITERS,
        started_at=started,
        finished_at=datetime.now(UTC),
        inventory=str(invocation.inventory),
        config=settings.source,
        items=tuple(outcome.items),
        probes=tuple(outcome.probes),
        accounts=tuple(outcome.accounts),
        authority_probes=tuple(outcome.authority_probes),
        vault_addr=settings.vault.addr,
        vault_mount=settings.vault.mount,
        aborted=outcome.aborted,
        identity=identity,
        tool_version=__version__,
        inventory_sha256=inventory_sha,
        config_sha256=config_sha,
        plan_hash=outcome.plan_hash,
        schedule_days=invocation.schedule_days,
        drift=outcome.drift,
        warnings=warnings,
        stats={
            "vault_requests": int(getattr(store, "requests", 0)),
            "vendor_requests": sum(t.requests for t in targets.values()),
        },
    )
    paths = write_reports(record, invocation.out_dir)
    if invocation.json_path is not None:
        write_json(record, invocation.json_path)
    return Result(record, paths, exit_code_for(invocation.mode, record))
