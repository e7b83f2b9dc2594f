"""Orchestration: read Vault's state, plan, probe, schedule accounts within the bounds, record.

What happens to one account is in rotate/protocol.py; this module decides which accounts act,
probes the endpoints and authorities they need, stages their candidates a batch at a time,
runs them on a fixed set of workers (interleaved across endpoints, so the global bound keeps
every endpoint busy), stops starting new ones when the run is aborted (failure threshold,
failed canary, lost lease), and turns every outcome into records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from rotate import passwords, planner
from rotate.authorities.base import Authority
from rotate.authorities.none import NoAuthority
from rotate.errors import (
    AdminRefused,
    AuthorityUnavailable,
    EndpointUnavailable,
    PlanChanged,
    RemoteError,
    StoreError,
    StoreUnavailable,
)
from rotate.models import (
    NO_AUTHORITY,
    Account,
    AccountResult,
    AuthorityProbe,
    Credential,
    Drift,
    EndpointProbe,
    ItemResult,
    PendingCandidate,
    Secret,
    SecretState,
    Status,
)
from rotate.monitoring import ITEMS
from rotate.progress import NullProgress, Progress
from rotate.protocol import TROUBLE, AccountOutcome, AccountRotation, Context, now_utc
from rotate.settings import Settings
from rotate.stores.base import DataPlane
from rotate.stores.kv import fan_out
from rotate.vendors.base import Target

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Threshold:
    """`--max-failures`: a count (`5`) or a share of the accounts to rotate (`2%`)."""

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
    max_failures: Threshold | None = None  # stop starting accounts once crossed
    canary: int = 0  # rotate this many accounts first; stop if any of them fails
    inputs_digest: str = ""  # SHA-256 of inventory and config, for the plan hash
    expected_plan_hash: str | None = None  # run: refuse unless the plan is still this one
    schedule_days: float | None = None  # report: days until the next scheduled run
    check_drift: bool = True  # report: off for a shard, which cannot tell others' secrets


@dataclass(repr=False)
class Outcome:
    """What a runbook call produced, for the record and the exit code."""

    items: list[ItemResult]
    probes: list[EndpointProbe] = field(default_factory=list)
    aborted: str = ""  # why the run stopped starting accounts, if it did
    plan_hash: str = ""
    drift: Drift | None = None
    accounts: list[AccountResult] = field(default_factory=list)
    authority_probes: list[AuthorityProbe] = field(default_factory=list)

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


class Runbook:
    """One invocation's orchestration over a store, the targets and the authorities."""

    def __init__(
        self,
        settings: Settings,
        store: DataPlane,
        targets: Mapping[str, Target],
        options: Options,
        progress: Progress | None = None,
        authorities: Mapping[str, Authority] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.targets = targets
        self.authorities = {NO_AUTHORITY: NoAuthority(), **(authorities or {})}
        self.options = options
        self.progress = progress or NullProgress()
        self.aborted = ""  # set once: from then on no new account starts, nothing new is sent
        self.in_flight_at_abort = 0  # accounts under way when the run was aborted
        self._tolerated: float | None = None
        self._failures = 0
        self._total = 0
        self._in_flight = 0
        self._canary: int | None = None  # the canary's size while it runs

    def abort(self, reason: str) -> None:
        """Stop starting new accounts and sending anything new; those already sending finish
        and are recorded."""
        if not self.aborted:
            self.in_flight_at_abort = self._in_flight
            under_way = f"; {self._in_flight} account(s) already under way were let finish"
            self.aborted = reason + (under_way if self.options.mode == "run" else "")
            log.error("run aborted: %s; no new account starts", self.aborted)

    def authority_type(self, account: Account) -> str:
        found = self.settings.authorities.get(account.authority)
        return found.type if found is not None else NO_AUTHORITY

    # -- reading ---------------------------------------------------------------------------

    async def read_states(self, accounts: Sequence[Account]) -> list[SecretState | StoreError]:
        """Vault's view of every account; a failed read is kept as the account's error.

        First every staged candidate (one scan of the journal records: an account that has
        one is resumed, never given a fresh password) and every usage recorded stale (one
        scan: they are repaired first); then one metadata read per account, as many in
        flight as Vault has connections (a fixed set of workers, not a task per account).
        """
        try:
            pending = await self.store.pending()
        except StoreError as exc:
            raise StoreUnavailable(
                f"could not read the journal of unfinished rotations: {exc}"
            ) from None
        try:
            stale = await self.store.stale()
        except StoreError as exc:
            raise StoreUnavailable(f"could not read the stale-usage records: {exc}") from None

        async def one(account: Account) -> SecretState | StoreError:
            path = account.vault_path
            try:
                state = await self.store.read_state(path, pending.get(path))
            except StoreError as exc:
                return exc
            return replace(state, stale=stale[path]) if path in stale else state

        return await fan_out(one, accounts, self.settings.vault.connections)

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

    async def probe_authorities(self, names: Sequence[str]) -> dict[str, AuthorityProbe]:
        """Log in to each authority as rotate's admin; AdminRefused (exit 3) stops the run
        before any change, an unreachable authority only holds back its own accounts."""

        async def one(name: str) -> AuthorityProbe:
            settings = self.settings.authorities.get(name)
            kind = settings.type if settings is not None else NO_AUTHORITY
            try:
                detail = await self.authorities[name].probe()
            except AdminRefused:
                raise
            except (AuthorityUnavailable, RemoteError) as exc:
                log.warning("authority %s failed its probe: %s", name, exc)
                return AuthorityProbe(name, kind, False, str(exc))
            log.info("authority %s: %s", name, detail)
            return AuthorityProbe(name, kind, True, detail)

        probes = await asyncio.gather(*(one(n) for n in names))
        return {p.name: p for p in probes}

    def context(self, down: Mapping[str, str]) -> Context:
        return Context(
            run_id=self.options.run_id,
            force=self.options.force,
            store=self.store,
            targets=self.targets,
            down=down,
            default_max_age_days=self.settings.run.max_age_days,
            generate=self._generate,
            stopped=lambda: self.aborted,
            failing=self._count_failure,
        )

    # -- plan ------------------------------------------------------------------------------

    async def plan(self, accounts: Sequence[Account]) -> Outcome:
        """What a run would do now, with the same checks (reads and logins only)."""
        now = now_utc()
        states = await self.read_states(accounts)
        decisions = self._decide(accounts, states, now)
        acting = [a for a, d in zip(accounts, decisions, strict=True) if d is not None and d.acts]
        probes = await self.probe(sorted({r.endpoint for a in accounts for r in a.usages}))
        authority_probes = await self.probe_authorities(
            sorted({a.authority for a in acting if a.changes_host})
        )
        down = {n: p.detail for n, p in probes.items() if not p.ok}
        ctx = self.context(down)

        async def one(index: int) -> AccountOutcome:
            account, state, decision = accounts[index], states[index], decisions[index]
            if isinstance(state, StoreError) or decision is None:
                return self._failed_read(account, state)
            return await self._plan_one(ctx, account, state, decision, authority_probes)

        outcomes = await fan_out(one, list(range(len(accounts))), self.width())
        due: list[str] = []
        for account, state, decision in zip(accounts, states, decisions, strict=True):
            if decision is not None and decision.due:
                due.append(account.vault_path)
            if isinstance(state, SecretState):
                due.extend(f"repair:{label}" for label in state.stale)
        plan_hash = planner.plan_hash(self.options.inputs_digest, due)
        return self._outcome(outcomes, probes, authority_probes, plan_hash=plan_hash, aborted="")

    async def _plan_one(
        self,
        ctx: Context,
        account: Account,
        state: SecretState,
        decision: planner.Decision,
        authority_probes: Mapping[str, AuthorityProbe],
    ) -> AccountOutcome:
        """One account's plan: due or not, and whether a run could do it."""
        rotation = AccountRotation(
            ctx, account, state, decision, self.authorities[account.authority]
        )
        if not decision.acts:
            return rotation.outcome(Status.NOT_DUE, decision.reason)
        status, error = Status.DUE, ""
        probe = authority_probes.get(account.authority)
        up = [r for r in account.usages if r.endpoint not in ctx.down]
        if not up:
            status, error = Status.NOT_ATTEMPTED, "no endpoint of its usages passed its probe"
        elif probe is not None and not probe.ok:
            status, error = Status.NOT_ATTEMPTED, f"authority {account.authority}: {probe.detail}"
        elif decision.due and not decision.resume and account.changes_host:
            held = await rotation.current_logs_in()
            if held is False and not self.options.force:
                status = Status.DRIFT
                error = (
                    f"Vault's current password does not log in at authority "
                    f"{account.authority} (changed out of band?): a run does not rotate it "
                    "without --force"
                )
            elif held is None:
                error = f"authority {account.authority} could not check Vault's current password"
        if not account.changes_host:
            error = "; ".join(e for e in (error, "copy-only: the host account is not changed") if e)
        outcome = rotation.outcome(status, decision.reason, error=error)
        for i, item in enumerate(outcome.items):
            row = item.row
            note = ""
            if row.label in state.stale:
                note = "stale: holds an older password; the run re-pushes Vault's current first"
            elif row.endpoint in ctx.down and status is Status.DUE:
                note = "endpoint failed its probe: this usage would be left stale"
            if note:
                outcome.items[i] = replace(
                    item,
                    status=Status.DUE if status is Status.DUE or decision.repair else item.status,
                    reason=f"{item.reason}; {note}",
                )
        return outcome

    # -- report ----------------------------------------------------------------------------

    async def report(self, accounts: Sequence[Account]) -> Outcome:
        """Compliance of every account and usage, from Vault alone."""
        now = now_utc()
        states = await self.read_states(accounts)
        outcomes = []
        ctx = self.context({})
        for account, state in zip(accounts, states, strict=True):
            if isinstance(state, StoreError):
                outcomes.append(self._failed_read(account, state))
                continue
            status, reason, soon = planner.compliance(
                account, state, now, self.settings.run.max_age_days, self.options.schedule_days
            )
            rotation = AccountRotation(
                ctx, account, state, planner.Decision(False, reason), self.authorities[NO_AUTHORITY]
            )
            outcome = rotation.outcome(status, reason)
            for i, item in enumerate(outcome.items):
                item = replace(item, due_before_next_run=soon)
                stale = state.stale.get(item.row.label)
                if stale is not None:
                    held = f"v{stale.held_version}" if stale.held_version else "an unknown version"
                    since = f" since {stale.since:%Y-%m-%d %H:%M} UTC" if stale.since else ""
                    item = replace(
                        item,
                        status=Status.STALE,
                        reason=f"does not hold the account's current password (holds {held}"
                        f"{since}); the next run repairs it",
                    )
                outcome.items[i] = item
            stale_count = sum(i.status is Status.STALE for i in outcome.items)
            outcome.result = replace(
                outcome.result,
                status=Status.STALE if stale_count else status,
                in_sync=len(account.usages) - stale_count if state.current_version else 0,
                stale=stale_count,
            )
            outcomes.append(outcome)
        drift = await self.drift(accounts, states) if self.options.check_drift else None
        record = self._outcome(outcomes, {}, {}, aborted="")
        record.drift = drift
        return record

    async def drift(
        self, accounts: Sequence[Account], states: Sequence[SecretState | StoreError]
    ) -> Drift | None:
        """Secrets under the prefix that no account uses, and usages whose account has none."""
        try:
            listed = await self.store.list_paths(self.settings.vault.prefix)
        except StoreError as exc:
            log.warning("drift not checked: %s", exc)
            return None
        known = {a.vault_path for a in accounts}
        return Drift(
            secrets_without_row=tuple(p for p in listed if p not in known),
            rows_without_secret=tuple(
                r.label
                for a, st in zip(accounts, states, strict=True)
                if isinstance(st, SecretState) and st.current_version is None
                for r in a.usages
            ),
        )

    # -- run -------------------------------------------------------------------------------

    async def run(self, accounts: Sequence[Account]) -> Outcome:
        """Rotate every due account and repair every stale usage, bounded, never cancelling."""
        now = now_utc()
        states = await self.read_states(accounts)
        try:
            # Candidates found promoted already (a run stopped before it cleared them) leave
            # their journal records before any new candidate is staged.
            await self.store.settle()
        except StoreError as exc:
            raise StoreUnavailable(f"could not clear settled journal entries: {exc}") from None
        decisions = self._decide(accounts, states, now)
        outcomes: dict[int, AccountOutcome] = {}
        acting: list[tuple[int, _Job]] = []
        ctx0 = self.context({})
        for i, (account, state, decision) in enumerate(
            zip(accounts, states, decisions, strict=True)
        ):
            if isinstance(state, StoreError) or decision is None:
                outcomes[i] = self._failed_read(account, state)
            elif not decision.acts:
                rotation = AccountRotation(
                    ctx0, account, state, decision, self.authorities[NO_AUTHORITY]
                )
                outcomes[i] = rotation.outcome(Status.SKIPPED, decision.reason)
            else:
                acting.append((i, _Job(account, state, decision)))

        self._check_plan_hash(acting)
        probes = await self.probe(sorted({r.endpoint for _, j in acting for r in j.account.usages}))
        authority_probes = await self.probe_authorities(
            sorted({j.account.authority for _, j in acting if j.account.changes_host})
        )
        down = {n: p.detail for n, p in probes.items() if not p.ok}
        ctx = self.context(down)
        work: list[tuple[int, _Job]] = []
        for i, job in acting:
            probe = authority_probes.get(job.account.authority)
            if all(r.endpoint in down for r in job.account.usages) and not job.decision.resume:
                outcomes[i] = self._rotation(ctx, job).outcome(
                    Status.NOT_ATTEMPTED,
                    job.decision.reason,
                    error="not attempted: no endpoint of its usages passed its probe: "
                    + "; ".join(sorted({down[r.endpoint] for r in job.account.usages})),
                )
            elif probe is not None and not probe.ok:
                rotation = self._rotation(ctx, job)
                outcomes[i] = rotation.outcome(
                    Status.NOT_ATTEMPTED,
                    job.decision.reason,
                    error=f"not attempted: authority {job.account.authority} failed its probe: "
                    f"{probe.detail}",
                )
            else:
                work.append((i, job))

        work = interleave(work, key=lambda w: w[1].account.usages[0].endpoint)
        rows = [r for _, j in work for r in j.account.usages]
        self.progress.start(len(rows), [r.endpoint for r in rows])
        threshold = self.options.max_failures
        self._tolerated = threshold.limit(len(work)) if threshold else None
        self._failures = 0
        self._total = len(work)
        canary = work[: self.options.canary]
        try:
            if canary:
                self._canary = len(canary)
                await self._run_all(ctx, canary, outcomes)
                self._canary = None
            await self._run_all(ctx, work[self.options.canary :], outcomes)
        finally:
            self.progress.stop()
            await self._settle()
        ordered = [outcomes[i] for i in range(len(accounts))]
        return self._outcome(ordered, probes, authority_probes, aborted=self.aborted)

    def _check_plan_hash(self, acting: Sequence[tuple[int, _Job]]) -> None:
        expected = self.options.expected_plan_hash
        if expected is None:
            return
        due: list[str] = [j.account.vault_path for _, j in acting if j.decision.due]
        due += [f"repair:{label}" for _, j in acting for label in j.state.stale]
        actual = planner.plan_hash(self.options.inputs_digest, due)
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
        concurrency = self.options.concurrency or self.settings.run.concurrency
        size = max(1, min(self.settings.run.stage_batch, concurrency))
        queue: asyncio.Queue[tuple[int, _Job] | None] = asyncio.Queue(maxsize=size)
        workers = min(concurrency, len(work))

        async def produce() -> None:
            try:
                for start in range(0, len(work), size):
                    chunk = work[start : start + size]
                    await self._stage([j for _, j in chunk])
                    for item in chunk:
                        await queue.put(item)
            finally:
                for _ in range(workers):
                    await queue.put(None)

        async def consume() -> None:
            while (item := await queue.get()) is not None:
                outcomes[item[0]] = await self._one(ctx, item[1])

        await asyncio.gather(produce(), *(consume() for _ in range(workers)))

    async def _stage(self, jobs: Sequence[_Job]) -> None:
        """New candidates for a batch of accounts that rotate now, in one journal record.
        Resumed accounts keep theirs; accounts with stale usages stage their own once repaired."""
        new = [
            j
            for j in jobs
            if not self.aborted
            and j.decision.due
            and not j.decision.resume
            and not j.decision.repair
        ]
        if not new:
            return
        made = await asyncio.gather(
            *(self._generate(j.account) for j in new), return_exceptions=True
        )
        now = now_utc()
        staged: dict[str, PendingCandidate] = {}
        for job, password in zip(new, made, strict=True):
            if isinstance(password, StoreError):
                rotation = self._rotation(self.context({}), job)
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
                    job.candidate, self.options.run_id, now, job.state.current_version
                )
        if not staged:
            return
        try:
            name = await self.store.stage(self.options.run_id, staged)
        except StoreError as exc:
            for job in new:
                if job.outcome is None:
                    rotation = self._rotation(self.context({}), job)
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

    def _rotation(self, ctx: Context, job: _Job) -> AccountRotation:
        return AccountRotation(
            ctx,
            job.account,
            job.state,
            job.decision,
            self.authorities[job.account.authority],
            candidate=job.candidate,
        )

    async def _one(self, ctx: Context, job: _Job) -> AccountOutcome:
        """One account from start to recorded outcome, counted against the failure threshold."""
        for row in job.account.usages:
            self.progress.item_started(row)
        rotation = self._rotation(ctx, job)
        self._in_flight += 1
        try:
            outcome = await self._attempt(rotation, job)
        finally:
            self._in_flight -= 1
        if rotation.journal is not None:
            await self._settle(rotation.journal)
        if outcome.troubled:
            outcome = await self._note_failure(outcome)
        if job.batch is not None:
            job.batch.open -= 1
            if job.batch.open == 0:
                await self._settle(job.batch.name)
        self._log(outcome)
        return outcome

    async def _attempt(self, rotation: AccountRotation, job: _Job) -> AccountOutcome:
        """The account's protocol, unless it already has an outcome or the run was aborted."""
        if job.outcome is not None:
            return job.outcome
        if self.aborted:
            await rotation.discard_unused()
            return rotation.outcome(
                Status.NOT_ATTEMPTED,
                f"{job.decision.reason}; not started: run aborted",
                error=self.aborted,
            )
        return await rotation.run()

    def _count_failure(self) -> None:
        """An account failed or is in doubt, counted the moment that is known (before its
        candidate is even discarded): the threshold or the canary stops the run at once."""
        self._failures += 1
        threshold = self.options.max_failures
        if self._canary is not None:
            self.abort(
                f"canary failed: {self._failures} of the first {self._canary} account(s) "
                "failed or are in doubt (--canary)"
            )
        elif (
            threshold is not None
            and self._tolerated is not None
            and self._failures > self._tolerated
        ):
            self.abort(
                f"failure threshold crossed: {self._failures} of {self._total} account(s) "
                f"failed or in doubt (--max-failures {threshold.text})"
            )

    def _log(self, outcome: AccountOutcome) -> None:
        for item in outcome.items:
            row = item.row
            self.progress.item_done(item)
            ITEMS.info(
                "%s: %s",
                row.label,
                item.status.value,
                extra={
                    "run_id": self.options.run_id,
                    "item": row.label,
                    "account": row.account_name,
                    "endpoint": row.endpoint,
                    "stage": item.stage.value,
                    "outcome": item.status.value,
                    "verified": item.verified,
                    "vault_path": item.vault_path,
                    "vault_version": item.vault_version,
                    "error": item.error,
                },
            )

    async def _settle(self, name: str | None = None) -> None:
        """Clear settled candidates from journal records; a failure only leaves them listed
        (the next run recognises a promoted candidate as the current version)."""
        try:
            await self.store.settle(name)
        except StoreError as exc:
            log.warning("journal records not cleared (%s); the next run does it", exc)

    async def _note_failure(self, outcome: AccountOutcome) -> AccountOutcome:
        """A failed or in-doubt attempt is noted in Vault too, for the compliance report."""
        at = now_utc()
        path = outcome.result.account.vault_path
        try:
            await self.store.record_failure(path, self.options.run_id, at)
        except StoreError as exc:
            log.warning("%s: the failure could not be noted in Vault (%s)", path, exc)
            return outcome
        outcome.items = [replace(i, last_failure_at=at) for i in outcome.items]
        return outcome

    async def _generate(self, account: Account) -> Secret:
        """A new password per the account's policy: made here, or by a Vault password policy."""
        policy = self.settings.policies[account.policy]
        if policy.generator != "vault" or policy.vault_policy is None:
            return passwords.generate(policy)
        password = await self.store.generate_password(policy.vault_policy)
        if len(password) != policy.length:
            raise StoreError(
                f"Vault password policy {policy.vault_policy!r} made a password of "
                f"{len(password)} characters; policy {policy.name!r} says {policy.length}"
            )
        return password

    # -- shared ----------------------------------------------------------------------------

    def width(self) -> int:
        return self.options.concurrency or self.settings.run.concurrency

    def _decide(
        self,
        accounts: Sequence[Account],
        states: Sequence[SecretState | StoreError],
        now: datetime,
    ) -> list[planner.Decision | None]:
        return [
            None
            if isinstance(state, StoreError)
            else planner.decide(
                account, state, now, self.settings.run.max_age_days, self.options.force
            )
            for account, state in zip(accounts, states, strict=True)
        ]

    def _failed_read(self, account: Account, error: SecretState | StoreError) -> AccountOutcome:
        empty = SecretState(account.vault_path, None, None, None)
        rotation = AccountRotation(
            self.context({}),
            account,
            empty,
            planner.Decision(False, ""),
            self.authorities[NO_AUTHORITY],
        )
        outcome = rotation.outcome(Status.FAILED, "Vault not read", error=str(error))
        outcome.items = [replace(i, vault_version=None, age_days=None) for i in outcome.items]
        return outcome

    def _outcome(
        self,
        outcomes: Sequence[AccountOutcome],
        probes: Mapping[str, EndpointProbe],
        authority_probes: Mapping[str, AuthorityProbe],
        *,
        aborted: str,
        plan_hash: str = "",
    ) -> Outcome:
        items = sorted((i for o in outcomes for i in o.items), key=lambda i: i.row.line)
        results = [
            replace(o.result, authority_type=self.authority_type(o.result.account))
            for o in outcomes
        ]
        return Outcome(
            items,
            list(probes.values()),
            aborted=aborted,
            plan_hash=plan_hash,
            accounts=results,
            authority_probes=list(authority_probes.values()),
        )


def exit_trouble(mode: str, items: Sequence[ItemResult]) -> bool:
    """Whether these items make the invocation exit 1."""
    bad = {Status.FAILED, Status.DRIFT}
    if mode in ("run", "reconcile"):
        bad |= TROUBLE
    return any(i.status in bad for i in items)
