"""The CSVs of a run, safe to open in a spreadsheet, written as streams: one line per item
(usage), and beside it one line per account (`<stem>-accounts.csv`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TextIO

from rotate.models import RunRecord
from rotate.report._files import open_atomic_text

#: the CSV header: every key of `ItemResult.as_record()`, in a fixed order for diffing runs
COLUMNS: tuple[str, ...] = (
    "endpoint",
    "kind",
    "target",
    "protocol",
    "port",
    "username",
    "domain",
    "account",
    "authority",
    "host",
    "owner",
    "policy",
    "line",
    "status",
    "stage",
    "verified",
    "vault_path",
    "vault_version",
    "last_rotated",
    "age_days",
    "max_age_days",
    "due_before_next_run",
    "last_failure_at",
    "duration_s",
    "reason",
    "error",
    "followups",
    "problem",
)

#: the accounts CSV header: every key of `AccountResult.as_record()`, in a fixed order
ACCOUNT_COLUMNS: tuple[str, ...] = (
    "account",
    "authority",
    "authority_type",
    "changes_host_account",
    "username",
    "domain",
    "host",
    "status",
    "login_verified",
    "last_changed",
    "vault_path",
    "vault_version",
    "usages",
    "in_sync",
    "stale",
    "reason",
    "error",
)

# Excel, LibreOffice and Google Sheets run a cell starting with one of these as a formula
# (CSV injection: `=cmd|' /C calc'!A0`, `=HYPERLINK(...)` leaking data). Inventory text such as
# a target or username reaches these cells, so such a cell gets a leading `'`, which the
# spreadsheet shows as text. The full-width forms are included because some locales' Excel
# converts them to their ASCII formula characters.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise(cell: str) -> str:
    """`cell`, prefixed with `'` if a spreadsheet would otherwise treat it as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _cell(value: object) -> str:
    if type(value) is str:  # most cells
        return neutralise(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as in the JSON record
    if isinstance(value, list):
        return neutralise("; ".join(str(v) for v in value))
    return neutralise(str(value))


def write_to(record: RunRecord, out: TextIO) -> None:
    """Write the CSV text to `out`: a header line, then one line per item in the record's
    order, one at a time. `out` must not translate newlines (`newline=""`)."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writerow = writer.writerow
    for item in record.items:
        rec = item.as_record()
        writerow([_cell(rec[column]) for column in COLUMNS])


def write_accounts_to(record: RunRecord, out: TextIO) -> None:
    """Write the accounts CSV text to `out`: a header line, then one line per account in the
    record's order. `out` must not translate newlines (`newline=""`)."""
    writer = csv.writer(out)
    writer.writerow(ACCOUNT_COLUMNS)
    writerow = writer.writerow
    for result in record.accounts:
        rec = result.as_record()
        writerow([_cell(rec[column]) for column in ACCOUNT_COLUMNS])


def dumps(record: RunRecord) -> str:
    """The CSV text: a header line, then one line per item in the record's order."""
    buf = io.StringIO(newline="")
    write_to(record, buf)
    return buf.getvalue()


def write_csv(record: RunRecord, path: Path) -> Path:
    """Write the CSV to `path` atomically, streamed; its directory must exist. Returns `path`."""
    with open_atomic_text(path) as out:
        write_to(record, out)
    return path


def dumps_accounts(record: RunRecord) -> str:
    """The accounts CSV text: a header line, then one line per account."""
    buf = io.StringIO(newline="")
    write_accounts_to(record, buf)
    return buf.getvalue()


def write_accounts_csv(record: RunRecord, path: Path) -> Path:
    """Write the accounts CSV to `path` atomically; its directory must exist. Returns `path`."""
    with open_atomic_text(path) as out:
        write_accounts_to(record, out)
    return path
