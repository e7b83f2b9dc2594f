"""The steps for one account, each first checking whether it is done already.

Read it top to bottom like the runbook an operator would follow (`AccountRotation.run`):

0. **Repair**: usages recorded stale get Vault's current password before anything new is
   made for the account (a stale usage that still cannot take it stops the rotation).
1. **Stage**: the candidate is durably in Vault's journal before anything else sees it
   (staged by the orchestrator a batch at a time, or here when the account had to wait).
2. **Change** it at the authority (an admin reset). On a resumed rotation, first ask the
   authority which password it holds: the candidate (done already), Vault's current (the
   change never happened: do it now), or neither (changed out of band: `in_doubt`).
3. **Verify by login** with the candidate. A refused change discards the candidate: the
   account is `failed` and nothing else was touched.
4. **Push** it to every usage at once (the targets bound each endpoint), reading it back
   where the API can.
5. **Record** the usages that did not take it as stale, then **promote** the candidate in
   Vault: the authority holds it, so promotion does not wait for the usages.
6. **Follow-ups** on the usages that took it (Spark View access links).

An account whose copies are the only place its password lives (`authority = none`) skips
steps 2 and 3: its candidate is promoted once a usage took it, and discarded only when none
can hold it.

Every failure is an outcome, never an exception that escapes: the orchestrator
(rotate/runbook.py) records it and goes on with the other accounts.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from rotate import planner
from rotate.authorities.base import Authority
from rotate.errors import OutcomeUnknown, Rejected, RemoteError, StoreError
from rotate.models import (
    Account,
    AccountResult,
    Credential,
    ItemResult,
    PendingCandidate,
    Row,
    Secret,
    SecretState,
    Stage,
    StaleUsage,
    Status,
)
from rotate.stores.base import DataPlane
from rotate.vendors.base import Target

log = logging.getLogger(__name__)

#: statuses of an account (or usage) that make a writing run exit 1
TROUBLE = frozenset(
    {Status.FAILED, Status.IN_DOUBT, Status.NOT_ATTEMPTED, Status.STALE, Status.DRIFT}
)


def now_utc() -> datetime:
    return datetime.now(UTC)


class Took(enum.Enum):
    """What one push of a password to one usage proved."""

    YES = "took"  # accepted (and read back, where the API can)
    NO = "rejected"  # a definite "no": the usage does not hold it
    UNKNOWN = "unknown"  # it may or may not hold it
    NOT_REACHED = "not_reached"  # nothing was sent (endpoint down, connection refused)


@dataclass(frozen=True)
class Push:
    """The outcome of sending one password to one usage."""

    row: Row
    took: Took
    verified: bool | None = None  # None: not pushed; False: pushed, the API cannot read back
    note: str = ""
    # a resumed candidate refused or not reached now that an earlier run may have delivered
    earlier: bool = False

    @property
    def maybe_holds(self) -> bool:
        """Whether the usage may hold the password now."""
        return self.took in (Took.YES, Took.UNKNOWN)


@dataclass(frozen=True)
class Context:
    """What every account's protocol shares in one run."""

    run_id: str
    force: bool
    store: DataPlane
    targets: Mapping[str, Target]
    down: Mapping[str, str]  # endpoint -> why it failed its probe: it gets no writes
    default_max_age_days: int
    # a new password for the account (per its policy): made here or by a Vault policy
    generate: Callable[[Account], Awaitable[Secret]]
    # why the run stopped starting anything new ("" while it goes on)
    stopped: Callable[[], str] = lambda: ""
    # an account failed or is in doubt: told the moment it is known (failure threshold, canary)
    failing: Callable[[], None] = lambda: None


@dataclass
class AccountOutcome:
    """The account's recorded outcome and one result per usage."""

    result: AccountResult
    items: list[ItemResult]

    @property
    def troubled(self) -> bool:
        return self.result.status in (Status.FAILED, Status.IN_DOUBT)


