"""An in-memory SecretStore with KV v2 semantics, for unit tests of the pipeline.

The data plane is VaultStore's own (rotate/stores/kv.py) over a KV kept in a dict, so the
two cannot drift apart; the contract suite in tests/test_stores.py holds both to one
behaviour. Faults are injected per SecretStore method with `fail_next`.
"""

from __future__ import annotations

import functools
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from rotate.errors import CasConflict, StoreError
from rotate.models import Credential, PendingCandidate, Secret, SecretState, StaleUsage
from rotate.settings import VaultSettings
from rotate.stores.kv import (
    VERSION_TIME,
    KVSecrets,
    Metadata,
    RotationTime,
    Version,
    check_path,
    credential_from,
    utc_iso,
)

_T = TypeVar("_T")
_P = ParamSpec("_P")


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
            entry = self.entries.get(path)
            if (entry.current_version if entry else 0) != cas:
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

    def put(self, path: str, data: Mapping[str, Any]) -> int:
        """A new version, no check-and-set (the caller holds the lock, or is a test)."""
        with self.lock:
            entry = self.entries.setdefault(path, _Entry())
            entry.versions.append(dict(data))
            entry.created.append(self._clock())
            return entry.current_version


@dataclass
class _Fault:
    times: int
    error: Exception
    after: bool


def _faulty(
    method: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """The data-plane method, with the faults `fail_next` queued for it."""

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        store = args[0]
        assert isinstance(store, MemoryStore)
        fault = store._fault(method.__name__)
        if fault is not None and not fault.after:
            raise fault.error
        result = await method(*args, **kwargs)
        if fault is not None:
            raise fault.error
        return result

    return wrapper


class MemoryStore(KVSecrets):
    """SecretStore in a dict; the same paths, journal and errors as VaultStore."""

    def __init__(
        self,
        settings: VaultSettings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        settings = settings or VaultSettings()
        self._memory = MemoryKV(settings.mount, clock or (lambda: datetime.now(UTC)))
        super().__init__(
            self._memory, settings.pending_root, settings.lease_root, settings.stale_root
        )
        self.password_policies: dict[str, int] = {}  # name -> length, for generate_password
        self._faults: dict[str, list[_Fault]] = {}
        self._calls: Counter[str] = Counter()
        self.closed = False

    @property
    def requests(self) -> int:
        return self._memory.requests

    # --- data plane, with faults ------------------------------------------------------------

    @_faulty
    async def pending(self) -> dict[str, PendingCandidate]:
        return await super().pending()

    @_faulty
    async def read_state(self, path: str, candidate: PendingCandidate | None = None) -> SecretState:
        return await super().read_state(path, candidate)

    @_faulty
    async def read_current(self, path: str) -> Credential | None:
        return await super().read_current(path)

    @_faulty
    async def stage(self, run_id: str, candidates: Mapping[str, PendingCandidate]) -> str:
        return await super().stage(run_id, candidates)

    @_faulty
    async def promote(
        self,
        path: str,
        credential: Credential,
        expected_version: int | None,
        rotated_at: RotationTime = VERSION_TIME,
    ) -> int:
        return await super().promote(path, credential, expected_version, rotated_at)

    @_faulty
    async def discard(self, *paths: str) -> None:
        await super().discard(*paths)

    @_faulty
    async def settle(self, name: str | None = None) -> None:
        await super().settle(name)

    @_faulty
    async def record_failure(self, path: str, run_id: str, at: datetime) -> None:
        await super().record_failure(path, run_id, at)

    @_faulty
    async def stale(self) -> dict[str, dict[str, StaleUsage]]:
        return await super().stale()

    @_faulty
    async def mark_stale(self, path: str, usages: Mapping[str, StaleUsage]) -> None:
        await super().mark_stale(path, usages)

    @_faulty
    async def clear_stale(self, path: str, labels: Sequence[str]) -> None:
        await super().clear_stale(path, labels)

    @_faulty
    async def list_paths(self, root: str) -> list[str]:
        return await super().list_paths(root)

    @_faulty
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
        self._sync("preflight", lambda: None)

    def check(self) -> str:
        """Always usable, unless a fault was injected; we are "memory"."""
        return self._sync("check", lambda: "memory")

    def read_field(self, path: str, key: str) -> str:
        """One string field of the current version; StoreError if it is missing."""

        def run() -> str:
            check_path(path, self._root)
            entry = self._memory.entries.get(path)
            data = entry.latest() if entry else None
            where = self._memory.where(path)
            if data is None:
                raise StoreError(f"no secret at {where}")
            if key not in data:
                raise StoreError(f"secret {where} has no field {key!r}")
            return str(data[key])

        return self._sync("read_field", run)

    def read_record(self, path: str) -> tuple[dict[str, str], int] | None:
        """A record's data and version, or None when there is none."""

        def run() -> tuple[dict[str, str], int] | None:
            entry = self._memory.entries.get(path)
            data = entry.latest() if entry else None
            if entry is None or data is None:
                return None
            return {str(k): str(v) for k, v in data.items()}, entry.current_version

        return self._sync("read_record", run)

    def write_record(self, path: str, data: Mapping[str, str], cas: int) -> int:
        """Write with check-and-set `cas` (0: create only); CasConflict when it moved."""

        def run() -> int:
            entry = self._memory.entries.get(path)
            if (entry.current_version if entry else 0) != cas:
                raise CasConflict(f"{self._memory.where(path)} changed (expected version {cas})")
            return self._memory.put(path, dict(data))

        return self._sync("write_record", run)

    def delete_record(self, path: str) -> None:
        """Delete a record with all its versions; a no-op when there is none."""
        self._sync("delete_record", lambda: self._memory.entries.pop(path, None))

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
        head = self._root + "/"
        found: dict[str, Credential] = {}
        with self._memory.lock:
            for name, entry in self._memory.entries.items():
                data = entry.latest() if name.startswith(head) else None
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
            return sorted(p for p, e in self._memory.entries.items() if p.startswith(head))

    def metadata(self, path: str) -> dict[str, str]:
        """A copy of the custom_metadata of `path` (empty when there is none)."""
        with self._memory.lock:
            entry = self._memory.entries.get(path)
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
        with self._memory.lock:
            self._faults.setdefault(method, []).append(fault)

    def calls(self, method: str) -> int:
        """How many times `method` was called (failed calls included)."""
        with self._memory.lock:
            return self._calls[method]

    # --- internals --------------------------------------------------------------------------

    def _fault(self, method: str) -> _Fault | None:
        """Count a call of `method` and take the fault queued for it, if any."""
        with self._memory.lock:
            self._calls[method] += 1
            queue = self._faults.get(method)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times == 0:
                queue.pop(0)
            return fault

    def _sync(self, method: str, run: Callable[[], _T]) -> _T:
        fault = self._fault(method)
        if fault is not None and not fault.after:
            raise fault.error
        with self._memory.lock:
            result = run()
        if fault is not None:
            raise fault.error
        return result


#: the SecretStore methods `fail_next` can make fail
METHODS = frozenset(
    {
        "check",
        "pending",
        "read_state",
        "read_current",
        "stage",
        "promote",
        "discard",
        "settle",
        "read_field",
        "read_record",
        "write_record",
        "delete_record",
        "record_failure",
        "list_paths",
        "generate_password",
    }
)
