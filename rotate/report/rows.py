"""The item rows of the report tables, one function per page kind.

A page lists up to a thousand items and a large run's report writes a hundred such pages, so
the rows are built here in plain Python, about three times faster than through Jinja macros,
rather than in the templates (which still draw everything else, table heads included). The
markup is exactly what the templates' cells used to produce.

Every value that comes from the inventory, Vault or a remote API (endpoint, target, username,
domain, account, authority, host, protocol, policy, owner, Vault path, reason, error,
problem, follow-ups) goes through
`markupsafe.escape`, as Jinja's autoescape would; only values from closed sets (statuses,
stages, kinds, numbers, times this module formats) are written as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from markupsafe import Markup, escape

from rotate.models import NO_AUTHORITY, AccountResult, ItemResult, Row, Status
from rotate.report.stats import PLAN_STATUSES, why

#: rank of a status in the table's `data-sort` of its status column (failures first)
RANK: dict[Status, int] = {
    Status.FAILED: 0,
    Status.IN_DOUBT: 1,
    Status.DRIFT: 2,
    Status.STALE: 3,
    Status.NOT_ATTEMPTED: 4,
    Status.LAST_ATTEMPT_FAILED: 5,
    Status.OVERDUE: 6,
    Status.NEVER_ROTATED: 7,
    Status.DUE: 8,
}
REST = len(RANK)

_BADGE = {
    s: f'<td data-sort="{RANK.get(s, REST)}"><span class="badge s-{s.value}">'
    f"{s.value.replace('_', ' ')}</span></td>"
    for s in Status
}
_ROW_END = "\n      </tr>\n"


def when(value: datetime | None) -> str:
    """A time as the reports show it: UTC, to the second."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float) -> str:
    """A duration for people: `0.80 s`, `12.3 s`, `2 min 05 s`, `1 h 02 min`."""
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def days(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def check(verified: bool | None) -> str:
    return "—" if verified is None else ("verified" if verified else "pushed only")


def _e(text: str) -> str:
    return str(escape(text))


def _of_account(r: Row) -> str:
    """Under the username: the account the usage stores and where it is checked, when the
    row names an account or an authority (a row with neither is an account of its own)."""
    own = r.account == r.label  # named no account: an account of its own
    if r.authority == NO_AUTHORITY:
        if own:
            return ""
        where = '<span class="copy-only">copy-only</span>'
    else:
        where = _e(r.authority)
    name = "" if own else f"{_e(r.account)} · "
    return f'<br><span class="acct" title="account · authority">{name}{where}</span>'


def _start(item: ItemResult, r: Row) -> str:
    """The row's opening tag and the credential's cells (endpoint ... username, account)."""
    endpoint = _e(r.endpoint)
    kind = r.kind
    port = "" if r.port is None else f'<span class="muted">:{r.port}</span>'
    domain = f'<span class="muted">{_e(r.domain)}\\</span>' if r.domain else ""
    return (
        f'      <tr data-status="{item.status.value}" data-endpoint="{endpoint}" '
        f'data-kind="{kind}">\n'
        f"<td>{endpoint}</td>\n"
        f"<td>{kind}</td>\n"
        f'<td class="mono wrap target">{_e(r.target)} <span class="muted line">line {r.line}'
        "</span></td>\n"
        f"<td>{_e(r.protocol)}{port}</td>\n"
        f'<td class="mono wrap">{domain}{_e(r.username)}{_of_account(r)}</td>\n'
    )


def _vault(item: ItemResult) -> str:
    if not item.vault_path:
        return '<td class="mono wrap">—</td>'
    version = item.vault_version
    ver = "" if version is None else f' <span class="ver">v{version}</span>'
    return f'<td class="mono wrap">{_e(item.vault_path)}{ver}</td>'


def _time(value: datetime | None) -> str:
    """A time to the second."""
    if value is None:
        return '<td data-sort="">—</td>'
    iso = value.isoformat()
    return f'<td data-sort="{iso}"><time datetime="{iso}">{when(value)}</time></td>'


def _day(value: datetime | None) -> str:
    """A date alone where ages are counted in days; the full time on hover and in `datetime`."""
    if value is None:
        return '<td data-sort="">—</td>'
    iso = value.isoformat()
    full = when(value)
    return f'<td data-sort="{iso}"><time datetime="{iso}" title="{full}">{full[:10]}</time></td>'


def _detail(item: ItemResult) -> str:
    error = f' <span class="err">{_e(item.error)}</span>' if item.error else ""
    if item.problem:
        error += f' <span class="err problem">{_e(item.problem)}</span>'
    return f'<td class="wrap">{_e(item.reason)}{error}</td>'


def _max_age(item: ItemResult) -> str:
    return "—" if item.max_age_days is None else str(item.max_age_days)


def run_row(item: ItemResult) -> str:
    """A run (or reconciliation): what was done, and the proof in Vault."""
    r = item.row
    d = item.duration_s
    followups = "".join(f'<br><span class="muted">{_e(f)}</span>' for f in item.followups)
    return (
        f"{_start(item, r)}"
        f"{_BADGE[item.status]}\n"
        f"<td>{item.stage.value}</td>\n"
        f"<td>{check(item.verified)}</td>\n"
        f"{_vault(item)}\n"
        f"{_time(item.last_rotated)}\n"
        f'<td class="num" data-sort="{d}">{seconds(d) if d else "—"}</td>\n'
        f'<td class="wrap">{_e(item.reason)}{followups}</td>\n'
        f'<td class="wrap err">{_e(item.error)}</td>'
        f"{_ROW_END}"
    )


def plan_row(item: ItemResult) -> str:
    """A plan: whether it would rotate and why, its policy and age."""
    r = item.row
    age = item.age_days
    return (
        f"{_start(item, r)}"
        f"{_BADGE[item.status]}\n"
        f"<td>{_e(why(item)) if item.status in PLAN_STATUSES else '—'}</td>\n"
        f'<td class="mono">{_e(r.policy)}</td>\n'
        f"{_day(item.last_rotated)}\n"
        f'<td class="num" data-sort="{-1 if age is None else age}">{days(age)}</td>\n'
        f'<td class="num">{_max_age(item)}</td>\n'
        f"{_vault(item)}\n"
        f"{_detail(item)}"
        f"{_ROW_END}"
    )


def compliance_row(item: ItemResult) -> str:
    """A compliance report: the credential's age against its maximum."""
    r = item.row
    age = item.age_days
    soon = item.due_before_next_run
    flag = "—" if soon is None else ('<span class="badge s-soon">yes</span>' if soon else "no")
    return (
        f"{_start(item, r)}"
        f"{_BADGE[item.status]}\n"
        f"{_day(item.last_rotated)}\n"
        f'<td class="num" data-sort="{1e9 if age is None else age}">{days(age)}</td>\n'
        f'<td class="num">{_max_age(item)}</td>\n'
        f"<td>{flag}</td>\n"
        f"{_day(item.last_failure_at)}\n"
        f"{_vault(item)}\n"
        f'<td class="wrap">{_e(r.owner)}</td>\n'
        f"{_detail(item)}"
        f"{_ROW_END}"
    )


def login(verified: bool | None) -> str:
    """Whether Vault's password logged in at the account's authority: yes, no or —."""
    if verified is None:
        return '<td data-sort="1">—</td>'
    if verified:
        return '<td data-sort="2"><span class="badge s-ok">yes</span></td>'
    return '<td data-sort="0"><span class="badge s-failed">no</span></td>'


def account_row(result: AccountResult) -> str:
    """One account: its authority and login names, what happened, its usages, its proof."""
    a = result.account
    status = result.status
    flag = (
        ""
        if a.changes_host
        else '<br><span class="badge s-copy_only">copy-only: host account not changed</span>'
    )
    kind = result.authority_type
    kind = "" if not kind or kind == a.authority else f' <span class="muted">{_e(kind)}</span>'
    domain = f'<span class="muted">{_e(a.domain)}\\</span>' if a.domain else ""
    host = f' <span class="muted">@ {_e(a.host)}</span>' if a.host else ""
    version = result.vault_version
    ver = "" if version is None else f' <span class="ver">v{version}</span>'
    vault = f"{_e(a.vault_path)}{ver}" if a.vault_path else "—"
    error = f' <span class="err">{_e(result.error)}</span>' if result.error else ""
    total = len(a.usages)
    stale = result.stale
    return (
        f'      <tr data-status="{status.value}" data-authority="{_e(a.authority)}"'
        f"{'' if a.changes_host else ' data-copy-only'}>\n"
        f'<td class="mono wrap">{_e(a.name)}{flag}</td>\n'
        f"<td>{_e(a.authority)}{kind}</td>\n"
        f'<td class="mono wrap">{domain}{_e(a.username)}{host}</td>\n'
        f'<td data-sort="{RANK.get(status, REST)}"><span class="badge s-{status.value}">'
        f"{status.value.replace('_', ' ')}</span></td>\n"
        f"{_time(result.last_changed)}\n"
        f"{login(result.login_verified)}\n"
        f'<td class="num">{result.in_sync}</td>\n'
        f'<td class="num{" stale-n" if stale else " muted"}">{stale}</td>\n'
        f'<td class="num">{total}</td>\n'
        f'<td class="mono wrap">{vault}</td>\n'
        f'<td class="wrap">{_e(result.reason)}{error}</td>'
        f"{_ROW_END}"
    )


def accounts(results: Iterable[AccountResult]) -> Markup:
    """The `<tr>`s of the accounts table, in the given order."""
    # Markup: every record value in these rows was escaped above.
    return Markup("".join(map(account_row, results)))  # noqa: S704


_ROWS: dict[str, Callable[[ItemResult], str]] = {"plan": plan_row, "report": compliance_row}


def render(mode: str, items: Iterable[ItemResult]) -> Markup:
    """The `<tr>`s of a page's item table, for a record of `mode`, in the given order."""
    row = _ROWS.get(mode, run_row)
    # Markup: every record value in these rows was escaped above.
    return Markup("".join(map(row, items)))  # noqa: S704
