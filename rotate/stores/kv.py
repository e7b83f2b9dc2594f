"""The data plane of a secret store, written once over a small async KV v2 interface.

Layout (the no-lost-credential invariants of DESIGN.md):
- the *current* secret of a row lives at `<path>`; each promotion is one new KV v2 version
  written with check-and-set, so the previous password stays readable. The version's own
  `created_time` is the time of the rotation: no second write per credential.
- *candidates* are staged a batch at a time in one **journal record** under the pending root,
  `<pending_root>/<run id>-<n>`, before any target of the batch sees them. A candidate leaves
  its record once it is promoted (it is then the current version) or discarded (the target
  definitely refused it); a record with none left is deleted. Readers of a secret never see
  a candidate: records live apart from the secrets.
- *stale usages* (copies of an account's password that did not take its current version)
  are recorded per account in one record under the stale root, `<stale_root>/<digest of the
  account's path>`, with the version each one holds; the next run repairs them first.
- an exception to the version time is written to `custom_metadata` with the version it
  applies to: a password adopted from a target (its age is unknown: it counts as never
  rotated) or one imported with a known rotation time. Failed attempts are noted there too.

Why journals: each Vault round trip costs the client about as much CPU as a vendor call
(bench/README.md). Staging one record per batch and deriving the rotation time from the
version makes a rotation two Vault round trips per credential (the metadata read that plans
it and the promoting write) instead of five.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar

from rotate.errors import CasConflict, PendingConflict, StoreError
from rotate.models import Credential, PendingCandidate, Secret, SecretState, StaleUsage

#: custom_metadata keys rotate writes (user keys are left alone)
META_ROTATED_AT = "rotated_at"  # an imported rotation time ...
META_ROTATED_VERSION = "rotated_version"  # ... and the version it applies to
META_ADOPTED_AT = "adopted_at"
META_ADOPTED_VERSION = "adopted_version"  # this version's age is unknown
META_LAST_FAILURE_AT = "last_failure_at"
META_LAST_FAILURE_RUN = "last_failure_run"

#: requests in flight while reading journal records or listing folders
_FAN_OUT = 16

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class _VersionTime:
    """`promote`'s default: the rotation time is the new version's created_time."""

    def __repr__(self) -> str:
        return "VERSION_TIME"


VERSION_TIME: Final = _VersionTime()
RotationTime = datetime | None | _VersionTime


@dataclass(frozen=True)
class Metadata:
    """What a metadata read tells about one path."""

    current_version: int  # 0: no version yet
    created_time: str | None  # of the current version
    custom: Mapping[str, str]


@dataclass(frozen=True)
class Version:
    """The latest readable version of one path."""

    data: Mapping[str, Any]
    version: int
    created_time: str | None = None


class KV(Protocol):
    """The KV v2 calls the data plane makes; errors are StoreError, naming the path."""

    requests: int  # round trips so far

    def where(self, path: str) -> str:
        """The path as messages name it (with the mount)."""
        ...

    async def metadata(self, path: str) -> Metadata | None:
        """Versions and custom_metadata, or None when the path has none."""
        ...

    async def read(self, path: str) -> Version | None:
        """The latest version, or None when there is none (or it was deleted)."""
        ...

    async def write(
        self, path: str, data: Mapping[str, Any], cas: int, secrets: tuple[str, ...] = ()
    ) -> int:
        """A new version with check-and-set `cas` (0: create only); CasConflict if it moved.
        `secrets` are masked in any error text."""
        ...

    async def patch_metadata(self, path: str, custom: Mapping[str, str | None]) -> None:
        """Merge keys into custom_metadata (None removes a key); creates it if needed."""
        ...

    async def delete(self, path: str) -> None:
        """Delete metadata and every version; a no-op when there is none."""
        ...

    async def list(self, folder: str) -> list[str]:
        """Keys under `folder` (folders end in "/"); empty when there is none."""
        ...


# --- pure helpers -----------------------------------------------------------------------------


def check_path(path: str, pending_root: str) -> None:
    """Refuse a malformed path, or one inside the pending area (it would mix the two)."""
    if not path or path != path.strip("/") or any(s in ("", ".", "..") for s in path.split("/")):
        raise StoreError(f"invalid secret path {path!r}: empty, '/' at an end, '//', '.' or '..'")
    if path == pending_root or path.startswith(pending_root + "/"):
        raise StoreError(f"secret path {path!r} lies inside the pending area {pending_root!r}")


def credential_data(credential: Credential) -> dict[str, str]:
    """The fields a secret holds: username, password and, when there is one, domain."""
    data = {"username": credential.username, "password": credential.password.reveal()}
    if credential.domain:
        data["domain"] = credential.domain
    return data


def credential_from(data: Mapping[str, Any], where: str) -> Credential:
    """Read a credential back from secret data; StoreError when it is not one."""
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise StoreError(f"secret {where} lacks a string 'username' or 'password'")
    domain = data.get("domain")
    return Credential(
        username, Secret(password), domain if isinstance(domain, str) and domain else None
    )


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC; a naive datetime is taken as UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def parse_time(value: object) -> datetime | None:
    """An aware datetime from Vault's (nanosecond) timestamps or our ISO strings, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def last_rotation(custom: Mapping[str, Any], created: object, version: int) -> datetime | None:
    """When the current password was set: the version's creation time, unless custom_metadata
    says otherwise for this very version (adopted: unknown, so None; or an imported time)."""
    if str(custom.get(META_ADOPTED_VERSION, "")) == str(version):
        return None
    if str(custom.get(META_ROTATED_VERSION, "")) == str(version):
        recorded = parse_time(custom.get(META_ROTATED_AT))
        if recorded is not None:
            return recorded
    return parse_time(created)


