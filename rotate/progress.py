"""Progress of a long run: a live bar on a terminal, plain log lines otherwise.

Each outcome is counted as what it is (failed, in doubt, stale, not attempted, drift), never
folded into "failed"; a line for an item in trouble names its reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBar

from rotate.models import ItemResult, Row, Status

log = logging.getLogger("rotate.progress")

#: outcomes a progress display counts apart, in the order it shows them
TROUBLE = (Status.FAILED, Status.IN_DOUBT, Status.STALE, Status.DRIFT, Status.NOT_ATTEMPTED)
_REASON_LIMIT = 240


class Progress(Protocol):
    """Told about each item as the runbook goes."""

    def start(self, total: int, endpoints: Sequence[str]) -> None:
        """The run begins with `total` items over these endpoints (one entry per item)."""
        ...

    def item_started(self, row: Row) -> None:
        """An item is now in flight."""
        ...

    def item_done(self, item: ItemResult) -> None:
        """An item finished with this outcome."""
        ...

    def stop(self) -> None:
        """The run is over."""
        ...


class NullProgress:
    """Says nothing (unit tests, `--quiet`)."""

    def start(self, total: int, endpoints: Sequence[str]) -> None:
        pass

    def item_started(self, row: Row) -> None:
        pass

    def item_done(self, item: ItemResult) -> None:
        pass

    def stop(self) -> None:
        pass


def trouble_text(counts: Counter[Status]) -> str:
    """`2 failed, 1 in doubt` (the trouble outcomes that occurred), or `no trouble`."""
    shown = [f"{counts[s]} {s.value.replace('_', ' ')}" for s in TROUBLE if counts[s]]
    return ", ".join(shown) or "no trouble"


def reason_of(item: ItemResult) -> str:
    """The item's error (else its reason), on one line and short: what a console line says."""
    text = " ".join((item.error or item.reason).split())
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 3] + "..."


class _Counts:
    """Done and in flight per endpoint, and each outcome counted as itself."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[Status]] = {}

    def start(self, endpoints: Sequence[str]) -> None:
        self.total.update(endpoints)

    def started(self, row: Row) -> None:
        self.in_flight[row.endpoint] += 1

    def finished(self, item: ItemResult) -> None:
        endpoint = item.row.endpoint
        self.in_flight[endpoint] -= 1
        self.done[endpoint] += 1
        self.outcomes.setdefault(endpoint, Counter())[item.status] += 1

    def of(self, endpoint: str | None = None) -> Counter[Status]:
        """Outcomes of one endpoint, or of all."""
        if endpoint is not None:
            return self.outcomes.get(endpoint, Counter())
        total: Counter[Status] = Counter()
        for counts in self.outcomes.values():
            total.update(counts)
        return total


class LogProgress:
    """Plain lines for cron and CI: every item in trouble with its reason, and a tally every
    `every_s` seconds."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.counts = _Counts()
        self._last = 0.0

    def start(self, total: int, endpoints: Sequence[str]) -> None:
        self.counts.start(endpoints)
        self._last = time.monotonic()
        log.info("rotating %d item(s) on %d endpoint(s)", total, len(set(endpoints)))

    def item_started(self, row: Row) -> None:
        self.counts.started(row)

    def item_done(self, item: ItemResult) -> None:
        self.counts.finished(item)
        if item.status in TROUBLE:
            # Not attempted after an abort or a failed probe: said once by the run, counted here.
            level = logging.INFO if item.status is Status.NOT_ATTEMPTED else logging.WARNING
            log.log(level, "%s: %s: %s", item.row.label, item.status.value, reason_of(item))
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self._tally()

    def _tally(self) -> None:
        c = self.counts
        log.info(
            "progress: %d/%d done (%s), %d in flight",
            sum(c.done.values()),
            sum(c.total.values()),
            trouble_text(c.of()),
            sum(c.in_flight.values()),
        )

    def stop(self) -> None:
        if sum(self.counts.total.values()):
            self._tally()


class BarProgress:
    """A rich progress bar per endpoint plus a total, on a terminal; items in trouble are
    printed above the bars with their reasons."""

    def __init__(self, console: Console) -> None:
        self.counts = _Counts()
        self.bar = RichBar(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[trouble]}[/]"),
            TextColumn("{task.fields[in_flight]} in flight"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def start(self, total: int, endpoints: Sequence[str]) -> None:
        self.counts.start(endpoints)
        self._tasks["*"] = self.bar.add_task("all", total=total, trouble="", in_flight=0)
        for name in sorted(set(endpoints)):
            self._tasks[name] = self.bar.add_task(
                name, total=self.counts.total[name], trouble="", in_flight=0
            )
        self.bar.start()

    def _refresh(self, endpoint: str) -> None:
        c = self.counts
        for task, counts, done, flying in (
            (endpoint, c.of(endpoint), c.done[endpoint], c.in_flight[endpoint]),
            ("*", c.of(), sum(c.done.values()), sum(c.in_flight.values())),
        ):
            trouble = trouble_text(counts)
            self.bar.update(
                self._tasks[task],
                completed=done,
                trouble="" if trouble == "no trouble" else trouble,
                in_flight=flying,
            )

    def item_started(self, row: Row) -> None:
        self.counts.started(row)
        self._refresh(row.endpoint)

    def item_done(self, item: ItemResult) -> None:
        self.counts.finished(item)
        self._refresh(item.row.endpoint)
        if item.status in TROUBLE and item.status is not Status.NOT_ATTEMPTED:
            self.bar.console.print(
                f"{item.row.label}: {item.status.value}: {reason_of(item)}",
                markup=False,
                highlight=False,
            )

    def stop(self) -> None:
        self.bar.stop()
