"""The self-contained HTML audit reports of a run: run, plan and compliance (Jinja2, autoescaped).

One page per record, chosen by its mode: `run` (and `reconcile`) shows what was done,
`plan` what a run would do and the hash that approves it, `report` how compliant every
credential is. Each page inlines its style, script and charts (SVG): it fetches nothing,
reads offline, prints, and is complete without its script.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import shlex
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from markupsafe import Markup

from rotate import __version__
from rotate.models import SYSTEM_OF_KIND, EndpointProbe, ItemResult, RunRecord, Status
from rotate.report import charts, stats
from rotate.report._files import write_atomic

#: above this many items the table lists only items needing attention, at most this many
MAX_TABLE_ITEMS = 5000
#: drift paths listed on the page, per list; the JSON record has them all
MAX_DRIFT_LISTED = 1000
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

# Failures first, then what someone must act on, then the rest.
_RANK = {
    Status.FAILED: 0,
    Status.IN_DOUBT: 1,
    Status.NOT_ATTEMPTED: 2,
    Status.LAST_ATTEMPT_FAILED: 3,
    Status.OVERDUE: 4,
    Status.NEVER_ROTATED: 5,
    Status.DUE: 6,
}
_REST = len(_RANK)

#: outcomes that need no one's attention; a large run's table leaves them to the CSV/JSON
SUCCESSFUL = frozenset({Status.ROTATED, Status.COMPLIANT, Status.NOT_DUE, Status.IN_SYNC})

#: the summary figures of each page, always shown; any other status is shown when non-zero
_FIGURES = {
    "run": ("rotated", "failed", "in_doubt", "not_attempted", "skipped"),
    "plan": ("due", "not_due", "not_attempted"),
    "report": tuple(s.value for s in stats.COMPLIANCE_STATUSES),
    "reconcile": ("in_sync", "repaired", "failed", "in_doubt", "not_attempted", "skipped"),
}


def item_order(
    item: ItemResult,
) -> tuple[int, int, stats.Natural, stats.Natural, str, str, int, int]:
    """Sort key of the report table: failures first, then by endpoint and target.

    Among items of one status, those that will be overdue before the next scheduled run
    come first.
    """
    r = item.row
    port = -1 if r.port is None else r.port
    return (
        _RANK.get(item.status, _REST),
        0 if item.due_before_next_run else 1,
        stats.natural(r.endpoint),
        stats.natural(r.target),
        r.kind.value,
        r.protocol,
        port,
        r.line,
    )


@dataclass(frozen=True)
class Figure:
    """One number of the summary, and its share of the total where that helps."""

    key: str
    count: int
    share: float | None = None  # percent


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


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _days(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _pct(value: float) -> str:
    return f"{value:.1f} %"


def _label(status: str) -> str:
    return status.replace("_", " ")


def _check(verified: bool | None) -> str:
    return "—" if verified is None else ("verified" if verified else "pushed only")


def _endpoint_lines(
    record: RunRecord, counted: list[stats.EndpointCounts], columns: tuple[str, ...]
) -> list[_EndpointLine]:
    systems = {i.row.endpoint: SYSTEM_OF_KIND[i.row.kind].value for i in record.items}
    by_name = {e.endpoint: e for e in counted}
    probes = {p.endpoint: p for p in record.probes}
    lines = []
    for name in sorted(by_name.keys() | probes.keys(), key=stats.natural):
        probe = probes.get(name)
        ep = by_name.get(name, stats.EndpointCounts(name, 0, Counter()))
        lines.append(
            _EndpointLine(
                name,
                probe.system.value if probe else systems[name],
                probe,
                ep.total,
                tuple(ep.counts[col] for col in columns),
                ep.percent_compliant,
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


def _plan_reasons(items: list[ItemResult]) -> list[tuple[str, str, int]]:
    """(status, why, count) of a plan, rotations first, in `stats.WHY_ORDER`."""
    counts = Counter(
        (i.status.value, stats.why(i))
        for i in items
        if i.status in (Status.DUE, Status.NOT_DUE, Status.NOT_ATTEMPTED)
    )
    order = {w: n for n, w in enumerate(stats.WHY_ORDER)}
    rank = {Status.DUE.value: 0, Status.NOT_ATTEMPTED.value: 1, Status.NOT_DUE.value: 2}
    return [
        (status, why, n)
        for (status, why), n in sorted(
            counts.items(), key=lambda p: (rank[p[0][0]], order[p[0][1]])
        )
    ]


def render_html(record: RunRecord, *, csv_name: str = "", json_name: str = "") -> str:
    """The report page. `csv_name`/`json_name`: sibling files a truncated table points to."""
    summary = record.summary()
    columns = tuple(k for k in _statuses(record.mode) if summary.get(k, 0))
    counted = stats.by_endpoint(record.items)

    ordered = sorted(record.items, key=item_order)
    attention = [i for i in ordered if i.status not in SUCCESSFUL or i.due_before_next_run]
    # A large run lists only the first MAX_TABLE_ITEMS items needing attention, so a browser
    # stays responsive and the page printable; the full list is in the CSV and JSON beside it.
    truncated = len(ordered) > MAX_TABLE_ITEMS
    shown = attention[:MAX_TABLE_ITEMS] if truncated else ordered

    context: dict[str, object] = {}
    if record.mode == "plan":
        context["reasons"] = _plan_reasons(ordered)
        context["command"] = run_command(record) if record.plan_hash else ""
    if record.mode == "report":
        context["histogram"] = charts.age_columns(stats.age_histogram(record.items))
        context["soon"] = sum(1 for i in record.items if i.due_before_next_run)
        drift = record.drift
        context["drift_lists"] = (
            []
            if drift is None
            else [
                ("secrets-h", "Secrets in Vault with no inventory row", drift.secrets_without_row),
                ("rows-h", "Inventory rows with no secret in Vault", drift.rows_without_secret),
            ]
        )

    style, style_hash = _asset("report.css")
    script, script_hash = _asset("report.js")
    template = _environment().get_template(_TEMPLATES.get(record.mode, "run.html"))
    return template.render(
        record=record,
        title=_TITLES.get(record.mode, record.mode.capitalize() or "Run"),
        duration=_seconds((record.finished_at - record.started_at).total_seconds()),
        figures=_figures(record, summary),
        columns=columns,
        endpoints=_endpoint_lines(record, counted, columns),
        chart=_chart(counted),
        items=shown,
        truncated=truncated,
        attention_total=len(attention),
        limit=MAX_TABLE_ITEMS,
        drift_limit=MAX_DRIFT_LISTED,
        csv_name=csv_name,
        json_name=json_name,
        version=record.tool_version or __version__,
        style=style,
        script=script,
        csp=(
            f"default-src 'none'; style-src {style_hash}; script-src {script_hash}; "
            "base-uri 'none'; form-action 'none'"
        ),
        when=_when,
        seconds=_seconds,
        days=_days,
        pct=_pct,
        label=_label,
        check=_check,
        why=stats.why,
        rank=lambda item: _RANK.get(item.status, _REST),
        **context,
    )


def write_html(record: RunRecord, path: Path, *, csv_name: str = "", json_name: str = "") -> Path:
    """Write the report page to `path` atomically; its directory must exist. Returns `path`."""
    html = render_html(record, csv_name=csv_name, json_name=json_name)
    write_atomic(path, html.encode("utf-8"))
    return path