def rotation_override(version: int, rotated_at: datetime | None) -> dict[str, str | None]:
    """custom_metadata for a version whose rotation time is not its created_time."""
    if rotated_at is None:
        return {
            META_ADOPTED_VERSION: str(version),
            META_ADOPTED_AT: utc_iso(datetime.now(UTC)),
            META_ROTATED_VERSION: None,
            META_ROTATED_AT: None,
        }
    return {
        META_ROTATED_VERSION: str(version),
        META_ROTATED_AT: utc_iso(rotated_at),
        META_ADOPTED_VERSION: None,
    }


def failure_metadata(run_id: str, at: datetime) -> dict[str, str | None]:
    """The custom_metadata a failed or in-doubt attempt leaves (no error text: no secret)."""
    return {META_LAST_FAILURE_AT: utc_iso(at), META_LAST_FAILURE_RUN: run_id}


def cas_mismatch_message(where: str, expected_version: int | None) -> str:
    """The message of a promotion whose check-and-set failed."""
    expected = expected_version if expected_version else "no current version"
    return f"current version of {where} changed during the rotation (expected {expected})"


async def fan_out(
    call: Callable[[_In], Awaitable[_Out]], items: Sequence[_In], limit: int = _FAN_OUT
) -> list[_Out]:
    """`call` on every item, at most `limit` in flight, results in order. A fixed set of
    workers, not a task per item: 100,000 items cost no more memory than their results."""
    results: list[Any] = [None] * len(items)
    todo = iter(range(len(items)))

    async def worker() -> None:
        for i in todo:
            results[i] = await call(items[i])

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
    return results


# --- journal records --------------------------------------------------------------------------


@dataclass
class _Journal:
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


@dataclass(frozen=True)
class _StaleRecord:
    """The stale usages of one account, as this process last saw or wrote them."""

    name: str
    path: str  # the account's secret
    version: int
    entries: dict[str, dict[str, Any]]  # usage label -> held_version, since, run_id

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


