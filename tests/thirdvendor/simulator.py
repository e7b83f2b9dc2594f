"""A stateful simulator of the Acme appliance API, and the hook that seeds and serves it."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from rotate.models import Row
from rotate.sim.base import SimCounters, SimError, Simulator, state_of
from rotate.sim.faults import Faults
from rotate.vendors.base import EndpointSettings
from rotate.vendors.config import settings_of
from tests.thirdvendor import AcmeSettings


@dataclass
class AcmeState(SimCounters):
    """Every appliance's login (`user`, `password`), by appliance id."""

    logins: dict[str, dict[str, str]] = field(default_factory=dict)


class AcmeSimulator(Simulator):
    """The Acme API over an AcmeState; every call needs the API key."""

    state: AcmeState

    def __init__(self, state: AcmeState, api_key: str, faults: Faults | None = None) -> None:
        super().__init__(state, faults)
        self.api_key = api_key.encode()

    def authorize(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("X-Api-Key", "").encode()
        return None if hmac.compare_digest(given, self.api_key) else self.error_response(401, "no")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/appliances", self.appliances)
        app.router.add_get("/api/appliances/{id}/login", self.get_login)
        app.router.add_put("/api/appliances/{id}/login", self.put_login)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"appliances": len(self.state.logins)})

    async def appliances(self, request: web.Request) -> web.Response:
        logins = self.state.logins
        return web.json_response([{"id": i, "user": v.get("user")} for i, v in logins.items()])

    def _login(self, request: web.Request) -> dict[str, str]:
        login = self.state.logins.get(request.match_info["id"])
        if login is None:
            raise SimError(404, "appliance not found")
        return login

    async def get_login(self, request: web.Request) -> web.Response:
        return web.json_response(self._login(request))

    async def put_login(self, request: web.Request) -> web.Response:
        login = self._login(request)
        body = await request.json()
        self.check_reject([request.match_info["id"]])
        login.update(user=str(body["user"]), password=str(body["password"]))
        return self.committed({})


class AcmeStandIn:
    """The Acme simulator as `rotate simulate`, the demo and the tests use it."""

    def new_state(self) -> AcmeState:
        return AcmeState()

    def seed(self, state: SimCounters, row: Row, password: str) -> None:
        state_of(AcmeState, state).logins[row.target] = {"user": row.username, "password": password}

    def password(self, state: SimCounters, row: Row) -> str | None:
        return state_of(AcmeState, state).logins.get(row.target, {}).get("password")

    def secrets(self, settings: EndpointSettings, env: Mapping[str, str]) -> dict[str, str]:
        var = settings_of(AcmeSettings, settings).api_key_env
        if not var or not env.get(var):
            raise ValueError(f"endpoint {settings.name}: set {var} to the API key to expect")
        return {"api_key": env[var]}

    def serve(
        self,
        settings: EndpointSettings,
        state: SimCounters,
        faults: Faults | None,
        secrets: Mapping[str, str],
    ) -> AcmeSimulator:
        return AcmeSimulator(state_of(AcmeState, state), secrets["api_key"], faults)
