"""Orchestration: read Vault's state, plan, probe, schedule accounts within the bounds, record.

What happens to one account is in rotate/protocol.py; this module decides which accounts act,
probes the endpoints and authorities they need, stages their candidates a batch at a time,
runs them on a fixed set of workers (interleaved across endpoints, so the global bound keeps
every endpoint busy), stops starting new ones when the run is aborted (failure threshold,
failed canary, lost lease), and turns every outcome into records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from rotate import following, passwords, planner
from rotate.authorities.base import Authority
from rotate.authorities.none import NoAuthority
from rotate.errors import (
    AdminRefused,
    AuthorityUnavailable,
    EndpointUnavailable,
    RemoteError,
    StoreError,
    StoreUnavailable,
)
from rotate.following import Following, NotFollowed, read_followed
from rotate.models import (
    NO_AUTHORITY,
    Account,
    AccountResult,
    AuthorityProbe,
    Drift,
    EndpointProbe,
    ItemResult,
    Secret,
    SecretState,
    Status,
)
from rotate.progress import NullProgress, Progress
from rotate.protocol import TROUBLE, AccountOutcome, AccountRotation, Context
from rotate.settings import Settings
from rotate.stores.base import DataPlane
from rotate.stores.kv import fan_out
from rotate.vendors.base import Target

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Threshold:
    """`--max-failures`: a count (`5`) or a share of the accounts to rotate (`2%`)."""

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
    max_failures: Threshold | None = None  # stop starting accounts once crossed
    canary: int = 0  # rotate this many accounts first; stop if any of them fails
    inputs_digest: str = ""  # SHA-256 of inventory and config, for the plan hash
    expected_plan_hash: str | None = None  # run: refuse unless the plan is still this one
    schedule_days: float | None = None  # report: days until the next scheduled run
    check_drift: bool = True  # report: off for a shard, which cannot tell others' secrets
    check_usages: bool = True  # plan: look at each usage's target on its endpoint


@dataclass(repr=False)
class Outcome:
    """What a runbook call produced, for the record and the exit code."""

    items: list[ItemResult]
    probes: list[EndpointProbe] = field(default_factory=list)
    aborted: str = ""  # why the run stopped starting accounts, if it did
    plan_hash: str = ""
    drift: Drift | None = None
    accounts: list[AccountResult] = field(default_factory=list)
    authority_probes: list[AuthorityProbe] = field(default_factory=list)

    def __repr__(self) -> str:
        # Short on purpose: asyncio formats the main task's result when the run's event loop
        # closes (Python 3.11), and the full repr of 100,000 items costs seconds and 150 MB.
        return f"Outcome({len(self.items)} items, aborted={self.aborted!r})"


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


class Runbook:
    """One invocation's orchestration over a store, the targets and the authorities: what
    every use shares (reading Vault's state, probing, the records); the uses themselves are
    rotate/scheduling.py (run), rotate/review.py (plan, report) and rotate/reconcile.py."""

    def __init__(
        self,
        settings: Settings,
        store: DataPlane,
        targets: Mapping[str, Target],
        options: Options,
        progress: Progress | None = None,
        authorities: Mapping[str, Authority] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.targets = targets
        self.authorities = {NO_AUTHORITY: NoAuthority(), **(authorities or {})}
        self.options = options
        self.progress = progress or NullProgress()
        self._authority_types = {n: a.type for n, a in settings.authorities.items()}
        self.aborted = ""  # set once: from then on no new account starts, nothing new is sent
        self.in_flight_at_abort = 0  # accounts under way when the run was aborted
        self._tolerated: float | None = None
        self._failures = 0
        self._total = 0
        self.in_flight = 0
        # accounts another rotator owns, by secret path: read by `read_states` (plan, run)
        self.following: dict[str, Following] = {}
        self._canary: int | None = None  # the canary's size while it runs

    def abort(self, reason: str) -> None:
        """Stop starting new accounts and sending anything new; those already sending finish
        and are recorded."""
        if not self.aborted:
            self.in_flight_at_abort = self.in_flight
            under_way = f"; {self.in_flight} account(s) already under way were let finish"
            self.aborted = reason + (under_way if self.options.mode == "run" else "")
            log.error("run aborted: %s; no new account starts", self.aborted)

    def authority_type(self, account: Account) -> str:
        found = self.settings.authorities.get(account.authority)
        return found.type if found is not None else NO_AUTHORITY

    async def read_states(self, accounts: Sequence[Account]) -> list[SecretState | StoreError]:
        """Vault's view of every account; a failed read is kept as the account's error.

        First every staged candidate (one scan of the journal records: an account that has
        one is resumed, never given a fresh password) and every usage recorded stale (one
        scan: they are repaired first); then one metadata read per account, as many in
        flight as Vault has connections (a fixed set of workers, not a task per account).
        """
        try:
            pending = await self.store.pending()
        except StoreError as exc:
            raise StoreUnavailable(
                f"could not read the journal of unfinished rotations: {exc}"
            ) from None
        try:
            stale = await self.store.stale()
        except StoreError as exc:
            raise StoreUnavailable(f"could not read the stale-usage records: {exc}") from None

        async def one(account: Account) -> SecretState | StoreError:
            path = account.vault_path
            try:
                state = await self.store.read_state(path, pending.get(path))
            except StoreError as exc:
                return exc
            return replace(state, stale=stale[path]) if path in stale else state

        states = await fan_out(one, accounts, self.settings.vault.connections)
        if self.options.mode not in ("plan", "run"):
            return states
        # Accounts another rotator owns: read it, compare with Vault's copy (rotate/following.py)
        states, self.following = await read_followed(
            accounts,
            states,
            self.authorities,
            self.store,
            width=self.settings.vault.connections,
            write=self.options.mode == "run",
        )
        return states

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

    async def probe_authorities(self, names: Sequence[str]) -> dict[str, AuthorityProbe]:
        """Log in to each authority as rotate's admin; AdminRefused (exit 3) stops the run
        before any change, an unreachable authority only holds back its own accounts."""

        async def one(name: str) -> AuthorityProbe:
            settings = self.settings.authorities.get(name)
            kind = settings.type if settings is not None else NO_AUTHORITY
            try:
                detail = await self.authorities[name].probe()
            except AdminRefused:
                raise
            except (AuthorityUnavailable, RemoteError) as exc:
                log.warning("authority %s failed its probe: %s", name, exc)
                return AuthorityProbe(name, kind, False, str(exc))
            log.info("authority %s: %s", name, detail)
            return AuthorityProbe(name, kind, True, detail)

        probes = await asyncio.gather(*(one(n) for n in names))
        return {p.name: p for p in probes}

    def context(
        self, down: Mapping[str, str], failing: Callable[[], None] = lambda: None
    ) -> Context:
        """What every account's protocol shares in this run (`down`: endpoints that failed
        their probe; `failing`: told the moment an account fails or is in doubt)."""
        return Context(
            run_id=self.options.run_id,
            force=self.options.force,
            store=self.store,
            targets=self.targets,
            down=down,
            default_max_age_days=self.settings.run.max_age_days,
            generate=self.generate,
            stopped=lambda: self.aborted,
            failing=failing,
            authority_types=self._authority_types,
        )

    async def generate(self, account: Account) -> Secret:
        """A new password per the account's policy: made here, or by a Vault password policy."""
        followed = self.following.get(account.vault_path)
        if followed is not None:  # another rotator made it: rotate only passes it on
            return followed.password
        policy = self.settings.policies[account.policy]
        if policy.generator != "vault" or policy.vault_policy is None:
            return passwords.generate(policy)
        password = await self.store.generate_password(policy.vault_policy)
        if len(password) != policy.length:
            raise StoreError(
                f"Vault password policy {policy.vault_policy!r} made a password of "
                f"{len(password)} characters; policy {policy.name!r} says {policy.length}"
            )
        return password

    def width(self) -> int:
        return self.options.concurrency or self.settings.run.concurrency

    def decide(
        self,
        accounts: Sequence[Account],
        states: Sequence[SecretState | StoreError],
        now: datetime,
    ) -> list[planner.Decision | None]:
        run = self.settings.run
        return [
            None
            if isinstance(state, StoreError)
            else following.decide(state, found, self.options.force)
            if (found := self.following.get(account.vault_path)) is not None
            else planner.decide(account, state, now, run.max_age_days, self.options.force)
            for account, state in zip(accounts, states, strict=True)
        ]

    def failed_read(self, account: Account, error: SecretState | StoreError) -> AccountOutcome:
        empty = SecretState(account.vault_path, None, None, None)
        rotation = AccountRotation(
            self.context({}),
            account,
            empty,
            planner.Decision(False, ""),
            self.authorities[NO_AUTHORITY],
        )
        reason = error.reason if isinstance(error, NotFollowed) else "Vault not read"
        outcome = rotation.outcome(Status.FAILED, reason, error=str(error))
        outcome.items = [replace(i, vault_version=None, age_days=None) for i in outcome.items]
        return outcome

    def record(
        self,
        outcomes: Sequence[AccountOutcome],
        probes: Mapping[str, EndpointProbe],
        authority_probes: Mapping[str, AuthorityProbe],
        *,
        aborted: str,
        plan_hash: str = "",
    ) -> Outcome:
        items = sorted((i for o in outcomes for i in o.items), key=lambda i: i.row.line)
        results = [o.result for o in outcomes]
        return Outcome(
            items,
            list(probes.values()),
            aborted=aborted,
            plan_hash=plan_hash,
            accounts=results,
            authority_probes=list(authority_probes.values()),
        )

    # -- the uses ----------------------------------------------------------------------------

    async def plan(self, accounts: Sequence[Account]) -> Outcome:
        """What a run would do now, with the same checks (reads and logins only)."""
        from rotate.review import plan

        return await plan(self, accounts)

    async def report(self, accounts: Sequence[Account]) -> Outcome:
        """Compliance of every account and usage, from Vault alone."""
        from rotate.review import report

        return await report(self, accounts)

    async def run(self, accounts: Sequence[Account]) -> Outcome:
        """Rotate every due account and repair every stale usage, bounded, never cancelling."""
        from rotate.scheduling import Scheduler

        return await Scheduler(self).run(accounts)


def exit_trouble(mode: str, items: Sequence[ItemResult]) -> bool:
    """Whether these items make the invocation exit 1 (a plan: also any usage problem)."""
    bad = {Status.FAILED, Status.DRIFT}
    if mode in ("run", "reconcile"):
        bad |= TROUBLE
    return any(i.status in bad or i.problem for i in items)
