"""An in-memory SecretStore with KV v2 semantics, for unit tests of the pipeline.

The data plane is VaultStore's own (rotate/stores/kv.py) over a KV kept in a dict, so the
two cannot drift apart; the contract suite in tests/test_stores.py holds both to one
behaviour. Faults are injected per SecretStore method with `fail_next`
(rotate/stores/faults.py).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rotate.errors import CasConflict, StoreError
from rotate.models import Credential, Secret
from rotate.settings import VaultSettings
from rotate.stores.faults import METHODS, FaultInjection, faulty
from rotate.stores.kv import KVSecrets
from rotate.stores.layout import Metadata, Version, check_path, credential_from, utc_iso

__all__ = ["METHODS", "MemoryKV", "MemoryStore"]


@dataclass
class _Entry:
    """One KV v2 path: its versions (None once deleted) and its metadata."""

    versions: list[dict[str, Any] | None] = field(default_factory=list)
    created: list[datetime] = field(default_factory=list)
    custom_metadata: dict[str, str] = field(default_factory=dict)

    @property
    def current_version(self) -> int:
        return len(self.versions)

    def latest(self) -> dict[str, Any] | None:
        return self.versions[-1] if self.versions else None


class MemoryKV:
    """The KV protocol of rotate/stores/kv.py in a dict, guarded by one lock."""

    def __init__(self, mount: str, clock: Callable[[], datetime]) -> None:
        self._mount = mount
        self._clock = clock
        self.entries: dict[str, _Entry] = {}
        self.lock = threading.RLock()
        self.requests = 0

    def where(self, path: str) -> str:
        return f"{self._mount}/{path}"

    async def metadata(self, path: str) -> Metadata | None:
        with self.lock:
            self.requests += 1
            entry = self.entries.get(path)
            if entry is None:
                return None
            created = utc_iso(entry.created[-1]) if entry.created else None
            return Metadata(entry.current_version, created, dict(entry.custom_metadata))

    async def read(self, path: str) -> Version | None:
        with self.lock:
            self.requests += 1
            entry = self.entries.get(path)
            data = entry.latest() if entry else None
            if entry is None or data is None:
                return None
            return Version(dict(data), entry.current_version, utc_iso(entry.created[-1]))

    async def write(
        self, path: str, data: Mapping[str, Any], cas: int, secrets: tuple[str, ...] = ()
    ) -> int:
        with self.lock:
            self.requests += 1
            if self.version(path) != cas:
                raise CasConflict(f"{self.where(path)} changed")
            return self.put(path, data)

    async def patch_metadata(self, path: str, custom: Mapping[str, str | None]) -> None:
        with self.lock:
            self.requests += 1
            meta = self.entries.setdefault(path, _Entry()).custom_metadata
            for key, value in custom.items():
                if value is None:
                    meta.pop(key, None)
                else:
                    meta[key] = value

    async def delete(self, path: str) -> None:
        with self.lock:
            self.requests += 1
            self.entries.pop(path, None)

    async def list(self, folder: str) -> list[str]:
        with self.lock:
            self.requests += 1
            head = folder.strip("/") + "/"
            keys = set()
            for path in self.entries:  # metadata alone is listed too, as Vault does
                if path.startswith(head):
                    rest = path[len(head) :]
                    keys.add(rest.split("/", 1)[0] + "/" if "/" in rest else rest)
            return sorted(keys)

    def version(self, path: str) -> int:
        """The current version of `path` (0: none), no request counted."""
        entry = self.entries.get(path)
        return entry.current_version if entry else 0

    def latest(self, path: str) -> dict[str, Any] | None:
        """The latest version's data (None: none, or deleted), no request counted."""
        entry = self.entries.get(path)
        return entry.latest() if entry else None

    def put(self, path: str, data: Mapping[str, Any]) -> int:
        """A new version, no check-and-set (the caller holds the lock, or is a test)."""
        with self.lock:
            entry = self.entries.setdefault(path, _Entry())
            entry.versions.append(dict(data))
            entry.created.append(self._clock())
            return entry.current_version


