"""One invocation end to end: inputs checked first, then Vault, targets, pipeline, reports."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import tempfile
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
from rotate.errors import (
    EXIT_ITEMS_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    CasConflict,
    RefusedError,
    StoreError,
    UsageError,
)
from rotate.heap import release_free_memory
from rotate.inventory import group_accounts, load_inventory
from rotate.lease import Lease
from rotate.models import Row, RunRecord
from rotate.planner import Shard
from rotate.progress import NullProgress, Progress
from rotate.report import ReportPaths, write_each_report, write_json
from rotate.runbook import Options, Outcome, Runbook, Threshold, exit_trouble
from rotate.settings import Settings
from rotate.stores.base import SecretStore
from rotate.vendors.base import Target

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
    check_usages: bool = True  # plan: look at each usage's target on its endpoint
    metrics_path: Path | None = None  # checked writable with the other outputs
    progress: Progress = field(default_factory=NullProgress)


@dataclass(frozen=True)
class Result:
    """The run record, where its reports went, and the exit code it earns."""

    record: RunRecord
    reports: ReportPaths
    exit_code: int
    not_written: tuple[str, ...] = ()  # outputs that could not be written, and why


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
        check_usages=invocation.check_usages,
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
    """3 aborted; 1 when an item failed, is in drift or has a problem its plan found (or,
    when writing, is in doubt, not attempted or stale)."""
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


#: usage problems the console lists at most; the reports list them all
MAX_PROBLEM_LINES = 50


def problem_lines(record: RunRecord, limit: int = MAX_PROBLEM_LINES) -> list[str]:
    """The usage problems a plan found, one line per inventory row (at most `limit`)."""
    found = [i for i in record.items if i.problem]
    if not found:
        return []
    lines = [f"{len(found)} usage problem(s):"]
    lines += [f"  line {i.row.line} {i.row.label}: {i.problem}" for i in found[:limit]]
    if len(found) > limit:
        lines.append(f"  and {len(found) - limit} more, listed in the reports")
    return lines


def check_outputs(invocation: Invocation) -> None:
    """Every output path is writable before anything changes (UsageError, exit 2, if not):
    the report directory, the `--json` file's and the metrics file's. Nothing is created
    here: a directory that does not exist yet is judged by its nearest existing parent."""
    problems = []
    places = [("--out-dir", invocation.out_dir)]
    for flag, path in (
        ("--json", invocation.json_path),
        ("--metrics-file", invocation.metrics_path),
    ):
        if path is not None:
            places.append((flag, path.parent))
            if path.is_dir():
                problems.append(f"{flag} {path}: is a directory, not a file")
    for flag, directory in places:
        if (why := _unwritable(directory)) is not None:
            problems.append(f"{flag} {directory}: cannot write there ({why})")
    if problems:
        raise UsageError("nothing was changed: " + "; ".join(problems))


def _unwritable(directory: Path) -> str | None:
    """Why files cannot be written in `directory` (or created under it), else None."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


@dataclass(frozen=True)
class _Start:
    """What a run knows before it opens Vault: its id, start, inputs' digests, warnings."""

    run_id: str
    started: datetime
    inventory_sha: str
    config_sha: str
    warnings: tuple[str, ...]


def _rows(invocation: Invocation) -> list[Row]:
    """The validated inventory (this shard's part of it), every input checked."""
    settings = invocation.settings
    rows = load_inventory(invocation.inventory, settings)
    release_free_memory()  # the parse's transient pages, before the run's own allocations
    if invocation.shard is not None:
        rows = [r for r in rows if invocation.shard.holds(r)]
    if invocation.mode != "report":
        check_environment(rows, settings)
    check_outputs(invocation)
    return rows


