"""One fake vendor target for the unit tests of the runbook, the protocol and reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rotate.errors import EndpointUnavailable, Missing, OutcomeUnknown, Rejected, RemoteError
from rotate.models import Credential, Row, Secret
from rotate.stores.memory import MemoryStore


class FakeTarget:
    """Holds passwords in a dict; write-only or readable; per-target behaviour set by the test.

    Push behaviours (`behaviour[target]`): ok, reject, missing (no such object: a 404),
    unreachable, unknown (applied, then no answer), mismatch (reads back something else),
    followup-fails. Read behaviours:
    read_error, read_error_after_push, no_password. With a `store`, each push records whether
    the candidate was in Vault's journal first (invariant 1).
    """

    def __init__(
        self,
        name: str = "ep1",
        store: MemoryStore | None = None,
        *,
        probe_ok: bool = True,
        verifiable: bool = True,
        write_only: bool = False,
    ) -> None:
        self.name = name
        self.store = store
        self.probe_ok = probe_ok
        self.readable = verifiable and not write_only
        self.held: dict[str, str] = {}
        self.behaviour: dict[str, str] = {}
        self.pushed: list[tuple[str, str]] = []  # (target, username) per push
        self.pending_at_push: list[bool] = []
        self.reads = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.on_read: Callable[[], None] = lambda: None

    @property
    def pushes(self) -> int:
        return len(self.pushed)

    async def probe(self) -> str:
        if not self.probe_ok:
            raise EndpointUnavailable("probe failed: HTTP 503")
        return "ok"

    def verifiable(self, row: Row) -> bool:
        return self.readable

    async def _busy(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.005)
        finally:
            self.in_flight -= 1

    async def push(self, row: Row, credential: Credential) -> None:
        self.pushed.append((row.target, credential.username))
        if self.store is not None:
            self.pending_at_push.append(row.vault_path in self.store.pending_paths())
        await self._busy()
        how = self.behaviour.get(row.target, "ok")
        if how == "reject":
            raise Rejected("HTTP 400: password too long")
        if how == "missing":
            raise Missing("PUT /computer/<id>/RDP: HTTP 404: computer not found")
        if how == "unreachable":
            raise RemoteError("failed after 3 attempt(s): ConnectError")
        self.held[row.target] = credential.password.reveal()
        if how == "unknown":
            raise OutcomeUnknown("outcome unknown after 3 attempt(s): ReadTimeout")
        if how == "mismatch":
            self.held[row.target] = "something-else"

    async def read_back(self, row: Row) -> Secret | None:
        self.reads += 1
        self.on_read()
        await self._busy()
        how = self.behaviour.get(row.target, "ok")
        if how == "read_error" or (how == "read_error_after_push" and self.pushed):
            raise RemoteError("HTTP 502 on GET /computer/<id>/RDP/credentials")
        if how == "no_password":
            return None
        value = self.held.get(row.target)
        return Secret(value) if value is not None else None

    async def follow_up(self, row: Row, credential: Credential) -> list[str]:
        if self.behaviour.get(row.target) == "followup-fails":
            raise RemoteError("GET /SYMLINK?action=update: HTTP 503")
        return [f"access link of {row.target} updated"]

    async def aclose(self) -> None:
        pass
