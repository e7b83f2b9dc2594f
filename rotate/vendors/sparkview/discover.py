"""What `rotate discover` proposes for a Spark View gateway: one `server` row per listed
server, its username and domain from the server's stored logon (read one by one; the
password in that answer is dropped unread)."""

from __future__ import annotations

import asyncio

from rotate.errors import RotateError
from rotate.vendors.base import DiscoverySink
from rotate.vendors.sparkview.kinds import SERVER
from rotate.vendors.sparkview.target import SparkViewTarget


async def discover(target: SparkViewTarget, sink: DiscoverySink) -> None:
    """Propose every server the probe listed."""

    async def one(server_id: str) -> None:
        display, host = target.server_definition(server_id)
        where = " on ".join(p for p in (display if display != server_id else "", host) if p)
        notes = f"Spark View server {server_id}" + (f" ({where})" if where else "")
        try:
            username, domain = await target.server_logon(server_id)
        except RotateError as exc:
            sink.warn(f"server {server_id!r}: logon not read ({exc})", partial=True)
            username, domain = "", None
        sink.add(SERVER.name, server_id, "RDP", username, domain=domain, notes=notes)

    await asyncio.gather(*(one(i) for i in target.server_ids()))