def execute(invocation: Invocation, store_factory: StoreFactory = default_store) -> Result:
    """Check the inputs and outputs, then Vault, then drive the runbook and write the record
    (the `--json` record first, then the reports). A run refused before any change still
    writes its `--json` record, with the reason."""
    settings = invocation.settings
    rows = _rows(invocation)
    warnings = settings_warnings(rows, settings)
    for warning in warnings:
        log.warning("%s", warning)
    started = datetime.now(UTC)
    start = _Start(
        run_id=new_run_id(started),
        started=started,
        inventory_sha=file_sha256(invocation.inventory),
        config_sha=file_sha256(Path(settings.source)) if settings.source != "<defaults>" else "",
        warnings=warnings,
    )
    try:
        outcome, identity, stats = _open_and_drive(invocation, rows, start, store_factory)
    except RefusedError as exc:
        refused = Outcome([], aborted=f"refused before any change: {exc}")
        _write_refusal(invocation, _record(invocation, start, refused, "", {}))
        raise
    record = _record(invocation, start, outcome, identity, stats)
    return _write_outputs(invocation, record)


def _open_and_drive(
    invocation: Invocation, rows: Sequence[Row], start: _Start, store_factory: StoreFactory
) -> tuple[Outcome, str, dict[str, int]]:
    """Vault checked (and the lease taken when writing), the back ends built, the runbook
    driven; everything opened is closed again."""
    settings = invocation.settings
    store = store_factory(settings)
    lease: Lease | None = None
    targets: dict[str, Target] = {}
    try:
        identity = store.check()
        log.info(
            "run %s (%s) as %s on %s", start.run_id, invocation.mode, identity, settings.vault.addr
        )
        if invocation.mode in WRITERS:
            lease = _lease(invocation, store, start.run_id)
            store.preflight([r.vault_path for r in rows], lease=lease.path)  # before any write
            lease.acquire()
        authorities: dict[str, Authority] = {}
        if invocation.mode != "report":
            targets = build_targets(rows, settings, store)
            authorities = build_authorities(rows, settings, store)
        digest = start.inventory_sha + start.config_sha
        outcome = asyncio.run(
            _drive(invocation, rows, store, targets, authorities, start.run_id, lease, digest)
        )
    finally:
        if lease is not None:
            lease.release()
        store.close()
    release_free_memory()  # the run's transient pages (responses, tasks), before the reports
    stats = {
        "vault_requests": store.requests,
        "vendor_requests": sum(t.requests for t in targets.values()),
    }
    return outcome, identity, stats


def _lease(invocation: Invocation, store: SecretStore, run_id: str) -> Lease:
    settings = invocation.settings
    name = settings.run.lease_name
    if invocation.shard is not None:
        name = f"{name}-{invocation.shard.label}"
    path = f"{settings.vault.lease_root}/{name}"
    return Lease(store, path, run_id, invocation.mode, settings.run.lease_ttl_s)


def _record(
    invocation: Invocation,
    start: _Start,
    outcome: Outcome,
    identity: str,
    stats: Mapping[str, int],
) -> RunRecord:
    settings = invocation.settings
    return RunRecord(
        run_id=start.run_id,
        mode=invocation.mode,
        dry_run=invocation.mode not in WRITERS,
        started_at=start.started,
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
        inventory_sha256=start.inventory_sha,
        config_sha256=start.config_sha,
        plan_hash=outcome.plan_hash,
        schedule_days=invocation.schedule_days,
        drift=outcome.drift,
        warnings=start.warnings,
        stats=dict(stats),
    )


def _write_refusal(invocation: Invocation, record: RunRecord) -> None:
    """The `--json` record of a run refused before any change (its reason in `aborted`)."""
    if invocation.json_path is None:
        return
    try:
        invocation.json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(record, invocation.json_path)
    except OSError as exc:
        log.error("the --json record was not written (%s)", exc.strerror or exc)


def _write_outputs(invocation: Invocation, record: RunRecord) -> Result:
    """The `--json` record first, on its own; then the reports. A file that cannot be written
    is said in one line, the others are kept, and the run exits 1 at least."""
    failures = []
    if invocation.json_path is not None:
        try:
            invocation.json_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(record, invocation.json_path)
        except OSError as exc:
            failures.append(f"--json {invocation.json_path}: {exc.strerror or exc}")
    paths, more = write_each_report(record, invocation.out_dir)
    failures += more
    for failure in failures:
        log.error("not written: %s", failure)
    code = exit_code_for(invocation.mode, record)
    if failures:
        code = max(code, EXIT_ITEMS_FAILED)
    return Result(record, paths, code, tuple(failures))
