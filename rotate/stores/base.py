"""The store protocols: what a run needs from Vault, as three small interfaces.

The layout behind it (rotate/stores/kv.py) keeps the no-lost-credential invariants of
DESIGN.md: the current secret of a row is the latest KV v2 version at its path (the previous
ones stay readable); candidates are staged, a batch at a time, in journal records under the
pending root before any target sees them, and leave them once promoted or discarded.

Two planes: the control plane (`StoreControl`, and the `LeaseRecords` a run lease is kept in)
is blocking, called before and after the run's event loop or in a thread; the data plane
(`DataPlane`) is made of coroutines on the run's event loop; `SecretStore` is all three.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from rotate.models import Credential, PendingCandidate, Secret, SecretState, StaleUsage
from rotate.stores.kv import VERSION_TIME, RotationTime


class StoreControl(Protocol):
    """The control plane: blocking calls made before and after the run's event loop."""

    def check(self) -> str:
        """Fail with StoreUnavailable unless the store is usable; return who we are."""
        ...

    def preflight(self, paths: Sequence[str], *, lease: str | None = None) -> None:
        """Refuse (StoreUnavailable) before any change when the run may not write there."""
        ...

    def read_field(self, path: str, key: str) -> str:
        """One field of a secret (a gateway or bind password); StoreError if missing."""
        ...

    def close(self) -> None:
        """Release what the control plane holds (and revoke a token the run created)."""
        ...


class LeaseRecords(Protocol):
    """Bookkeeping records (a run lease: never a secret), written with check-and-set."""

    def read_record(self, path: str) -> tuple[dict[str, str], int] | None:
        """A record and its version, or None."""
        ...

    def write_record(self, path: str, data: Mapping[str, str], cas: int) -> int:
        """Write with check-and-set `cas` (0: create only); CasConflict if it moved."""
        ...

    def delete_record(self, path: str) -> None:
        """Delete a record; a no-op when there is none."""
        ...


class DataPlane(Protocol):
    """The data plane: coroutines on the run's event loop."""

    @property
    def requests(self) -> int:
        """Round trips to the store so far."""
        ...

    async def pending(self) -> dict[str, PendingCandidate]:
        """Every staged candidate, by secret path (one scan of the journal records)."""
        ...

    async def read_state(self, path: str, candidate: PendingCandidate | None = None) -> SecretState:
        """Current version, rotation time and last failure of one secret, with its candidate
        from `pending` unless that one turns out to be the current version already."""
        ...

    async def read_current(self, path: str) -> Credential | None:
        """The current credential, or None when there is none."""
        ...

    async def stage(self, run_id: str, candidates: Mapping[str, PendingCandidate]) -> str:
        """Store new candidates durably, in one journal record, before anything sees them;
        PendingConflict if a path already has one. Returns the record's name."""
        ...

    async def promote(
        self,
        path: str,
        credential: Credential,
        expected_version: int | None,
        rotated_at: RotationTime = VERSION_TIME,
    ) -> int:
        """Write the accepted credential as the new current version; return that version
        (its creation is the rotation time unless `rotated_at` says: None unknown, or a time)."""
        ...

    async def discard(self, *paths: str) -> None:
        """Drop these candidates now (nothing holds them)."""
        ...

    async def settle(self, name: str | None = None) -> None:
        """Clear promoted and discarded candidates from journal record `name` (None: all)."""
        ...

    async def stale(self) -> dict[str, dict[str, StaleUsage]]:
        """Every usage recorded stale, by its account's secret path."""
        ...

    async def mark_stale(self, path: str, usages: Mapping[str, StaleUsage]) -> None:
        """Record usages of the account at `path` that do not hold its current password."""
        ...

    async def clear_stale(self, path: str, labels: Sequence[str]) -> None:
        """These usages (by label) of the account at `path` hold its current password now."""
        ...

    async def read_engine(self, path: str) -> Mapping[str, object] | None:
        """The `data` of a read at another secrets engine's `path` (`ldap/static-cred/R`),
        None when it has nothing there."""
        ...

    async def generate_password(self, policy: str) -> Secret:
        """A password from the Vault password policy `policy`."""
        ...

    async def record_failure(self, path: str, run_id: str, at: datetime) -> None:
        """Note in the secret's metadata that an attempt failed or is in doubt."""
        ...

    async def list_paths(self, root: str) -> list[str]:
        """Every secret path under `root`, leaving out rotate's own areas."""
        ...

    async def aclose(self) -> None:
        """Close the data plane's connections."""
        ...


class SecretStore(DataPlane, StoreControl, LeaseRecords, Protocol):
    """A whole store (VaultStore, MemoryStore): what a run opens."""
