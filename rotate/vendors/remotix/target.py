"""Remotix HTTP API: address-book connections (write-only) and cloud computers (readable)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from rotate.errors import EndpointUnavailable, Missing, RemoteError
from rotate.models import Credential, Row, Secret
from rotate.vendors.base import UsageCheck
from rotate.vendors.http import Endpoint, HttpTarget
from rotate.vendors.remotix.kinds import COMPUTER, CONNECTION
from rotate.vendors.remotix.settings import RemotixSettings


def _seg(value: str) -> str:
    """One path segment, percent-encoded (ids come from a CSV file)."""
    return quote(value, safe="")


class RemotixTarget(HttpTarget[RemotixSettings]):
    """PUT /connection/<uid>/credentials; PUT and GET /computer/<id>/<TYPE>[_<port>]."""

    def __init__(self, settings: RemotixSettings, http: Endpoint) -> None:
        super().__init__(settings, http)
        # The address book (uid -> type, and the groups that could not be read), read once
        # by the first `inspect` of a connection and shared by the others.
        self._address_book: asyncio.Task[tuple[dict[str, str], list[str]]] | None = None

    def _missing(self, response: httpx.Response) -> bool:
        return response.status_code == self.settings.missing_status

    def _body(self, row: Row, credential: Credential) -> dict[str, str]:
        key = self.settings.key(row.protocol)
        body = {
            f"{key}.username": credential.username,
            f"{key}.password": credential.password.reveal(),
        }
        if row.protocol == "RDP" and credential.domain:
            body[f"{key}.domain"] = credential.domain
        return body

    def _computer_path(self, row: Row) -> str:
        return f"/computer/{_seg(row.target)}/{row.protocol_suffix}"

    async def probe(self) -> str:
        try:
            response = await self.http.request(
                "GET", self.settings.probe_path, what=f"GET {self.settings.probe_path}"
            )
            groups = response.json()
        except RemoteError as exc:
            raise EndpointUnavailable(f"probe failed: {exc}") from None
        except ValueError:
            raise EndpointUnavailable("probe failed: the answer is not JSON") from None
        if not isinstance(groups, list):
            raise EndpointUnavailable("probe failed: unexpected answer shape")
        return f"Remotix API answers ({len(groups)} group(s))"

    def verifiable(self, row: Row) -> bool:
        return row.kind == COMPUTER.name and self.settings.verify_computers

    async def push(self, row: Row, credential: Credential) -> None:
        body = self._body(row, credential)
        if row.kind == CONNECTION.name:
            await self.http.request(
                "PUT",
                f"/connection/{_seg(row.target)}/credentials",
                json=body,
                write=True,
                what="PUT /connection/<uid>/credentials",
                missing=self._missing,
                secrets=(credential.password,),
            )
        else:
            await self.http.request(
                "PUT",
                self._computer_path(row),
                json=body,
                write=True,
                what=f"PUT /computer/<id>/{row.protocol_suffix}",
                missing=self._missing,
                secrets=(credential.password,),
            )

    async def read_back(self, row: Row) -> Secret | None:
        response = await self.http.request(
            "GET",
            f"{self._computer_path(row)}/credentials",
            what=f"GET /computer/<id>/{row.protocol_suffix}/credentials",
        )
        try:
            body = response.json()
        except ValueError:
            return None
        value = (
            body.get(f"{self.settings.key(row.protocol)}.password")
            if isinstance(body, dict)
            else None
        )
        return Secret(value) if isinstance(value, str) else None

    async def follow_up(self, row: Row, credential: Credential) -> Sequence[str]:
        return ()

    # -- `rotate plan`: does the usage's target exist, and whose logon does it store? -------

    async def inspect(self, row: Row) -> UsageCheck:
        """A computer connection: its credentials read (GET .../credentials; the password is
        dropped). An address-book connection: looked up in the groups' listings (the API
        reads no connection by uid and shows no username)."""
        if row.kind == CONNECTION.name:
            return await self._find_in_address_book(row)
        what = f"GET /computer/<id>/{row.protocol_suffix}/credentials"
        try:
            response = await self.http.request(
                "GET", f"{self._computer_path(row)}/credentials", what=what, missing=self._missing
            )
        except Missing as exc:
            return UsageCheck(False, detail=str(exc))
        try:
            body = response.json()
        except ValueError:
            raise RemoteError(f"{what}: the answer is not JSON") from None
        username = (
            body.get(f"{self.settings.key(row.protocol)}.username")
            if isinstance(body, dict)
            else None
        )
        return UsageCheck(True, username if isinstance(username, str) and username else None)

    async def _find_in_address_book(self, row: Row) -> UsageCheck:
        if self._address_book is None:
            self._address_book = asyncio.ensure_future(self._read_address_book())
        items, unread = await self._address_book
        if row.target in items:
            return UsageCheck(True, detail=f"address-book entry of type {items[row.target]}")
        if unread:
            raise RemoteError(
                f"connection {row.target!r} is in none of the groups read; not read: "
                + "; ".join(unread[:3])
            )
        return UsageCheck(False, detail="no address-book group lists this connection uid")

    async def _read_address_book(self) -> tuple[dict[str, str], list[str]]:
        """Every address-book entry (uid -> type), through GET /groups and GET /group/<uid>;
        the groups whose listing failed, with why."""
        groups = await self.groups()
        unread: list[str] = []

        async def one(uid: str, name: str) -> list[tuple[str, str, str]]:
            try:
                return await self.group_items(uid)
            except RemoteError as exc:
                unread.append(f"group {name or uid!r} ({exc})")
                return []

        listed = await asyncio.gather(*(one(uid, name) for uid, name in groups))
        return {uid: kind for items in listed for uid, _, kind in items}, unread

    # -- reads for `rotate discover` (never a password) -----------------------------------

    async def _get_json(self, path: str, what: str) -> Any:
        response = await self.http.request("GET", path, what=what)
        try:
            return response.json()
        except ValueError:
            raise RemoteError(f"{what}: the answer is not JSON") from None

    async def groups(self) -> list[tuple[str, str]]:
        """(group_uid, name) of every address-book group."""
        body = await self._get_json("/groups", "GET /groups")
        if not isinstance(body, list):
            raise RemoteError("GET /groups: unexpected answer shape")
        return [
            (str(g["group_uid"]), str(g.get("name") or ""))
            for g in body
            if isinstance(g, dict) and g.get("group_uid")
        ]

    async def group_items(self, group_uid: str) -> list[tuple[str, str, str]]:
        """(uid, name, type) of every item of a group."""
        what = "GET /group/<uid>"
        body = await self._get_json(f"/group/{_seg(group_uid)}", what)
        if not isinstance(body, list):
            raise RemoteError(f"{what}: unexpected answer shape")
        return [
            (str(i["uid"]), str(i.get("name") or ""), str(i.get("type") or ""))
            for i in body
            if isinstance(i, dict) and i.get("uid")
        ]

    async def computer_connections(self, computer_id: str) -> list[str]:
        """The connection types of a computer as path segments (`RDP`, `RDP_3390`), as given:
        an item is the segment itself, or an object with `id` (the segment), or `type` and
        `port`."""
        what = "GET /computer/<id>/connections"
        body = await self._get_json(f"/computer/{_seg(computer_id)}/connections", what)
        if not isinstance(body, list):
            raise RemoteError(f"{what}: unexpected answer shape")
        out = []
        for item in body:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get("id"), str):
                out.append(item["id"])
            elif isinstance(item, dict) and isinstance(item.get("type"), str):
                port = item.get("port")
                out.append(f"{item['type']}_{port}" if port not in (None, "") else item["type"])
        return out

    async def computer_logon(
        self, computer_id: str, suffix: str, protocol: str
    ) -> tuple[str, str | None]:
        """The username and domain a computer connection stores (its password is dropped)."""
        what = f"GET /computer/<id>/{suffix}/credentials"
        body = await self._get_json(
            f"/computer/{_seg(computer_id)}/{_seg(suffix)}/credentials", what
        )
        if not isinstance(body, dict):
            return "", None
        key = self.settings.key(protocol)
        username = body.get(f"{key}.username")
        domain = body.get(f"{key}.domain")
        return (
            username if isinstance(username, str) else "",
            domain if isinstance(domain, str) and domain else None,
        )
