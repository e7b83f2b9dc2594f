"""The read-only uses of the runbook: the plan (what a run would do now, with the same
checks, writing nothing) and the compliance report (from Vault alone)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from rotate import planner
from rotate.attempt import AccountOutcome, Context, now_utc
from rotate.errors import RemoteError, StoreError
from rotate.models import (
    NO_AUTHORITY,
    Account,
    AuthorityProbe,
    Drift,
    ItemResult,
    SecretState,
    Status,
)
from rotate.protocol import AccountRotation
from rotate.runbook import Outcome, Runbook
from rotate.stores.kv import fan_out
from rotate.vendors.base import Inspectable

log = logging.getLogger(__name__)


async def plan(book: Runbook, accounts: Sequence[Account]) -> Outcome:
    """What a run would do now, with the same checks (reads and logins only), and every
    usage looked at on its endpoint: a target missing there, or storing another username."""
    now = now_utc()
    states = await book.read_states(accounts)
    decisions = book.decide(accounts, states, now)
    probes = await book.probe(sorted({r.endpoint for a in accounts for r in a.usages}))
    # every account's authority: Vault's current password is checked there, due or not
    authority_probes = await book.probe_authorities(
        sorted({a.authority for a in accounts if a.changes_host})
    )
    down = {n: p.detail for n, p in probes.items() if not p.ok}
    ctx = book.context(down)
    # what the plan hash covers: the due secrets and the usages to repair
    due = [
        f"repair:{label}"
        for state in states
        if isinstance(state, SecretState)
        for label in state.stale
    ]
    due += [a.vault_path for a, d in zip(accounts, decisions, strict=True) if d and d.due]
    pending: list[SecretState | StoreError | None] = list(states)
    del states  # each state is let go once its account has its outcome (a lower peak)

    async def one(index: int) -> AccountOutcome:
        account, state, decision = accounts[index], pending[index], decisions[index]
        pending[index] = None
        assert state is not None
        if isinstance(state, StoreError) or decision is None:
            return book.failed_read(account, state)
        outcome = await _plan_one(book, ctx, account, state, decision, authority_probes, now)
        if not book.options.check_usages:
            return outcome
        looked = await asyncio.gather(*(_inspect(ctx, account, i) for i in outcome.items))
        outcome.items[:] = looked
        return outcome

    outcomes = await fan_out(one, range(len(accounts)), book.width())  # no list of 100,000 ints
    plan_hash = planner.plan_hash(book.options.inputs_digest, due)
    return book.record(outcomes, probes, authority_probes, plan_hash=plan_hash, aborted="")


async def _plan_one(
    book: Runbook,
    ctx: Context,
    account: Account,
    state: SecretState,
    decision: planner.Decision,
    authority_probes: Mapping[str, AuthorityProbe],
    now: datetime,
) -> AccountOutcome:
    """One account's plan: due or not, and whether a run could do it (ages counted to
    `now`, the plan's time)."""
    authority = book.authorities[account.authority]
    rotation = AccountRotation(ctx, account, state, decision, authority, now=now)
    probe = authority_probes.get(account.authority)
    if not decision.acts:
        return await _not_due(rotation, probe)
    status, error = Status.DUE, ""
    up = [r for r in account.usages if r.endpoint not in ctx.down]
    if not up:
        status, error = Status.NOT_ATTEMPTED, "no endpoint of its usages passed its probe"
    elif probe is not None and not probe.ok:
        status, error = Status.NOT_ATTEMPTED, f"authority {account.authority}: {probe.detail}"
    elif decision.due and not decision.resume and rotation.changes_authority:
        held = await rotation.current_logs_in()
        if held is False and not book.options.force:
            status = Status.DRIFT
            error = (
                f"Vault's current password does not log in at authority "
                f"{account.authority} (changed out of band?): a run does not rotate it "
                "without --force"
            )
        elif held is None:
            error = f"authority {account.authority} could not check Vault's current password"
    if not account.changes_host:
        error = "; ".join(e for e in (error, "copy-only: the host account is not changed") if e)
    outcome = rotation.outcome(status, decision.reason, error=error)
    for i, item in enumerate(outcome.items):
        row = item.row
        note = ""
        if row.label in state.stale:
            note = "stale: holds an older password; the run re-pushes Vault's current first"
        elif row.endpoint in ctx.down and status is Status.DUE:
            note = "endpoint failed its probe: this usage would be left stale"
        if note:
            outcome.items[i] = replace(
                item,
                status=Status.DUE if status is Status.DUE or decision.repair else item.status,
                reason=f"{item.reason}; {note}",
            )
    return outcome


