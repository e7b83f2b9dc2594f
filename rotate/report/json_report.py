"""The machine-readable `--json` record of a run (DESIGN.md contract), written as a stream.

The file is exactly `json.dumps(json_record(record), indent=2, ensure_ascii=False)` and a
newline, but it is written item by item to a buffered file: a record of 100,000 items never
becomes one dict, list or string in memory.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import TextIO

from rotate import __version__
from rotate.models import ItemResult, RunRecord
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


def _head(record: RunRecord, tally: stats.Tally) -> dict[str, object]:
    """Every key of the record but `items`, in the record's key order."""
    drift = record.drift
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
            {"endpoint": p.endpoint, "system": p.system.value, "ok": p.ok, "detail": p.detail}
            for p in record.probes
        ],
    }
    if record.mode == "report":
        data["percentages"] = tally.percentages()
        data["due_before_next_run"] = tally.soon
        data["age_histogram"] = [b.as_record() for b in tally.age_histogram()]
        data["endpoint_compliance"] = [e.as_compliance_record() for e in tally.by_endpoint()]
    return data


def json_record(record: RunRecord) -> dict[str, object]:
    """The run as the DESIGN.md `--json` record; items keep the record's (inventory) order.

    A compliance record (mode `report`) adds the figures its page shows: the share of each
    status, the age histogram and the per-endpoint breakdown. (This builds the whole record
    in memory; the writers stream it instead.)
    """
    data = _head(record, stats.tally(record.items))
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


def _item(item: ItemResult) -> str:
    """One item's record, indented as the second level of the whole record."""
    rec = item.as_record()
    if not rec:
        return _ITEM_INDENT + "{}"
    if any(value and isinstance(value, _CONTAINERS) for value in rec.values()):
        fields = ",\n".join(_key(k) + _value(v) for k, v in rec.items())
        return f"{_ITEM_INDENT}{{\n{fields}\n{_ITEM_INDENT}}}"
    # Flat (no non-empty list or object): the C encoder writes it, one field a line.
    return f"{_ITEM_INDENT}{{\n{_FIELD_INDENT}{_FLAT(rec)[1:-1]}\n{_ITEM_INDENT}}}"


def write_to(record: RunRecord, out: TextIO, *, tally: stats.Tally | None = None) -> None:
    """Write the record's JSON text to `out`, one item at a time.

    `tally`: the record's figures, when the caller has counted them already.
    """
    head = _head(record, stats.tally(record.items) if tally is None else tally)
    text = json.dumps(head, indent=_INDENT, ensure_ascii=False)
    # The head is an object with at least `run_id`: drop its closing "\n}", add the items.
    out.write(text[:-2])
    out.write(f",\n{' ' * _INDENT}{_STRING('items')}: ")
    if not record.items:
        out.write("[]")
    else:
        out.write("[\n")
        write = out.write
        first = True
        for item in record.items:
            if not first:
                write(",\n")
            write(_item(item))
            first = False
        out.write(f"\n{' ' * _INDENT}]")
    out.write("\n}\n")


def dumps(record: RunRecord) -> str:
    """The record as indented JSON text, ending with a newline."""
    buf = io.StringIO()
    write_to(record, buf)
    return buf.getvalue()


def write_json(record: RunRecord, path: Path, *, tally: stats.Tally | None = None) -> Path:
    """Write the record to `path` atomically, streamed; its directory must exist.

    `tally`: the record's figures, when the caller has counted them already. Returns `path`.
    """
    with open_atomic_text(path) as out:
        write_to(record, out, tally=tally)
    return path
