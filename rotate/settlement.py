"""How an account's attempt ends: promoted (with the usages that did not take it recorded
stale), kept pending when something may hold the candidate, or discarded when nothing can."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from rotate.attempt import AccountOutcome, Attempt, Push, Took, now_utc
from rotate.errors import RemoteError, StoreError
from rotate.models import Stage, StaleUsage, Status

log = logging.getLogger(__name__)


class Settlement(Attempt):
    """Step 5 and 6 of rotate/protocol.py: record stale usages, promote, follow up."""

    async def settle(self, pushes: Sequence[Push], *, resumed: bool) -> AccountOutcome:
        """Promote when the password is in its place (the authority, or a usage for a copy-only
        account); record the usages that did not take it; discard it when nothing holds it."""
        assert self.candidate is not None
        holders = [p for p in pushes if p.took is Took.YES]
        if not self.account.changes_host and not holders:
            return await self.nobody_took(pushes, resumed)
        # a usage whose target is missing holds nothing: skipped, not recorded stale
        missing = [p for p in pushes if p.took is Took.MISSING]
        stale = [p for p in pushes if p.took not in (Took.YES, Took.MISSING)]
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
        if missing:
            skipped = f"{len(missing)} usage(s) not attempted: target missing at its endpoint"
            error = f"{error}; {skipped}" if error else skipped
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
        if pushes and all(p.took is Took.MISSING for p in pushes):
            return await self.nowhere(pushes)
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

    async def nowhere(self, pushes: Sequence[Push]) -> AccountOutcome:
        """A copy-only account none of whose usages' targets exist: the candidate is
        dropped (nothing can hold it) and the account is not attempted, not failed."""
        why = await self._drop("every usage's target is missing at its endpoint")
        return self.outcome(
            Status.NOT_ATTEMPTED, self.decision.reason, Stage.STAGED, error=why, pushes=pushes
        )

    async def discarded(self, why: str, pushes: Sequence[Push] = ()) -> AccountOutcome:
        """Nothing holds the candidate: drop it; Vault's current password stays valid."""
        self.known_failure()
        why = await self._drop(why)
        return self.outcome(
            Status.FAILED, self.decision.reason, Stage.STAGED, error=why, pushes=pushes
        )

    async def _drop(self, why: str) -> str:
        """Discard the candidate; `why` with what became of it."""
        try:
            await self.ctx.store.discard(self.account.vault_path)
        except StoreError as exc:
            return f"{why}; the candidate could not be discarded ({exc})"
        return f"{why}; candidate discarded, the current password stays valid"

    async def discard_unused(self) -> None:
        """A candidate staged for an account that stops before anything saw it."""
        if self.candidate is None or self.decision.resume:
            return
        try:
            await self.ctx.store.discard(self.account.vault_path)
        except StoreError as exc:
            log.warning("%s: an unsent candidate stays staged (%s)", self.account.name, exc)

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