async def _not_due(rotation: AccountRotation, probe: AuthorityProbe | None) -> AccountOutcome:
    """An account a run leaves alone: its usages hold Vault's current password, which must
    still log in at its authority (else someone changed it there: drift, and every usage
    holds a password that no longer works)."""
    reason = rotation.decision.reason
    if not rotation.changes_authority or rotation.state.current_version is None:
        return rotation.outcome(Status.NOT_DUE, reason)
    where = f"authority {rotation.account.authority}"
    if probe is not None and not probe.ok:
        return rotation.outcome(Status.NOT_DUE, reason, error=f"{where}: {probe.detail}")
    held = await rotation.current_logs_in()
    if held is None:
        error = f"{where} could not check Vault's current password ({rotation.unsure})"
        return rotation.outcome(Status.NOT_DUE, reason, error=error)
    if held:
        return rotation.outcome(Status.NOT_DUE, f"{reason}; Vault's current logs in at {where}")
    return rotation.outcome(
        Status.DRIFT,
        reason,
        error=f"Vault's current password does not log in at {where} (changed out of band?): "
        "its usages hold a password that no longer works; `rotate run --force` resets it",
    )


async def _inspect(ctx: Context, account: Account, item: ItemResult) -> ItemResult:
    """One usage looked at on its endpoint (reads only): a target that is not there (a run
    skips it: `not_attempted`) or that stores another username is the item's `problem`."""
    row = item.row
    target = ctx.targets.get(row.endpoint)
    if row.endpoint in ctx.down or not isinstance(target, Inspectable):
        return item  # endpoint down (said already), or a vendor that cannot look
    try:
        found = await target.inspect(row)
    except RemoteError as exc:
        note = f"usage not checked: {exc}"
        return replace(item, error=f"{item.error}; {note}" if item.error else note)
    if not found.exists:
        problem = f"target missing at its endpoint ({found.detail})"
        acts = item.status is Status.DUE
        return replace(
            item,
            status=Status.NOT_ATTEMPTED if acts else item.status,
            problem=problem + ("; a run skips it" if acts else ""),
        )
    stored = found.username
    if stored is not None and stored.casefold() != account.username.casefold():
        problem = (
            f"stored username {stored!r} differs from the account's {account.username!r}; "
            f"a rotation overwrites it with {account.username!r}"
        )
        return replace(item, problem=problem)
    return item


async def report(book: Runbook, accounts: Sequence[Account]) -> Outcome:
    """Compliance of every account and usage, from Vault alone."""
    now = now_utc()
    states: list[SecretState | StoreError | None] = list(await book.read_states(accounts))
    # the usages whose account has no secret (for the drift check), before the states go
    without_secret = tuple(
        r.label
        for a, st in zip(accounts, states, strict=True)
        if isinstance(st, SecretState) and st.current_version is None
        for r in a.usages
    )
    outcomes = []
    ctx = book.context({})
    for index, account in enumerate(accounts):
        state, states[index] = states[index], None  # let go once used (a lower peak)
        assert state is not None
        if isinstance(state, StoreError):
            outcomes.append(book.failed_read(account, state))
            continue
        status, reason, soon = planner.compliance(
            account, state, now, book.settings.run.max_age_days, book.options.schedule_days
        )
        rotation = AccountRotation(
            ctx,
            account,
            state,
            planner.Decision(False, reason),
            book.authorities[NO_AUTHORITY],
            now=now,
        )
        outcomes.append(rotation.outcome(status, reason, soon=soon, compliance=True))
    found = await drift(book, accounts, without_secret) if book.options.check_drift else None
    record = book.record(outcomes, {}, {}, aborted="")
    record.drift = found
    return record


async def drift(
    book: Runbook, accounts: Sequence[Account], without_secret: tuple[str, ...]
) -> Drift | None:
    """Secrets under the prefix that no account uses, and usages whose account has none."""
    try:
        listed = await book.store.list_paths(book.settings.vault.prefix)
    except StoreError as exc:
        log.warning("drift not checked: %s", exc)
        return None
    known = {a.vault_path for a in accounts}
    return Drift(
        secrets_without_row=tuple(p for p in listed if p not in known),
        rows_without_secret=without_secret,
    )
