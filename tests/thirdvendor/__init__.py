"""A third vendor from outside rotate/: "Acme" network appliances, each storing one console
login, behind a small HTTP API. Registered through the `rotate.vendors` entry point
(tests/test_thirdvendor.py), it shows what adding a vendor takes: this package, nothing under
rotate/.

- `AcmeSettings`: `[endpoints.<name>]` with `system = "acme"` and `api_key_env` (required)
- the kind `appliance` (protocol SSH, the default; no port, no domain)
- `AcmeTarget` (target.py): PUT and GET /api/appliances/<id>/login, with an X-Api-Key header
- simulator.py: the API's simulator and the hook that seeds and serves it
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from rotate.errors import RotateError
from rotate.settings import RunSettings
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

APPLIANCE = KindSpec(
    name="appliance",
    protocols=("SSH",),
    default_protocol="SSH",
    domain_protocols=frozenset(),
    protocol_in_path=False,
    max_length={"SSH": 64},
)


@dataclass(frozen=True)
class AcmeSettings(EndpointSettings):
    """One Acme appliance manager."""

    api_key_env: str | None = None  # the API key, sent as X-Api-Key (required)


class Acme:
    """The `acme` vendor type."""

    name = "acme"
    kinds: Mapping[str, KindSpec] = {APPLIANCE.name: APPLIANCE}

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> EndpointSettings | None:
        parsed = parse_endpoint(AcmeSettings, name, table, errors, self.name)
        if parsed is not None and not parsed.api_key_env:
            errors.append(f"endpoints.{name}: an acme endpoint needs api_key_env")
        return parsed

    def required_env(self, settings: EndpointSettings) -> tuple[str, ...]:
        var = settings_of(AcmeSettings, settings).api_key_env
        return (var,) if var else ()

    def build(
        self,
        settings: EndpointSettings,
        run: RunSettings,
        secrets: VendorSecrets,
        client: httpx.AsyncClient | None = None,
    ) -> Target:
        from tests.thirdvendor.target import AcmeTarget

        mine = settings_of(AcmeSettings, settings)
        key = secrets.secret(mine.api_key_env, None, "the API key")
        headers = {"X-Api-Key": key.reveal()}
        return AcmeTarget(mine, channel(mine, run, client, Redactor([key]), headers))

    async def discover(self, target: Target, sink: DiscoverySink) -> None:
        from tests.thirdvendor.target import AcmeTarget

        if not isinstance(target, AcmeTarget):
            raise TypeError(f"endpoint {target.name}: not an Acme target")
        try:
            logins = await target.logins()
        except RotateError as exc:
            sink.warn(f"appliances not listed ({exc})", partial=True)
            return
        for appliance, user in logins:
            sink.add(APPLIANCE.name, appliance, "SSH", user, notes=f"Acme appliance {appliance}")

    @property
    def simulator(self) -> VendorSimulator:
        from tests.thirdvendor.simulator import AcmeStandIn

        return AcmeStandIn()


VENDOR: VendorType = Acme()
