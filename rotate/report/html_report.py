"""The self-contained HTML audit reports of a run: run, plan and compliance (Jinja2, autoescaped).

One report per record, its kind chosen by the record's mode: `run` (and `reconcile`) shows
what was done, `plan` what a run would do and the hash that approves it, `report` how
compliant every credential is. Each page inlines its style, script and charts (SVG): it
fetches nothing, reads offline, prints, and is complete without its script.

The main page always has the whole record's figures (of the usages and of the accounts),
charts, endpoint and authority tables, and its accounts table: every account when they fit
(`MAX_ACCOUNTS_LISTED`), else those needing attention first and the rest by name up to that
many, the page saying that the accounts CSV and the JSON have them all. Its item
table lists every item when they fit on one page (`MAX_TABLE_ITEMS`); a larger record is
paged: the main page lists the items needing attention (failures first), and numbered
sibling pages (`<stem>-items-2.html`, ...) the rest, in the same order, each linked to the
others. Beyond `MAX_PAGES` pages the rest is only in the CSV and JSON beside the page, which
the page says.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import heapq
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from rotate import __version__
from rotate.models import (
    NO_AUTHORITY,
    AccountResult,
    AuthorityProbe,
    EndpointProbe,
    ItemResult,
    RunRecord,
    Status,
)
from rotate.report import charts, rows, stats
from rotate.report._files import report_stem, write_atomic

#: the most items one page's table lists; a record with more is paged
MAX_TABLE_ITEMS = 1000
#: the most pages (the main page included) a record's items are spread over; items beyond
#: are listed only in the CSV and JSON
MAX_PAGES = 200
#: drift paths listed on the page, per list; the JSON record has them all
MAX_DRIFT_LISTED = 1000
#: accounts the main page's accounts table lists at most (those needing attention first);
#: the accounts CSV and the JSON record have them all
MAX_ACCOUNTS_LISTED = 1000
#: stale usages a compliance page lists at most; the CSV and JSON have them all
MAX_STALE_LISTED = 1000
#: usage problems a plan page lists at most; the CSV and JSON have them all
MAX_PROBLEMS_LISTED = 1000
#: endpoints drawn in a chart at most (those with most items needing attention); the
#: endpoint table lists them all
MAX_CHART_ENDPOINTS = 40

_TITLES = {
    "run": "Rotation run",
    "plan": "Dry-run plan",
    "report": "Compliance report",
    "reconcile": "Reconciliation",
}
_TEMPLATES = {"plan": "plan.html", "report": "compliance.html"}  # any other mode: run.html
_NO_ROW = "Secrets under the prefix that no account uses"
_NO_VAULT_ENTRY = "Usages whose account has no secret in Vault"

#: outcomes that need no one's attention; on a paged report they follow all the others
SUCCESSFUL = frozenset(
    {Status.ROTATED, Status.COMPLIANT, Status.NOT_DUE, Status.IN_SYNC, Status.REPAIRED}
)

#: the summary figures of each page, always shown; any other status is shown when non-zero
_FIGURES = {
    "run": ("rotated", "failed", "in_doubt", "not_attempted", "skipped"),
    "plan": ("due", "not_due", "not_attempted"),
    "report": tuple(s.value for s in stats.COMPLIANCE_STATUSES),
    "reconcile": ("in_sync", "repaired", "failed", "in_doubt", "not_attempted", "skipped"),
}

#: the account figures of each page, always shown (when the record has accounts); any other
#: status is shown when non-zero
_ACCOUNT_FIGURES = {
    "run": ("rotated", "failed", "in_doubt", "stale", "not_attempted", "skipped"),
    "plan": ("due", "not_due", "not_attempted"),
    "report": (*(s.value for s in stats.COMPLIANCE_STATUSES), "stale"),
    "reconcile": ("in_sync", "repaired", "failed", "in_doubt", "not_attempted", "skipped"),
}

_Lead = tuple[int, int, stats.Natural]
_Rest = tuple[stats.Natural, str, str, int, int]


def _lead(item: ItemResult, endpoint: stats.Natural) -> _Lead:
    return (
        rows.RANK.get(item.status, rows.REST),
        0 if item.due_before_next_run else 1,
        endpoint,
    )


def _rest(item: ItemResult) -> _Rest:
    r = item.row
    return (
        stats.natural(r.target),
        r.kind,
        r.protocol,
        -1 if r.port is None else r.port,
        r.line,
    )


def item_order(
    item: ItemResult,
) -> tuple[int, int, stats.Natural, stats.Natural, str, str, int, int]:
    """Sort key of the report table: failures first, then by endpoint and target.

    Among items of one status, those that will be overdue before the next scheduled run
    come first.
    """
    return _lead(item, stats.natural(item.row.endpoint)) + _rest(item)


def needs_attention(item: ItemResult) -> bool:
    """Whether someone should look at the item: anything but a success, or overdue soon."""
    return item.status not in SUCCESSFUL or bool(item.due_before_next_run)


def ordered(
    items: Sequence[ItemResult], *, attention_first: bool = False
) -> tuple[list[ItemResult], int]:
    """`items` in `item_order`, and how many of them need attention.

    `attention_first`: the items needing attention before all the others, each part in
    `item_order`. The items are sorted group by group (status, endpoint, ...), so that at
    most one group's sort keys are in memory at a time, not one key per item of the record.
    """
    naturals: dict[str, stats.Natural] = {}
    groups: dict[tuple[bool, _Lead], list[ItemResult]] = {}
    attention = 0
    for item in items:
        endpoint = item.row.endpoint
        nat = naturals.get(endpoint)
        if nat is None:
            nat = naturals[endpoint] = stats.natural(endpoint)
        urgent = needs_attention(item)
        attention += urgent
        key = (attention_first and not urgent, _lead(item, nat))
        group = groups.get(key)
        if group is None:
            groups[key] = [item]
        else:
            group.append(item)
    result: list[ItemResult] = []
    for key in sorted(groups):
        group = groups.pop(key)
        group.sort(key=_rest)  # stable: equal items keep the record's order, as `sorted` would
        result += group
    return result, attention


@dataclass(frozen=True)
class Page:
    """One page of a report's item table."""

    number: int  # 1: the main page
    name: str  # its file name; the main page's is the report's
    items: Sequence[ItemResult]
    first: int  # 1-based position of its first item among all the items
    attention: bool  # it lists items needing attention

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1

    @property
    def href(self) -> str:
        """Its name as a relative link from a sibling page."""
        return quote(self.name)


