"""The runbook: read state, plan, probe, then per item stage -> push -> verify -> promote."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from rotate import passwords, planner
from rotate.errors import (
    EndpointUnavailable,
    OutcomeUnknown,
    PlanChanged,
    Rejected,
    StoreError,
    TargetError,
)
from rotate.models import (
    Credential,
    Drift,
    EndpointProbe,
    ItemResult,
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
from rotate.targets.base import Target

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


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


@dataclass
class Outcome:
    """What a pipeline call produced, for the record and the exit code."""

    items: list[ItemResult]
    probes: list[EndpointProbe] = field(default_factory=list)
    aborted: str = ""  # why the run stopped starting items, if it did
    plan_hash: str = ""
    drift: Drift | None = None


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
        # Each worker thread has its own hvac client, so Vault calls run side by side.
        self._pool = ThreadPoolExecutor(settings.vault.workers, thread_name_prefix="vault")

    async def _vault(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def abort(self, reason: str) -> None:
        """Stop starting new items; those in flight finish and are recorded."""
        if not self.aborted:
            self.aborted = reason
            log.error("run aborted: %s; no new item starts", reason)

    # -- reading ---------------------------------------------------------------------------

    async def read_states(self, rows: Sequence[Row]) -> list[SecretState | StoreError]:
        """Vault's view of every row; a failed read is kept as the item's error."""

        # One LIST tells which rows have a candidate: in the usual case none, which saves a
        # read per row.
        try:
            pending: set[str] | None = await self._vault(self.store.list_pending)
        except StoreError as exc:
            log.warning("could not list pending candidates (%s); reading each row's", exc)
            pending = None

        async def one(row: Row) -> SecretState | StoreError:
            look = pending is None or row.vault_path in pending
            try:
                return await self._vault(self.store.read_state, row.vault_path, look)
            except StoreError as exc:
                return exc

        return list(await asyncio.gather(*(one(r) for r in rows)))

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
            listed = await self._vault(self.store.list_paths, self.settings.vault.prefix)
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
        slots = asyncio.Semaphore(self.options.concurrency or self.settings.run.concurrency)
        threshold = self.options.max_failures
        tolerated = threshold.limit(len(work)) if threshold else None
        failures = 0

        async def bounded(i: int, row: Row, state: SecretState, d: planner.Decision) -> None:
            nonlocal failures
            async with slots:
                self.progress.item_started(row)
                if self.aborted:
                    result = self._from_state(
                        row,
                        state,
                        Status.NOT_ATTEMPTED,
                        f"{d.reason}; not started: run aborted",
                        error=self.aborted,
                    )
                else:
                    result = await self.rotate_one(row, state, d)
                self.progress.item_done(row, result.status)
                results[i] = result
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
                failures += 1
                if tolerated is not None and failures > tolerated and threshold is not None:
                    self.abort(
                        f"failure threshold crossed: {failures} of {len(work)} item(s) "
                        f"failed or in doubt (--max-failures {threshold.text})"
                    )

        canary = work[: self.options.canary]
        rest = work[self.options.canary :]
        try:
            if canary:
                await asyncio.gather(*(bounded(*w) for w in canary))
                bad = sum(results[i].status in (Status.FAILED, Status.IN_DOUBT) for i, *_ in canary)
                if bad:
                    self.abort(
                        f"canary failed: {bad} of the first {len(canary)} item(s) "
                        "failed or are in doubt (--canary)"
                    )
            await asyncio.gather(*(bounded(*w) for w in rest))
        finally:
            self.progress.stop()
        items = [results[i] for i in range(len(rows))]
        return Outcome(items, list(probes.values()), aborted=self.aborted)

    # -- one item ---------------------------------------------------------------------------

    async def rotate_one(
        self, row: Row, state: SecretState, decision: planner.Decision
    ) -> ItemResult:
        """One item's rotation; a failure is also noted in Vault for the compliance report."""
        result = await self._attempt(row, state, decision)
        if result.status in (Status.FAILED, Status.IN_DOUBT):
            at = now_utc()
            try:
                await self._vault(
                    self.store.record_failure, row.vault_path, self.options.run_id, at
                )
            except StoreError as exc:
                log.warning("%s: the failure could not be noted in Vault (%s)", row.label, exc)
            else:
                result = replace(result, last_failure_at=at)
        return result

    async def _attempt(
        self, row: Row, state: SecretState, decision: planner.Decision
    ) -> ItemResult:
        """Stage -> push -> verify -> promote; every failure becomes this item's outcome."""
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

        # 1. Stage: the candidate is durably in Vault before the target sees it.
        if decision.resume and state.pending is not None:
            candidate = state.pending.credential
            if candidate.username != row.username or candidate.domain != row.domain:
                # The row changed since the candidate was staged; the target may hold the
                # staged one, so finish that first and let a later run apply the change.
                log.warning(
                    "%s: resuming a candidate staged for another username/domain", row.label
                )
        else:
            policy = self.settings.policies[row.policy]
            try:
                password = await self._generate(policy)
            except StoreError as exc:
                return result(
                    Status.FAILED, Stage.PLANNED, error=f"no candidate, nothing changed: {exc}"
                )
            candidate = Credential(row.username, password, row.domain)
            try:
                await self._vault(self.store.stage, path, candidate, self.options.run_id)
            except StoreError as exc:
                return result(
                    Status.FAILED, Stage.GENERATED, error=f"not staged, target untouched: {exc}"
                )

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
            version = await self._vault(
                self.store.promote,
                path,
                candidate,
                state.current_version,
                self.options.run_id,
                promoted_at,
            )
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
        password = await self._vault(self.store.generate_password, policy.vault_policy)
        if len(password) != policy.length:
            raise StoreError(
                f"Vault password policy {policy.vault_policy!r} made a password of "
                f"{len(password)} characters; policy {policy.name!r} says {policy.length}"
            )
        return password

    async def _discard(self, row: Row, result: Callable[..., ItemResult], why: str) -> ItemResult:
        """The target definitely does not hold the candidate: drop it, the current stays valid."""
        try:
            await self._vault(self.store.discard, row.vault_path)
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
