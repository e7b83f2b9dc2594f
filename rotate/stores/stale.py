"""Stale-usage records: the usages that did not take their account's current password.

One record per account, `<stale_root>/<digest of the account's path>`, maps each stale usage
(by label) to the version it holds, since when, and which run found it. It is rewritten with
check-and-set and deleted once no usage is left in it; the next run repairs them first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rotate.errors import CasConflict, StoreError
from rotate.models import StaleUsage
from rotate.stores.layout import CAS_ATTEMPTS, KV, fan_out, list_records, parse_time, utc_iso

#: a record's entries: usage label -> held_version, since, run_id
Entries = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class StaleRecord:
    """The stale usages of one account, as this process last saw or wrote them."""

    name: str
    path: str  # the account's secret
    version: int
    entries: Entries

    def usages(self) -> dict[str, StaleUsage]:
        found = {}
        for label, entry in self.entries.items():
            held = entry.get("held_version")
            found[label] = StaleUsage(
                usage=label,
                held_version=int(held) if isinstance(held, int) and held > 0 else None,
                since=parse_time(entry.get("since")),
                run_id=str(entry.get("run_id") or ""),
            )
        return found


class StaleRecords:
    """Reads and rewrites the stale-usage records under one root."""

    def __init__(self, kv: KV, root: str) -> None:
        self.kv = kv
        self._root = root
        self._records: dict[str, StaleRecord] = {}  # account path -> its record, as last seen

    async def stale(self) -> dict[str, dict[str, StaleUsage]]:
        """Every usage recorded stale, by its account's secret path: one LIST, and one read
        per account that has some."""
        loaded = await fan_out(self._load, await list_records(self.kv, self._root))
        return {r.path: r.usages() for r in loaded if r is not None and r.entries}

    async def mark(self, path: str, usages: Mapping[str, StaleUsage]) -> None:
        """Record these usages of the account at `path` as stale (merged with those recorded:
        a usage stale since an earlier run keeps its first `since`)."""

        def merge(entries: Entries) -> Entries:
            merged = dict(entries)
            for label, usage in usages.items():
                known = merged.get(label)
                since = known.get("since") if known else None
                merged[label] = {
                    "held_version": usage.held_version or 0,
                    "since": since or utc_iso(usage.since or datetime.now(UTC)),
                    "run_id": usage.run_id,
                }
            return merged

        await self._update(path, merge)

    async def clear(self, path: str, labels: Sequence[str]) -> None:
        """These usages of the account at `path` now hold its current password."""
        gone = set(labels)
        await self._update(path, lambda e: {k: v for k, v in e.items() if k not in gone})

    # --- internals --------------------------------------------------------------------------

    def _name(self, path: str) -> str:
        return f"{self._root}/{hashlib.sha256(path.encode()).hexdigest()[:32]}"

    async def _load(self, name: str) -> StaleRecord | None:
        found = await self.kv.read(name)
        if found is None:
            return None
        path = found.data.get("path")
        usages = found.data.get("usages")
        if not isinstance(path, str) or not isinstance(usages, Mapping):
            raise StoreError(f"stale-usage record {self.kv.where(name)} is not one rotate wrote")
        entries = {str(k): dict(v) for k, v in usages.items() if isinstance(v, Mapping)}
        record = StaleRecord(name, path, found.version, entries)
        self._records[path] = record
        return record

    async def _update(self, path: str, change: Callable[[Entries], Entries]) -> None:
        """Rewrite the account's record (check-and-set), or delete it when empty."""
        name = self._name(path)
        record = self._records.get(path)
        if record is None:
            record = StaleRecord(name, path, 0, {})  # 0: none known; CAS creates it
        for _ in range(CAS_ATTEMPTS):
            entries = change(record.entries)
            if entries == record.entries and (entries or not record.version):
                return
            try:
                if entries:
                    version = await self.kv.write(
                        name, {"path": path, "usages": entries}, cas=record.version
                    )
                    self._records[path] = StaleRecord(name, path, version, entries)
                else:
                    await self.kv.delete(name)
                    self._records.pop(path, None)
                return
            except CasConflict:
                record = await self._load(name) or StaleRecord(name, path, 0, {})
        raise StoreError(f"stale-usage record {self.kv.where(name)} kept changing")