@dataclass(frozen=True)
class Paging:
    """How a report's items are spread over its pages."""

    pages: tuple[Page, ...]
    total: int  # items in the record
    attention: int  # of which need attention
    size: int  # items a page lists at most
    unlisted: int  # items on no page (beyond MAX_PAGES): only in the CSV and JSON

    @property
    def paged(self) -> bool:
        """Whether the items do not all fit on the main page."""
        return len(self.pages) > 1 or self.unlisted > 0

    @property
    def attention_pages(self) -> int:
        return sum(1 for p in self.pages if p.attention)

    def neighbours(self, page: Page) -> tuple[Page | None, Page | None]:
        """The pages before and after `page`."""
        i = page.number - 1
        return (
            self.pages[i - 1] if i > 0 else None,
            self.pages[i + 1] if i + 1 < len(self.pages) else None,
        )


def page_name(stem: str, number: int) -> str:
    """The file name of item page `number` (2, 3, ...) of the report `<stem>.html`."""
    return f"{stem}-items-{number}.html"


def paginate(items: Sequence[ItemResult], main: str, *, size: int, max_pages: int) -> Paging:
    """Spread `items` over pages of at most `size`, the first being the report `main`.

    Items that fit on one page are all on it, in `item_order`, as they always were. Else the
    items needing attention come first, on pages of their own (the main page lists them,
    or the first `size` of them), then the others; at most `max_pages` pages in all.
    """
    size = max(1, size)
    max_pages = max(1, max_pages)
    stem = main.removesuffix(".html")
    if len(items) <= size:
        listed, attention = ordered(items)
        return Paging((Page(1, main, listed, 1, attention > 0),), len(items), attention, size, 0)
    listed, attention = ordered(items, attention_first=True)
    pages: list[Page] = []
    for start, stop, urgent in ((0, attention, True), (attention, len(listed), False)):
        for at in range(start, stop, size):
            if len(pages) == max_pages:
                break
            number = len(pages) + 1
            name = main if number == 1 else page_name(stem, number)
            pages.append(Page(number, name, listed[at : min(at + size, stop)], at + 1, urgent))
    unlisted = len(listed) - sum(len(p.items) for p in pages)
    return Paging(tuple(pages), len(items), attention, size, unlisted)


