"""Figures the reports share: status shares, age buckets, per-endpoint counts, why an item is due.

The HTML page and the JSON record are both built from these, so the numbers an auditor reads
on the page are the numbers a script reads from the JSON. `tally` counts all of them in one
pass over the items; the functions taking items are shorthands for one figure.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from rotate.models import NO_AUTHORITY, AccountResult, ItemResult, Status
from rotate.registry import system_of_kind

#: the statuses of a compliance report, always listed (with 0 when absent)
COMPLIANCE_STATUSES: tuple[Status, ...] = (
    Status.COMPLIANT,
    Status.OVERDUE,
    Status.NEVER_ROTATED,
    Status.LAST_ATTEMPT_FAILED,
)

#: the counts a run's summary always has (DESIGN.md), in this order, after `total`
SUMMARY_KEYS: tuple[str, ...] = ("rotated", "failed", "skipped", "in_doubt", "not_attempted")

#: the statuses a plan explains with a reason (`why`)
PLAN_STATUSES = frozenset({Status.DUE, Status.NOT_DUE, Status.NOT_ATTEMPTED})

_DIGITS = re.compile(r"(\d+)")

Natural = tuple[str | int, ...]


def natural(text: str) -> Natural:
    """Sort key putting `host-2` before `host-10`: digit runs compare as numbers."""
    # re.split alternates text and digits, so like always meets like in tuple comparison.
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(_DIGITS.split(text)))


def percent(part: int, whole: int) -> float:
    """`part` as a percentage of `whole`, to two decimals; 0.0 of nothing."""
    return round(100 * part / whole, 2) if whole else 0.0


# --- one pass -----------------------------------------------------------------------------


@dataclass
class Tally:
    """Every figure the reports show, counted in one pass over the items (see `tally`)."""

    total: int = 0
    #: items by status value, in the order the statuses first occur
    statuses: Counter[str] = field(default_factory=Counter)
    #: per endpoint, in the order the endpoints first occur: items by status value
    endpoints: dict[str, Counter[str]] = field(default_factory=dict)
    #: the vendor system of each endpoint, from its first item
    systems: dict[str, str] = field(default_factory=dict)
    #: per age bucket key: items by status
    ages: dict[str, Counter[Status]] = field(default_factory=dict)
    #: items overdue before the next scheduled run
    soon: int = 0
    #: plan items by (status value, `why`)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the stale usages (the account changed, they did not take it), in record order
    stale: list[ItemResult] = field(default_factory=list)
    #: the usages a plan found a problem with (missing target, another username), in order
    problems: list[ItemResult] = field(default_factory=list)

    def add(self, item: ItemResult) -> None:
        status = item.status
        endpoint = item.row.endpoint
        self.total += 1
        self.statuses[status.value] += 1
        per = self.endpoints.get(endpoint)
        if per is None:
            per = self.endpoints[endpoint] = Counter()
            self.systems[endpoint] = system_of_kind(item.row.kind)
        per[status.value] += 1
        self.ages.setdefault(age_bucket(item), Counter())[status] += 1
        if item.due_before_next_run:
            self.soon += 1
        if status in PLAN_STATUSES:
            self.reasons[status.value, why(item)] += 1
        elif status is Status.STALE:
            self.stale.append(item)
        if item.problem:
            self.problems.append(item)

    def summary(self) -> dict[str, int]:
        """Counts by status as `RunRecord.summary()` has them: `total`, the DESIGN.md keys,
        then any other status in the order it first occurs."""
        counts = {"total": self.total}
        counts.update((key, self.statuses[key]) for key in SUMMARY_KEYS)
        counts.update((k, n) for k, n in self.statuses.items() if k not in counts)
        return counts

    def percentages(self) -> dict[str, float]:
        """Share of the items in each status: the compliance statuses always, others when
        present."""
        keys = [s.value for s in COMPLIANCE_STATUSES]
        keys += sorted(k for k in self.statuses if k not in keys)
        return {k: percent(self.statuses[k], self.total) for k in keys}

    def by_endpoint(self) -> list[EndpointCounts]:
        """Status counts per endpoint, endpoints in natural name order."""
        return [
            EndpointCounts(name, per.total(), per)
            for name, per in sorted(self.endpoints.items(), key=lambda p: natural(p[0]))
        ]

    def age_histogram(self) -> list[AgeBucket]:
        """Items by age bucket, youngest first, then never rotated, then unknown (if any)."""
        bounds: list[tuple[str, str, int | None, int | None]] = list(AGE_BOUNDS)
        bounds.append((NEVER, "never", None, None))
        if UNKNOWN in self.ages:
            bounds.append((UNKNOWN, "unknown", None, None))
        buckets = []
        for key, label, low, high in bounds:
            c = self.ages.get(key, Counter())
            split = tuple((s.value, c[s]) for s in Status if c[s])
            buckets.append(AgeBucket(key, label, low, high, c.total(), split))
        return buckets


def tally(items: Iterable[ItemResult]) -> Tally:
    """The figures of `items`, counted in one pass."""
    counted = Tally()
    add = counted.add
    for item in items:
        add(item)
    return counted


def status_counts(items: Iterable[ItemResult]) -> Counter[str]:
    return Counter(item.status.value for item in items)


def percentages(items: Iterable[ItemResult]) -> dict[str, float]:
    """Share of the items in each status: the compliance statuses always, others when present."""
    return tally(items).percentages()


# --- accounts -----------------------------------------------------------------------------


@dataclass
class AuthorityCounts:
    """The accounts checked at one authority (`none`: the copy-only ones)."""

    name: str
    type: str  # ldap | ad | none | ... (from its accounts' results)
    accounts: int = 0
    usages: int = 0
    attention: int = 0  # accounts needing attention (see `account_attention`)


@dataclass
class AccountTally:
    """The account figures of a record, counted in one pass over its accounts."""

    total: int = 0
    #: accounts by status value, in the order the statuses first occur
    statuses: Counter[str] = field(default_factory=Counter)
    copy_only: int = 0  # `authority = none`: the host account is not changed
    usages: int = 0  # usages of all the accounts
    in_sync: int = 0  # usages known to hold Vault's current password
    stale: int = 0  # usages known not to
    login_verified: int = 0  # logged in at the authority with Vault's password
    login_failed: int = 0  # could not
    attention: int = 0  # accounts needing attention (see `account_attention`)
    #: per authority name, in the order the authorities first occur
    authorities: dict[str, AuthorityCounts] = field(default_factory=dict)

    def add(self, result: AccountResult) -> None:
        account = result.account
        n = len(account.usages)
        self.total += 1
        self.statuses[result.status.value] += 1
        self.copy_only += not account.changes_host
        self.usages += n
        self.in_sync += result.in_sync
        self.stale += result.stale
        if result.login_verified is not None:
            if result.login_verified:
                self.login_verified += 1
            else:
                self.login_failed += 1
        urgent = account_attention(result)
        self.attention += urgent
        per = self.authorities.get(account.authority)
        if per is None:
            kind = result.authority_type or ("none" if account.authority == NO_AUTHORITY else "")
            per = self.authorities[account.authority] = AuthorityCounts(account.authority, kind)
        per.accounts += 1
        per.usages += n
        per.attention += urgent

    def summary(self) -> dict[str, int]:
        """`total`, the accounts by status (in the order the statuses first occur), then
        the copy-only accounts, the usages and the logins checked."""
        counts = {"total": self.total}
        counts.update(self.statuses)
        counts.update(
            copy_only=self.copy_only,
            usages=self.usages,
            usages_in_sync=self.in_sync,
            usages_stale=self.stale,
            login_verified=self.login_verified,
            login_failed=self.login_failed,
        )
        return counts

    def percentages(self) -> dict[str, float]:
        """Share of the accounts in each status: the compliance statuses always, others
        when present."""
        keys = [s.value for s in COMPLIANCE_STATUSES]
        keys += sorted(k for k in self.statuses if k not in keys)
        return {k: percent(self.statuses[k], self.total) for k in keys}


#: account statuses that need no one's attention (given no stale usage and no failed login)
ACCOUNT_FINE = frozenset(
    {Status.ROTATED, Status.COMPLIANT, Status.NOT_DUE, Status.IN_SYNC, Status.REPAIRED}
)


def account_attention(result: AccountResult) -> bool:
    """Whether someone should look at the account: a status other than a success, a stale
    usage, or Vault's password refused at its authority."""
    return result.status not in ACCOUNT_FINE or result.stale > 0 or result.login_verified is False


