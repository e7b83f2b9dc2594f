"""Spark View: a gateway's server definitions, each with a stored RDP logon (readable), and
what embeds that logon: access links and two-factor enrolments.

- settings.py: `[endpoints.<name>]` with `system = "sparkview"` (`SparkViewSettings`)
- kinds.py: the inventory kind `server`
- api.py, links.py, target.py: the Target a run talks to (and the reads `rotate discover`
  makes), the access links it updates after a rotation
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
from rotate.vendors.http import channel
from rotate.vendors.sparkview.discover import discover as propose_rows
from rotate.vendors.sparkview.kinds import SERVER
from rotate.vendors.sparkview.settings import SparkViewSettings
from rotate.vendors.sparkview.target import SparkViewTarget

if TYPE_CHECKING:
    import httpx

    from rotate.settings import RunSettings

__all__ = ["VENDOR", "SparkViewSettings", "SparkViewTarget"]


class SparkView:
    """The `sparkview` vendor type."""

    name = "sparkview"
    kinds: Mapping[str, KindSpec] = {SERVER.name: SERVER}

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> EndpointSettings | None:
        parsed = parse_endpoint(SparkViewSettings, name, table, errors, self.name)
        if parsed is not None:
            errors.extend(parsed.problems())
        return parsed

    def required_env(self, settings: EndpointSettings) -> tuple[str, ...]:
        mine = settings_of(SparkViewSettings, settings)
        var = mine.gateway_password_env
        return (var,) if var and not mine.gateway_password_vault else ()

    def build(
        self,
        settings: EndpointSettings,
        run: RunSettings,
        secrets: VendorSecrets,
        client: httpx.AsyncClient | None = None,
    ) -> Target:
        mine = settings_of(SparkViewSettings, settings)
        gateway = secrets.secret(
            mine.gateway_password_env, mine.gateway_password_vault, "the gateway password"
        )
        return SparkViewTarget(mine, channel(mine, run, client), gateway)

    async def discover(self, target: Target, sink: DiscoverySink) -> None:
        if not isinstance(target, SparkViewTarget):
            raise TypeError(f"endpoint {target.name}: not a Spark View target")
        await propose_rows(target, sink)

    @property
    def simulator(self) -> VendorSimulator:
        from rotate.vendors.sparkview.simulator import SparkViewStandIn

        return SparkViewStandIn()


VENDOR: VendorType = SparkView()
