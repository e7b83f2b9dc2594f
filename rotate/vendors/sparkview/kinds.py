"""What a Spark View gateway stores: server definitions, each with one RDP logon."""

from __future__ import annotations

from rotate.vendors.base import KindSpec

#: a server definition's stored logon: RDP only, so its Vault path has no protocol segment
SERVER = KindSpec(name="server", protocols=("RDP",), default_protocol="RDP", protocol_in_path=False)
