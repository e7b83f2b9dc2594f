"""The SecretStore protocol: the small interface the pipeline needs from Vault.

The layout behind it (rotate/stores/kv.py) keeps the no-lost-credential invariants of
DESIGN.md: the current secret of a row is the latest KV v2 version at its path (the previous
ones stay readable); candidates are staged, a batch at a time, in journal records under the
pending root before any target sees them, and leave them once promoted or discarded.

Two planes: the control plane is blocking (called before and after the run's event loop, or
in a thread); the data plane is made of coroutines on the run's event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from rotate.models import Credential, PendingCandidate, Secret, SecretState, StaleUsage
from rotate.stores.kv import VERSION_TIME, RotationTime


class SecretStore(Protocol):
    """What the pipeline asks of a secret store."""

    # --- control plane (blocking) -----------------------------------------------------------

    def check(self) -> str:
        """Fail with StoreUnavailable unless the store is usable; return who we are."""
        ...

    def read_field(self, path: str, key: str) -> str:
        """One field of a secret (a gateway password, say); StoreError if missing."""
        ...

    def read_record(self, path: str) -> tuple[dict[str, str], int] | None:
        """A bookkeeping record (a lease: never a secret) and its version, or None."""
        ...

    def write_record(self, path: str, data: Mapping[str, str], cas: int) -> int:
        """Write a record with check-and-set `cas` (0: create only); CasConflict if it moved."""
        ...

    def delete_record(self, path: str) -> None:
        """Delete a record; a no-op when there is none."""
        ...

    def close(self) -> None:
        """Release what the control plane holds (and revoke a token the run created)."""
        ...

    # --- data plane (coroutines) ------------------------------------------------------------

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
        """Store new candidates durably, in one journal record, before any target sees them;
        PendingConflict if a path already has one. Returns the record's name."""
        ...

    async def promote(
        self,
        path: str,
        credential: Credential,
        expected_version: int | None,
        rotated_at: RotationTime = VERSION_TIME,
    ) -> int:
        """Write the accepted credential as the new current version; return that version.

        By default the version's creation is the rotation time; None records a password of
        unknown age (adopted: the next run rotates it), a datetime an imported time."""
        ...

    async def discard(self, *paths: str) -> None:
        """Drop these candidates now (their targets do not hold them)."""
        ...

    async def settle(self, name: str | None = None) -> None:
        """Clear promoted and discarded candidates from journal record `name` (None: all)."""
        ...

    async def generate_password(self, policy: str) -> Secret:
        """A password from the Vault password policy `policy`."""
        ...

    async def record_failure(self, path: str, run_id: str, at: datetime) -> None:
        """Note in the secret's metadata that an attempt failed or is in doubt."""
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

    async def list_paths(self, root: str) -> list[str]:
        """Every secret path under `root`, leaving out rotate's pending and lease areas."""
        ...

    async def aclose(self) -> None:
        """Close the data plane's connections."""
        ...