@dataclass(frozen=True)
class Figure:
    """One number of the summary, and its share of the total where that helps."""

    key: str
    count: int
    share: float | None = None  # percent


@dataclass(frozen=True)
class AccountListing:
    """The accounts the main page lists, and how many there are in all."""

    rows: Markup  # the table's <tr>s
    listed: int
    total: int
    attention: int  # accounts needing attention in all (listed before the others)

    @property
    def capped(self) -> bool:
        return self.listed < self.total


def _account_rank(result: AccountResult) -> int:
    """Where an account needing attention sorts: by its status, or its worst usage or login."""
    rank = rows.RANK.get(result.status, rows.REST)
    if result.login_verified is False:
        rank = min(rank, rows.RANK[Status.DRIFT])
    if result.stale:
        rank = min(rank, rows.RANK[Status.STALE])
    return rank


def ordered_accounts(
    results: Sequence[AccountResult], limit: int
) -> tuple[list[AccountResult], int]:
    """At most `limit` accounts in table order, and how many need attention in all.

    Those needing attention come first, worst first (failed, in doubt, drift, stale, not
    attempted, ...), then the others; each part by account name (numbers in names compare as
    numbers). Only the listed ones are ever sorted: a record may have 100,000 accounts.
    """
    urgent: list[AccountResult] = []
    fine: list[AccountResult] = []
    for result in results:
        (urgent if stats.account_attention(result) else fine).append(result)

    def name(r: AccountResult) -> stats.Natural:
        return stats.natural(r.account.name)

    limit = max(0, limit)
    listed = heapq.nsmallest(limit, urgent, key=lambda r: (_account_rank(r), name(r)))
    if len(listed) < limit:
        listed += heapq.nsmallest(limit - len(listed), fine, key=name)
    return listed, len(urgent)


@dataclass(frozen=True)
class _AuthorityLine:
    name: str
    type: str
    probe: AuthorityProbe | None
    accounts: int
    usages: int
    attention: int

    @property
    def copy_only(self) -> bool:
        return self.name == NO_AUTHORITY


def _authority_lines(record: RunRecord, accounts: stats.AccountTally) -> list[_AuthorityLine]:
    """Per authority (probed, or checking an account of the record): probe and accounts."""
    probes = {p.name: p for p in record.authority_probes}
    lines = []
    for name in sorted(accounts.authorities.keys() | probes.keys(), key=stats.natural):
        probe = probes.get(name)
        counts = accounts.authorities.get(name) or stats.AuthorityCounts(name, "")
        kind = probe.type if probe is not None and probe.type else counts.type
        lines.append(
            _AuthorityLine(name, kind, probe, counts.accounts, counts.usages, counts.attention)
        )
    return lines


@dataclass(frozen=True)
class _EndpointLine:
    name: str
    system: str
    probe: EndpointProbe | None
    total: int
    counts: tuple[int, ...]  # one per status column of the endpoint table
    percent_compliant: float


@functools.cache
def _environment() -> jinja2.Environment:
    # autoescape everywhere: every value in the page comes from inventory text or a remote
    # API's error message, either of which may hold markup.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("rotate", "report/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _asset(name: str) -> tuple[Markup, str]:
    """A static asset inlined into the page, and its CSP hash source.

    The page names the hashes of its own style and script in a Content-Security-Policy, so
    it can fetch nothing and run nothing else, even were some text to slip past escaping.
    """
    env = _environment()
    assert env.loader is not None
    text = env.loader.get_source(env, name)[0]
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    # Markup: the text is a file shipped in this package, never record data.
    return Markup(text), f"'sha256-{digest}'"  # noqa: S704


