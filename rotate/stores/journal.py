"""Journal records: candidates staged a batch at a time under the pending root, until settled.

A record `<pending_root>/<run id>-<n>` is written once (check-and-set 0) before any target of
its batch sees a candidate. Nothing ever adds to it afterwards: a candidate only leaves it,
once promoted (it is then the current version) or discarded (the target definitely refused
it), and a record with none left is deleted. So a record this process rewrites can hold no
candidate it does not know of, and every password a target may hold stays readable
(DESIGN.md, invariants 1 and 3).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rotate.errors import CasConflict, PendingConflict, StoreError
from rotate.models import PendingCandidate
from rotate.stores.layout import (
    CAS_ATTEMPTS,
    KV,
    check_path,
    credential_data,
    credential_from,
    fan_out,
    list_records,
    parse_time,
    utc_iso,
)


@dataclass
class JournalRecord:
    """One journal record as this process last saw or wrote it."""

    name: str  # its path
    version: int
    run_id: str
    staged_at: str
    entries: dict[str, dict[str, Any]]  # secret path -> fields and base_version
    settled: set[str] = field(default_factory=set)  # promoted or discarded, still listed
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def data(self, entries: Mapping[str, Any]) -> dict[str, Any]:
        return {"run_id": self.run_id, "staged_at": self.staged_at, "candidates": dict(entries)}

    def secrets(self) -> tuple[str, ...]:
        return tuple(str(e.get("password", "")) for e in self.entries.values())


class Journals:
    """The journal records this process has read or written, and which candidate is where.

    `mark_settled` takes a candidate out of the index at once (it is promoted or discarded);
    it stays listed in its record until `settle` or `discard` rewrites the record.
    """

    def __init__(self, kv: KV, root: str) -> None:
        self.kv = kv
        self._root = root
        self._records: dict[str, JournalRecord] = {}
        self._index: dict[str, str] = {}  # secret path -> journal record holding its candidate
        self._conflicts: dict[str, str] = {}  # secret path -> why it cannot be handled
        self._sequence = itertools.count(1)

    async def pending(self) -> dict[str, PendingCandidate]:
        """Every staged candidate by secret path: one LIST and one read per journal record."""
        found = await fan_out(self._load, await list_records(self.kv, self._root))
        candidates: dict[str, PendingCandidate] = {}
        for record in found:
            if record is None:
                continue
            for path, entry in record.entries.items():
                if path in record.settled:
                    continue  # promoted or discarded here, not yet cleared from the record
                other = self._index.get(path)
                if other is not None and other != record.name:
                    self._conflicts[path] = (
                        f"two pending candidates for {self.kv.where(path)}, in "
                        f"{self.kv.where(other)} and {self.kv.where(record.name)}: check which "
                        "one the target holds, then delete the other record's entry"
                    )
                    continue
                self._index[path] = record.name
                candidates[path] = self._candidate(record, path, entry)
        for path in self._conflicts:
            candidates.pop(path, None)
        return candidates

    def check(self, path: str) -> None:
        """StoreError when `path` has two candidates, in two records (`pending` found them)."""
        if path in self._conflicts:
            raise StoreError(self._conflicts[path])

    async def stage(self, run_id: str, candidates: Mapping[str, PendingCandidate]) -> str:
        """Write the candidates in one new journal record; return its name. PendingConflict if
        a path already has a candidate (it must be resumed, never replaced)."""
        # A settled candidate still listed in its record (not yet cleared durably) would,
        # beside a new one, make two candidates for one path: settle first.
        listed = set().union(*(r.settled for r in self._records.values()))
        for path in candidates:
            check_path(path, self._root)
            if path in self._index or path in self._conflicts or path in listed:
                raise PendingConflict(
                    f"{self.kv.where(path)} already has a candidate in a journal record"
                )
        name = f"{self._root}/{run_id}-{next(self._sequence):05d}"
        entries = {
            path: {**credential_data(c.credential), "base_version": c.base_version or 0}
            for path, c in candidates.items()
        }
        staged_at = min((c.staged_at for c in candidates.values()), default=datetime.now(UTC))
        record = JournalRecord(name, 0, run_id, utc_iso(staged_at), entries)
        try:
            record.version = await self.kv.write(
                name, record.data(entries), cas=0, secrets=record.secrets()
            )
        except CasConflict:
            raise StoreError(f"journal record {self.kv.where(name)} exists already") from None
        self._records[name] = record
        for path in entries:
            self._index[path] = name
        return name

    def mark_settled(self, path: str) -> None:
        """The candidate of `path` (if any) is promoted or discarded: no longer pending."""
        name = self._index.pop(path, None)
        if name is not None:
            self._records[name].settled.add(path)

    async def discard(self, paths: Iterable[str]) -> None:
        """Drop the candidates of `paths` from their records now; no candidate: a no-op."""
        touched: dict[str, JournalRecord] = {}
        for path in paths:
            check_path(path, self._root)
            name = self._index.get(path)
            if name is not None:
                self.mark_settled(path)
                touched[name] = self._records[name]
        for record in touched.values():
            await self._rewrite(record)

    async def settle(self, name: str | None = None) -> None:
        """Rewrite record `name` (or every one this process touched) without its settled
        candidates, or delete it when none is left pending."""
        if name is None:
            records = list(self._records.values())
        else:  # a record whose candidates all left it is deleted already: nothing to do
            known = self._records.get(name)
            records = [known] if known is not None else []
        for record in records:
            if record.settled:
                await self._rewrite(record)

    # --- internals --------------------------------------------------------------------------

    def _candidate(
        self, record: JournalRecord, path: str, entry: Mapping[str, Any]
    ) -> PendingCandidate:
        base = entry.get("base_version")
        known = isinstance(base, int | str) and str(base).isdigit()
        return PendingCandidate(
            credential=credential_from(entry, f"{self.kv.where(record.name)} ({path})"),
            run_id=record.run_id,
            staged_at=parse_time(record.staged_at) or datetime.now(UTC),
            base_version=(int(str(base)) or None) if known else None,  # stored 0: none yet
        )

    async def _load(self, name: str) -> JournalRecord | None:
        found = await self.kv.read(name)
        if found is None:
            return None
        data = found.data
        record = JournalRecord(
            name,
            found.version,
            str(data.get("run_id") or ""),
            str(data.get("staged_at") or found.created_time or ""),
            _entries_of(data),
        )
        known = self._records.get(name)
        if known is not None:  # read again: keep what this process settled, and its lock
            record.settled, record.lock = known.settled, known.lock
        self._records[name] = record
        return record

    async def _rewrite(self, record: JournalRecord) -> None:
        """Write the record without its settled candidates (check-and-set), or delete it."""
        async with record.lock:
            for _ in range(CAS_ATTEMPTS):
                remaining = {p: e for p, e in record.entries.items() if p not in record.settled}
                if remaining == record.entries:
                    record.settled.clear()
                    return
                try:
                    if remaining:
                        record.version = await self.kv.write(
                            record.name,
                            record.data(remaining),
                            cas=record.version,
                            secrets=record.secrets(),
                        )
                    else:
                        # Nothing else ever adds to a record, so no newer version can hold a
                        # candidate this process does not know is settled.
                        await self.kv.delete(record.name)
                except CasConflict:
                    # Another run settled part of it: start again from what is there now.
                    fresh = await self.kv.read(record.name)
                    record.entries = _entries_of(fresh.data) if fresh else {}
                    record.version = fresh.version if fresh else 0
                    continue
                record.entries = remaining
                # Only what was written out: a candidate promoted while this write was in
                # flight is settled in the next rewrite, not forgotten.
                record.settled.intersection_update(remaining)
                if not remaining:
                    self._records.pop(record.name, None)
                return
            raise StoreError(f"journal record {self.kv.where(record.name)} kept changing")


def _entries_of(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found = data.get("candidates")
    if not isinstance(found, Mapping):
        return {}
    return {str(p): dict(e) for p, e in found.items() if isinstance(e, Mapping)}
