"""An in-memory SecretStore with KV v2 semantics, for unit tests of the pipeline.

It keeps what VaultStore keeps (versions per path, candidates under the pending root,
check-and-set, custom_metadata merged on promotion) and answers with the same errors, so the
contract suite in tests/test_stores.py can hold both to one behaviour. Faults are injected
with `fail_next`.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from rotate.errors import CasConflict, PendingConflict, StoreError
from rotate.models import Credential, PendingCandidate, Secret, SecretState
from rotate.settings import VaultSettings
from rotate.stores.vault import (
    META_LAST_FAILURE_AT,
    META_RUN_ID,
    cas_mismatch_message,
    check_path,
    credential_data,
    credential_from,
    failure_metadata,
    last_rotation,
    parse_time,
    pending_path_of,
    rotation_metadata,
    utc_iso,
)

_T = TypeVar("_T")

#: the SecretStore methods `fail_next` can make fail
METHODS = frozenset(
    {
        "check",
        "read_state",
        "read_current",
        "stage",
        "promote",
        "discard",
        "read_field",
        "read_record",
        "write_record",
        "delete_record",
        "record_failure",
        "list_paths",
        "list_pending",
        "generate_password",
    }
)


@dataclass
class _Entry:
    """One KV v2 path: its versions (None once deleted) and its metadata."""

    versions: list[dict[str, str] | None] = field(default_factory=list)
    created: list[datetime] = field(default_factory=list)
    custom_metadata: dict[str, str] = field(default_factory=dict)

    @property
    def current_version(self) -> int:
        return len(self.versions)

    def latest(self) -> dict[str, str] | None:
        return self.versions[-1] if self.versions else None


@dataclass
class _Fault:
    times: int
    error: Exception
    after: bool


class MemoryStore:
    """SecretStore in a dict, guarded by one lock; the same paths and errors as VaultStore."""

    def __init__(
        self,
        settings: VaultSettings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        settings = settings or VaultSettings()
        self._mount = settings.mount
        self._root = settings.pending_root
        self._lease_root = settings.lease_root
        self.password_policies: dict[str, int] = {}  # name -> length, for generate_password
        self._clock = clock or (lambda: datetime.now(UTC))
        self._entries: dict[str, _Entry] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._calls: Counter[str] = Counter()
        self._lock = threading.RLock()
        self.closed = False

    # --- SecretStore ------------------------------------------------------------------------

    def check(self) -> str:
        """Always usable, unless a fault was injected; we are "memory"."""
        return self._call("check", lambda: "memory")

    def read_state(self, path: str, pending: bool = True) -> SecretState:
        """Current version, last rotation and pending candidate (if any) of one secret;
        `pending=False` skips the candidate (list_pending said there is none)."""

        def run() -> SecretState:
            check_path(path, self._root)
            entry = self._entries.get(path)
            version = entry.current_version if entry else 0
            rotated_at: datetime | None = None
            run_id: str | None = None
            if entry and version:
                rotated_at = last_rotation(entry.custom_metadata, utc_iso(entry.created[-1]))
                run_id = entry.custom_metadata.get(META_RUN_ID) or None
            failed = parse_time((entry.custom_metadata if entry else {}).get(META_LAST_FAILURE_AT))
            candidate = self._pending(path) if pending else None
            return SecretState(path, version or None, rotated_at, run_id, candidate, failed)

        return self._call("read_state", run)

    def read_current(self, path: str) -> Credential | None:
        """The current credential, or None when there is none (or it was deleted)."""

        def run() -> Credential | None:
            check_path(path, self._root)
            entry = self._entries.get(path)
            data = entry.latest() if entry else None
            return credential_from(data, self._where(path)) if data is not None else None

        return self._call("read_current", run)

    def stage(self, path: str, credential: Credential, run_id: str) -> None:
        """Create the pending candidate (check-and-set 0); PendingConflict if one is there."""

        def run() -> None:
            check_path(path, self._root)
            pending = pending_path_of(path, self._root)
            entry = self._entries.get(pending)
            # As on Vault: only a readable candidate blocks; a deleted leftover is reused.
            if entry is not None and entry.latest() is not None:
                raise PendingConflict(
                    f"a pending candidate already exists at {self._where(pending)}"
                )
            data = credential_data(credential)
            data.update(run_id=run_id, staged_at=utc_iso(self._clock()))
            self._write(pending, data)

        self._call("stage", run)

    def promote(
        self,
        path: str,
        credential: Credential,
        expected_version: int | None,
        run_id: str,
        rotated_at: datetime | None,
    ) -> int:
        """Write the new current version (check-and-set), record the rotation, drop the
        candidate; in that order, as VaultStore does."""

        def run() -> int:
            check_path(path, self._root)
            entry = self._entries.get(path)
            current = entry.current_version if entry else 0
            if current == (expected_version or 0):
                version = self._write(path, credential_data(credential))
            else:
                latest = entry.latest() if entry else None
                # A retry after a lost response finds its own write: that is success.
                if (
                    latest is None
                    or current <= (expected_version or 0)
                    or (credential_from(latest, self._where(path)) != credential)
                ):
                    raise StoreError(cas_mismatch_message(self._where(path), expected_version))
                version = current
            meta = self._entries[path].custom_metadata
            for key, value in rotation_metadata(run_id, rotated_at).items():
                if value is None:
                    meta.pop(key, None)
                else:
                    meta[key] = value
            self._entries.pop(pending_path_of(path, self._root), None)
            return version

        return self._call("promote", run)

    def discard(self, path: str) -> None:
        """Delete the pending candidate with all its versions; a no-op when there is none."""

        def run() -> None:
            check_path(path, self._root)
            self._entries.pop(pending_path_of(path, self._root), None)

        self._call("discard", run)

    def read_field(self, path: str, key: str) -> str:
        """One string field of the current version; StoreError if it is missing."""

        def run() -> str:
            check_path(path, self._root)
            entry = self._entries.get(path)
            data = entry.latest() if entry else None
            where = self._where(path)
            if data is None:
                raise StoreError(f"no secret at {where}")
            if key not in data:
                raise StoreError(f"secret {where} has no field {key!r}")
            return data[key]

        return self._call("read_field", run)

    def generate_password(self, policy: str) -> Secret:
        """A password of the length registered for `policy` in `password_policies`."""

        def run() -> Secret:
            if policy not in self.password_policies:
                raise StoreError(f"Vault has no password policy {policy!r}")
            return Secret(secrets.token_urlsafe(64)[: self.password_policies[policy]])

        return self._call("generate_password", run)

    def record_failure(self, path: str, run_id: str, at: datetime) -> None:
        """Note a failed or in-doubt attempt in custom_metadata (for the compliance report)."""

        def run() -> None:
            check_path(path, self._root)
            entry = self._entries.setdefault(path, _Entry())
            entry.custom_metadata.update(
                {k: v for k, v in failure_metadata(run_id, at).items() if v is not None}
            )

        self._call("record_failure", run)

    def list_pending(self) -> set[str]:
        """The secret paths that have a staged candidate."""

        def run() -> set[str]:
            head = self._root + "/"
            return {p[len(head) :] for p in self._entries if p.startswith(head)}

        return self._call("list_pending", run)

    def list_paths(self, root: str) -> list[str]:
        """Every secret path under `root` with a version, leaving out rotate's own areas."""

        def run() -> list[str]:
            prefix = root.strip("/") + "/"
            own = (self._root + "/", self._lease_root + "/")
            return sorted(
                p
                for p, e in self._entries.items()
                if p.startswith(prefix) and not p.startswith(own) and e.versions
            )

        return self._call("list_paths", run)

    def read_record(self, path: str) -> tuple[dict[str, str], int] | None:
        """A record's data and version, or None when there is none."""

        def run() -> tuple[dict[str, str], int] | None:
            entry = self._entries.get(path)
            data = entry.latest() if entry else None
            return (dict(data), entry.current_version) if entry and data is not None else None

        return self._call("read_record", run)

    def write_record(self, path: str, data: Mapping[str, str], cas: int) -> int:
        """Write with check-and-set `cas` (0: create only); CasConflict when it moved."""

        def run() -> int:
            entry = self._entries.get(path)
            if (entry.current_version if entry else 0) != cas:
                raise CasConflict(f"{self._where(path)} changed (expected version {cas})")
            return self._write(path, dict(data))

        return self._call("write_record", run)

    def delete_record(self, path: str) -> None:
        """Delete a record with all its versions; a no-op when there is none."""
        self._call("delete_record", lambda: self._entries.pop(path, None))

    def close(self) -> None:
        """Nothing to release; remembered so a test can check it was called."""
        self.closed = True

    # --- test helpers -----------------------------------------------------------------------

    def put(
        self,
        path: str,
        data: Mapping[str, str],
        custom_metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Write a version as a person or another tool would (no check-and-set)."""
        with self._lock:
            version = self._write(path, dict(data))
            if custom_metadata:
                self._entries[path].custom_metadata.update(custom_metadata)
            return version

    def delete_latest(self, path: str) -> None:
        """Soft-delete the latest version, like `bao kv delete` (metadata stays)."""
        with self._lock:
            entry = self._entries.get(path)
            if entry and entry.versions:
                entry.versions[-1] = None

    def versions(self, path: str) -> list[Credential]:
        """Every version of the current secret at `path`, oldest first (deleted ones skipped)."""
        with self._lock:
            entry = self._entries.get(path)
            where = self._where(path)
            return [credential_from(v, where) for v in (entry.versions if entry else []) if v]

    def version_data(self, path: str, version: int) -> dict[str, str] | None:
        """The raw fields of one version (1-based) of any path, or None."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or not 1 <= version <= entry.current_version:
                return None
            data = entry.versions[version - 1]
            return dict(data) if data is not None else None

    def pending_paths(self) -> list[str]:
        """The secret paths (not the pending paths) that have a readable candidate."""
        prefix = self._root + "/"
        with self._lock:
            return sorted(
                p.removeprefix(prefix)
                for p, e in self._entries.items()
                if p.startswith(prefix) and e.latest() is not None
            )

    def metadata(self, path: str) -> dict[str, str]:
        """A copy of the custom_metadata of `path` (empty when there is none)."""
        with self._lock:
            entry = self._entries.get(path)
            return dict(entry.custom_metadata) if entry else {}

    def fail_next(
        self,
        method: str,
        times: int = 1,
        error: Exception | None = None,
        *,
        after: bool = False,
    ) -> None:
        """Make the next `times` calls of `method` raise `error` (a StoreError by default).

        With `after=True` the call takes effect first and then raises, like a write whose
        response was lost: the pipeline cannot tell, and must converge anyway.
        """
        if method not in METHODS:
            raise ValueError(f"unknown store method {method!r} (known: {sorted(METHODS)})")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = _Fault(times, error or StoreError(f"injected failure in {method}"), after)
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    def calls(self, method: str) -> int:
        """How many times `method` was called (failed calls included)."""
        with self._lock:
            return self._calls[method]

    # --- internals --------------------------------------------------------------------------

    def _call(self, method: str, run: Callable[[], _T]) -> _T:
        with self._lock:
            self._calls[method] += 1
            fault = self._take_fault(method)
            if fault is not None and not fault.after:
                raise fault.error
            result = run()
            if fault is not None:
                raise fault.error
            return result

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times == 0:
            queue.pop(0)
        return fault

    def _write(self, path: str, data: dict[str, str]) -> int:
        entry = self._entries.setdefault(path, _Entry())
        entry.versions.append(dict(data))
        entry.created.append(self._clock())
        return entry.current_version

    def _pending(self, path: str) -> PendingCandidate | None:
        pending = pending_path_of(path, self._root)
        entry = self._entries.get(pending)
        data = entry.latest() if entry else None
        if entry is None or data is None:
            return None
        return PendingCandidate(
            credential=credential_from(data, self._where(pending)),
            run_id=data.get("run_id", ""),
            staged_at=parse_time(data.get("staged_at")) or entry.created[-1],
        )

    def _where(self, path: str) -> str:
        return f"{self._mount}/{path}"
