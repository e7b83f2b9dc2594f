"""What `rotate discover` proposes for a Remotix endpoint: one `connection` row per item of
each address-book group (the API gives no username back), and one `computer` row per
connection of each computer id the endpoint's `computers` setting names (the API lists no
computers), its username and domain from the connection's stored credentials."""

from __future__ import annotations

import asyncio
import re

from rotate.errors import RotateError
from rotate.vendors.base import DiscoverySink
from rotate.vendors.remotix.kinds import COMPUTER, CONNECTION
from rotate.vendors.remotix.target import RemotixTarget

#: an address-book item's type -> the inventory's connection protocol
CONNECTION_TYPES = {
    "RDP": "RDP",
    "VNC": "APPLE",
    "APPLE": "APPLE",
    "SCREEN SHARING": "APPLE",
    "APPLE SCREEN SHARING": "APPLE",
    "NEAR": "NEAR",
    "REMOTIX": "NEAR",
}
_SUFFIX = re.compile(r"(NEAR|RDP|VNC)(?:_([0-9]{1,5}))?")


async def discover(target: RemotixTarget, sink: DiscoverySink) -> None:
    """Propose the address book's connections and the named computers' connections."""
    await asyncio.gather(_connections(target, sink), _computers(target, sink))


async def _connections(target: RemotixTarget, sink: DiscoverySink) -> None:
    try:
        groups = await target.groups()
    except RotateError as exc:
        sink.warn(f"address-book groups not read ({exc})", partial=True)
        return
    seen: set[str] = set()

    async def group(uid: str, name: str) -> None:
        try:
            items = await target.group_items(uid)
        except RotateError as exc:
            sink.warn(f"group {name or uid!r} not read ({exc})", partial=True)
            return
        for item_uid, item_name, item_type in items:
            protocol = CONNECTION_TYPES.get(" ".join(item_type.upper().split()))
            if protocol is None:
                sink.warn(
                    f"connection {item_uid!r} ({item_name}) skipped: type {item_type!r} "
                    f"is none of {', '.join(CONNECTION_TYPES)}"
                )
                continue
            if item_uid in seen:
                continue  # listed in two groups: one credential all the same
            seen.add(item_uid)
            label = f"{item_name} " if item_name and item_name != item_uid else ""
            notes = f"Remotix address book: {label}(group {name or uid})"
            sink.add(CONNECTION.name, item_uid, protocol, notes=notes)

    await asyncio.gather(*(group(uid, name) for uid, name in groups))


async def _computers(target: RemotixTarget, sink: DiscoverySink) -> None:
    async def computer(computer_id: str) -> None:
        try:
            segments = await target.computer_connections(computer_id)
        except RotateError as exc:
            sink.warn(f"computer {computer_id!r} not read ({exc})", partial=True)
            return
        await asyncio.gather(
            *(_connection(target, sink, computer_id, s) for s in dict.fromkeys(segments))
        )

    await asyncio.gather(*(computer(c) for c in dict.fromkeys(target.settings.computers)))


async def _connection(
    target: RemotixTarget, sink: DiscoverySink, computer_id: str, segment: str
) -> None:
    m = _SUFFIX.fullmatch(segment)
    if m is None:
        sink.warn(
            f"computer {computer_id!r}: connection {segment!r} skipped: not "
            "NEAR, RDP or VNC with an optional _<port>"
        )
        return
    protocol, port = m.group(1), int(m.group(2)) if m.group(2) else None
    try:
        username, domain = await target.computer_logon(computer_id, segment, protocol)
    except RotateError as exc:
        sink.warn(f"computer {computer_id!r} {segment}: credentials not read ({exc})", partial=True)
        username, domain = "", None
    policy = ""
    limit = COMPUTER.max_password(protocol)
    if limit is not None:
        within = sink.policy_within(limit)
        if within is None:
            sink.warn(
                f"computer {computer_id!r} {segment} skipped: no policy in the config makes a "
                f"{protocol} password ({limit} characters at most); add "
                f"[policies.{protocol.lower()}] length = {limit}"
            )
            return
        policy = within
    sink.add(
        COMPUTER.name,
        computer_id,
        protocol,
        username,
        port=port,
        domain=domain if protocol in COMPUTER.domain_protocols else None,
        policy=policy,
        notes=f"Remotix cloud computer {computer_id}, connection {segment}",
    )