def _pct(value: float) -> str:
    return f"{value:.1f} %"


def _label(status: str) -> str:
    return status.replace("_", " ")


def _endpoint_lines(
    record: RunRecord, tally: stats.Tally, columns: tuple[str, ...]
) -> list[_EndpointLine]:
    probes = {p.endpoint: p for p in record.probes}
    lines = []
    for name in sorted(tally.endpoints.keys() | probes.keys(), key=stats.natural):
        probe = probes.get(name)
        counts = tally.endpoints.get(name, Counter())
        total = counts.total()
        lines.append(
            _EndpointLine(
                name,
                probe.system if probe else tally.systems[name],
                probe,
                total,
                tuple(counts[col] for col in columns),
                stats.percent(counts[Status.COMPLIANT.value], total),
            )
        )
    return lines


def _statuses(mode: str) -> list[str]:
    """Every status, those the mode's page always shows first."""
    fixed = _FIGURES.get(mode, ())
    return list(fixed) + [s.value for s in Status if s.value not in fixed]


def _figures(record: RunRecord, summary: dict[str, int]) -> list[Figure]:
    fixed = _FIGURES.get(record.mode, ())
    keys = [k for k in _statuses(record.mode) if k in fixed or summary.get(k, 0)]
    total = summary["total"]
    shares = record.mode == "report"
    figures = [Figure("total", total)]
    figures += [
        Figure(k, summary.get(k, 0), stats.percent(summary.get(k, 0), total) if shares else None)
        for k in keys
    ]
    return figures


def _account_figures(mode: str, accounts: stats.AccountTally) -> list[Figure]:
    """The account figures: total, by status (shares on a compliance report), copy-only,
    the usages in sync and stale, and the logins checked."""
    if not accounts.total:
        return []
    fixed = _ACCOUNT_FIGURES.get(mode, ())
    keys = list(fixed) + [k for k in accounts.statuses if k not in fixed]
    total = accounts.total
    shares = mode == "report"
    figures = [Figure("accounts", total)]
    for key in keys:
        n = accounts.statuses.get(key, 0)
        if key in fixed or n:
            figures.append(Figure(key, n, stats.percent(n, total) if shares else None))
    if accounts.copy_only:
        figures.append(Figure("copy_only", accounts.copy_only))
    if mode != "plan":
        figures.append(Figure("usages_in_sync", accounts.in_sync))
        figures.append(Figure("usages_stale", accounts.stale))
    if accounts.login_verified or accounts.login_failed:
        figures.append(Figure("login_verified", accounts.login_verified))
        figures.append(Figure("login_failed", accounts.login_failed))
    return figures


#: how the account figures read (status figures read as their status)
_ACCOUNT_LABELS = {
    "accounts": "accounts",
    "copy_only": "copy-only: host account not changed",
    "usages_in_sync": "usages in sync",
    "usages_stale": "usages stale",
    "login_verified": "logins verified",
    "login_failed": "logins refused",
}


def _account_label(key: str) -> str:
    return _ACCOUNT_LABELS.get(key) or _label(key)


def _account_listing(record: RunRecord, accounts: stats.AccountTally) -> AccountListing:
    listed, attention = ordered_accounts(record.accounts, MAX_ACCOUNTS_LISTED)
    return AccountListing(rows.accounts(listed), len(listed), accounts.total, attention)


def _chart(counted: list[stats.EndpointCounts]) -> charts.Chart:
    """The endpoint chart; with many endpoints, those with most items needing attention."""
    if len(counted) <= MAX_CHART_ENDPOINTS:
        return charts.endpoint_bars(counted)

    def trouble(ep: stats.EndpointCounts) -> tuple[int, int]:
        fine = sum(ep.counts[s.value] for s in SUCCESSFUL)
        return (ep.total - fine, ep.total)

    worst = set(map(id, sorted(counted, key=trouble, reverse=True)[:MAX_CHART_ENDPOINTS]))
    drawn = [ep for ep in counted if id(ep) in worst]  # still in name order
    return charts.endpoint_bars(drawn, omitted=len(counted) - len(drawn))


