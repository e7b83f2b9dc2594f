"""Accounts whose password another rotator owns (an authority that is a `Follower`, such as
OpenBao/Vault's LDAP secrets engine): what a run reads from that rotator, and when such an
account acts.

Before the decisions, each followed account's current password is read from its rotator and
compared with Vault's KV copy of the account: they differ when the rotator changed it since
the usages last received it (or never gave it to them). Such an account is due, and its
"candidate" is the rotator's password, staged, pushed and promoted like any other, but never
made or changed by rotate. When they agree, nothing is due (a second run changes nothing).

The rotator's password was not made by rotate, so it is checked first against what every usage
can carry (a control character, a protocol's length limit): a usage that cannot hold it would
be broken by a push, so the account fails before anything is sent, its usages named.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from rotate import planner
from rotate.authorities.base import Authority, Followed, Follower
from rotate.errors import RemoteError, StoreError
from rotate.models import Account, Secret, SecretState
from rotate.registry import kind_spec
from rotate.stores.base import DataPlane
from rotate.stores.kv import fan_out

log = logging.getLogger(__name__)


class NotFollowed(StoreError):
    """A followed account that cannot act this run (its rotator not read, or its password
    unfit for a usage): the account fails with this reason, nothing is sent."""

    reason = "the engine's password not taken"


@dataclass(frozen=True, slots=True)
class Following:
    """What a run knows of one followed account."""

    password: Secret = field(repr=False)  # the rotator's current password
    rotated_at: datetime | None  # when the rotator last changed it, if it says
    in_sync: bool  # Vault's KV copy of the account is that password
    replaced: str = ""  # the run whose unfinished copy of an older password this replaces


def same(a: Secret, b: Secret) -> bool:
    return hmac.compare_digest(a.reveal().encode(), b.reveal().encode())


def carry_problems(account: Account, password: Secret) -> list[str]:
    """Why some usages of the account cannot hold this password (none: every one can)."""
    text = password.reveal()
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return ["it holds a control character, which no usage's logon can carry"]
    problems = []
    for row in account.usages:
        spec = kind_spec(row.kind)
        limit = spec.max_password(row.protocol) if spec is not None else None
        if limit is not None and len(text) > limit:
            problems.append(
                f"{row.label} (line {row.line}) takes at most {limit} characters for "
                f"{row.protocol}; the engine's has {len(text)}"
            )
    return problems


async def read_followed(
    accounts: Sequence[Account],
    states: Sequence[SecretState | StoreError],
    authorities: Mapping[str, Authority],
    store: DataPlane,
    *,
    width: int,
    write: bool,
) -> tuple[list[SecretState | StoreError], dict[str, Following]]:
    """The states with every followed account's rotator read (a failure: `NotFollowed`),
    and what each of them follows. `write`: a rotation run, which drops an unfinished copy of
    a password the rotator has since replaced (a plan only says it would)."""
    followers = {name for name, a in authorities.items() if isinstance(a, Follower)}
    followed = [
        i
        for i, account in enumerate(accounts)
        if account.authority in followers and isinstance(states[i], SecretState)
    ]
    if not followed:
        return list(states), {}
    out = list(states)
    found: dict[str, Following] = {}

    async def one(index: int) -> None:
        account, state = accounts[index], states[index]
        assert isinstance(state, SecretState)
        follower = authorities[account.authority]
        assert isinstance(follower, Follower)
        try:
            got = await follower.followed(account)
            following, state = await _compare(account, state, got, store, write=write)
        except (RemoteError, StoreError) as exc:
            out[index] = exc if isinstance(exc, NotFollowed) else NotFollowed(str(exc))
            return
        out[index] = state
        found[account.vault_path] = following

    await fan_out(one, followed, width)
    return out, found


async def _compare(
    account: Account, state: SecretState, got: Followed, store: DataPlane, *, write: bool
) -> tuple[Following, SecretState]:
    """The followed account's standing against Vault's KV copy (and its unfinished copy)."""
    if got.username.casefold() != account.username.casefold():
        raise NotFollowed(
            f"the engine's role is for {got.username!r}, the inventory's usages log in as "
            f"{account.username!r}: nothing sent"
        )
    if problems := carry_problems(account, got.password):
        raise NotFollowed(
            "the engine's password cannot be stored by every usage, nothing sent: "
            + "; ".join(problems)
        )
    in_sync = False
    if state.current_version is not None:
        current = await store.read_current(account.vault_path)
        in_sync = current is not None and same(current.password, got.password)
    replaced = ""
    pending = state.pending
    if pending is not None and not same(pending.credential.password, got.password):
        replaced = pending.run_id
        if write:  # nothing may hold it but usages it broke: the engine's password replaces it
            await store.discard(account.vault_path)
            log.info("%s: an unfinished copy of an older engine password dropped", account.name)
        state = replace(state, pending=None)
    return Following(got.password, got.rotated_at, in_sync, replaced), state


def decide(state: SecretState, following: Following, force: bool) -> planner.Decision:
    """Due when the usages may not hold the rotator's current password."""
    when = f" at {following.rotated_at:%Y-%m-%d %H:%M} UTC" if following.rotated_at else ""
    if state.pending is not None:
        return planner.Decision(
            True,
            f"unfinished copy of the engine's password from run {state.pending.run_id}: resume it",
            resume=True,
        )
    if not following.in_sync:
        what = (
            "the engine's password was never copied"
            if state.current_version is None
            else f"the engine rotated it{when}"
        )
        if following.replaced:
            what += f" (run {following.replaced}'s unfinished copy of an older one is replaced)"
        return planner.Decision(True, f"{what}: every usage gets it")
    if force:
        return planner.Decision(True, "forced: the engine's password re-pushed to every usage")
    if state.stale:
        return planner.Decision(
            False,
            f"{len(state.stale)} usage(s) hold an older password: re-push the engine's",
            repair=True,
        )
    return planner.Decision(False, f"every usage holds the engine's password (rotated{when})")
