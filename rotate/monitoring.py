"""Signals for monitoring: JSON log lines and a Prometheus textfile, never a secret."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from pythonjsonlogger.json import JsonFormatter

from rotate.models import RunRecord, Status

#: the per-item log lines (run id, item, stage, outcome); INFO in JSON mode, quieter in text
ITEMS = logging.getLogger("rotate.items")


def json_handler(stream: IO[str]) -> logging.Handler:
    """One JSON object a line: time, level, logger, message and any structured fields."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    return handler


def write_metrics(path: Path, mode: str, exit_code: int, record: RunRecord | None) -> None:
    """The node-exporter textfile collector's format, written atomically.

    Without a record (the run was refused before it began) only the time and the exit code
    are written, so an alert on `rotate_last_run_exit_code != 0` still fires.
    """
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ("mode",)) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    finished = record.finished_at.timestamp() if record else time.time()
    gauge("rotate_last_run_timestamp_seconds", "When the last run ended (Unix time).").labels(
        mode
    ).set(finished)
    gauge("rotate_last_run_exit_code", "Exit status of the last run (0 all done).").labels(
        mode
    ).set(exit_code)
    if record is not None:
        duration = (record.finished_at - record.started_at).total_seconds()
        gauge("rotate_last_run_duration_seconds", "How long the last run took.").labels(mode).set(
            duration
        )
        gauge("rotate_last_run_aborted", "1 when the last run stopped starting items.").labels(
            mode
        ).set(1 if record.aborted else 0)
        items = gauge("rotate_items", "Items of the last run by outcome.", ("mode", "outcome"))
        counts = record.summary()
        for status in Status:
            items.labels(mode, status.value).set(counts.get(status.value, 0))
        ages = [i.age_days for i in record.items if i.age_days is not None]
        if ages:
            gauge(
                "rotate_oldest_credential_age_seconds",
                "Age of the oldest credential the last run saw.",
            ).labels(mode).set(max(ages) * 86400)
        never = sum(1 for i in record.items if i.last_rotated is None)
        gauge("rotate_never_rotated_credentials", "Credentials with no rotation recorded.").labels(
            mode
        ).set(never)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
