"""Rotation runs: which accounts act, their candidates staged a batch at a time, the
accounts run on a fixed set of workers within the bounds, and the failure threshold and the
canary watched as each failure becomes known."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from rotate import planner
from rotate.attempt import AccountOutcome, Context, now_utc
from rotate.errors import PlanChanged, StoreError, StoreUnavailable
from rotate.models import (
    NO_AUTHORITY,
    Account,
    AuthorityProbe,
    Credential,
    PendingCandidate,
    SecretState,
    Status,
)
from rotate.monitoring import ITEMS
from rotate.protocol import AccountRotation
from rotate.runbook import Outcome, Runbook, interleave

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    """The accounts staged in one journal record, counted down as they finish."""

    name: str
    open: int


@dataclass
class _Job:
    """An acting account on its way to the workers."""

    account: Account
    state: SecretState
    decision: planner.Decision
    candidate: Credential | None = None
    batch: _Batch | None = None
    outcome: AccountOutcome | None = None  # it ended before its protocol started


class Scheduler:
    """One rotation run of a runbook: counts its failures, and aborts it when they cross
    the threshold or the canary fails."""

    def __init__(self, book: Runbook) -> None:
        self.book = book
        self._tolerated: float | None = None
        self._failures = 0
        self._total = 0
        self._canary: int | None = None  # the canary's size while it runs

    async def run(self, accounts: Sequence[Account]) -> Outcome:
        """Rotate every due account and repair every stale usage, bounded, never cancelling."""
        states = await self.book.read_states(accounts)
        try:
            # Candidates found promoted already (a run stopped before it cleared them) leave
            # their journal records before any new candidate is staged.
            await self.book.store.settle()
        except StoreError as exc:
            raise StoreUnavailable(f"could not clear settled journal entries: {exc}") from None
        outcomes: dict[int, AccountOutcome] = {}
        acting = self._acting(accounts, states, outcomes)
        self._check_plan_hash(acting)
        probes = await self.book.probe(
            sorted({r.endpoint for _, j in acting for r in j.account.usages})
        )
        authority_probes = await self.book.probe_authorities(
            sorted({j.account.authority for _, j in acting if j.account.changes_host})
        )
        down = {n: p.detail for n, p in probes.items() if not p.ok}
        ctx = self.book.context(down, self._count_failure)
        work = self._reachable(ctx, acting, authority_probes, outcomes)
        await self._execute(ctx, work, outcomes)
        ordered = [outcomes[i] for i in range(len(accounts))]
        return self.book.record(ordered, probes, authority_probes, aborted=self.book.aborted)

    def _acting(
        self,
        accounts: Sequence[Account],
        states: Sequence[SecretState | StoreError],
        outcomes: dict[int, AccountOutcome],
    ) -> list[tuple[int, _Job]]:
        """The accounts that act now (due, or with stale usages); the others get their
        outcome here (not due: skipped; Vault not read: failed)."""
        decisions = self.book.decide(accounts, states, now_utc())
        acting: list[tuple[int, _Job]] = []
        ctx = self.book.context({}, self._count_failure)
        for i, (account, state, decision) in enumerate(
            zip(accounts, states, decisions, strict=True)
        ):
            if isinstance(state, StoreError) or decision is None:
                outcomes[i] = self.book.failed_read(account, state)
                log.warning("account %s: failed: %s", account.name, state)
            elif not decision.acts:
                rotation = AccountRotation(
                    ctx, account, state, decision, self.book.authorities[NO_AUTHORITY]
                )
                outcomes[i] = rotation.outcome(Status.SKIPPED, decision.reason)
            else:
                acting.append((i, _Job(account, state, decision)))
        return acting

    def _reachable(
        self,
        ctx: Context,
        acting: Sequence[tuple[int, _Job]],
        authority_probes: Mapping[str, AuthorityProbe],
        outcomes: dict[int, AccountOutcome],
    ) -> list[tuple[int, _Job]]:
        """The acting accounts a run can reach: not those whose usages' endpoints all failed
        their probe, nor those whose authority did (not attempted, said here)."""
        work: list[tuple[int, _Job]] = []
        for i, job in acting:
            probe = authority_probes.get(job.account.authority)
            error = ""
            if all(r.endpoint in ctx.down for r in job.account.usages) and not job.decision.resume:
                error = "not attempted: no endpoint of its usages passed its probe: " + "; ".join(
                    sorted({ctx.down[r.endpoint] for r in job.account.usages})
                )
            elif probe is not None and not probe.ok:
                error = (
                    f"not attempted: authority {job.account.authority} failed its probe: "
                    f"{probe.detail}"
                )
            if error:
                rotation = rotation_of(self.book, ctx, job)
                outcomes[i] = rotation.outcome(
                    Status.NOT_ATTEMPTED, job.decision.reason, error=error
                )
            else:
                work.append((i, job))
        return interleave(work, key=lambda w: w[1].account.usages[0].endpoint)

    async def _execute(
        self, ctx: Context, work: Sequence[tuple[int, _Job]], outcomes: dict[int, AccountOutcome]
    ) -> None:
        """The canary first (if asked), then the rest; the threshold watched throughout."""
        rows = [r for _, j in work for r in j.account.usages]
        self.book.progress.start(len(rows), [r.endpoint for r in rows])
        threshold = self.book.options.max_failures
        self._tolerated = threshold.limit(len(work)) if threshold else None
        self._failures = 0
        self._total = len(work)
        canary = work[: self.book.options.canary]
        try:
            if canary:
                self._canary = len(canary)
                await self._run_all(ctx, canary, outcomes)
                self._canary = None
            await self._run_all(ctx, work[self.book.options.canary :], outcomes)
        finally:
            self.book.progress.stop()
            await self._settle()

    def _check_plan_hash(self, acting: Sequence[tuple[int, _Job]]) -> None:
        expected = self.book.options.expected_plan_hash
        if expected is None:
            return
        due: list[str] = [j.account.vault_path for _, j in acting if j.decision.due]
        due += [f"repair:{label}" for _, j in acting for label in j.state.stale]
        actual = planner.plan_hash(self.book.options.inputs_digest, due)
        if actual != expected:
            raise PlanChanged(
                f"the plan changed since it was approved (plan hash {actual}, approved "
                f"{expected}): the inventory, the config or the set of due credentials "
                "differs; run `rotate plan` again and approve the new plan"
            )

    async def _run_all(
        self, ctx: Context, work: Sequence[tuple[int, _Job]], outcomes: dict[int, AccountOutcome]
    ) -> None:
        """Stage a batch, then hand its accounts to the workers while the next is staged.

        One journal record per batch holds its candidates durably before any of them is
        used; it is settled (cleared) once every account of the batch has an outcome. The
        queue between the two keeps at most one batch staged ahead of the workers.
        """
        concurrency = self.book.options.concurrency or self.book.settings.run.concurrency
        size = max(1, min(self.book.settings.run.stage_batch, concurrency))
        queue: asyncio.Queue[tuple[int, _Job] | None] = asyncio.Queue(maxsize=size)
        workers = min(concurrency, len(work))

        async def produce() -> None:
            try:
                for start in range(0, len(work), size):
                    chunk = work[start : start + size]
                    await stage_batch(
                        self.book, self.book.context({}, self._count_failure), [j for _, j in chunk]
                    )
                    for item in chunk:
                        await queue.put(item)
            finally:
                for _ in range(workers):
                    await queue.put(None)

        async def consume() -> None:
            while (item := await queue.get()) is not None:
                outcomes[item[0]] = await self._one(ctx, item[1])

        await asyncio.gather(produce(), *(consume() for _ in range(workers)))

    async def _one(self, ctx: Context, job: _Job) -> AccountOutcome:
        """One account from start to recorded outcome, counted against the failure threshold."""
        for row in job.account.usages:
            self.book.progress.item_started(row)
        rotation = rotation_of(self.book, ctx, job)
        self.book.in_flight += 1
        try:
            outcome = await self._attempt(rotation, job)
        finally:
            self.book.in_flight -= 1
        if rotation.journal is not None:
            await self._settle(rotation.journal)
        if outcome.troubled:
            outcome = await self._note_failure(outcome)
        if job.batch is not None:
            job.batch.open -= 1
            if job.batch.open == 0:
                await self._settle(job.batch.name)
        log_outcome(self.book, outcome)
        return outcome

    async def _attempt(self, rotation: AccountRotation, job: _Job) -> AccountOutcome:
        """The account's protocol, unless it already has an outcome or the run was aborted."""
        if job.outcome is not None:
            return job.outcome
        if self.book.aborted:
            await rotation.discard_unused()
            return rotation.outcome(
                Status.NOT_ATTEMPTED,
                f"{job.decision.reason}; not started: run aborted",
                error=self.book.aborted,
            )
        return await rotation.run()

    def _count_failure(self) -> None:
        """An account failed or is in doubt, counted the moment that is known (before its
        candidate is even discarded): the threshold or the canary stops the run at once."""
        self._failures += 1
        threshold = self.book.options.max_failures
        if self._canary is not None:
            self.book.abort(
                f"canary failed: {self._failures} of the first {self._canary} account(s) "
                "failed or are in doubt (--canary)"
            )
        elif (
            threshold is not None
            and self._tolerated is not None
            and self._failures > self._tolerated
        ):
            self.book.abort(
                f"failure threshold crossed: {self._failures} of {self._total} account(s) "
                f"failed or in doubt (--max-failures {threshold.text})"
            )

    async def _settle(self, name: str | None = None) -> None:
        """Clear settled candidates from journal records; a failure only leaves them listed
        (the next run recognises a promoted candidate as the current version)."""
        try:
            await self.book.store.settle(name)
        except StoreError as exc:
            log.warning("journal records not cleared (%s); the next run does it", exc)

    async def _note_failure(self, outcome: AccountOutcome) -> AccountOutcome:
        """A failed or in-doubt attempt is noted in Vault too, for the compliance report."""
        at = now_utc()
        path = outcome.result.account.vault_path
        try:
            await self.book.store.record_failure(path, self.book.options.run_id, at)
        except StoreError as exc:
            log.warning("%s: the failure could not be noted in Vault (%s)", path, exc)
            return outcome
        outcome.items = [replace(i, last_failure_at=at) for i in outcome.items]
        return outcome