def _entries_of(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found = data.get("candidates")
    if not isinstance(found, Mapping):
        return {}
    return {str(p): dict(e) for p, e in found.items() if isinstance(e, Mapping)}


# --- the data plane ---------------------------------------------------------------------------


class KVSecrets:
    """Read state, stage, promote, discard and settle over a KV (see the module docstring)."""

    def __init__(self, kv: KV, pending_root: str, lease_root: str, stale_root: str) -> None:
        self.kv = kv
        self._root = pending_root
        self._lease_root = lease_root
        self._stale_root = stale_root
        self._stale: dict[str, _StaleRecord] = {}  # account path -> its record, as last seen
        self._journals: dict[str, _Journal] = {}
        self._index: dict[str, str] = {}  # secret path -> journal record holding its candidate
        self._conflicts: dict[str, str] = {}  # secret path -> why it cannot be handled
        self._sequence = itertools.count(1)

    async def pending(self) -> dict[str, PendingCandidate]:
        """Every staged candidate by secret path: one LIST and one read per journal record."""
        names = [n for n in await self.kv.list(self._root) if not n.endswith("/")]
        found = await fan_out(self._load, [f"{self._root}/{n}" for n in names])
        candidates: dict[str, PendingCandidate] = {}
        for journal in found:
            if journal is None:
                continue
            for path, entry in journal.entries.items():
                if path in journal.settled:
                    continue  # promoted or discarded here, not yet cleared from the record
                other = self._index.get(path)
                if other is not None and other != journal.name:
                    self._conflicts[path] = (
                        f"two pending candidates for {self.kv.where(path)}, in "
                        f"{self.kv.where(other)} and {self.kv.where(journal.name)}: check which "
                        "one the target holds, then delete the other record's entry"
                    )
                    continue
                self._index[path] = journal.name
                candidates[path] = self._candidate(journal, path, entry)
        for path in self._conflicts:
            candidates.pop(path, None)
        return candidates

    async def read_state(self, path: str, candidate: PendingCandidate | None = None) -> SecretState:
        """Current version, rotation time and last failure of one secret, with `candidate` (from
        `pending`) unless that candidate is already the current version (then it is settled)."""
        check_path(path, self._root)
        if path in self._conflicts:
            raise StoreError(self._conflicts[path])
        meta = await self.kv.metadata(path)
        version = meta.current_version if meta else 0
        custom = meta.custom if meta else {}
        rotated_at = last_rotation(custom, meta.created_time, version) if meta and version else None
        if candidate is not None and version and version != (candidate.base_version or 0):
            # The version moved since staging: maybe this very candidate was promoted by a run
            # that stopped before it could settle the record.
            current = await self.kv.read(path)
            held = credential_from(current.data, self.kv.where(path)) if current else None
            if held == candidate.credential:
                self._settled(path)
                candidate = None
        return SecretState(
            path=path,
            current_version=version or None,
            rotated_at=rotated_at,
            pending=candidate,
            last_failure_at=parse_time(custom.get(META_LAST_FAILURE_AT)),
        )

    async def read_current(self, path: str) -> Credential | None:
        """The current credential, or None when there is none (or it was deleted)."""
        check_path(path, self._root)
        current = await self.kv.read(path)
        return credential_from(current.data, self.kv.where(path)) if current else None

    async def stage(self, run_id: str, candidates: Mapping[str, PendingCandidate]) -> str:
        """Write the candidates in one new journal record; return its name. PendingConflict if
        a path already has a candidate (it must be resumed, never replaced)."""
        # A settled candidate still listed in its record (not yet cleared durably) would,
        # beside a new one, make two candidates for one path: settle first.
        listed = set().union(*(j.settled for j in self._journals.values()))
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
        journal = _Journal(name, 0, run_id, utc_iso(staged_at), entries)
        try:
            journal.version = await self.kv.write(
                name, journal.data(entries), cas=0, secrets=journal.secrets()
            )
        except CasConflict:
            raise StoreError(f"journal record {self.kv.where(name)} exists already") from None
        self._journals[name] = journal
        for path in entries:
            self._index[path] = name
        return name

    async def promote(
        self,
        path: str,
        credential: Credential,
        expected_version: int | None,
        rotated_at: RotationTime = VERSION_TIME,
    ) -> int:
        """Write the accepted credential as the new current version (check-and-set) and return
        it; its candidate leaves the journal when the record is next settled.

        `rotated_at` None records a password of unknown age (adopted: the next run rotates
        it); a datetime, a known rotation time. Either goes to custom_metadata *before* the
        write, so a crash in between errs towards rotating early."""
        check_path(path, self._root)
        where = self.kv.where(path)
        if not isinstance(rotated_at, _VersionTime):
            await self.kv.patch_metadata(
                path, rotation_override((expected_version or 0) + 1, rotated_at)
            )
        try:
            version = await self.kv.write(
                path,
                credential_data(credential),
                cas=expected_version or 0,
                secrets=(credential.password.reveal(),),
            )
        except CasConflict:
            # A retry after a lost response finds its own write: that is success.
            current = await self.kv.read(path)
            if (
                current is None
                or current.version <= (expected_version or 0)
                or credential_from(current.data, where) != credential
            ):
                raise StoreError(cas_mismatch_message(where, expected_version)) from None
            version = current.version
        self._settled(path)
        return version

    async def discard(self, *paths: str) -> None:
        """Drop the candidates of `paths` from their journal records now (the targets do not
        hold them); a path without a candidate is a no-op."""
        touched: dict[str, _Journal] = {}
        for path in paths:
            check_path(path, self._root)
            name = self._index.get(path)
            if name is not None:
                self._settled(path)
                touched[name] = self._journals[name]
        for journal in touched.values():
            await self._rewrite(journal)

    async def settle(self, name: str | None = None) -> None:
        """Rewrite journal record `name` (or every one this process touched) without its
        promoted and discarded candidates, or delete it when none is left pending."""
        if name is None:
            journals = list(self._journals.values())
        else:  # a record whose candidates all left it is deleted already: nothing to do
            known = self._journals.get(name)
            journals = [known] if known is not None else []
        for journal in journals:
            if journal.settled:
                await self._rewrite(journal)

    async def record_failure(self, path: str, run_id: str, at: datetime) -> None:
        """Note a failed or in-doubt attempt in custom_metadata (for the compliance report)."""
        check_path(path, self._root)
        await self.kv.patch_metadata(path, failure_metadata(run_id, at))

    async def stale(self) -> dict[str, dict[str, StaleUsage]]:
        """Every usage recorded stale, by its account's secret path: one LIST, and one read
        per account that has some."""
        names = [n for n in await self.kv.list(self._stale_root) if not n.endswith("/")]
        loaded = await fan_out(self._load_stale, [f"{self._stale_root}/{n}" for n in names])
        return {r.path: r.usages() for r in loaded if r is not None and r.entries}

    async def mark_stale(self, path: str, usages: Mapping[str, StaleUsage]) -> None:
        """Record these usages of the account at `path` as stale (merged with those recorded:
        a usage stale since an earlier run keeps its first `since`)."""
        check_path(path, self._root)

        def merge(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
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

        await self._update_stale(path, merge)

    async def clear_stale(self, path: str, labels: Sequence[str]) -> None:
        """These usages of the account at `path` now hold its current password."""
        check_path(path, self._root)
        gone = set(labels)
        await self._update_stale(path, lambda e: {k: v for k, v in e.items() if k not in gone})

    async def list_paths(self, root: str) -> list[str]:
        """Every secret path under `root`, leaving out rotate's pending, lease and stale areas."""
        own = (self._root, self._lease_root, self._stale_root)
        found: list[str] = []
        folders = [root.strip("/")]
        while folders:
            listed = await fan_out(self.kv.list, folders)
            deeper: list[str] = []
            for folder, keys in zip(folders, listed, strict=True):
                for key in keys:
                    path = f"{folder}/{key}".rstrip("/")
                    if path in own:
                        continue
                    (deeper if key.endswith("/") else found).append(path)
            folders = deeper
        return sorted(found)

    # --- internals --------------------------------------------------------------------------

    def _stale_name(self, path: str) -> str:
        return f"{self._stale_root}/{hashlib.sha256(path.encode()).hexdigest()[:32]}"

    async def _load_stale(self, name: str) -> _StaleRecord | None:
        found = await self.kv.read(name)
        if found is None:
            return None
        path = found.data.get("path")
        usages = found.data.get("usages")
        if not isinstance(path, str) or not isinstance(usages, Mapping):
            raise StoreError(f"stale-usage record {self.kv.where(name)} is not one rotate wrote")
        entries = {str(k): dict(v) for k, v in usages.items() if isinstance(v, Mapping)}
        record = _StaleRecord(name, path, found.version, entries)
        self._stale[path] = record
        return record

    async def _update_stale(
        self,
        path: str,
        change: Callable[[dict[str, dict[str, Any]]], dict[str, dict[str, Any]]],
    ) -> None:
        """Rewrite the account's stale-usage record (check-and-set), or delete it when empty."""
        name = self._stale_name(path)
        record = self._stale.get(path)
        if record is None:
            record = _StaleRecord(name, path, 0, {})  # 0: none known; CAS creates it
        for _ in range(5):
            entries = change(record.entries)
            if entries == record.entries and (entries or not record.version):
                return
            try:
                if entries:
                    version = await self.kv.write(
                        name, {"path": path, "usages": entries}, cas=record.version
                    )
                    record = _StaleRecord(name, path, version, entries)
                    self._stale[path] = record
                else:
                    await self.kv.delete(name)
                    self._stale.pop(path, None)
                return
            except CasConflict:
                record = await self._load_stale(name) or _StaleRecord(name, path, 0, {})
        raise StoreError(f"stale-usage record {self.kv.where(name)} kept changing")

    def _candidate(
        self, journal: _Journal, path: str, entry: Mapping[str, Any]
    ) -> PendingCandidate:
        base = entry.get("base_version")
        known = isinstance(base, int | str) and str(base).isdigit()
        return PendingCandidate(
            credential=credential_from(entry, f"{self.kv.where(journal.name)} ({path})"),
            run_id=journal.run_id,
            staged_at=parse_time(journal.staged_at) or datetime.now(UTC),
            base_version=(int(str(base)) or None) if known else None,  # stored 0: none yet
        )

    async def _load(self, name: str) -> _Journal | None:
        found = await self.kv.read(name)
        if found is None:
            return None
        data = found.data
        journal = _Journal(
            name,
            found.version,
            str(data.get("run_id") or ""),
            str(data.get("staged_at") or found.created_time or ""),
            _entries_of(data),
        )
        known = self._journals.get(name)
        if known is not None:  # read again: keep what this process settled, and its lock
            journal.settled, journal.lock = known.settled, known.lock
        self._journals[name] = journal
        return journal

    def _settled(self, path: str) -> None:
        name = self._index.pop(path, None)
        if name is not None:
            self._journals[name].settled.add(path)

    async def _rewrite(self, journal: _Journal) -> None:
        """Write the record without its settled candidates (check-and-set), or delete it."""
        async with journal.lock:
            for _ in range(5):
                remaining = {p: e for p, e in journal.entries.items() if p not in journal.settled}
                if remaining == journal.entries:
                    journal.settled.clear()
                    return
                try:
                    if remaining:
                        journal.version = await self.kv.write(
                            journal.name,
                            journal.data(remaining),
                            cas=journal.version,
                            secrets=journal.secrets(),
                        )
                    else:
                        # Nothing else ever adds to a record, so no newer version can hold a
                        # candidate this process does not know is settled.
                        await self.kv.delete(journal.name)
                except CasConflict:
                    # Another run settled part of it: start again from what is there now.
                    fresh = await self.kv.read(journal.name)
                    journal.entries = _entries_of(fresh.data) if fresh else {}
                    journal.version = fresh.version if fresh else 0
                    continue
                journal.entries = remaining
                # Only what was written out: a candidate promoted while this write was in
                # flight is settled in the next rewrite, not forgotten.
                journal.settled.intersection_update(remaining)
                if not remaining:
                    self._journals.pop(journal.name, None)
                return
            raise StoreError(f"journal record {self.kv.where(journal.name)} kept changing")
