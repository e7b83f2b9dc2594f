"""The self-contained HTML audit report of a run (Jinja2, autoescaped)."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from markupsafe import Markup

from rotate import __version__
from rotate.models import SYSTEM_OF_KIND, EndpointProbe, ItemResult, RunRecord, Status
from rotate.report._files import write_atomic

#: above this many items the table lists only items needing attention, at most this many
MAX_TABLE_ITEMS = 5000

_TITLES = {
    "run": "Rotation run",
    "plan": "Dry-run plan",
    "report": "Compliance report",
    "reconcile": "Reconciliation",
}

# Failures first, then what an auditor must act on (overdue, never rotated), then the rest.
_RANK = {
    Status.FAILED: 0,
    Status.IN_DOUBT: 1,
    Status.NOT_ATTEMPTED: 2,
    Status.OVERDUE: 3,
    Status.NEVER_ROTATED: 4,
}
_REST = len(_RANK)
_DIGITS = re.compile(r"(\d+)")

#: outcomes that need no one's attention; a large run's table leaves them to the CSV/JSON
SUCCESSFUL = frozenset({Status.ROTATED, Status.COMPLIANT, Status.NOT_DUE, Status.IN_SYNC})

#: summary figures always shown, then those shown only when non-zero
_FIGURES = ("total", "rotated", "failed", "in_doubt", "not_attempted", "skipped")
_OPTIONAL_FIGURES = ("due", "not_due", "compliant", "overdue", "never_rotated")


_Natural = tuple[str | int, ...]


def _natural(text: str) -> _Natural:
    # `host-2` before `host-10`: digit runs compare as numbers. re.split alternates text and
    # digits, so like always meets like in the tuple comparison.
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(_DIGITS.split(text)))


def item_order(item: ItemResult) -> tuple[int, _Natural, _Natural, str, str, int, int]:
    """Sort key of the report table: failures first, then by endpoint and target."""
    r = item.row
    port = -1 if r.port is None else r.port
    return (
        _RANK.get(item.status, _REST),
        _natural(r.endpoint),
        _natural(r.target),
        r.kind.value,
        r.protocol,
        port,
        r.line,
    )


@dataclass(frozen=True)
class _EndpointLine:
    name: str
    system: str
    probe: EndpointProbe | None
    total: int
    counts: tuple[int, ...]  # one per column of the endpoint table


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


def _label(status: str) -> str:
    return status.replace("_", " ")


def _check(verified: bool | None) -> str:
    return "—" if verified is None else ("verified" if verified else "pushed only")


def _endpoint_lines(record: RunRecord, columns: tuple[str, ...]) -> list[_EndpointLine]:
    counts: dict[str, Counter[str]] = {}
    systems: dict[str, str] = {}
    for item in record.items:
        counts.setdefault(item.row.endpoint, Counter())[item.status.value] += 1
        systems.setdefault(item.row.endpoint, SYSTEM_OF_KIND[item.row.kind].value)
    probes = {p.endpoint: p for p in record.probes}
    lines = []
    for name in sorted(counts.keys() | probes.keys()):
        probe = probes.get(name)
        c = counts.get(name, Counter())
        system = probe.system.value if probe else systems[name]
        lines.append(
            _EndpointLine(name, system, probe, c.total(), tuple(c[col] for col in columns))
        )
    return lines


def render_html(record: RunRecord, *, csv_name: str = "", json_name: str = "") -> str:
    """The report page. `csv_name`/`json_name`: sibling files a truncated table points to."""
    summary = record.summary()
    figures = [(k, summary.get(k, 0)) for k in _FIGURES]
    figures += [(k, summary[k]) for k in _OPTIONAL_FIGURES if summary.get(k, 0)]
    columns = tuple(s.value for s in Status if summary.get(s.value, 0))

    ordered = sorted(record.items, key=item_order)
    attention = [i for i in ordered if i.status not in SUCCESSFUL]
    # A large run lists only the first MAX_TABLE_ITEMS items needing attention, so a browser
    # stays responsive and the page printable; the full list is in the CSV and JSON beside it.
    truncated = len(ordered) > MAX_TABLE_ITEMS
    shown = attention[:MAX_TABLE_ITEMS] if truncated else ordered

    style, style_hash = _asset("report.css")
    script, script_hash = _asset("report.js")
    template = _environment().get_template("report.html")
    return template.render(
        record=record,
        title=_TITLES.get(record.mode, record.mode.capitalize() or "Run"),
        duration=_seconds((record.finished_at - record.started_at).total_seconds()),
        figures=figures,
        columns=columns,
        endpoints=_endpoint_lines(record, columns),
        items=shown,
        truncated=truncated,
        attention_total=len(attention),
        limit=MAX_TABLE_ITEMS,
        csv_name=csv_name,
        json_name=json_name,
        version=__version__,
        style=style,
        script=script,
        csp=(
            f"default-src 'none'; style-src {style_hash}; script-src {script_hash}; "
            "base-uri 'none'; form-action 'none'"
        ),
        when=_when,
        seconds=_seconds,
        label=_label,
        check=_check,
        rank=lambda item: _RANK.get(item.status, _REST),
    )


def write_html(record: RunRecord, path: Path, *, csv_name: str = "", json_name: str = "") -> Path:
    """Write the report page to `path` atomically; its directory must exist. Returns `path`."""
    html = render_html(record, csv_name=csv_name, json_name=json_name)
    write_atomic(path, html.encode("utf-8"))
    return path