class MemoryStore(FaultInjection, KVSecrets):
    """SecretStore in a dict; the same paths, journal and errors as VaultStore, and faults
    injected with `fail_next` (rotate/stores/faults.py)."""

    def __init__(
        self,
        settings: VaultSettings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        settings = settings or VaultSettings()
        self._memory = MemoryKV(settings.mount, clock or (lambda: datetime.now(UTC)))
        FaultInjection.__init__(self, self._memory.lock)
        KVSecrets.__init__(
            self, self._memory, settings.pending_root, settings.lease_root, settings.stale_root
        )
        self.password_policies: dict[str, int] = {}  # name -> length, for generate_password
        # other secrets engines' answers, by path (`ldap/static-cred/<role>` -> its data)
        self.engines: dict[str, dict[str, object]] = {}
        self.closed = False

    @property
    def requests(self) -> int:
        return self._memory.requests

    # --- data plane (rotate/stores/kv.py), with faults ----------------------------------------

    pending = faulty(KVSecrets.pending)
    read_state = faulty(KVSecrets.read_state)
    read_current = faulty(KVSecrets.read_current)
    stage = faulty(KVSecrets.stage)
    promote = faulty(KVSecrets.promote)
    discard = faulty(KVSecrets.discard)
    settle = faulty(KVSecrets.settle)
    record_failure = faulty(KVSecrets.record_failure)
    stale = faulty(KVSecrets.stale)
    mark_stale = faulty(KVSecrets.mark_stale)
    clear_stale = faulty(KVSecrets.clear_stale)
    list_paths = faulty(KVSecrets.list_paths)

    @faulty
    async def read_engine(self, path: str) -> Mapping[str, object] | None:
        """A copy of what `engines` holds at `path`."""
        found = self.engines.get(path)
        return dict(found) if found is not None else None

    async def generate_password(self, policy: str) -> Secret:
        """A password of the length registered for `policy` in `password_policies`."""
        if policy not in self.password_policies:
            raise StoreError(f"Vault has no password policy {policy!r}")
        return Secret(secrets.token_urlsafe(64)[: self.password_policies[policy]])

    async def aclose(self) -> None:
        """Nothing to release."""

    # --- control plane ----------------------------------------------------------------------

    def preflight(self, paths: Sequence[str], *, lease: str | None = None) -> None:
        """Everything is allowed in memory, unless a fault was injected."""
        self._with_faults("preflight", lambda: None)

    def check(self) -> str:
        """Always usable, unless a fault was injected; we are "memory"."""
        return self._with_faults("check", lambda: "memory")

    def read_field(self, path: str, key: str) -> str:
        """One string field of the current version; StoreError if it is missing."""

        def run() -> str:
            check_path(path, self._root)
            data = self._memory.latest(path)
            where = self._memory.where(path)
            if data is None:
                raise StoreError(f"no secret at {where}")
            if key not in data:
                raise StoreError(f"secret {where} has no field {key!r}")
            return str(data[key])

        return self._with_faults("read_field", run)

    def read_record(self, path: str) -> tuple[dict[str, str], int] | None:
        """A record's data and version, or None when there is none."""

        def run() -> tuple[dict[str, str], int] | None:
            data = self._memory.latest(path)
            if data is None:
                return None
            return {str(k): str(v) for k, v in data.items()}, self._memory.version(path)

        return self._with_faults("read_record", run)

    def write_record(self, path: str, data: Mapping[str, str], cas: int) -> int:
        """Write with check-and-set `cas` (0: create only); CasConflict when it moved."""

        def run() -> int:
            if self._memory.version(path) != cas:
                raise CasConflict(f"{self._memory.where(path)} changed (expected version {cas})")
            return self._memory.put(path, dict(data))

        return self._with_faults("write_record", run)

    def delete_record(self, path: str) -> None:
        """Delete a record with all its versions; a no-op when there is none."""
        self._with_faults("delete_record", lambda: self._memory.entries.pop(path, None))

    def close(self) -> None:
        """Nothing to release; remembered so a test can check it was called."""
        self.closed = True

    # --- test helpers: looking behind the store's back ----------------------------------------

    def put(
        self,
        path: str,
        data: Mapping[str, str],
        custom_metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Write a version as a person or another tool would (no check-and-set)."""
        with self._memory.lock:
            version = self._memory.put(path, dict(data))
            if custom_metadata:
                self._memory.entries[path].custom_metadata.update(custom_metadata)
            return version

    def delete_latest(self, path: str) -> None:
        """Soft-delete the latest version, like `bao kv delete` (metadata stays)."""
        with self._memory.lock:
            entry = self._memory.entries.get(path)
            if entry and entry.versions:
                entry.versions[-1] = None

    def versions(self, path: str) -> list[Credential]:
        """Every version of the current secret at `path`, oldest first (deleted ones skipped)."""
        with self._memory.lock:
            entry = self._memory.entries.get(path)
            where = self._memory.where(path)
            return [credential_from(v, where) for v in (entry.versions if entry else []) if v]

    def version_data(self, path: str, version: int) -> dict[str, Any] | None:
        """The raw fields of one version (1-based) of any path, or None."""
        with self._memory.lock:
            entry = self._memory.entries.get(path)
            if entry is None or not 1 <= version <= entry.current_version:
                return None
            data = entry.versions[version - 1]
            return dict(data) if data is not None else None

    def candidates(self) -> dict[str, Credential]:
        """Every candidate listed in a journal record, by secret path (read directly)."""
        found: dict[str, Credential] = {}
        with self._memory.lock:
            for name in self.journal_records():
                data = self._memory.latest(name)
                for path, fields in ((data or {}).get("candidates") or {}).items():
                    found[path] = credential_from(fields, self._memory.where(name))
        return found

    def pending_paths(self) -> list[str]:
        """The secret paths that have a candidate in a journal record."""
        return sorted(self.candidates())

    def journal_records(self) -> list[str]:
        """The journal records there are (their paths)."""
        head = self._root + "/"
        with self._memory.lock:
            return sorted(p for p in self._memory.entries if p.startswith(head))

    def metadata(self, path: str) -> dict[str, str]:
        """A copy of the custom_metadata of `path` (empty when there is none)."""
        with self._memory.lock:
            entry = self._memory.entries.get(path)
            return dict(entry.custom_metadata) if entry else {}
