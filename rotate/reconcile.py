"""Reconcile: compare each usage with Vault and repair whichever side drifted, losing nothing.

Each usage's target is read back and compared with its account's current and pending
passwords in Vault; the side that is off is repaired with the protocol's own steps
(rotate/protocol.py: `push_usage` sends and reads back, the store promotes or discards).
A pending candidate of an account checked at an authority, or shared by several usages, is
left to `rotate run`, which asks the authority which password it holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rotate.errors import EXIT_ITEMS_FAILED, EXIT_OK, EXIT_REFUSED, RemoteError, StoreError
from rotate.inventory import group_accounts
from rotate.models import Credential, ItemResult, Row, Secret, SecretState, Stage, Status
from rotate.protocol import Context, Push, Took, now_utc, push_usage
from rotate.runbook import Outcome, Runbook, interleave
from rotate.stores.kv import VERSION_TIME, fan_out

__all__ = ["reconcile", "reconcile_exit_code"]

log = logging.getLogger(__name__)

_BAD = frozenset({Status.FAILED, Status.IN_DOUBT, Status.NOT_ATTEMPTED})

_WRITE_ONLY = "write-only target: cannot compare; --repush re-sends Vault's current password"
_KEPT = "candidate kept pending, the next run settles it"


async def reconcile(runbook: Runbook, rows: Sequence[Row], repush: bool) -> Outcome:
    """Bring every usage's target and Vault back in line; bounded, and never cancelling.

    Reads each account's Vault state once, probes the endpoints (one that fails gets no
    writes), then per usage, on a fixed set of workers, compares and repairs. Stops starting
    usages once the runbook is aborted (a lost lease).
    """
    accounts = group_accounts(rows)
    read = await runbook.read_states(accounts)
    by_account = dict(zip((a.name for a in accounts), read, strict=True))
    shared = {a.name for a in accounts if len(a.usages) > 1 or a.changes_host}
    results: dict[int, ItemResult] = {}
    readable: list[tuple[int, Row, SecretState]] = []
    for i, row in enumerate(rows):
        state = by_account[row.account]
        if isinstance(state, StoreError):
            results[i] = ItemResult(
                row, Status.FAILED, vault_path=row.vault_path, error=f"Vault not read: {state}"
            )
        else:
            readable.append((i, row, state))

    probes = await runbook.probe(sorted({row.endpoint for _, row, _ in readable}))
    ctx = runbook.context({n: p.detail for n, p in probes.items() if not p.ok})
    work = interleave(readable, key=lambda w: w[1].endpoint)
    progress = runbook.progress
    progress.start(len(work), [row.endpoint for _, row, _ in work])

    async def one(w: tuple[int, Row, SecretState]) -> None:
        i, row, state = w
        progress.item_started(row)
        item = _Usage(ctx, row, state, repush, row.account in shared)
        if runbook.aborted:  # the lease was lost: no new usage starts
            result = item.result(
                Status.NOT_ATTEMPTED, "not started: run aborted", error=runbook.aborted
            )
        elif row.endpoint in ctx.down:
            reason = f"not attempted: endpoint {row.endpoint} failed its probe"
            result = item.result(Status.NOT_ATTEMPTED, reason, error=ctx.down[row.endpoint])
        else:
            result = await item.reconcile()
        progress.item_done(result)
        results[i] = result

    try:
        await fan_out(one, work, runbook.width())
    finally:
        progress.stop()
        try:  # candidates promoted or discarded here leave their journal records
            await runbook.store.settle()
        except StoreError as exc:
            log.warning("journal records not cleared (%s); the next run does it", exc)
    items = [results[i] for i in range(len(rows))]
    return Outcome(items, list(probes.values()), aborted=runbook.aborted)


def reconcile_exit_code(outcome: Outcome) -> int:
    """3 when aborted; 1 when some item failed, is in doubt or was not attempted; else 0."""
    if outcome.aborted:
        return EXIT_REFUSED
    return EXIT_ITEMS_FAILED if any(i.status in _BAD for i in outcome.items) else EXIT_OK


@dataclass
class _Usage:
    """One usage: read its target back, compare with Vault's current and pending, repair."""

    ctx: Context
    row: Row
    state: SecretState
    repush: bool
    shared: bool  # an authority or other usages: no adoption, pending left to `rotate run`
    started: float = field(default_factory=time.monotonic)

    def result(
        self,
        status: Status,
        reason: str,
        stage: Stage = Stage.PLANNED,
        *,
        error: str = "",
        verified: bool | None = None,
        vault_version: int | None = None,
        rotated_at: datetime | None = None,
    ) -> ItemResult:
        if status is Status.REPAIRED:
            log.info("%s: %s", self.row.label, reason)
        return ItemResult(
            self.row,
            status,
            stage,
            verified=verified,
            vault_path=self.row.vault_path,
            vault_version=vault_version or self.state.current_version,
            reason=reason,
            error=error,
            duration_s=time.monotonic() - self.started,
            last_rotated=rotated_at or self.state.rotated_at,
        )

    async def reconcile(self) -> ItemResult:
        if self.shared and self.state.pending is not None:
            return self.result(
                Status.SKIPPED,
                "an unfinished rotation of a shared or authority-checked account: "
                "`rotate run` finishes it (it asks the authority which password it holds)",
            )
        target = self.ctx.targets[self.row.endpoint]
        held: Secret | None = None
        readable = target.verifiable(self.row)
        if readable:
            try:
                held = await target.read_back(self.row)
            except RemoteError as exc:
                return self.result(
                    Status.FAILED, "target not compared", error=f"read-back failed: {exc}"
                )
        if held is None:
            return await self.write_only(no_password=readable)
        return await self.compare(held)

    async def current(self) -> Credential | None:
        """Vault's current credential; read only when the state says there is one."""
        if self.state.current_version is None:
            return None
        return await self.ctx.store.read_current(self.row.vault_path)

    # -- a target that can read back -------------------------------------------------------

    async def compare(self, held: Secret) -> ItemResult:
        pending = self.state.pending
        try:
            current = await self.current()
        except StoreError as exc:
            return self.result(Status.FAILED, "target not compared", error=f"Vault not read: {exc}")
        # Current first: a candidate equal to the current one (a promotion that could not
        # drop it) is stale, not a new password to promote again.
        if current is not None and held == current.password:
            if pending is None:
                return self.result(
                    Status.IN_SYNC,
                    "target holds Vault's current password",
                    Stage.VERIFIED,
                    verified=True,
                )
            found = "target holds the current password"
            return await self.discard_stale(found, f"{found}: stale candidate discarded")
        if pending is not None and held == pending.credential.password:
            return await self.promote(
                pending.credential,
                "target holds the pending candidate: promoted it (Vault repaired)",
                "target holds the pending candidate",
                verified=True,
            )
        if current is not None:
            return await self.push_current(
                current, "target drifted", "target drifted: re-pushed Vault's current password"
            )
        if pending is not None:
            return await self.resend_pending(
                pending.credential,
                "target holds neither: re-sent the pending candidate and promoted it",
            )
        if self.shared:
            return self.result(
                Status.FAILED,
                "Vault has no password for this account",
                error="not adopted: the account is shared or checked at an authority; "
                "`rotate run` sets one password for it",
            )
        credential = Credential(self.row.username, held, self.row.domain)
        return await self.promote(
            credential,
            "adopted the target's password into Vault",
            "target holds a password Vault does not have",
            verified=True,
            adopt=True,
        )

    async def discard_stale(self, found: str, done: str) -> ItemResult:
        """The target holds the current password, so the candidate never took: drop it."""
        try:
            await self.ctx.store.discard(self.row.vault_path)
        except StoreError as exc:
            return self.result(
                Status.FAILED,
                found,
                Stage.VERIFIED,
                verified=True,
                error=f"the stale candidate could not be discarded ({exc})",
            )
        return self.result(Status.REPAIRED, done, Stage.VERIFIED, verified=True)

    # -- a target that cannot be compared ---------------------------------------------------

    async def write_only(self, no_password: bool) -> ItemResult:
        pending = self.state.pending
        why = f"{_WRITE_ONLY} (the read-back has no password)" if no_password else _WRITE_ONLY
        if not self.repush:
            if pending is not None:
                why += "; an unfinished candidate is pending: --repush re-sends and promotes it"
            return self.result(Status.SKIPPED, why)
        if pending is not None:
            # It may already be on the target: finish it like a resumed rotation.
            return await self.resend_pending(
                pending.credential,
                "re-sent the pending candidate and promoted it (write-only target)",
            )
        try:
            current = await self.current()
        except StoreError as exc:
            return self.result(Status.FAILED, "nothing pushed", error=f"Vault not read: {exc}")
        if current is None:
            return self.result(Status.SKIPPED, "nothing in Vault to push")
        return await self.push_current(
            current,
            "write-only target",
            "re-pushed Vault's current password (write-only target)",
        )

    # -- the writes --------------------------------------------------------------------------

    async def push_current(self, current: Credential, found: str, done: str) -> ItemResult:
        """Overwrite the target with Vault's current password; Vault itself is unchanged."""
        push = await push_usage(self.ctx, self.row, current, resumed=False)
        if push.took is not Took.YES:
            return self.unsure(push, found, "Vault unchanged, reconcile again to settle it")
        if not push.verified:
            note = push.note
            if self.state.pending is not None:
                note = "; ".join(n for n in (note, "the pending candidate is kept") if n)
            return self.result(Status.REPAIRED, done, Stage.PUSHED, verified=False, error=note)
        if self.state.pending is not None:
            # Verified: the target holds the current password, so the candidate is not there.
            return await self.discard_stale(done, done)
        return self.result(Status.REPAIRED, done, Stage.VERIFIED, verified=True)

    async def resend_pending(self, candidate: Credential, reason: str) -> ItemResult:
        """Re-send the staged candidate (an idempotent overwrite), then promote it. On any
        failure it stays pending: it may be on the target already, and `rotate run` settles it."""
        found = "an unfinished candidate is pending"
        push = await push_usage(self.ctx, self.row, candidate, resumed=True)
        if push.took is not Took.YES:
            return self.unsure(push, found, _KEPT)
        verified = bool(push.verified)
        stage = Stage.VERIFIED if verified else Stage.PUSHED
        return await self.promote(
            candidate, reason, found, verified=verified, stage=stage, note=push.note
        )

    def unsure(self, push: Push, found: str, then: str) -> ItemResult:
        """A push that did not take: in doubt when the target may hold it, else failed."""
        status = Status.IN_DOUBT if push.took is Took.UNKNOWN else Status.FAILED
        stage = Stage.PUSHED if push.verified is False else Stage.STAGED
        return self.result(
            status, found, stage, verified=push.verified, error=f"{push.note}; {then}"
        )

    async def promote(
        self,
        credential: Credential,
        reason: str,
        found: str,
        *,
        verified: bool,
        stage: Stage = Stage.VERIFIED,
        note: str = "",
        adopt: bool = False,
    ) -> ItemResult:
        """Write `credential` as the new current version (check-and-set on what we read).
        An adopted password's age is unknown: recorded as such, the next run rotates it."""
        try:
            version = await self.ctx.store.promote(
                self.row.vault_path,
                credential,
                self.state.current_version,
                None if adopt else VERSION_TIME,
            )
        except StoreError as exc:
            if adopt:
                why = f"it could not be stored in Vault ({exc})"
                return self.result(Status.FAILED, found, stage, verified=verified, error=why)
            return self.result(
                Status.IN_DOUBT,
                found,
                stage,
                verified=verified,
                error=f"target holds the candidate but promotion failed ({exc}); "
                "it stays pending in Vault, the next run promotes it",
            )
        return self.result(
            Status.REPAIRED,
            reason,
            Stage.PROMOTED,
            verified=verified,
            vault_version=version,
            rotated_at=None if adopt else now_utc(),
            error=note,
        )
