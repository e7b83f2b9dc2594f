"""Geometry of the reports' inline SVG charts; the templates draw it, escaped like any text.

Each chart carries its figures as text too (counts on and beside the bars, a legend), so it
reads in print, in grey scale and to a screen reader (the bars' `<title>`s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rotate.models import Status
from rotate.report.stats import AgeBucket, EndpointCounts

_ORDER = {s.value: i for i, s in enumerate(Status)}
# The order segments stack in: good outcomes first, so the eye finds the trouble at the end.
_STACK = (
    Status.ROTATED,
    Status.COMPLIANT,
    Status.IN_SYNC,
    Status.REPAIRED,
    Status.DUE,
    Status.NOT_DUE,
    Status.SKIPPED,
    Status.NOT_ATTEMPTED,
    Status.NEVER_ROTATED,
    Status.OVERDUE,
    Status.STALE,
    Status.IN_DOUBT,
    Status.DRIFT,
    Status.LAST_ATTEMPT_FAILED,
    Status.FAILED,
)
_STACK_RANK = {s.value: i for i, s in enumerate(_STACK)}


def _stack_key(status: str) -> tuple[int, int]:
    return (_STACK_RANK.get(status, len(_STACK)), _ORDER.get(status, 0))


def _r(value: float) -> float:
    return round(value, 1)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Segment:
    """One status's part of a bar."""

    status: str
    count: int
    x: float
    y: float
    width: float
    height: float
    labelled: bool  # wide (or tall) enough to carry its count inside


@dataclass(frozen=True)
class Bar:
    """One endpoint (or age bucket) and its segments."""

    name: str  # full, for the tooltip
    label: str  # as drawn, shortened if long
    total: int
    x: float
    y: float
    width: float  # the whole bar's (horizontal bars: its length)
    segments: tuple[Segment, ...]
    text: str  # the counts in words, drawn beside (or above) the bar


@dataclass(frozen=True)
class Chart:
    """A stacked bar chart: its box, bars, and the statuses its legend names."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    legend: tuple[str, ...]
    omitted: int = 0  # bars not drawn (beyond MAX_BARS)
    # horizontal charts: where the bars start; vertical charts: the baseline
    axis: float = 0.0
    description: str = ""


def _words(split: Sequence[tuple[str, int]]) -> str:
    return " · ".join(f"{n} {s.replace('_', ' ')}" for s, n in split)


# horizontal bars: one line per endpoint
_H_WIDTH = 1100
_H_LABEL = 200  # endpoint names, right-aligned before the bars
_H_BARS = 500  # the longest bar
_H_ROW = 30
_H_BAR = 20
_H_TOP = 8


def endpoint_bars(endpoints: Sequence[EndpointCounts], omitted: int = 0) -> Chart:
    """One horizontal stacked bar per endpoint, lengths on one scale (the busiest endpoint).

    `omitted`: endpoints the caller left out (the caption says where to find them).
    """
    drawn = list(endpoints)
    scale = _H_BARS / max((e.total for e in drawn), default=1)
    bars = []
    statuses: set[str] = set()
    for i, ep in enumerate(drawn):
        y = _H_TOP + i * _H_ROW
        split = sorted(((s, n) for s, n in ep.counts.items() if n), key=lambda p: _stack_key(p[0]))
        x = float(_H_LABEL)
        segments = []
        for status, n in split:
            width = n * scale
            segments.append(
                Segment(status, n, _r(x), y, _r(width), _H_BAR, width >= 9 * len(str(n)) + 8)
            )
            x += width
            statuses.add(status)
        bars.append(
            Bar(
                ep.endpoint,
                _short(ep.endpoint, 26),
                ep.total,
                _H_LABEL,
                y,
                _r(x - _H_LABEL),
                tuple(segments),
                f"{ep.total}: {_words(split)}",
            )
        )
    # The counts in words follow each bar; widen the box so the longest line fits (about
    # 7 units a character at the chart's font size) rather than being clipped.
    reach = max((b.x + b.width + 8 + 7 * len(b.text) for b in bars), default=0.0)
    return Chart(
        width=max(_H_WIDTH, math.ceil(reach)),
        height=_H_TOP * 2 + max(len(bars), 1) * _H_ROW,
        bars=tuple(bars),
        legend=tuple(sorted(statuses, key=_stack_key)),
        omitted=omitted,
        axis=_H_LABEL,
        description="Outcomes by endpoint: one bar per endpoint, one segment per status",
    )


# vertical bars: one column per age bucket
_V_LEFT = 20
_V_COL = 112
_V_BAR = 76
_V_TOP = 34  # room for the count above the tallest bar
_V_PLOT = 200
_V_BOTTOM = 44  # bucket labels under the baseline


def age_columns(buckets: Sequence[AgeBucket]) -> Chart:
    """One vertical stacked column per age bucket, heights on one scale."""
    peak = max((b.count for b in buckets), default=0)
    scale = _V_PLOT / peak if peak else 0.0  # no items (an empty shard): no bars, no error
    baseline = _V_TOP + _V_PLOT
    bars = []
    statuses: set[str] = set()
    for i, bucket in enumerate(buckets):
        x = _V_LEFT + i * _V_COL + (_V_COL - _V_BAR) / 2
        split = sorted(bucket.by_status, key=lambda p: _stack_key(p[0]))
        y = float(baseline)
        segments = []
        for status, n in split:
            height = n * scale
            y -= height
            segments.append(Segment(status, n, _r(x), _r(y), _V_BAR, _r(height), height >= 16))
            statuses.add(status)
        bars.append(
            Bar(
                bucket.key,
                bucket.label,
                bucket.count,
                _r(x),
                _r(y),
                _V_BAR,
                tuple(segments),
                _words(split),
            )
        )
    return Chart(
        width=_V_LEFT * 2 + len(bars) * _V_COL,
        height=baseline + _V_BOTTOM,
        bars=tuple(bars),
        legend=tuple(sorted(statuses, key=_stack_key)),
        axis=baseline,
        description="Credentials by age since their last rotation, one column per age range",
    )
