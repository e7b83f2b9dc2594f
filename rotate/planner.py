"""Pure decisions: which accounts are due for rotation, and how compliant each one is."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from rotate.models import Account, Row, SecretState, Status


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an account is due now, and why (a sentence for the report)."""

    due: bool  # a new password is due (or an unfinished one is to be finished)
    reason: str
    resume: bool = False  # a pending candidate exists: finish it rather than make a new one
    repair: bool = False  # some usages hold an older password: push the current one first

    @property
    def acts(self) -> bool:
        """Whether a run does anything for the account."""
        return self.due or self.repair


def age_days(state: SecretState, now: datetime) -> float | None:
    """Days since the last rotation, or None when never rotated."""
    if state.rotated_at is None:
        return None
    return (now - state.rotated_at).total_seconds() / 86400


NEVER_ROTATED = "never rotated"
FIRST_ROTATION = Decision(True, NEVER_ROTATED)


def max_age(item: Row | Account, default_max_age_days: int) -> int:
    """The usage's or account's own maximum age, else the config's default."""
    return item.max_age_days if item.max_age_days is not None else default_max_age_days


def decide(
    item: Row | Account,
    state: SecretState,
    now: datetime,
    default_max_age_days: int,
    force: bool,
) -> Decision:
    """Due when a rotation is unfinished, never done, too old, or forced; a repair when some
    usages are recorded stale (they get the current password before anything new is made)."""
    if state.pending is not None:
        return Decision(
            True, f"unfinished rotation from run {state.pending.run_id}: resume it", resume=True
        )
    repair = bool(state.stale)
    first = f"repair {len(state.stale)} stale usage(s) first; " if repair else ""
    limit = max_age(item, default_max_age_days)
    age = age_days(state, now)
    if age is None:  # a first run's: one decision for every account (100,000 on a big one)
        return Decision(True, first + NEVER_ROTATED, repair=True) if repair else FIRST_ROTATION
    if force:
        return Decision(True, f"{first}forced (age {age:.1f} d, max {limit} d)", repair=repair)
    if age >= limit:
        return Decision(True, f"{first}age {age:.1f} d reached max {limit} d", repair=repair)
    if repair:
        return Decision(
            False,
            f"{len(state.stale)} usage(s) hold an older password: re-push the current one "
            f"(age {age:.1f} d within max {limit} d)",
            repair=True,
        )
    return Decision(False, f"age {age:.1f} d within max {limit} d")


def compliance(
    row: Row | Account,
    state: SecretState,
    now: datetime,
    default_max_age_days: int,
    schedule_days: float | None = None,
) -> tuple[Status, str, bool | None]:
    """Status from Vault's record of the last rotation and attempt, and whether the row will
    be overdue before the next scheduled run (`schedule_days` from now), if one is given."""
    limit = max_age(row, default_max_age_days)
    age = age_days(state, now)
    soon = None if schedule_days is None else (age is None or age + schedule_days > limit)
    pending = "; an unfinished rotation is pending" if state.pending else ""
    failed_after = state.last_failure_at is not None and (
        state.rotated_at is None or state.last_failure_at > state.rotated_at
    )
    if failed_after and state.last_failure_at is not None:
        when = f"{state.last_failure_at:%Y-%m-%d %H:%M} UTC"
        since = "never rotated" if age is None else f"age {age:.1f} d, max {limit} d"
        return Status.LAST_ATTEMPT_FAILED, f"the last attempt failed ({when}); {since}", soon
    if age is None:
        return Status.NEVER_ROTATED, "no rotation recorded in Vault", soon
    if age > limit:
        return Status.OVERDUE, f"age {age:.1f} d over max {limit} d{pending}", soon
    return Status.COMPLIANT, f"age {age:.1f} d within max {limit} d{pending}", soon


def plan_hash(inputs_digest: str, due_paths: Iterable[str]) -> str:
    """What `rotate run --plan-hash` must match: the inputs and the set of due secrets."""
    digest = hashlib.sha256(inputs_digest.encode())
    for path in sorted(due_paths):
        digest.update(b"\0" + path.encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Shard:
    """`--shard K/N`: this scheduler's part of the inventory (0 <= K < N), by a stable hash."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        k, sep, n = text.partition("/")
        if not sep or not k.strip().isdigit() or not n.strip().isdigit():
            raise ValueError(f"{text!r} is not K/N (for example 0/4)")
        index, count = int(k), int(n)
        if not 0 <= index < count:
            raise ValueError(f"{text!r}: K must be from 0 to N-1")
        return cls(index, count)

    def holds(self, row: Row) -> bool:
        """Whether the row is this shard's: the same answer on every host, every time. Every
        usage of one account lands in the same shard (the key is the account)."""
        key = row.account.encode()
        value = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
        return value % self.count == self.index

    @property
    def label(self) -> str:
        return f"shard-{self.index}-of-{self.count}"