async def push_usage(ctx: Context, row: Row, credential: Credential, *, resumed: bool) -> Push:
    """Send `credential` to one usage and read it back where the API can.

    A resumed candidate may be there already (an earlier run delivered it): where the target
    can tell, it is looked at first and not sent again.
    """
    if row.endpoint in ctx.down:
        return Push(
            row, Took.NOT_REACHED, note=f"endpoint failed its probe: {ctx.down[row.endpoint]}"
        )
    target = ctx.targets[row.endpoint]
    readable = target.verifiable(row)
    seen_other = False  # the target was seen holding something else: a "no" is then final
    if resumed and readable:
        try:
            held_before = await target.read_back(row)
        except RemoteError as exc:
            log.info("%s: read-back before re-sending failed (%s)", row.label, exc)
        else:
            if held_before == credential.password:
                return Push(row, Took.YES, verified=True, note="held it already")
            seen_other = held_before is not None
    try:
        await target.push(row, credential)
    except Rejected as exc:
        why = f"target rejected the new password: {exc}"
        return Push(row, Took.NO, note=why, earlier=resumed and not seen_other)
    except OutcomeUnknown as exc:
        return Push(row, Took.UNKNOWN, note=str(exc))
    except RemoteError as exc:
        return Push(row, Took.NOT_REACHED, note=f"target not reached: {exc}", earlier=resumed)
    if not readable:
        return Push(row, Took.YES, verified=False)
    try:
        held = await target.read_back(row)
    except RemoteError as exc:
        return Push(row, Took.YES, verified=False, note=f"pushed; read-back failed ({exc})")
    if held is None:
        return Push(row, Took.YES, verified=False, note="pushed; the read-back has no password")
    if held != credential.password:
        return Push(
            row, Took.UNKNOWN, verified=False, note="read-back differs from the pushed password"
        )
    return Push(row, Took.YES, verified=True)


