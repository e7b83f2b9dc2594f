"""Renderers of a run's record: the HTML audit report, the `--json` record and the CSV."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rotate.models import RunRecord
from rotate.report import stats
from rotate.report._files import report_stem
from rotate.report.csv_report import write_accounts_csv, write_csv
from rotate.report.html_report import render_html, render_pages, write_html
from rotate.report.json_report import json_record, write_json

__all__ = [
    "ReportPaths",
    "json_record",
    "render_html",
    "render_pages",
    "report_paths",
    "write_accounts_csv",
    "write_csv",
    "write_each_report",
    "write_html",
    "write_json",
    "write_reports",
]


@dataclass(frozen=True)
class ReportPaths:
    """Where a run's reports are: the page, the record, the usages' and the accounts' CSV."""

    html: Path
    json: Path
    csv: Path
    accounts_csv: Path


def report_paths(record: RunRecord, out_dir: Path) -> ReportPaths:
    """`<out_dir>/<mode>-<run_id>.{html,json,csv}` and `<mode>-<run_id>-accounts.csv`;
    raises ValueError if that leaves out_dir."""
    stem = report_stem(record.mode, record.run_id)
    return ReportPaths(
        html=out_dir / f"{stem}.html",
        json=out_dir / f"{stem}.json",
        csv=out_dir / f"{stem}.csv",
        accounts_csv=out_dir / f"{stem}-accounts.csv",
    )


def write_reports(record: RunRecord, out_dir: Path, *, page_size: int | None = None) -> ReportPaths:
    """Write the HTML, JSON and CSV reports of `record` into `out_dir`, creating it if needed:
    the CSV of the items (usages) and, beside it, that of the accounts.

    Each file is replaced atomically; the HTML is written last, so the page a person opens
    never points to a CSV or JSON that is not there yet. The JSON and CSVs are streamed item
    by item (account by account); a record with more than `page_size` items (default
    `html_report.MAX_TABLE_ITEMS`) gets item pages beside its HTML page
    (`<mode>-<run_id>-items-2.html`, ...), which `ReportPaths.html` links to.
    """
    paths, failures = write_each_report(record, out_dir, page_size=page_size)
    if failures:
        raise OSError("; ".join(failures))
    return paths


def write_each_report(
    record: RunRecord, out_dir: Path, *, page_size: int | None = None
) -> tuple[ReportPaths, list[str]]:
    """`write_reports`, each file on its own: one that cannot be written is named (with why)
    in the returned list, and the others are still written."""
    paths = report_paths(record, out_dir)
    failures: list[str] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return paths, [f"{out_dir}: {exc.strerror or exc}"]
    tally = stats.tally(record.items)  # counted once, for the JSON and the page
    accounts = stats.account_tally(record.accounts)
    writers: list[tuple[Path, Callable[[], object]]] = [
        (paths.json, lambda: write_json(record, paths.json, tally=tally, account_tally=accounts)),
        (paths.csv, lambda: write_csv(record, paths.csv)),
        (paths.accounts_csv, lambda: write_accounts_csv(record, paths.accounts_csv)),
        (
            paths.html,
            lambda: write_html(
                record,
                paths.html,
                csv_name=paths.csv.name,
                json_name=paths.json.name,
                accounts_csv_name=paths.accounts_csv.name,
                page_size=page_size,
                tally=tally,
                account_tally=accounts,
            ),
        ),
    ]
    for path, write in writers:
        try:
            write()
        except OSError as exc:
            failures.append(f"{path}: {exc.strerror or exc}")
    return paths, failures