def run_command(record: RunRecord) -> str:
    """The command that carries out a plan: `rotate run INVENTORY --plan-hash HASH [--config]`."""
    words = ["rotate", "run", record.inventory or "INVENTORY", "--plan-hash", record.plan_hash]
    if record.config:
        words += ["--config", record.config]
    return shlex.join(words)


def _plan_reasons(tally: stats.Tally) -> list[tuple[str, str, int]]:
    """(status, why, count) of a plan, rotations first, in `stats.WHY_ORDER`."""
    order = {w: n for n, w in enumerate(stats.WHY_ORDER)}
    rank = {Status.DUE.value: 0, Status.NOT_ATTEMPTED.value: 1, Status.NOT_DUE.value: 2}
    return [
        (status, why, n)
        for (status, why), n in sorted(
            tally.reasons.items(), key=lambda p: (rank[p[0][0]], order[p[0][1]])
        )
    ]


def _mode_context(record: RunRecord, tally: stats.Tally) -> dict[str, object]:
    """What only a plan page (its reasons and the command that runs it) or a compliance page
    (histogram, stale usages, drift) shows."""
    context: dict[str, object] = {}
    if record.mode == "plan":
        context["reasons"] = _plan_reasons(tally)
        context["command"] = run_command(record) if record.plan_hash else ""
        context["problems"] = tally.problems[:MAX_PROBLEMS_LISTED]
        context["problems_total"] = len(tally.problems)
    if record.mode == "report":
        context["histogram"] = charts.age_columns(tally.age_histogram())
        context["soon"] = tally.soon
        context["stale_usages"] = tally.stale[:MAX_STALE_LISTED]
        context["stale_total"] = len(tally.stale)
        drift = record.drift
        context["drift_lists"] = (
            []
            if drift is None
            else [
                ("secrets-h", _NO_ROW, drift.secrets_without_row),
                ("rows-h", _NO_VAULT_ENTRY, drift.rows_without_secret),
            ]
        )
    return context


class _Report:
    """What every page of one record's report shares, computed once; renders its pages."""

    def __init__(
        self,
        record: RunRecord,
        *,
        main: str,
        csv_name: str,
        json_name: str,
        page_size: int | None,
        max_pages: int | None,
        tally: stats.Tally | None,
        accounts_csv_name: str = "",
        account_tally: stats.AccountTally | None = None,
    ) -> None:
        self.record = record
        tally = stats.tally(record.items) if tally is None else tally
        accounts = stats.account_tally(record.accounts) if account_tally is None else account_tally
        self.paging = paginate(
            record.items,
            main,
            size=MAX_TABLE_ITEMS if page_size is None else page_size,
            max_pages=MAX_PAGES if max_pages is None else max_pages,
        )
        summary = tally.summary()
        columns = tuple(k for k in _statuses(record.mode) if summary.get(k, 0))
        context = _mode_context(record, tally)
        style, style_hash = _asset("report.css")
        script, script_hash = _asset("report.js")
        self.template = _environment().get_template(_TEMPLATES.get(record.mode, "run.html"))
        self.context = context | {
            "record": record,
            "title": _TITLES.get(record.mode, record.mode.capitalize() or "Run"),
            "duration": rows.seconds((record.finished_at - record.started_at).total_seconds()),
            "figures": _figures(record, summary),
            "columns": columns,
            "endpoints": _endpoint_lines(record, tally, columns),
            "authorities": _authority_lines(record, accounts),
            "account_figures": _account_figures(record.mode, accounts),
            "account_label": _account_label,
            "accounts": _account_listing(record, accounts),
            "copy_only": accounts.copy_only,
            "accounts_csv_name": accounts_csv_name,
            "chart": _chart(tally.by_endpoint()),
            "paging": self.paging,
            "main": self.paging.pages[0],
            "limit": self.paging.size,
            "drift_limit": MAX_DRIFT_LISTED,
            "csv_name": csv_name,
            "json_name": json_name,
            "version": record.tool_version or __version__,
            "style": style,
            "script": script,
            "csp": (
                f"default-src 'none'; style-src {style_hash}; script-src {script_hash}; "
                "base-uri 'none'; form-action 'none'"
            ),
            "when": rows.when,
            "pct": _pct,
            "label": _label,
        }

    def render(self, page: Page) -> str:
        before, after = self.paging.neighbours(page)
        return self.template.render(
            self.context,
            page=page,
            previous=before,
            next=after,
            rows=rows.render(self.record.mode, page.items),
        )


