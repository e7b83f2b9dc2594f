"""Remotix: address-book connections (write-only credentials) and cloud computers' connections
(readable), over the Remotix HTTP API.

- settings.py: `[endpoints.<name>]` with `system = "remotix"` (`RemotixSettings`)
- kinds.py: the inventory kinds `connection` and `computer`
- target.py: the Target a run talks to (and the reads `rotate discover` makes)
- discover.py: the rows `rotate discover` proposes
- simulator.py: a stateful simulator of the API, and the hook that seeds and serves it
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rotate.vendors.base import (
    DiscoverySink,
    EndpointSettings,
    KindSpec,
    Target,
    VendorSecrets,
    VendorSimulator,
    VendorType,
)
from rotate.vendors.config import parse_endpoint, settings_of
from rotate.vendors.http import Redactor, channel
from rotate.vendors.remotix.discover import discover as propose_rows
from rotate.vendors.remotix.kinds import COMPUTER, CONNECTION
from rotate.vendors.remotix.settings import RemotixSettings
from rotate.vendors.remotix.target import RemotixTarget

if TYPE_CHECKING:
    import httpx

    from rotate.settings import RunSettings

__all__ = ["VENDOR", "RemotixSettings", "RemotixTarget"]


class Remotix:
    """The `remotix` vendor type."""

    name = "remotix"
    kinds: Mapping[str, KindSpec] = {CONNECTION.name: CONNECTION, COMPUTER.name: COMPUTER}

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> EndpointSettings | None:
        return parse_endpoint(RemotixSettings, name, table, errors, self.name)

    def required_env(self, settings: EndpointSettings) -> tuple[str, ...]:
        return ()  # the bearer token is sent when its variable is set, not required

    def build(
        self,
        settings: EndpointSettings,
        run: RunSettings,
        secrets: VendorSecrets,
        client: httpx.AsyncClient | None = None,
    ) -> Target:
        mine = settings_of(RemotixSettings, settings)
        headers: dict[str, str] = {}
        redactor = Redactor()
        token = secrets.optional(mine.token_env)
        if token is not None:
            headers["Authorization"] = f"Bearer {token.reveal()}"
            redactor.add(token)
        return RemotixTarget(mine, channel(mine, run, client, redactor, headers))

    async def discover(self, target: Target, sink: DiscoverySink) -> None:
        if not isinstance(target, RemotixTarget):
            raise TypeError(f"endpoint {target.name}: not a Remotix target")
        await propose_rows(target, sink)

    @property
    def simulator(self) -> VendorSimulator:
        from rotate.vendors.remotix.simulator import RemotixStandIn

        return RemotixStandIn()


VENDOR: VendorType = Remotix()