def account_tally(results: Iterable[AccountResult]) -> AccountTally:
    """The figures of `results`, counted in one pass."""
    counted = AccountTally()
    add = counted.add
    for result in results:
        add(result)
    return counted


# --- ages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgeBucket:
    """One bar of the age histogram: rotated `min_days`..`max_days` whole days ago."""

    key: str  # stable, ASCII: the JSON name
    label: str  # for people
    min_days: int | None  # None: never rotated (or unknown)
    max_days: int | None  # None: no upper bound
    count: int
    by_status: tuple[tuple[str, int], ...]  # the count split by status, in status order

    def as_record(self) -> dict[str, object]:
        return {
            "bucket": self.key,
            "min_days": self.min_days,
            "max_days": self.max_days,
            "count": self.count,
            "by_status": dict(self.by_status),
        }


#: (key, label, min, max) in whole days of age; an age of 7.9 days is 7 whole days
AGE_BOUNDS: tuple[tuple[str, str, int, int | None], ...] = (
    ("0-7", "0\u20137 d", 0, 7),
    ("8-30", "8\u201330 d", 8, 30),
    ("31-60", "31\u201360 d", 31, 60),
    ("61-90", "61\u201390 d", 61, 90),
    ("91-180", "91\u2013180 d", 91, 180),
    ("over_180", "> 180 d", 181, None),
)
NEVER = "never"
UNKNOWN = "unknown"  # Vault could not be read for the item: its age is not known


