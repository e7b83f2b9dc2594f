"""The runbook: read state, plan, probe, then per item stage -> push -> verify -> promote."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar

from rotate import passwords, planner
from rotate.errors import (
    EndpointUnavailable,
    OutcomeUnknown,
    PlanChanged,
    Rejected,
    StoreError,
    StoreUnavailable,
    TargetError,
)
from rotate.models import (
    Credential,
    Drift,
    EndpointProbe,
    ItemResult,
    PendingCandidate,
    Row,
    Secret,
    SecretState,
    Stage,
    Status,
)
from rotate.monitoring import ITEMS
from rotate.progress import NullProgress, Progress
from rotate.settings import PolicySettings, Settings
from rotate.stores.base import SecretStore
from rotate.stores.kv import fan_out
from rotate.targets.base import Target

log = logging.getLogger(__name__)

T = TypeVar("T")

#: a due item: its index in the inventory, the row, Vault's view of it, why it is due
Work = tuple[int, Row, SecretState, planner.Decision]


@dataclass(frozen=True)
class Threshold:
    """`--max-failures`: a count (`5`) or a share of the items to rotate (`2%`)."""

    text: str

    @classmethod
    def parse(cls, text: str) -> Threshold:
        body = text.strip()
        number = body[:-1] if body.endswith("%") else body
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"{text!r} is neither a count (5) nor a percentage (2%)") from None
        if value < 0 or (not body.endswith("%") and not value.is_integer()):
            raise ValueError(f"{text!r} must be a whole count or a percentage, not negative")
        return cls(body)

    def limit(self, total: int) -> float:
        """The number of failures that is still tolerated; one more crosses the threshold."""
        if self.text.endswith("%"):
            return total * float(self.text[:-1]) / 100
        return float(self.text)


@dataclass(frozen=True)
class Options:
    """What the caller asked for; the core never looks at argv."""

    run_id: str
    mode: str  # plan | run | report | reconcile
    force: bool = False
    concurrency: int | None = None  # overrides [run] concurrency
    max_failures: Threshold | None = None  # stop starting items once crossed
    canary: int = 0  # rotate this many items first; stop if any of them fails
    inputs_digest: str = ""  # SHA-256 of inventory and config, for the plan hash
    expected_plan_hash: str | None = None  # run: refuse unless the plan is still this one
    schedule_days: float | None = None  # report: days until the next scheduled run
    check_drift: bool = True  # report: off for a shard, which cannot tell others' secrets


@dataclass(repr=False)
class Outcome:
    """What a pipeline call produced, for the record and the exit code."""

    items: list[ItemResult]
    probes: list[EndpointProbe] = field(default_factory=list)
    aborted: str = ""  # why the run stopped starting items, if it did
    plan_hash: str = ""
    drift: Drift | None = None

    def __repr__(self) -> str:
        # Short on purpose: asyncio formats the main task's result when the run's event loop
        # closes (Python 3.11), and the full repr of 100,000 items costs seconds and 150 MB.
        return f"Outcome({len(self.items)} items, aborted={self.aborted!r})"


def interleave(items: Sequence[T], key: Callable[[T], str]) -> list[T]:
    """Round-robin over the groups (endpoints), so the global bound keeps every endpoint busy."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    queues = list(groups.values())
    out: list[T] = []
    for position in range(max((len(q) for q in queues), default=0)):
        out.extend(q[position] for q in queues if position < len(q))
    return out


def now_utc() -> datetime:
    return datetime.now(UTC)


