"""The machine-readable `--json` record of a run (DESIGN.md contract)."""

from __future__ import annotations

import json
from pathlib import Path

from rotate import __version__
from rotate.models import RunRecord
from rotate.report import stats
from rotate.report._files import write_atomic


def json_record(record: RunRecord) -> dict[str, object]:
    """The run as the DESIGN.md `--json` record; items keep the record's (inventory) order.

    A compliance record (mode `report`) adds the figures its page shows: the share of each
    status, the age histogram and the per-endpoint breakdown.
    """
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
        "summary": record.summary(),
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
        data["percentages"] = stats.percentages(record.items)
        data["due_before_next_run"] = sum(1 for i in record.items if i.due_before_next_run)
        data["age_histogram"] = [b.as_record() for b in stats.age_histogram(record.items)]
        data["endpoint_compliance"] = [
            e.as_compliance_record() for e in stats.by_endpoint(record.items)
        ]
    data["items"] = [item.as_record() for item in record.items]
    return data


def dumps(record: RunRecord) -> str:
    """The record as indented JSON text, ending with a newline."""
    return json.dumps(json_record(record), indent=2, ensure_ascii=False) + "\n"


def write_json(record: RunRecord, path: Path) -> Path:
    """Write the record to `path` atomically; its directory must exist. Returns `path`."""
    write_atomic(path, dumps(record).encode("utf-8"))
    return path
