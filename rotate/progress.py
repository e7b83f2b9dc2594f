"""Progress of a long run: a live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBar

from rotate.models import Row, Status

log = logging.getLogger("rotate.progress")

_BAD = {Status.FAILED, Status.IN_DOUBT, Status.NOT_ATTEMPTED}


class Progress(Protocol):
    """Told about each item as the pipeline goes."""

    def start(self, total: int, endpoints: Sequence[str]) -> None:
        """The run begins with `total` items over these endpoints (one entry per item)."""
        ...

    def item_started(self, row: Row) -> None:
        """An item is now in flight."""
        ...

    def item_done(self, row: Row, status: Status) -> None:
        """An item finished with this status."""
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

    def item_done(self, row: Row, status: Status) -> None:
        pass

    def stop(self) -> None:
        pass


class _Counts:
    """Done / failed / in flight, overall and per endpoint."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()

    def start(self, endpoints: Sequence[str]) -> None:
        self.total.update(endpoints)

    def started(self, row: Row) -> None:
        self.in_flight[row.endpoint] += 1

    def finished(self, row: Row, status: Status) -> None:
        self.in_flight[row.endpoint] -= 1
        self.done[row.endpoint] += 1
        if status in _BAD:
            self.failed[row.endpoint] += 1


class LogProgress:
    """Plain lines for cron and CI: every failure, and a tally every `every_s` seconds."""

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

    def item_done(self, row: Row, status: Status) -> None:
        self.counts.finished(row, status)
        if status in _BAD:
            log.warning("%s: %s", row.label, status.value)
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self._tally()

    def _tally(self) -> None:
        c = self.counts
        log.info(
            "progress: %d/%d done, %d failed, %d in flight",
            sum(c.done.values()),
            sum(c.total.values()),
            sum(c.failed.values()),
            sum(c.in_flight.values()),
        )

    def stop(self) -> None:
        if sum(self.counts.total.values()):
            self._tally()


class BarProgress:
    """A rich progress bar per endpoint plus a total, on a terminal."""

    def __init__(self, console: Console) -> None:
        self.counts = _Counts()
        self.bar = RichBar(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/]"),
            TextColumn("{task.fields[in_flight]} in flight"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def start(self, total: int, endpoints: Sequence[str]) -> None:
        self.counts.start(endpoints)
        self._tasks["*"] = self.bar.add_task("all", total=total, failed=0, in_flight=0)
        for name in sorted(set(endpoints)):
            self._tasks[name] = self.bar.add_task(
                name, total=self.counts.total[name], failed=0, in_flight=0
            )
        self.bar.start()

    def _refresh(self, endpoint: str) -> None:
        c = self.counts
        self.bar.update(
            self._tasks[endpoint],
            completed=c.done[endpoint],
            failed=c.failed[endpoint],
            in_flight=c.in_flight[endpoint],
        )
        self.bar.update(
            self._tasks["*"],
            completed=sum(c.done.values()),
            failed=sum(c.failed.values()),
            in_flight=sum(c.in_flight.values()),
        )

    def item_started(self, row: Row) -> None:
        self.counts.started(row)
        self._refresh(row.endpoint)

    def item_done(self, row: Row, status: Status) -> None:
        self.counts.finished(row, status)
        self._refresh(row.endpoint)

    def stop(self) -> None:
        self.bar.stop()
