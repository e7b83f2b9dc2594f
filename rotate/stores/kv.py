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

Who owns what: `KVSecrets` below reads and promotes current versions and answers the
DataPlane protocol (rotate/stores/base.py); it delegates the journal records to `Journals`
(rotate/stores/journal.py) and the stale-usage records to `StaleRecords`
(rotate/stores/stale.py). The KV interface they share and the pure rules of the layout
(metadata keys, credential fields, rotation times) are in rotate/stores/layout.py.

Why journals: each Vault round trip costs the client about as much CPU as a vendor call
(bench/README.md). Staging one record per batch and deriving the rotation time from the
version makes a rotation two Vault round trips per credential (the metadata read that plans
it and the promoting write) instead of five.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from rotate.errors import CasConflict, StoreError
from rotate.models import Credential, PendingCandidate, SecretState, StaleUsage
from rotate.stores.journal import Journals
from rotate.stores.layout import (
    KV,
    META_ADOPTED_AT,
    META_ADOPTED_VERSION,
    META_LAST_FAILURE_AT,
    META_LAST_FAILURE_RUN,
    META_ROTATED_AT,
    META_ROTATED_VERSION,
    VERSION_TIME,
    Metadata,
    RotationTime,
    Version,
    VersionTime,
    cas_mismatch_message,
    check_path,
    credential_data,
    credential_from,
    failure_metadata,
    fan_out,
    last_rotation,
    parse_time,
    rotation_override,
    utc_iso,
)
from rotate.stores.stale import StaleRecords

# The layout's names are imported from here too (this module was once all of the data plane).
__all__ = [
    "KV",
    "META_ADOPTED_AT",
    "META_ADOPTED_VERSION",
    "META_LAST_FAILURE_AT",
    "META_LAST_FAILURE_RUN",
    "META_ROTATED_AT",
    "META_ROTATED_VERSION",
    "VERSION_TIME",
    "KVSecrets",
    "Metadata",
    "RotationTime",
    "Version",
    "cas_mismatch_message",
    "check_path",
    "credential_data",
    "credential_from",
    "failure_metadata",
    "fan_out",
    "last_rotation",
    "parse_time",
    "rotation_override",
    "utc_iso",
]


class KVSecrets:
    """Read state, stage, promote, discard and settle over a KV (see the module docstring)."""

    def __init__(self, kv: KV, pending_root: str, lease_root: str, stale_root: str) -> None:
        self._root = pending_root
        self._lease_root = lease_root
        self._stale_root = stale_root
        self._journals = Journals(kv, pending_root)
        self._stale = StaleRecords(kv, stale_root)
        self.kv = kv

    @property
    def kv(self) -> KV:
        """The KV every part of the data plane goes through."""
        return self._kv

    @kv.setter
    def kv(self, kv: KV) -> None:
        # One KV for all the parts: a test that wraps it (to hold a write) wraps it everywhere.
        self._kv = self._journals.kv = self._stale.kv = kv

    # --- current versions -------------------------------------------------------------------

    async def read_state(self, path: str, candidate: PendingCandidate | None = None) -> SecretState:
        """Current version, rotation time and last failure of one secret, with `candidate` (from
        `pending`) unless that candidate is already the current version (then it is settled)."""
        check_path(path, self._root)
        self._journals.check(path)
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
                self._journals.mark_settled(path)
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
        if not isinstance(rotated_at, VersionTime):
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
        self._journals.mark_settled(path)
        return version

    async def record_failure(self, path: str, run_id: str, at: datetime) -> None:
        """Note a failed or in-doubt attempt in custom_metadata (for the compliance report)."""
        check_path(path, self._root)
        await self.kv.patch_metadata(path, failure_metadata(run_id, at))

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

    # --- journal records (rotate/stores/journal.py) ------------------------------------------

    async def pending(self) -> dict[str, PendingCandidate]:
        """Every staged candidate by secret path: one LIST and one read per journal record."""
        return await self._journals.pending()

    async def stage(self, run_id: str, candidates: Mapping[str, PendingCandidate]) -> str:
        """Write the candidates in one new journal record; return its name. PendingConflict if
        a path already has a candidate (it must be resumed, never replaced)."""
        return await self._journals.stage(run_id, candidates)

    async def discard(self, *paths: str) -> None:
        """Drop the candidates of `paths` from their journal records now (the targets do not
        hold them); a path without a candidate is a no-op."""
        await self._journals.discard(paths)

    async def settle(self, name: str | None = None) -> None:
        """Rewrite journal record `name` (or every one this process touched) without its
        promoted and discarded candidates, or delete it when none is left pending."""
        await self._journals.settle(name)

    # --- stale usages (rotate/stores/stale.py) -----------------------------------------------

    async def stale(self) -> dict[str, dict[str, StaleUsage]]:
        """Every usage recorded stale, by its account's secret path: one LIST, and one read
        per account that has some."""
        return await self._stale.stale()

    async def mark_stale(self, path: str, usages: Mapping[str, StaleUsage]) -> None:
        """Record these usages of the account at `path` as stale (merged with those recorded:
        a usage stale since an earlier run keeps its first `since`)."""
        check_path(path, self._root)
        await self._stale.mark(path, usages)

    async def clear_stale(self, path: str, labels: Sequence[str]) -> None:
        """These usages of the account at `path` now hold its current password."""
        check_path(path, self._root)
        await self._stale.clear(path, labels)