def log_outcome(book: Runbook, outcome: AccountOutcome) -> None:
    """Progress and a line per usage (for machines and -v), as each account finishes."""
    for item in outcome.items:
        row = item.row
        book.progress.item_done(item)
        ITEMS.info(
            "%s: %s",
            row.label,
            item.status.value,
            extra={
                "run_id": book.options.run_id,
                "item": row.label,
                "account": row.account,
                "endpoint": row.endpoint,
                "stage": item.stage.value,
                "outcome": item.status.value,
                "verified": item.verified,
                "vault_path": item.vault_path,
                "vault_version": item.vault_version,
                "error": item.error,
            },
        )


def rotation_of(book: Runbook, ctx: Context, job: _Job) -> AccountRotation:
    """The protocol object of one account of this run."""
    return AccountRotation(
        ctx,
        job.account,
        job.state,
        job.decision,
        book.authorities[job.account.authority],
        candidate=job.candidate,
    )


async def stage_batch(book: Runbook, ctx: Context, jobs: Sequence[_Job]) -> None:
    """New candidates for a batch of accounts that rotate now, in one journal record.
    Resumed accounts keep theirs; accounts with stale usages stage their own once repaired."""
    new = [
        j
        for j in jobs
        if not book.aborted and j.decision.due and not j.decision.resume and not j.decision.repair
    ]
    if not new:
        return
    made = await asyncio.gather(*(book.generate(j.account) for j in new), return_exceptions=True)
    now = now_utc()
    staged: dict[str, PendingCandidate] = {}
    for job, password in zip(new, made, strict=True):
        if isinstance(password, StoreError):
            rotation = rotation_of(book, ctx, job)
            job.outcome = rotation.outcome(
                Status.FAILED,
                job.decision.reason,
                error=f"no candidate, nothing changed: {password}",
            )
        elif isinstance(password, BaseException):
            raise password
        else:
            account = job.account
            job.candidate = Credential(account.username, password, account.domain)
            staged[account.vault_path] = PendingCandidate(
                job.candidate, book.options.run_id, now, job.state.current_version
            )
    if not staged:
        return
    try:
        name = await book.store.stage(book.options.run_id, staged)
    except StoreError as exc:
        for job in new:
            if job.outcome is None:
                rotation = rotation_of(book, ctx, job)
                job.outcome = rotation.outcome(
                    Status.FAILED,
                    job.decision.reason,
                    error=f"not staged, target untouched: {exc}",
                )
                job.candidate = None
        return
    batch = _Batch(name, len(staged))
    for job in new:
        if job.outcome is None:
            job.batch = batch