class Runbook:
    """One invocation's pipeline over a store and a set of targets."""

    def __init__(
        self,
        settings: Settings,
        store: SecretStore,
        targets: Mapping[str, Target],
        options: Options,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.targets = targets
        self.options = options
        self.progress = progress or NullProgress()
        self.aborted = ""  # set once: from then on no new item starts
        self._tolerated: float | None = None  # --max-failures, as a count of this run's items
        self._failures = 0
        self._total = 0

    def abort(self, reason: str) -> None:
        """Stop starting new items; those in flight finish and are recorded."""
        if not self.aborted:
            self.aborted = reason
            log.error("run aborted: %s; no new item starts", reason)

    # -- reading ---------------------------------------------------------------------------

    async def read_states(self, rows: Sequence[Row]) -> list[SecretState | StoreError]:
        """Vault's view of every row; a failed read is kept as the item's error.

        First every staged candidate (one scan of the journal records): a row that has one is
        resumed, never given a fresh password. Then one metadata read per row, as many in
        flight as Vault has connections: a fixed set of workers, not a task per row, so a
        100,000-row inventory costs no more memory than its results.
        """
        try:
            pending = await self.store.pending()
        except StoreError as exc:
            raise StoreUnavailable(
                f"could not read the journal of unfinished rotations: {exc}"
            ) from None

        async def one(row: Row) -> SecretState | StoreError:
            try:
                return await self.store.read_state(row.vault_path, pending.get(row.vault_path))
            except StoreError as exc:
                return exc

        return await fan_out(one, rows, self.settings.vault.connections)

    async def probe(self, names: Sequence[str]) -> dict[str, EndpointProbe]:
        """Probe each endpoint once, side by side; a failed probe means no writes there."""

        async def one(name: str) -> EndpointProbe:
            target = self.targets[name]
            system = self.settings.endpoints[name].system
            try:
                detail = await target.probe()
            except EndpointUnavailable as exc:
                log.warning("endpoint %s failed its probe: %s", name, exc)
                return EndpointProbe(name, system, False, str(exc))
            log.info("endpoint %s: %s", name, detail)
            return EndpointProbe(name, system, True, detail)

        probes = await asyncio.gather(*(one(n) for n in names))
        return {p.endpoint: p for p in probes}

    # -- the three uses ---------------------------------------------------------------------

    async def plan(self, rows: Sequence[Row]) -> Outcome:
        """What a run would do now; reads only."""
        now = now_utc()
        states = await self.read_states(rows)
        probes = await self.probe(sorted({r.endpoint for r in rows}))
        items = []
        due: list[str] = []
        for row, state in zip(rows, states, strict=True):
            if isinstance(state, StoreError):
                items.append(
                    ItemResult(row, Status.FAILED, vault_path=row.vault_path, error=str(state))
                )
                continue
            decision = planner.decide(
                row, state, now, self.settings.run.max_age_days, self.options.force
            )
            status = Status.DUE if decision.due else Status.NOT_DUE
            reason = decision.reason
            probe = probes[row.endpoint]
            if decision.due and not probe.ok:
                status = Status.NOT_ATTEMPTED
                reason = f"{reason}; endpoint {row.endpoint} failed its probe: {probe.detail}"
            if decision.due:
                due.append(row.vault_path)
            items.append(self._from_state(row, state, status, reason))
        plan_hash = planner.plan_hash(self.options.inputs_digest, due)
        return Outcome(items, list(probes.values()), plan_hash=plan_hash)

    async def report(self, rows: Sequence[Row]) -> Outcome:
        """Compliance of every row, from Vault alone."""
        now = now_utc()
        states = await self.read_states(rows)
        items = []
        for row, state in zip(rows, states, strict=True):
            if isinstance(state, StoreError):
                items.append(
                    ItemResult(row, Status.FAILED, vault_path=row.vault_path, error=str(state))
                )
                continue
            status, reason, soon = planner.compliance(
                row, state, now, self.settings.run.max_age_days, self.options.schedule_days
            )
            item = self._from_state(row, state, status, reason)
            items.append(replace(item, due_before_next_run=soon))
        drift = await self.drift(rows, states) if self.options.check_drift else None
        return Outcome(items, drift=drift)

    async def drift(
        self, rows: Sequence[Row], states: Sequence[SecretState | StoreError]
    ) -> Drift | None:
        """Secrets under the prefix that no row names, and rows that have no secret."""
        try:
            listed = await self.store.list_paths(self.settings.vault.prefix)
        except StoreError as exc:
            log.warning("drift not checked: %s", exc)
            return None
        known = {r.vault_path for r in rows}
        return Drift(
            secrets_without_row=tuple(p for p in listed if p not in known),
            rows_without_secret=tuple(
                r.label
                for r, st in zip(rows, states, strict=True)
                if isinstance(st, SecretState) and st.current_version is None
            ),
        )

    async def run(self, rows: Sequence[Row]) -> Outcome:
        """Rotate every due row: bounded globally, per endpoint by the targets, never cancelling."""
        now = now_utc()
        states = await self.read_states(rows)
        try:
            # Candidates found promoted already (a run stopped before it cleared them) leave
            # their journal records before any new candidate is staged.
            await self.store.settle()
        except StoreError as exc:
            raise StoreUnavailable(f"could not clear settled journal entries: {exc}") from None
        decisions: list[tuple[int, Row, SecretState, planner.Decision]] = []
        results: dict[int, ItemResult] = {}
        for i, (row, state) in enumerate(zip(rows, states, strict=True)):
            if isinstance(state, StoreError):
                results[i] = ItemResult(
                    row, Status.FAILED, vault_path=row.vault_path, error=str(state)
                )
                continue
            decision = planner.decide(
                row, state, now, self.settings.run.max_age_days, self.options.force
            )
            if not decision.due:
                results[i] = self._from_state(row, state, Status.SKIPPED, decision.reason)
            else:
                decisions.append((i, row, state, decision))

        expected = self.options.expected_plan_hash
        if expected is not None:
            actual = planner.plan_hash(
                self.options.inputs_digest, (row.vault_path for _, row, _, _ in decisions)
            )
            if actual != expected:
                raise PlanChanged(
                    f"the plan changed since it was approved (plan hash {actual}, approved "
                    f"{expected}): the inventory, the config or the set of due credentials "
                    "differs; run `rotate plan` again and approve the new plan"
                )
        due_endpoints = sorted({row.endpoint for _, row, _, _ in decisions})
        probes = await self.probe(due_endpoints)
        work: list[tuple[int, Row, SecretState, planner.Decision]] = []
        for i, row, state, decision in decisions:
            probe = probes[row.endpoint]
            if not probe.ok:
                results[i] = self._from_state(
                    row,
                    state,
                    Status.NOT_ATTEMPTED,
                    f"{decision.reason}; not attempted: endpoint failed its probe",
                    error=probe.detail,
                )
            else:
                work.append((i, row, state, decision))

        work = interleave(work, key=lambda w: w[1].endpoint)
        self.progress.start(len(work), [row.endpoint for _, row, _, _ in work])
        threshold = self.options.max_failures
        self._tolerated = threshold.limit(len(work)) if threshold else None
        self._failures = 0
        self._total = len(work)
        canary = work[: self.options.canary]
        try:
            if canary:
                await self._rotate_all(canary, results)
                bad = sum(results[i].status in (Status.FAILED, Status.IN_DOUBT) for i, *_ in canary)
                if bad:
                    self.abort(
                        f"canary failed: {bad} of the first {len(canary)} item(s) "
                        "failed or are in doubt (--canary)"
                    )
            await self._rotate_all(work[self.options.canary :], results)
        finally:
            self.progress.stop()
            await self._settle()
        items = [results[i] for i in range(len(rows))]
        return Outcome(items, list(probes.values()), aborted=self.aborted)

    async def _rotate_all(self, work: Sequence[Work], results: dict[int, ItemResult]) -> None:
        """Stage a batch, then hand its items to the workers while the next batch is staged.

        One journal record per batch holds its candidates durably before any of them is
        pushed; it is settled (cleared) once every item of the batch has an outcome. The
        queue between the two keeps at most one batch staged ahead of the workers.
        """
        concurrency = self.options.concurrency or self.settings.run.concurrency
        size = max(1, min(self.settings.run.stage_batch, concurrency))
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=size)
        workers = min(concurrency, len(work))

        async def produce() -> None:
            try:
                for start in range(0, len(work), size):
                    for job in await self._stage(work[start : start + size]):
                        await queue.put(job)
            finally:
                for _ in range(workers):
                    await queue.put(None)

        async def consume() -> None:
            while (job := await queue.get()) is not None:
                results[job.work[0]] = await self._one(job)

        await asyncio.gather(produce(), *(consume() for _ in range(workers)))

    async def _stage(self, chunk: Sequence[Work]) -> list[_Job]:
        """Candidates for a batch: resumed ones as they are, new ones generated and staged in
        one journal record; an item that gets none carries its outcome instead."""
        jobs: list[_Job] = []
        new: list[_Job] = []  # the inventory has no two rows with one Vault path
        for w in chunk:
            _, _, state, decision = w
            if self.aborted:
                jobs.append(_Job(w, None))
            elif decision.resume and state.pending is not None:
                jobs.append(_Job(w, state.pending.credential))
            else:
                job = _Job(w, None)
                jobs.append(job)
                new.append(job)
        if not new:
            return jobs
        passwords_made = await asyncio.gather(
            *(self._generate(self.settings.policies[j.work[1].policy]) for j in new),
            return_exceptions=True,
        )
        now = now_utc()
        staged: dict[str, PendingCandidate] = {}
        for job, made in zip(new, passwords_made, strict=True):
            _, row, state, _ = job.work
            if isinstance(made, StoreError):
                failure = self._result(job.work, Status.FAILED, Stage.PLANNED)
                job.outcome = failure(f"no candidate, nothing changed: {made}")
            elif isinstance(made, BaseException):
                raise made
            else:
                job.candidate = Credential(row.username, made, row.domain)
                staged[row.vault_path] = PendingCandidate(
                    job.candidate, self.options.run_id, now, state.current_version
                )
        if not staged:
            return jobs
        try:
            name = await self.store.stage(self.options.run_id, staged)
        except StoreError as exc:
            for job in new:
                if job.outcome is None:
                    failure = self._result(job.work, Status.FAILED, Stage.GENERATED)
                    job.outcome = failure(f"not staged, target untouched: {exc}")
                    job.candidate = None
            return jobs
        batch = _Batch(name, len(staged))
        for job in new:
            if job.outcome is None:
                job.batch = batch
        return jobs

    async def _one(self, job: _Job) -> ItemResult:
        """One item from start to recorded outcome, counted against the failure threshold."""
        _, row, state, decision = job.work
        self.progress.item_started(row)
        if job.outcome is not None:
            result = await self._note_failure(job.outcome)
        elif self.aborted:
            if job.batch is not None:  # staged, never sent: the candidate goes
                await self._drop(row)
            result = self._from_state(
                row,
                state,
                Status.NOT_ATTEMPTED,
                f"{decision.reason}; not started: run aborted",
                error=self.aborted,
            )
        else:
            assert job.candidate is not None
            result = await self._attempt(row, state, decision, job.candidate)
            if result.status in (Status.FAILED, Status.IN_DOUBT):
                result = await self._note_failure(result)
        if job.batch is not None:
            await self._batch_done(job.batch)
        self.progress.item_done(row, result.status)
        ITEMS.info(
            "%s: %s",
            row.label,
            result.status.value,
            extra={
                "run_id": self.options.run_id,
                "item": row.label,
                "endpoint": row.endpoint,
                "stage": result.stage.value,
                "outcome": result.status.value,
                "verified": result.verified,
                "vault_path": result.vault_path,
                "vault_version": result.vault_version,
                "error": result.error,
            },
        )
        if result.status in (Status.FAILED, Status.IN_DOUBT):
            self._failures += 1
            threshold = self.options.max_failures
            if (
                threshold is not None
                and self._tolerated is not None
                and self._failures > self._tolerated
            ):
                self.abort(
                    f"failure threshold crossed: {self._failures} of {self._total} item(s) "
                    f"failed or in doubt (--max-failures {threshold.text})"
                )
        return result

    async def _batch_done(self, batch: _Batch) -> None:
        """Settle the batch's journal record once its last item has an outcome."""
        batch.open -= 1
        if batch.open == 0:
            await self._settle(batch.name)

    async def _settle(self, name: str | None = None) -> None:
        """Clear settled candidates from journal records; a failure only leaves them listed
        (the next run recognises a promoted candidate as the current version)."""
        try:
            await self.store.settle(name)
        except StoreError as exc:
            log.warning("journal records not cleared (%s); the next run does it", exc)

    async def _drop(self, row: Row) -> None:
        try:
            await self.store.discard(row.vault_path)
        except StoreError as exc:
            log.warning("%s: an unsent candidate stays staged (%s)", row.label, exc)

    # -- one item ---------------------------------------------------------------------------

    async def _note_failure(self, result: ItemResult) -> ItemResult:
        """A failed or in-doubt attempt is noted in Vault too, for the compliance report."""
        at = now_utc()
        try:
            await self.store.record_failure(result.vault_path, self.options.run_id, at)
        except StoreError as exc:
            log.warning("%s: the failure could not be noted in Vault (%s)", result.row.label, exc)
            return result
        return replace(result, last_failure_at=at)

    def _result(self, w: Work, status: Status, stage: Stage) -> Callable[[str], ItemResult]:
        """The outcome of an item that ends before its attempt (no candidate, not staged)."""
        _, row, state, decision = w

        def make(error: str) -> ItemResult:
            return replace(
                self._from_state(row, state, status, decision.reason, error=error), stage=stage
            )

        return make

    async def _attempt(
        self, row: Row, state: SecretState, decision: planner.Decision, candidate: Credential
    ) -> ItemResult:
        """Push -> verify -> promote a staged candidate; every failure becomes the outcome."""
        started = time.monotonic()
        target = self.targets[row.endpoint]
        path = row.vault_path

        def result(
            status: Status,
            stage: Stage,
            error: str,
            verified: bool | None = None,
            vault_version: int | None = None,
            rotated_at: datetime | None = None,
        ) -> ItemResult:
            return ItemResult(
                row,
                status,
                stage,
                verified=verified,
                vault_path=path,
                vault_version=vault_version or state.current_version,
                reason=decision.reason,
                error=error,
                duration_s=time.monotonic() - started,
                last_rotated=rotated_at or state.rotated_at,
                age_days=0.0 if rotated_at else planner.age_days(state, now_utc()),
                max_age_days=planner.max_age(row, self.settings.run.max_age_days),
                last_failure_at=state.last_failure_at,
            )

        # 1. Staged already (_stage): the candidate is durably in Vault. A resumed one may
        # have been staged for another username/domain: finish it first, a later run
        # applies the change.
        if decision.resume and (
            candidate.username != row.username or candidate.domain != row.domain
        ):
            log.warning("%s: resuming a candidate staged for another username/domain", row.label)

        # 2. Push: an idempotent overwrite, retried inside the target on transient errors.
        # A resumed candidate may already be on the target (an earlier run delivered it):
        # where the API can tell, look first, and a "no" to the re-send then means it is not.
        held_before: Secret | None = None
        if decision.resume and target.verifiable(row):
            held_before = await self._held(target, row)
        try:
            if held_before is None or held_before != candidate.password:
                await target.push(row, candidate)
        except Rejected as exc:
            if decision.resume and held_before is None:
                return result(
                    Status.FAILED,
                    Stage.STAGED,
                    error=f"target refused the re-sent candidate ({exc}); an earlier run may "
                    "have delivered it, so it stays pending: check the target, then "
                    "`rotate reconcile`",
                )
            return await self._discard(row, result, f"target rejected the new password: {exc}")
        except OutcomeUnknown as exc:
            return result(
                Status.IN_DOUBT,
                Stage.STAGED,
                error=f"{exc}; candidate kept pending, the next run settles it",
            )
        except TargetError as exc:
            if decision.resume:
                # An earlier run may have delivered this candidate: never drop it unheard.
                return result(
                    Status.FAILED,
                    Stage.STAGED,
                    error=f"target not reached: {exc}; candidate kept pending",
                )
            return await self._discard(row, result, f"target not reached: {exc}")

        # 3. Verify where the API can read the password back.
        verified = False
        note = ""
        if target.verifiable(row):
            try:
                held = await target.read_back(row)
            except TargetError as exc:
                note = f"pushed; read-back failed ({exc})"
            else:
                if held is None:
                    note = "pushed; the read-back has no password"
                elif held != candidate.password:
                    return result(
                        Status.IN_DOUBT,
                        Stage.PUSHED,
                        verified=False,
                        error="read-back differs from the pushed password; "
                        "candidate kept pending, the next run settles it",
                    )
                else:
                    verified = True

        # 4. Promote: the accepted password becomes the current version.
        promoted_at = now_utc()
        try:
            version = await self.store.promote(path, candidate, state.current_version)
        except StoreError as exc:
            return result(
                Status.IN_DOUBT,
                Stage.VERIFIED if verified else Stage.PUSHED,
                verified=verified,
                error=f"target took the new password but promotion failed ({exc}); "
                "it stays pending in Vault, the next run promotes it",
            )
        log.debug("%s: rotated, Vault version %s", row.label, version)
        # 5. Follow-ups: other places on the target that embed the password (Spark View
        # access links). The rotation itself is done; a follow-up failure is reported with it.
        try:
            followups = await target.follow_up(row, candidate)
        except TargetError as exc:
            followups = ()
            note = "; ".join(n for n in (note, f"follow-up failed: {exc}") if n)
        done = result(
            Status.ROTATED,
            Stage.PROMOTED,
            verified=verified,
            vault_version=version,
            error=note,
            rotated_at=promoted_at,
        )
        return replace(done, followups=tuple(followups)) if followups else done

    async def _held(self, target: Target, row: Row) -> Secret | None:
        """The password the target holds now, or None when it cannot be told."""
        try:
            return await target.read_back(row)
        except TargetError as exc:
            log.info("%s: read-back before re-sending failed (%s)", row.label, exc)
            return None

    async def _generate(self, policy: PolicySettings) -> Secret:
        """A new password per the policy: made here, or by a Vault password policy."""
        if policy.generator != "vault" or policy.vault_policy is None:
            return passwords.generate(policy)
        password = await self.store.generate_password(policy.vault_policy)
        if len(password) != policy.length:
            raise StoreError(
                f"Vault password policy {policy.vault_policy!r} made a password of "
                f"{len(password)} characters; policy {policy.name!r} says {policy.length}"
            )
        return password

    async def _discard(self, row: Row, result: Callable[..., ItemResult], why: str) -> ItemResult:
        """The target definitely does not hold the candidate: drop it, the current stays valid."""
        try:
            await self.store.discard(row.vault_path)
        except StoreError as exc:
            why = f"{why}; the candidate could not be discarded ({exc})"
        else:
            why = f"{why}; candidate discarded, the current password stays valid"
        return result(Status.FAILED, Stage.STAGED, error=why)

    def _from_state(
        self, row: Row, state: SecretState, status: Status, reason: str, error: str = ""
    ) -> ItemResult:
        return ItemResult(
            row,
            status,
            vault_path=row.vault_path,
            vault_version=state.current_version,
            reason=reason,
            error=error,
            last_rotated=state.rotated_at,
            age_days=planner.age_days(state, now_utc()),
            max_age_days=planner.max_age(row, self.settings.run.max_age_days),
            last_failure_at=state.last_failure_at,
        )


@dataclass
class _Batch:
    """The items staged in one journal record, counted down as they finish."""

    name: str
    open: int


@dataclass
class _Job:
    """A due item on its way to the workers: its candidate, or the outcome it already has."""

    work: Work
    candidate: Credential | None
    outcome: ItemResult | None = None
    batch: _Batch | None = None
