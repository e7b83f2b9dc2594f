"""What one account's attempt knows as it goes, and how it becomes a record.

`Attempt` holds an account's state in one run (its candidate, what the authority said, which
usages were repaired) and turns how far it got into an `AccountOutcome`: the account's result
and one item per usage. The steps themselves are in rotate/protocol.py; how an attempt ends
(promotion, stale usages, discards) in rotate/settlement.py.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from rotate import planner
from rotate.authorities.base import Authority, Follower
from rotate.errors import RemoteError, StoreError
from rotate.models import (
    Account,
    AccountResult,
    Credential,
    ItemResult,
    Row,
    Secret,
    SecretState,
    Stage,
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
    MISSING = "missing"  # the usage's target is not at its endpoint: skipped, not stale


@dataclass(frozen=True, slots=True)
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
    # an authority's type by its name (the records say which kind each account's is)
    authority_types: Mapping[str, str] = field(default_factory=dict)


_HOLDS_CURRENT = frozenset({Status.ROTATED, Status.REPAIRED, Status.IN_SYNC})


@dataclass(slots=True)
class AccountOutcome:
    """The account's recorded outcome and one result per usage."""

    result: AccountResult
    items: list[ItemResult]

    @property
    def troubled(self) -> bool:
        return self.result.status in (Status.FAILED, Status.IN_DOUBT)


@dataclass
class Attempt:
    """One account in one run: what is known so far, and its record."""

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
    # what ages are counted to: the read-only uses' one time for every account (None: the
    # moment each outcome is made)
    now: datetime | None = None
    _counted: bool = False  # its failure was told to the run (once)
    _repaired: dict[str, Push] = field(default_factory=dict)
    _followups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def changes_authority(self) -> bool:
        """Whether this run changes the password at the authority: not for a copy-only
        account, nor for one whose password another rotator owns (it is followed)."""
        return self.account.changes_host and not isinstance(self.authority, Follower)

    # -- the runbook -----------------------------------------------------------------------

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
        soon: bool | None = None,
        compliance: bool = False,
    ) -> AccountOutcome:
        """The account's result and one item per usage, from how far it got. `compliance`: a
        report from Vault alone, where a usage is in sync unless Vault records it stale
        (`soon`: overdue before the next scheduled run)."""
        if status in (Status.FAILED, Status.IN_DOUBT):
            self.known_failure()
        by_label = {p.row.label: p for p in pushes} if pushes else {}
        # a compliance report does nothing per account: no time of its own to record
        duration = 0.0 if compliance else time.monotonic() - self.started
        usages = self.account.usages
        # sized exactly (a list grown by append keeps room for 4: 100,000 accounts, 2.4 MB)
        items: list[ItemResult] = [None] * len(usages)  # type: ignore[list-item]
        in_sync = stale = 0
        for i, row in enumerate(usages):
            # Built once, with everything: a 100,000-usage run makes no copies of its items.
            item = self.usage_item(
                row,
                status,
                stage,
                reason,
                error,
                by_label.get(row.label),
                version,
                rotated_at,
                duration=duration,
                soon=soon,
            )
            if compliance and row.label in self.state.stale:
                item = self._stale_in_vault(item)
            items[i] = item
            if item.status is Status.STALE:
                stale += 1
            elif item.status in _HOLDS_CURRENT or (compliance and self.state.current_version):
                in_sync += 1
        result = AccountResult(
            self.account,
            authority_type=self.ctx.authority_types.get(self.account.authority, "none"),
            status=Status.STALE if compliance and stale else status,
            reason=reason,
            error=error,
            vault_version=version or self.state.current_version,
            last_changed=rotated_at or self.state.rotated_at,
            login_verified=self.login_verified,
            in_sync=in_sync,
            stale=stale,
        )
        return AccountOutcome(result, items)

    def _stale_in_vault(self, item: ItemResult) -> ItemResult:
        """A compliance item whose usage Vault records stale."""
        stale = self.state.stale[item.row.label]
        held = f"v{stale.held_version}" if stale.held_version else "an unknown version"
        since = f" since {stale.since:%Y-%m-%d %H:%M} UTC" if stale.since else ""
        return replace(
            item,
            status=Status.STALE,
            reason=f"does not hold the account's current password (holds {held}{since}); "
            "the next run repairs it",
        )

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
        *,
        duration: float = 0.0,
        soon: bool | None = None,
    ) -> ItemResult:
        """One usage's result: the account's outcome, and what its own push proved."""
        repaired = self._repaired.get(row.label)
        verified = push.verified if push is not None else None
        if push is None and repaired is not None and repaired.took is Took.MISSING:
            push = repaired  # a stale usage whose target is gone: skipped like one
        if push is not None and push.took is Took.MISSING:
            status, error = Status.NOT_ATTEMPTED, push.note
        elif push is not None and stage is Stage.PROMOTED:
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
            age_days=0.0 if rotated else planner.age_days(self.state, self.now or now_utc()),
            max_age_days=planner.max_age(self.account, self.ctx.default_max_age_days),
            last_failure_at=self.state.last_failure_at,
            duration_s=duration,
            followups=self._followups.get(row.label, ()),
            due_before_next_run=soon,
        )
