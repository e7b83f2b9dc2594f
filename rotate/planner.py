"""Pure decisions: which rows are due for rotation, and how compliant each one is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rotate.models import Row, SecretState, Status


@dataclass(frozen=True)
class Decision:
    """Whether a row is due now, and why (a sentence for the report)."""

    due: bool
    reason: str
    resume: bool = False  # a pending candidate exists: re-send it rather than make a new one


def age_days(state: SecretState, now: datetime) -> float | None:
    """Days since the last rotation, or None when never rotated."""
    if state.rotated_at is None:
        return None
    return (now - state.rotated_at).total_seconds() / 86400


def max_age(row: Row, default_max_age_days: int) -> int:
    return row.max_age_days if row.max_age_days is not None else default_max_age_days


def decide(
    row: Row, state: SecretState, now: datetime, default_max_age_days: int, force: bool
) -> Decision:
    """Due when a rotation is unfinished, never done, too old, or forced."""
    if state.pending is not None:
        return Decision(
            True, f"unfinished rotation from run {state.pending.run_id}: resume it", resume=True
        )
    limit = max_age(row, default_max_age_days)
    age = age_days(state, now)
    if age is None:
        return Decision(True, "never rotated")
    if force:
        return Decision(True, f"forced (age {age:.1f} d, max {limit} d)")
    if age >= limit:
        return Decision(True, f"age {age:.1f} d reached max {limit} d")
    return Decision(False, f"age {age:.1f} d within max {limit} d")


def compliance(
    row: Row, state: SecretState, now: datetime, default_max_age_days: int
) -> tuple[Status, str]:
    """Compliant, overdue or never rotated, from Vault's record of the last rotation."""
    limit = max_age(row, default_max_age_days)
    age = age_days(state, now)
    if age is None:
        return Status.NEVER_ROTATED, "no rotation recorded in Vault"
    pending = "; an unfinished rotation is pending" if state.pending else ""
    if age > limit:
        return Status.OVERDUE, f"age {age:.1f} d over max {limit} d{pending}"
    return Status.COMPLIANT, f"age {age:.1f} d within max {limit} d{pending}"
