"""Reconcile: compare each target with Vault and repair whichever side drifted, losing nothing."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from rotate.errors import (
    EXIT_ITEMS_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    OutcomeUnknown,
    Rejected,
    RemoteError,
    StoreError,
)
from rotate.inventory import group_accounts
from rotate.models import Credential, ItemResult, Row, Secret, SecretState, Stage, Status
from rotate.protocol import now_utc
from rotate.runbook import Outcome, Runbook, interleave
from rotate.stores.kv import VERSION_TIME

__all__ = ["reconcile", "reconcile_exit_code"]

log = logging.getLogger(__name__)

_BAD = frozenset({Status.FAILED, Status.IN_DOUBT, Status.NOT_ATTEMPTED})

_WRITE_ONLY = "write-only target: cannot compare; --repush re-sends Vault's current password"


class _Check(enum.Enum):
    """What a read-back after a push showed."""

    MATCH = "match"
    DIFFERS = "differs"
    UNVERIFIED = "unverified"  # the read-back failed or had no password


async def reconcile(runbook: Runbook, rows: Sequence[Row], repush: bool) -> Outcome:
    """Bring every row's target and Vault back in line; bounded, and never cancelling.

    Reads each row's Vault state once, probes the endpoints (one that fails gets no writes),
    then per row compares what the target reads back with Vault's current and pending
    passwords and repairs the side that is off. Stops starting items once the runbook is
    aborted (a lost lease).
    """
    accounts = group_accounts(rows)
    by_account = dict(
        zip((a.name for a in accounts), await runbook.read_states(accounts), strict=True)
    )
    states = [by_account[row.account_name] for row in rows]
    shared = {a.name for a in accounts if len(a.usages) > 1 or a.changes_host}
    results: dict[int, ItemResult] = {}
    readable: list[tuple[int, Row, SecretState]] = []
    for i, (row, state) in enumerate(zip(rows, states, strict=True)):
        if isinstance(state, StoreError):
            results[i] = ItemResult(
                row, Status.FAILED, vault_path=row.vault_path, error=f"Vault not read: {state}"
            )
        else:
            readable.append((i, row, state))

    probes = await runbook.probe(sorted({row.endpoint for _, row, _ in readable}))
    work: list[tuple[int, Row, SecretState]] = []
    for i, row, state in readable:
        probe = probes[row.endpoint]
        if probe.ok:
            work.append((i, row, state))
            continue
        reason = f"not attempted: endpoint {row.endpoint} failed its probe"
        results[i] = _not_attempted(row, state, reason, probe.detail)

    work = interleave(work, key=lambda w: w[1].endpoint)
    progress = runbook.progress
    progress.start(len(work), [row.endpoint for _, row, _ in work])
    slots = asyncio.Semaphore(runbook.options.concurrency or runbook.settings.run.concurrency)

    async def bounded(i: int, row: Row, state: SecretState) -> None:
        async with slots:
            progress.item_started(row)
            if runbook.aborted:  # the lease was lost: no new item starts
                result = _not_attempted(row, state, "not started: run aborted", runbook.aborted)
            else:
                result = await _Item(
                    runbook, row, state, repush, row.account_name in shared
                ).reconcile()
            progress.item_done(result)
            results[i] = result

    try:
        await asyncio.gather(*(bounded(*w) for w in work))
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


def _not_attempted(row: Row, state: SecretState, reason: str, error: str) -> ItemResult:
    return ItemResult(
        row,
        Status.NOT_ATTEMPTED,
        vault_path=row.vault_path,
        vault_version=state.current_version,
        reason=reason,
        error=error,
        last_rotated=state.rotated_at,
    )


class _Item:
    """One row: read the target back, compare with Vault's current and pending, repair."""

    def __init__(
        self, runbook: Runbook, row: Row, state: SecretState, repush: bool, shared: bool
    ) -> None:
        # shared: the account has an authority or other usages; its pending candidate is
        # settled by `rotate run` (which asks the authority), and no usage's password is
        # adopted into Vault on its own
        self.shared = shared
        self.runbook = runbook
        self.store = runbook.store
        self.target = runbook.targets[row.endpoint]
        self.row = row
        self.state = state
        self.repush = repush
        self.started = time.monotonic()

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
        held: Secret | None = None
        readable = self.target.verifiable(self.row)
        if readable:
            try:
                held = await self.target.read_back(self.row)
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
        return await self.store.read_current(self.row.vault_path)

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
            return await self.discard_stale()
        if pending is not None and held == pending.credential.password:
            return await self.promote_held(pending.credential)
        if current is not None:
            return await self.push_current(current, verify=True)
        if pending is not None:
            return await self.resend_pending(
                pending.credential,
                verify=True,
                reason="target holds neither: re-sent the pending candidate and promoted it",
            )
        if self.shared:
            return self.result(
                Status.FAILED,
                "Vault has no password for this account",
                error="not adopted: the account is shared or checked at an authority; "
                "`rotate run` sets one password for it",
            )
        return await self.adopt(held)

    async def discard_stale(self) -> ItemResult:
        """The target holds the current password, so the candidate never took: drop it."""
        reason = "target holds the current password: stale candidate discarded"
        try:
            await self.store.discard(self.row.vault_path)
        except StoreError as exc:
            return self.result(
                Status.FAILED,
                "target holds the current password",
                Stage.VERIFIED,
                verified=True,
                error=f"the stale candidate could not be discarded ({exc})",
            )
        return self.result(Status.REPAIRED, reason, Stage.VERIFIED, verified=True)

    async def promote_held(self, candidate: Credential) -> ItemResult:
        """The target took the candidate and the run stopped before promoting it: finish."""
        return await self.promote(
            candidate,
            "target holds the pending candidate: promoted it (Vault repaired)",
            "target holds the pending candidate",
            verified=True,
            stage=Stage.VERIFIED,
        )

    async def adopt(self, held: Secret) -> ItemResult:
        """Vault has nothing for this row: what the target holds becomes the current version."""
        credential = Credential(self.row.username, held, self.row.domain)
        return await self.promote(
            credential,
            "adopted the target's password into Vault",
            "target holds a password Vault does not have",
            verified=True,
            adopt=True,
        )

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
                verify=False,
                reason="re-sent the pending candidate and promoted it (write-only target)",
            )
        try:
            current = await self.current()
        except StoreError as exc:
            return self.result(Status.FAILED, "nothing pushed", error=f"Vault not read: {exc}")
        if current is None:
            return self.result(Status.SKIPPED, "nothing in Vault to push")
        return await self.push_current(current, verify=False)

    # -- the writes --------------------------------------------------------------------------

    async def push_current(self, current: Credential, verify: bool) -> ItemResult:
        """Overwrite the target with Vault's current password; Vault itself is unchanged."""
        if verify:
            found, done = "target drifted", "target drifted: re-pushed Vault's current password"
        else:
            found, done = (
                "write-only target",
                "re-pushed Vault's current password (write-only target)",
            )
        try:
            await self.target.push(self.row, current)
        except Rejected as exc:
            return self.result(Status.FAILED, found, error=f"re-push rejected: {exc}")
        except OutcomeUnknown as exc:
            return self.result(
                Status.IN_DOUBT,
                found,
                error=f"re-push {exc}; Vault unchanged, reconcile again to settle it",
            )
        except RemoteError as exc:
            return self.result(Status.FAILED, found, error=f"target not reached: {exc}")
        if not verify:
            return self.result(Status.REPAIRED, done, Stage.PUSHED, verified=False)

        check, note = await self.verify(current.password)
        if check is _Check.DIFFERS:
            return self.result(
                Status.IN_DOUBT,
                found,
                Stage.PUSHED,
                verified=False,
                error="read-back differs from the re-pushed password; nothing discarded",
            )
        if check is _Check.UNVERIFIED:
            if self.state.pending is not None:
                note += "; the pending candidate is kept"
            return self.result(Status.REPAIRED, done, Stage.PUSHED, verified=False, error=note)
        if self.state.pending is not None:
            # Verified: the target holds the current password, so the candidate is not there.
            try:
                await self.store.discard(self.row.vault_path)
            except StoreError as exc:
                return self.result(
                    Status.FAILED,
                    done,
                    Stage.VERIFIED,
                    verified=True,
                    error=f"the stale candidate could not be discarded ({exc})",
                )
        return self.result(Status.REPAIRED, done, Stage.VERIFIED, verified=True)

    async def resend_pending(self, candidate: Credential, verify: bool, reason: str) -> ItemResult:
        """Re-send the staged candidate (an idempotent overwrite), then promote it.

        On any failure the candidate stays pending: it may be on the target already, and
        `rotate run` settles it.
        """
        row = self.row
        if candidate.username != row.username or candidate.domain != row.domain:
            log.warning("%s: re-sending a candidate staged for another username/domain", row.label)
        found = "an unfinished candidate is pending"
        kept = "candidate kept pending, the next run settles it"
        try:
            await self.target.push(row, candidate)
        except Rejected as exc:
            return self.result(
                Status.FAILED, found, Stage.STAGED, error=f"target rejected it: {exc}; {kept}"
            )
        except OutcomeUnknown as exc:
            return self.result(Status.IN_DOUBT, found, Stage.STAGED, error=f"{exc}; {kept}")
        except RemoteError as exc:
            return self.result(
                Status.FAILED, found, Stage.STAGED, error=f"target not reached: {exc}; {kept}"
            )
        check, note = _Check.UNVERIFIED, ""
        if verify:
            check, note = await self.verify(candidate.password)
            if check is _Check.DIFFERS:
                return self.result(
                    Status.IN_DOUBT,
                    found,
                    Stage.PUSHED,
                    verified=False,
                    error=f"read-back differs from the re-sent candidate; {kept}",
                )
        verified = check is _Check.MATCH
        stage = Stage.VERIFIED if verified else Stage.PUSHED
        return await self.promote(
            candidate, reason, found, verified=verified, stage=stage, note=note
        )

    async def verify(self, expected: Secret) -> tuple[_Check, str]:
        """Read the target back after a push; the note says why it is unverified."""
        try:
            held = await self.target.read_back(self.row)
        except RemoteError as exc:
            return _Check.UNVERIFIED, f"pushed; read-back failed ({exc})"
        if held is None:
            return _Check.UNVERIFIED, "pushed; the read-back has no password"
        return (_Check.MATCH if held == expected else _Check.DIFFERS), ""

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
        """Write `credential` as the new current version (check-and-set on what we read)."""
        # An adopted password's age is unknown: recorded as such, the next run rotates it.
        try:
            version = await self.store.promote(
                self.row.vault_path,
                credential,
                self.state.current_version,
                None if adopt else VERSION_TIME,
            )
        except StoreError as exc:
            if adopt:
                return self.result(
                    Status.FAILED,
                    found,
                    stage,
                    verified=verified,
                    error=f"it could not be stored in Vault ({exc})",
                )
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
