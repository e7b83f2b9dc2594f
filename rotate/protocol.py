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
can hold it. So does an account whose password another rotator owns (rotate/following.py):
its candidate is that rotator's current password, and the rotator already holds it.

Every failure is an outcome, never an exception that escapes: the orchestrator
(rotate/runbook.py) records it and goes on with the other accounts.
"""

from __future__ import annotations

import asyncio
import logging

from rotate.attempt import TROUBLE, AccountOutcome, Context, Push, Took, now_utc
from rotate.errors import Missing, OutcomeUnknown, Rejected, RemoteError, StoreError
from rotate.models import Credential, PendingCandidate, Row, Stage, Status
from rotate.settlement import Settlement

__all__ = [
    "TROUBLE",
    "AccountOutcome",
    "AccountRotation",
    "Context",
    "Push",
    "Took",
    "now_utc",
    "push_usage",
]

log = logging.getLogger(__name__)


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
    except Missing as exc:  # nothing there to hold it: skipped, not stale
        return Push(row, Took.MISSING, note=f"target missing at {row.endpoint}: {exc}")
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


class AccountRotation(Settlement):
    """One account in one run: repair, stage, change, verify, push, record, promote."""

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
        if self.changes_authority:
            stopped = await self.change_at_authority(resumed)
            if stopped is not None:
                return stopped
        if self.candidate is None:
            staged = await self.stage()
            if staged is not None:
                return staged
        elif not self.changes_authority and (halted := await self.halted()) is not None:
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
        if any(p.took not in (Took.YES, Took.MISSING) for p in pushes):
            return self.finish_repair(blocked=True)
        return None

    def finish_repair(self, *, blocked: bool = False) -> AccountOutcome:
        """The outcome of an account that had stale usages to repair (and, when `blocked`,
        was due but keeps its password until they hold the current one)."""
        left = [p for p in self._repaired.values() if p.took not in (Took.YES, Took.MISSING)]
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
        """Make the authority hold the candidate and prove it by a login; None when it does.
        A resumed rotation first asks the authority which password it holds; a new one first
        checks that Vault's current password still logs in (verify before change)."""
        if resumed:
            asked = await self.ask_authority()
            if asked is True:
                return None  # the change took before the earlier run stopped
            if asked is not False:
                return asked
        else:
            stopped = await self.verify_before_change()
            if stopped is not None:
                return stopped
        if self.candidate is None:
            staged = await self.stage()
            if staged is not None:
                return staged
        return await self.change_and_verify()

    async def ask_authority(self) -> AccountOutcome | bool:
        """A resumed candidate: does the authority hold it (True: done), Vault's current
        (False: the change never happened, make it), or neither (changed out of band: an
        outcome, in doubt, unless --force)?"""
        assert self.candidate is not None
        where = f"authority {self.account.authority}"
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
            return True
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
        return False

    async def verify_before_change(self) -> AccountOutcome | None:
        """Vault's current password must still log in (else: drift, not rotated without
        --force, since someone changed it out of band); None to go on."""
        where = f"authority {self.account.authority}"
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
        return None

    async def change_and_verify(self) -> AccountOutcome | None:
        """The admin reset to the candidate, then a login with it; None when both worked."""
        assert self.candidate is not None
        where = f"authority {self.account.authority}"
        try:
            await self.authority.change(self.account, self.candidate.password)
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
            why = f"could not check it ({self.unsure})" if held is None else "refuses it"
            return self.outcome(
                Status.IN_DOUBT,
                self.decision.reason,
                Stage.STAGED,
                error=f"{where} took the new password but a login with it {why}; the "
                "candidate stays pending, the next run asks the authority again",
            )
        self.login_verified = True
        return None

    # -- 4. push (5 and 6 in rotate/settlement.py) -------------------------------------------

    async def push_all(self, credential: Credential, *, resumed: bool) -> list[Push]:
        """The candidate to every usage at once (each endpoint bounded by its target)."""
        return list(
            await asyncio.gather(
                *(push_usage(self.ctx, r, credential, resumed=resumed) for r in self.account.usages)
            )
        )
