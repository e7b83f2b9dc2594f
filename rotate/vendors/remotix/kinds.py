"""What a Remotix endpoint stores: address-book connections and cloud computers' connections."""

from __future__ import annotations

from rotate.vendors.base import KindSpec

#: an address-book connection: its credentials can be written, never read back
CONNECTION = KindSpec(name="connection", protocols=("NEAR", "RDP", "APPLE"))

#: one connection of a cloud computer (`RDP`, `RDP_3390`): its credentials read back.
#: VNC authentication keys DES with the first 8 bytes: a longer password is truncated by the
#: server, so what Vault keeps would not be what the target checks.
COMPUTER = KindSpec(
    name="computer",
    protocols=("NEAR", "RDP", "VNC"),
    port=True,
    max_length={"VNC": 8},
    hints={"APPLE": "a computer's Apple Screen Sharing is VNC"},
)
