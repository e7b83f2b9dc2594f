"""The machine-readable `--json` record of a run (DESIGN.md contract)."""

from __future__ import annotations

import json
from pathlib import Path

from rotate import __version__
from rotate.models import RunRecord
from rotate.report._files import write_atomic


def json_record(record: RunRecord) -> dict[str, object]:
    """The run as the DESIGN.md `--json` record; items keep the record's (inventory) order."""
    return {
        "run_id": record.run_id,
        "mode": record.mode,
        "dry_run": record.dry_run,
        "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat(),
        "duration_s": round((record.finished_at - record.started_at).total_seconds(), 3),
        "aborted": record.aborted,
        "inventory": record.inventory,
        "config": record.config,
        "vault_addr": record.vault_addr,
        "vault_mount": record.vault_mount,
        "rotate_version": __version__,
        "summary": record.summary(),
        "probes": [
            {"endpoint": p.endpoint, "system": p.system.value, "ok": p.ok, "detail": p.detail}
            for p in record.probes
        ],
        "items": [item.as_record() for item in record.items],
    }


def dumps(record: RunRecord) -> str:
    """The record as indented JSON text, ending with a newline."""
    return json.dumps(json_record(record), indent=2, ensure_ascii=False) + "\n"


def write_json(record: RunRecord, path: Path) -> Path:
    """Write the record to `path` atomically; its directory must exist. Returns `path`."""
    write_atomic(path, dumps(record).encode("utf-8"))
    return path