@dataclass
class AccountRotation:
    """One account in one run: repair, stage, change, verify, push, record, promote."""

    ctx: Context
    account: Account
    state: SecretState
    decision: planner.Decision
    authority: Authority
    candidate: Credential | None = None  # staged by the orchestrator (or resumed)
    started: float = field(default_factory=time.monotonic)
    login_verified: bool | None = None
    journal: str | None = None  # a journal record staged here, for the orchestrator to settle
    unsure: str = ""  # why the last login check could not tell
    _counted: bool = False  # its failure was told to the run (once)
    _repaired: dict[str, Push] = field(default_factory=dict)
    _followups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    # -- the runbook -----------------------------------------------------------------------

    async def run(self) -> AccountOutcome:
        """Every step for this account; a failure ends the steps with its outcome."""
        state, decision = self.state, self.decision
        resumed = decision.resume and state.pending is not None
        if resumed:
            assert state.pending is not None
            self.candidate = state.pending.credential
        elif decision.repair:
            blocked = await self.repair()
            if blocked is not None or not decision.due:
                return blocked or self.finish_repair()
        if not decision.due:  # pragma: no cover - the orchestrator only runs acting accounts
            return self.outcome(Status.SKIPPED, decision.reason)
        if not any(r.endpoint not in self.ctx.down for r in self.account.usages):
            await self.discard_unused()
            return self.outcome(
                Status.NOT_ATTEMPTED,
                decision.reason,
                error="not attempted: no endpoint of its usages passed its probe",
            )
        if (halted := await self.halted()) is not None:
            return halted
        if self.account.changes_host:
            stopped = await self.change_at_authority(resumed)
            if stopped is not None:
                return stopped
        if self.candidate is None:
            staged = await self.stage()
            if staged is not None:
                return staged
        elif not self.account.changes_host and (halted := await self.halted()) is not None:
            return halted
        assert self.candidate is not None
        pushes = await self.push_all(self.candidate, resumed=resumed)
        return await self.settle(pushes, resumed=resumed)

    async def halted(self) -> AccountOutcome | None:
        """The run was aborted before anything was sent for this account: it is not attempted
        (an unsent candidate dropped; a resumed one stays pending for the next run)."""
        why = self.ctx.stopped()
        if not why:
            return None
        await self.discard_unused()
        return self.outcome(
            Status.NOT_ATTEMPTED, f"{self.decision.reason}; not started: run aborted", error=why
        )

    # -- 0. repair -------------------------------------------------------------------------

    async def repair(self) -> AccountOutcome | None:
        """Push Vault's current password to the usages recorded stale; an outcome when some
        still do not hold it (nothing new is made for the account then), else None."""
        labels = {r.label: r for r in self.account.usages}
        stale = [labels[u] for u in self.state.stale if u in labels]
        gone = [u for u in self.state.stale if u not in labels]
        try:
            current = await self.ctx.store.read_current(self.account.vault_path)
        except StoreError as exc:
            return self.outcome(
                Status.FAILED, "stale usages not repaired", error=f"Vault not read: {exc}"
            )
        pushes: list[Push] = []
        if current is None:
            gone += [r.label for r in stale]  # nothing to repair them with: a rotation will
        else:
            held: Credential = current
            tries = (push_usage(self.ctx, r, held, resumed=True) for r in stale)
            pushes = list(await asyncio.gather(*tries))
        self._repaired = {p.row.label: p for p in pushes}
        fixed = [p.row.label for p in pushes if p.took is Took.YES] + gone
        if fixed:
            try:
                await self.ctx.store.clear_stale(self.account.vault_path, fixed)
            except StoreError as exc:
                log.warning("%s: repaired usages still listed stale (%s)", self.account.name, exc)
        if any(p.took is not Took.YES for p in pushes):
            return self.finish_repair(blocked=True)
        return None

    def finish_repair(self, *, blocked: bool = False) -> AccountOutcome:
        """The outcome of an account that had stale usages to repair (and, when `blocked`,
        was due but keeps its password until they hold the current one)."""
        left = [p for p in self._repaired.values() if p.took is not Took.YES]
        if left:
            why = "; ".join(f"{p.row.label}: {p.note}" for p in left[:3])
            reason = f"{len(left)} usage(s) still hold an older password"
            if blocked and self.decision.due:
                reason += ": no new password until they hold the current one"
            return self.outcome(Status.STALE, reason, error=why)
        return self.outcome(Status.REPAIRED, f"{len(self._repaired)} stale usage(s) repaired")

    # -- 1. stage --------------------------------------------------------------------------

    async def stage(self) -> AccountOutcome | None:
        """A candidate staged in its own journal record (the account was not pre-staged)."""
        try:
            password = await self.ctx.generate(self.account)
        except StoreError as exc:
            return self.outcome(
                Status.FAILED, self.decision.reason, error=f"no candidate, nothing changed: {exc}"
            )
        credential = Credential(self.account.username, password, self.account.domain)
        pending = PendingCandidate(
            credential, self.ctx.run_id, now_utc(), self.state.current_version
        )
        try:
            name = await self.ctx.store.stage(self.ctx.run_id, {self.account.vault_path: pending})
        except StoreError as exc:
            return self.outcome(
                Status.FAILED, self.decision.reason, error=f"not staged, target untouched: {exc}"
            )
        self.candidate = credential
        self.journal = name
        return None

    # -- 2. and 3. change at the authority, verify by login ---------------------------------

    async def change_at_authority(self, resumed: bool) -> AccountOutcome | None:
        """Make the authority hold the candidate and prove it by a login; None when it does."""
        account, authority = self.account, self.authority
        where = f"authority {account.authority}"
        if resumed:
            assert self.candidate is not None
            held = await self.login(self.candidate.password)
            if held is None:
                return self.outcome(
                    Status.IN_DOUBT,
                    self.decision.reason,
                    error=f"{where} could not say whether it holds the pending candidate "
                    f"({self.unsure}); it stays pending, the next run asks again",
                )
            if held:
                self.login_verified = True
                return None  # the change took before the earlier run stopped
            current = await self.current_logs_in()
            if current is False and not self.ctx.force:
                return self.outcome(
                    Status.IN_DOUBT,
                    self.decision.reason,
                    error=f"changed out of band: neither Vault's current password nor the "
                    f"pending candidate logs in at {where}; nothing new is made for it "
                    "(`rotate run --force` resets it to the pending candidate)",
                )
            if current is None and self.state.current_version is not None:
                return self.outcome(
                    Status.IN_DOUBT,
                    self.decision.reason,
                    error=f"{where} could not say which password it holds ({self.unsure}); "
                    "the candidate stays pending, the next run asks again",
                )
        else:
            current = await self.current_logs_in()
            if current is False and not self.ctx.force:
                await self.discard_unused()
                return self.outcome(
                    Status.DRIFT,
                    "not rotated: drift",
                    error=f"Vault's current password does not log in at {where} (changed out "
                    "of band?); `rotate run --force` resets it (an admin reset needs no old "
                    "password)",
                )
            if current is None and self.state.current_version is not None:
                await self.discard_unused()
                return self.outcome(
                    Status.FAILED,
                    self.decision.reason,
                    error=f"{where}: Vault's current password not checked ({self.unsure}); "
                    "nothing changed",
                )
        if self.candidate is None:
            staged = await self.stage()
            if staged is not None:
                return staged
        assert self.candidate is not None
        try:
            await authority.change(account, self.candidate.password)
        except Rejected as exc:
            return await self.discarded(f"{where} refused the new password: {exc}")
        except OutcomeUnknown as exc:
            return self.outcome(
                Status.IN_DOUBT,
                self.decision.reason,
                Stage.STAGED,
                error=f"{where}: {exc}; the candidate stays pending, the next run asks the "
                "authority which password it holds",
            )
        except RemoteError as exc:
            return await self.discarded(f"{where} not reached: {exc}")
        held = await self.login(self.candidate.password)
        if not held:
            why = (
                f"could not check it ({self.unsure})" if held is None else "refuses a login with it"
            )
            return self.outcome(
                Status.IN_DOUBT,
                self.decision.reason,
                Stage.STAGED,
                error=f"{where} took the new password but {why}; the candidate stays "
                "pending, the next run asks the authority again",
            )
        self.login_verified = True
        return None

    async def login(self, password: Secret) -> bool | None:
        """Whether the password logs in at the authority; None when it cannot tell."""
        try:
            return await self.authority.login(self.account, password)
        except RemoteError as exc:
            log.warning(
                "%s: login check at %s failed: %s", self.account.name, self.account.authority, exc
            )
            return None

    async def current_logs_in(self) -> bool | None:
        """Verify before change: whether Vault's current password logs in (True when Vault has
        none yet: an admin reset needs no old password); None when it cannot be told."""
        if self.state.current_version is None:
            return True
        try:
            current = await self.ctx.store.read_current(self.account.vault_path)
        except StoreError as exc:
            self.unsure = f"Vault's current password not read: {exc}"
            log.warning("%s: %s", self.account.name, self.unsure)
            return None
        if current is None:
            return True
        held = await self.login(current.password)
        if held is not None:
            self.login_verified = held
        return held

    # -- 4. push ---------------------------------------------------------------------------

    async def push_all(self, credential: Credential, *, resumed: bool) -> list[Push]:
        """The candidate to every usage at once (each endpoint bounded by its target)."""
        return list(
            await asyncio.gather(
                *(push_usage(self.ctx, r, credential, resumed=resumed) for r in self.account.usages)
            )
        )

    # -- 5. record stale usages, promote -----------------------------------------------------

    async def settle(self, pushes: Sequence[Push], *, resumed: bool) -> AccountOutcome:
        """Promote when the password is in its place (the authority, or a usage for a copy-only
        account); record the usages that did not take it; discard it when nothing holds it."""
        assert self.candidate is not None
        holders = [p for p in pushes if p.took is Took.YES]
        if not self.account.changes_host and not holders:
            return await self.nobody_took(pushes, resumed)
        stale = [p for p in pushes if p.took is not Took.YES]
        recorded = await self.record_stale(stale)
        try:
            version = await self.ctx.store.promote(
                self.account.vault_path, self.candidate, self.state.current_version
            )
        except StoreError as exc:
            return self.outcome(
                Status.IN_DOUBT,
                self.decision.reason,
                Stage.PUSHED,
                error=f"the new password is in place but its promotion failed ({exc}); it "
                "stays pending in Vault, the next run promotes it",
                pushes=pushes,
            )
        took = [p.row.label for p in holders]
        if self.state.stale and took:
            try:
                await self.ctx.store.clear_stale(self.account.vault_path, took)
            except StoreError as exc:
                log.warning(
                    "%s: usages that took it still listed stale (%s)", self.account.name, exc
                )
        followed = {p.row.label: p for p in await self.follow_up(holders)}
        pushes = [followed.get(p.row.label, p) for p in pushes]
        status = Status.ROTATED if not stale else Status.STALE
        reason = self.decision.reason
        error = ""
        if stale:
            error = f"{len(stale)} of {len(pushes)} usage(s) did not take it"
            if not recorded:
                error += " (and could not be recorded stale in Vault: check them)"
        return self.outcome(
            status,
            reason,
            Stage.PROMOTED,
            error=error,
            pushes=pushes,
            version=version,
            rotated_at=now_utc(),
        )

    async def record_stale(self, stale: Sequence[Push]) -> bool:
        """Record the usages that did not take the candidate, before it is promoted (so a
        crash in between leaves the record, and the next run re-pushes). False on failure."""
        if not stale:
            return True
        since = now_utc()
        usages = {
            p.row.label: StaleUsage(
                p.row.label,
                None if p.took is Took.UNKNOWN else self.state.current_version,
                since,
                self.ctx.run_id,
            )
            for p in stale
        }
        try:
            await self.ctx.store.mark_stale(self.account.vault_path, usages)
        except StoreError as exc:
            log.error("%s: stale usages not recorded in Vault (%s)", self.account.name, exc)
            return False
        return True

    async def nobody_took(self, pushes: Sequence[Push], resumed: bool) -> AccountOutcome:
        """A copy-only account none of whose usages took the candidate."""
        maybe = [p for p in pushes if p.maybe_holds]
        if maybe:
            return self.outcome(
                Status.IN_DOUBT,
                self.decision.reason,
                Stage.STAGED if maybe[0].verified is None else Stage.PUSHED,
                error=f"{maybe[0].note}; candidate kept pending, the next run settles it",
                pushes=pushes,
            )
        earlier = [p for p in pushes if p.earlier]
        if earlier:
            # An earlier run may have delivered it where a re-send is now refused.
            return self.outcome(
                Status.FAILED,
                self.decision.reason,
                Stage.STAGED,
                error=f"{earlier[0].note}; an earlier run may have delivered the candidate, so "
                "it stays pending (candidate kept pending): check the target, then "
                "`rotate reconcile`",
                pushes=pushes,
            )
        first = pushes[0].note if pushes else "no usage to take it"
        return await self.discarded(first, pushes)

    async def discarded(self, why: str, pushes: Sequence[Push] = ()) -> AccountOutcome:
        """Nothing holds the candidate: drop it; Vault's current password stays valid."""
        self.known_failure()
        try:
            await self.ctx.store.discard(self.account.vault_path)
        except StoreError as exc:
            why = f"{why}; the candidate could not be discarded ({exc})"
        else:
            why = f"{why}; candidate discarded, the current password stays valid"
        return self.outcome(
            Status.FAILED, self.decision.reason, Stage.STAGED, error=why, pushes=pushes
        )

    async def discard_unused(self) -> None:
        """A candidate staged for an account that stops before anything saw it."""
        if self.candidate is None or self.decision.resume:
            return
        try:
            await self.ctx.store.discard(self.account.vault_path)
        except StoreError as exc:
            log.warning("%s: an unsent candidate stays staged (%s)", self.account.name, exc)

    # -- 6. follow-ups -----------------------------------------------------------------------

    async def follow_up(self, holders: Sequence[Push]) -> list[Push]:
        """Other places on the targets that embed the password (access links): the holders'
        pushes with what was updated (`followups`) or why that failed (in the note)."""
        assert self.candidate is not None
        done = []
        for push in holders:
            target = self.ctx.targets[push.row.endpoint]
            try:
                found = tuple(await target.follow_up(push.row, self.candidate))
            except RemoteError as exc:
                note = "; ".join(n for n in (push.note, f"follow-up failed: {exc}") if n)
                done.append(replace(push, note=note))
                continue
            self._followups[push.row.label] = found
            done.append(push)
        return done

    # -- the record ------------------------------------------------------------------------

    def known_failure(self) -> None:
        """Tell the run, once, that this account failed or is in doubt."""
        if not self._counted:
            self._counted = True
            self.ctx.failing()

    def outcome(
        self,
        status: Status,
        reason: str,
        stage: Stage = Stage.PLANNED,
        *,
        error: str = "",
        pushes: Sequence[Push] = (),
        version: int | None = None,
        rotated_at: datetime | None = None,
    ) -> AccountOutcome:
        """The account's result and one item per usage, from how far it got."""
        if status in (Status.FAILED, Status.IN_DOUBT):
            self.known_failure()
        by_label = {p.row.label: p for p in pushes}
        duration = time.monotonic() - self.started
        items = []
        in_sync = stale = 0
        for row in self.account.usages:
            item = self.usage_item(
                row, status, stage, reason, error, by_label.get(row.label), version, rotated_at
            )
            item = replace(item, duration_s=duration)
            if row.label in self._followups:
                item = replace(item, followups=self._followups[row.label])
            items.append(item)
            if item.status in (Status.ROTATED, Status.REPAIRED, Status.IN_SYNC):
                in_sync += 1
            elif item.status is Status.STALE:
                stale += 1
        result = AccountResult(
            self.account,
            authority_type="",  # filled in by the orchestrator, which knows the type
            status=status,
            reason=reason,
            error=error,
            vault_version=version or self.state.current_version,
            last_changed=rotated_at or self.state.rotated_at,
            login_verified=self.login_verified,
            in_sync=in_sync,
            stale=stale,
        )
        return AccountOutcome(result, items)

    def usage_item(
        self,
        row: Row,
        status: Status,
        stage: Stage,
        reason: str,
        error: str,
        push: Push | None,
        version: int | None,
        rotated_at: datetime | None,
    ) -> ItemResult:
        """One usage's result: the account's outcome, and what its own push proved."""
        repaired = self._repaired.get(row.label)
        verified = push.verified if push is not None else None
        if push is not None and stage is Stage.PROMOTED:
            if push.took is Took.YES:
                status, error = Status.ROTATED, push.note
            else:
                status, error = Status.STALE, f"did not take the new password ({push.note})"
        elif repaired is not None and push is None:
            verified = repaired.verified
            if repaired.took is Took.YES:
                status, error = Status.REPAIRED, repaired.note
                reason = "was stale: Vault's current password re-pushed"
            else:
                status, error = Status.STALE, f"still stale: {repaired.note}"
        elif status in (Status.REPAIRED, Status.STALE) and push is None:
            if self.decision.due:  # the account waits for its stale usages
                status, error = Status.NOT_ATTEMPTED, f"waits for its account: {reason}"
            else:
                status, error = Status.SKIPPED, ""
                reason = "not due; not recorded stale"
        elif push is not None and push.note and push.note not in error:
            error = f"{error}; {push.note}" if error else push.note
        rotated = status is Status.ROTATED
        return ItemResult(
            row,
            status,
            stage if push is not None or stage is not Stage.PROMOTED else Stage.PLANNED,
            verified=verified,
            vault_path=self.account.vault_path,
            vault_version=version or self.state.current_version,
            reason=reason,
            error=error,
            last_rotated=rotated_at if rotated else self.state.rotated_at,
            age_days=0.0 if rotated else planner.age_days(self.state, now_utc()),
            max_age_days=planner.max_age(self.account, self.ctx.default_max_age_days),
            last_failure_at=self.state.last_failure_at,
        )
