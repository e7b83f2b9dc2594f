"""The Acme appliance API as a Target: one console login per appliance, readable back."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from rotate.errors import EndpointUnavailable, RemoteError
from rotate.models import Credential, Row, Secret
from rotate.vendors.http import HttpTarget
from tests.thirdvendor import AcmeSettings


def _path(row: Row) -> str:
    return f"/api/appliances/{quote(row.target, safe='')}/login"


class AcmeTarget(HttpTarget[AcmeSettings]):
    """GET /api/health; PUT and GET /api/appliances/<id>/login; GET /api/appliances."""

    async def probe(self) -> str:
        try:
            body = (await self.http.request("GET", "/api/health", what="GET /api/health")).json()
        except RemoteError as exc:
            raise EndpointUnavailable(f"probe failed: {exc}") from None
        return f"Acme API answers ({body.get('appliances', '?')} appliance(s))"

    def verifiable(self, row: Row) -> bool:
        return True

    async def push(self, row: Row, credential: Credential) -> None:
        body = {"user": credential.username, "password": credential.password.reveal()}
        await self.http.request(
            "PUT",
            _path(row),
            json=body,
            write=True,
            what="PUT /api/appliances/<id>/login",
            secrets=(credential.password,),
        )

    async def read_back(self, row: Row) -> Secret | None:
        response = await self.http.request("GET", _path(row), what="GET /api/appliances/<id>/login")
        value = response.json().get("password")
        return Secret(value) if isinstance(value, str) else None

    async def follow_up(self, row: Row, credential: Credential) -> Sequence[str]:
        return ()

    async def logins(self) -> list[tuple[str, str]]:
        """(appliance id, user) of every appliance (never a password)."""
        response = await self.http.request("GET", "/api/appliances", what="GET /api/appliances")
        return [(str(a["id"]), str(a.get("user") or "")) for a in response.json()]
