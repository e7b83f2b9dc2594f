"""The machine-readable `--json` record of a run (DESIGN.md contract), written as a stream.

The file is exactly `json.dumps(json_record(record), indent=2, ensure_ascii=False)` and a
newline, but it is written account by account and item by item to a buffered file: a record
of 100,000 items (and as many accounts) never becomes one dict, list or string in memory.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rotate import __version__
from rotate.models import AccountResult, ItemResult, RunRecord
from rotate.report import stats
from rotate.report._files import open_atomic_text

_INDENT = 2
_ITEM_INDENT = " " * (2 * _INDENT)  # items sit in the top-level object's "items" list
_FIELD_INDENT = " " * (3 * _INDENT)
# Strings are encoded by the json module's own (C) string encoder, as json.dumps does.
_STRING = json.JSONEncoder(ensure_ascii=False).encode
# A flat object with one field a line, at an item's depth: the json module's fast C encoder,
# which `indent` would switch off, with a separator that is the indentation.
_FLAT = json.JSONEncoder(ensure_ascii=False, separators=(",\n" + _FIELD_INDENT, ": ")).encode
_CONTAINERS = (list, tuple, dict)


def _head(
    record: RunRecord, tally: stats.Tally, accounts: stats.AccountTally | None = None
) -> dict[str, object]:
    """Every key of the record but `accounts` and `items` (which follow it, in this order),
    in the record's key order."""
    drift = record.drift
    accounts = stats.account_tally(record.accounts) if accounts is None else accounts
    data: dict[str, object] = {
        "run_id": record.run_id,
        "mode": record.mode,
        "dry_run": record.dry_run,
        "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat(),
        "duration_s": round((record.finished_at - record.started_at).total_seconds(), 3),
        "aborted": record.aborted,
        "warnings": list(record.warnings),
        "identity": record.identity,
        "tool_version": record.tool_version or __version__,
        "inventory": record.inventory,
        "inventory_sha256": record.inventory_sha256,
        "config": record.config,
        "config_sha256": record.config_sha256,
        "vault_addr": record.vault_addr,
        "vault_mount": record.vault_mount,
        "plan_hash": record.plan_hash,
        "schedule_days": record.schedule_days,
        "rotate_version": __version__,
        "summary": tally.summary(),
        "stats": dict(record.stats),
        "drift": None
        if drift is None
        else {
            "secrets_without_row": list(drift.secrets_without_row),
            "rows_without_secret": list(drift.rows_without_secret),
        },
        "probes": [
            {"endpoint": p.endpoint, "system": p.system, "ok": p.ok, "detail": p.detail}
            for p in record.probes
        ],
        "authorities": [
            {"authority": p.name, "type": p.type, "ok": p.ok, "detail": p.detail}
            for p in record.authority_probes
        ],
        "accounts_summary": accounts.summary(),
    }
    if record.mode == "plan":
        data["usage_problems"] = len(tally.problems)
    if record.mode == "report":
        data["percentages"] = tally.percentages()
        data["account_percentages"] = accounts.percentages()
        data["stale_usages"] = [
            {"usage": i.row.label, "account": i.row.account} for i in tally.stale
        ]
        data["due_before_next_run"] = tally.soon
        data["age_histogram"] = [b.as_record() for b in tally.age_histogram()]
        data["endpoint_compliance"] = [e.as_compliance_record() for e in tally.by_endpoint()]
    return data


def json_record(record: RunRecord) -> dict[str, object]:
    """The run as the DESIGN.md `--json` record; items keep the record's (inventory) order.

    A compliance record (mode `report`) adds the figures its page shows: the share of each
    status, the age histogram and the per-endpoint breakdown, the share of the accounts in
    each status, and the stale usages. The `accounts` (one record per account) and the
    `items` (one per usage) come last. (This builds the whole record in memory; the writers
    stream it instead.)
    """
    data = _head(record, stats.tally(record.items))
    data["accounts"] = [result.as_record() for result in record.accounts]
    data["items"] = [item.as_record() for item in record.items]
    return data


def _value(value: object) -> str:
    """One value as `json.dumps(..., indent=2, ensure_ascii=False)` writes it at item depth."""
    # Exact types: a subclass (an enum, say) may encode differently; the json module decides.
    if type(value) is str:
        return _STRING(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    # Anything else (a list, a non-finite float, a subclass): the json module itself, its
    # lines indented to the depth of an item's field.
    return json.dumps(value, indent=_INDENT, ensure_ascii=False).replace("\n", "\n" + _FIELD_INDENT)


_KEYS: dict[str, str] = {}


def _key(name: str) -> str:
    text = _KEYS.get(name)
    if text is None:
        text = _KEYS[name] = f"{_FIELD_INDENT}{_STRING(name)}: "
    return text


def _entry(rec: dict[str, object]) -> str:
    """One item's (or account's) record, indented as the second level of the whole record."""
    if not rec:
        return _ITEM_INDENT + "{}"
    if any(value and isinstance(value, _CONTAINERS) for value in rec.values()):
        fields = ",\n".join(_key(k) + _value(v) for k, v in rec.items())
        return f"{_ITEM_INDENT}{{\n{fields}\n{_ITEM_INDENT}}}"
    # Flat (no non-empty list or object): the C encoder writes it, one field a line.
    return f"{_ITEM_INDENT}{{\n{_FIELD_INDENT}{_FLAT(rec)[1:-1]}\n{_ITEM_INDENT}}}"


def _item(item: ItemResult) -> str:
    return _entry(item.as_record())


def _account(result: AccountResult) -> str:
    return _entry(result.as_record())


def _write_list(out: TextIO, name: str, entries: Iterator[str], more: str) -> None:
    """`"name": [...]` at the top level, one entry at a time, then `more` (`,` or nothing)."""
    out.write(f"{' ' * _INDENT}{_STRING(name)}: ")
    first = next(entries, None)
    if first is None:
        out.write("[]" + more)
        return
    write = out.write
    write("[\n")
    write(first)
    for entry in entries:
        write(",\n")
        write(entry)
    write(f"\n{' ' * _INDENT}]{more}")


def write_to(
    record: RunRecord,
    out: TextIO,
    *,
    tally: stats.Tally | None = None,
    account_tally: stats.AccountTally | None = None,
) -> None:
    """Write the record's JSON text to `out`, one account and one item at a time.

    `tally`, `account_tally`: the record's figures, when the caller has counted them already.
    """
    head = _head(record, stats.tally(record.items) if tally is None else tally, account_tally)
    text = json.dumps(head, indent=_INDENT, ensure_ascii=False)
    # The head is an object with at least `run_id`: drop its closing "\n}", add the lists.
    out.write(text[:-2])
    out.write(",\n")
    _write_list(out, "accounts", map(_account, record.accounts), ",\n")
    _write_list(out, "items", map(_item, record.items), "")
    out.write("\n}\n")


def dumps(record: RunRecord) -> str:
    """The record as indented JSON text, ending with a newline."""
    buf = io.StringIO()
    write_to(record, buf)
    return buf.getvalue()


def write_json(
    record: RunRecord,
    path: Path,
    *,
    tally: stats.Tally | None = None,
    account_tally: stats.AccountTally | None = None,
) -> Path:
    """Write the record to `path` atomically, streamed; its directory must exist.

    `tally`, `account_tally`: the record's figures, when the caller has counted them
    already. Returns `path`.
    """
    with open_atomic_text(path) as out:
        write_to(record, out, tally=tally, account_tally=account_tally)
    return path