def age_bucket(item: ItemResult) -> str:
    """The key of the histogram bucket an item falls in."""
    if item.age_days is None:
        # A rotation that was never recorded is "never"; an unreadable secret is not.
        return UNKNOWN if item.status is Status.FAILED and item.last_rotated is None else NEVER
    days = max(0, math.floor(item.age_days))
    for key, _, low, high in AGE_BOUNDS:
        if low <= days and (high is None or days <= high):
            return key
    raise AssertionError("unreachable: the last bucket has no upper bound")  # pragma: no cover


def age_histogram(items: Iterable[ItemResult]) -> list[AgeBucket]:
    """Items by age bucket, youngest first, then never rotated, then unknown (only if any)."""
    return tally(items).age_histogram()


# --- endpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointCounts:
    """How one endpoint's items ended, by status."""

    endpoint: str
    total: int
    counts: Counter[str]

    @property
    def percent_compliant(self) -> float:
        return percent(self.counts[Status.COMPLIANT.value], self.total)

    def as_compliance_record(self) -> dict[str, object]:
        rec: dict[str, object] = {"endpoint": self.endpoint, "total": self.total}
        rec.update({s.value: self.counts[s.value] for s in COMPLIANCE_STATUSES})
        rec.update({k: n for k, n in sorted(self.counts.items()) if k not in rec})
        rec["percent_compliant"] = self.percent_compliant
        return rec


def by_endpoint(items: Iterable[ItemResult]) -> list[EndpointCounts]:
    """Status counts per endpoint, endpoints in natural name order."""
    return tally(items).by_endpoint()


# --- plans --------------------------------------------------------------------------------

UNFINISHED = "unfinished rotation"
NEVER_ROTATED = "never rotated"
FORCED = "forced"
OVER_MAX_AGE = "age over max age"
WITHIN_MAX_AGE = "within max age"
OTHER = "other"

#: the reasons a plan gives, in the order the page lists them
WHY_ORDER = (UNFINISHED, NEVER_ROTATED, OVER_MAX_AGE, FORCED, WITHIN_MAX_AGE, OTHER)


def why(item: ItemResult) -> str:
    """The planner's reason for a plan item, as one of a few words (see `WHY_ORDER`).

    The planner's sentence leads with its decision (`never rotated`, `forced (...)`,
    `unfinished rotation from run ...`, `age ... reached max ...`); the age fields settle
    the rest.
    """
    text = item.reason.casefold()
    if text.startswith("unfinished"):
        return UNFINISHED
    if text.startswith("forced"):
        return FORCED
    if text.startswith("never"):
        return NEVER_ROTATED
    if item.status is Status.NOT_DUE:
        return WITHIN_MAX_AGE
    if "reached max" in text or "over max" in text:
        return OVER_MAX_AGE
    if item.age_days is None:
        return NEVER_ROTATED
    if item.max_age_days is not None and item.age_days >= item.max_age_days:
        return OVER_MAX_AGE
    return OTHER
