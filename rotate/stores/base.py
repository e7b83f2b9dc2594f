"""The SecretStore protocol: the small interface the pipeline needs from Vault.

The layout it implements keeps the no-lost-credential invariants of DESIGN.md:
- the *current* secret of a row lives at `<mount>/<path>`; each promotion is a new KV v2
  version (so the previous password stays readable), and `custom_metadata` records
  `rotated_at` and `run_id` (never a secret);
- a *pending* candidate lives apart, at `<mount>/<pending_root>/<path>`, written before any
  target sees it and deleted (all versions) once promoted or definitely rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from rotate.models import Credential, Secret, SecretState


class SecretStore(Protocol):
    """What the pipeline asks of a secret store. Calls are blocking; run them in threads."""

    def check(self) -> str:
        """Fail with StoreUnavailable unless the store is usable; return who we are."""
        ...

    def read_state(self, path: str, pending: bool = True) -> SecretState:
        """Current version, last rotation and pending candidate (if any) of one secret;
        `pending=False` skips looking for a candidate (list_pending said there is none)."""
        ...

    def list_pending(self) -> set[str]:
        """The secret paths that have a staged candidate (a LIST, not a read per row)."""
        ...

    def read_current(self, path: str) -> Credential | None:
        """The current credential, or None when there is none."""
        ...

    def stage(self, path: str, credential: Credential, run_id: str) -> None:
        """Store a new pending candidate; PendingConflict if one is already there."""
        ...

    def promote(
        self,
        path: str,
        credential: Credential,
        expected_version: int | None,
        run_id: str,
        rotated_at: datetime | None,
    ) -> int:
        """Write the accepted credential as the new current version; return that version.

        `rotated_at` None records a password of unknown age (adopted): it counts as never
        rotated, so the next run rotates it."""
        ...

    def discard(self, path: str) -> None:
        """Delete the pending candidate (all its versions); a no-op when there is none."""
        ...

    def read_field(self, path: str, key: str) -> str:
        """One field of a secret (a gateway password, say); StoreError if missing."""
        ...

    def generate_password(self, policy: str) -> Secret:
        """A password from the Vault password policy `policy`."""
        ...

    def record_failure(self, path: str, run_id: str, at: datetime) -> None:
        """Note in the secret's metadata that an attempt failed or is in doubt."""
        ...

    def list_paths(self, root: str) -> list[str]:
        """Every secret path under `root`, leaving out rotate's pending and lease areas."""
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
        """Release connections."""
        ...