def _main_name(record: RunRecord) -> str:
    """The main page's file name when the caller gives none: as `write_reports` names it."""
    try:
        return f"{report_stem(record.mode, record.run_id)}.html"
    except ValueError:  # not a file name: the page is not going to be written by that name
        return "report.html"


def render_pages(
    record: RunRecord,
    *,
    main: str = "",
    csv_name: str = "",
    json_name: str = "",
    page_size: int | None = None,
    max_pages: int | None = None,
    tally: stats.Tally | None = None,
    accounts_csv_name: str = "",
    account_tally: stats.AccountTally | None = None,
) -> Iterator[tuple[str, str]]:
    """Every page of the report as (file name, HTML): the item pages, then the main page.

    `main`: the main page's file name (default `<mode>-<run_id>.html`); the item pages are
    named after it and linked by these names. `page_size`: items a page lists at most
    (default `MAX_TABLE_ITEMS`); `max_pages`: pages at most (default `MAX_PAGES`).
    `tally`, `account_tally`: the record's figures, when the caller has counted them
    already; `accounts_csv_name`: the accounts CSV the page points to. One page is rendered
    at a time, so a large report never is one string.
    """
    report = _Report(
        record,
        main=main or _main_name(record),
        csv_name=csv_name,
        json_name=json_name,
        page_size=page_size,
        max_pages=max_pages,
        tally=tally,
        accounts_csv_name=accounts_csv_name,
        account_tally=account_tally,
    )
    pages = report.paging.pages
    for page in (*pages[1:], pages[0]):
        yield page.name, report.render(page)


def render_html(
    record: RunRecord,
    *,
    csv_name: str = "",
    json_name: str = "",
    page_size: int | None = None,
    max_pages: int | None = None,
    accounts_csv_name: str = "",
) -> str:
    """The report's main page: every item, or on a large record the first page of them.

    `csv_name`/`json_name`/`accounts_csv_name`: the sibling files the page points to;
    `page_size`, `max_pages`: see `render_pages`.
    """
    report = _Report(
        record,
        main=_main_name(record),
        csv_name=csv_name,
        json_name=json_name,
        page_size=page_size,
        max_pages=max_pages,
        tally=None,
        accounts_csv_name=accounts_csv_name,
    )
    return report.render(report.paging.pages[0])


def write_html(
    record: RunRecord,
    path: Path,
    *,
    csv_name: str = "",
    json_name: str = "",
    page_size: int | None = None,
    max_pages: int | None = None,
    tally: stats.Tally | None = None,
    accounts_csv_name: str = "",
    account_tally: stats.AccountTally | None = None,
) -> Path:
    """Write the report to `path` and its item pages beside it, each atomically; the
    directory must exist. Returns `path`.

    The item pages are written first, so the main page never links to a page not there yet;
    item pages left from an earlier, longer report of the same name are removed after.
    """
    written: set[str] = set()
    for name, html in render_pages(
        record,
        main=path.name,
        csv_name=csv_name,
        json_name=json_name,
        page_size=page_size,
        max_pages=max_pages,
        tally=tally,
        accounts_csv_name=accounts_csv_name,
        account_tally=account_tally,
    ):
        write_atomic(path.with_name(name), html.encode("utf-8"))
        written.add(name)
    _remove_stale_pages(path, written)
    return path


def _remove_stale_pages(path: Path, keep: set[str]) -> None:
    """Remove `<stem>-items-<n>.html` beside `path` that this report did not write."""
    pattern = re.compile(re.escape(path.name.removesuffix(".html")) + r"-items-[0-9]+\.html")
    with os.scandir(path.parent) as entries:
        stale = [e.name for e in entries if pattern.fullmatch(e.name) and e.name not in keep]
    for name in stale:
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile
            (path.parent / name).unlink()
