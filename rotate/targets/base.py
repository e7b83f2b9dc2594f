"""The Target protocol: what the pipeline asks of one vendor endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rotate.models import Credential, Row, Secret


class Target(Protocol):
    """One vendor endpoint. Every write is an idempotent overwrite with the given value."""

    name: str

    @property
    def requests(self) -> int:
        """Round trips made so far, retries included."""
        ...

    async def probe(self) -> str:
        """Check the endpoint answers and accepts our credentials; EndpointUnavailable if not."""
        ...

    def verifiable(self, row: Row) -> bool:
        """Whether the API can read this row's stored password back."""
        ...

    async def push(self, row: Row, credential: Credential) -> None:
        """Store the credential on the target; Rejected, OutcomeUnknown or RemoteError if not."""
        ...

    async def read_back(self, row: Row) -> Secret | None:
        """The password the target now holds, or None when its answer has none."""
        ...

    async def follow_up(self, row: Row, credential: Credential) -> Sequence[str]:
        """After a promoted rotation: update other places holding the password; say which."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
