"""What both simulators share: request counters, error answers, write faults, admin endpoints."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from rotate.sim.faults import ADMIN_PREFIX, Faults, fault_middleware


@dataclass
class SimCounters:
    """Counters and records every simulator state keeps; mutated only on the server's loop."""

    requests: int = 0  # API requests received (admin endpoints excluded)
    in_flight: int = 0
    max_in_flight: int = 0  # peak of concurrent API requests since the last reset
    writes: int = 0  # writes applied
    forbidden_calls: list[str] = field(default_factory=list)  # calls a rotation must not send

    def reset_counters(self) -> None:
        """Zero the request and write counters; forbidden calls and data are kept."""
        self.requests = 0
        self.writes = 0
        self.max_in_flight = self.in_flight

    def to_json(self) -> dict[str, Any]:
        """The whole state, passwords included (a simulator's state is no secret)."""
        return dataclasses.asdict(self)


S = TypeVar("S", bound=SimCounters)


def state_of(cls: type[S], state: SimCounters) -> S:
    """`state` as a vendor simulator's own state type (its hook made it so)."""
    if not isinstance(state, cls):
        raise TypeError(f"not a {cls.__name__}: {type(state).__name__}")
    return state


class SimError(Exception):
    """Raised by a handler to answer a failure in the vendor's shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Simulator:
    """Base of a vendor simulator: owns the state and faults, builds the aiohttp application."""

    #: the key of the error message in a failure body
    error_key = "error"

    def __init__(self, state: SimCounters, faults: Faults | None = None) -> None:
        self.state = state
        self.faults = faults if faults is not None else Faults()

    # -- what the fault middleware needs --------------------------------------------------
    @property
    def counters(self) -> SimCounters:
        """Where requests are counted: the state itself."""
        return self.state

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """A failure in the vendor's shape: `{"<error_key>": message}`."""
        return web.json_response({self.error_key: message}, status=status, headers=headers)

    def note_forbidden(self, request: web.Request) -> None:
        """Record the request in `state.forbidden_calls` when a rotation must never send it."""
        call = self.forbidden_call(request)
        if call is not None:
            self.state.forbidden_calls.append(call)

    def is_write(self, request: web.Request) -> bool:
        """Whether the request would change the state (what `Faults.writes_only` targets)."""
        return request.method not in ("GET", "HEAD", "OPTIONS")

    # -- for subclasses -------------------------------------------------------------------
    def forbidden_call(self, request: web.Request) -> str | None:
        """A short description of the request if it is forbidden (no secret in it)."""
        return None

    def authorize(self, request: web.Request) -> web.Response | None:
        """None when the request may proceed, else the answer to send."""
        return None

    def add_routes(self, app: web.Application) -> None:
        """Register the vendor API's routes."""
        raise NotImplementedError

    def rejected_response(self) -> web.Response:
        """The definite rejection a write to a target in `reject_targets` gets."""
        return self.error_response(400, "rejected")

    def check_reject(self, targets: Iterable[str]) -> None:
        """Raise the definite rejection if any of `targets` is in `faults.reject_targets`."""
        reject = self.faults.reject_targets
        if reject and any(t in reject for t in targets):
            raise _Rejected

    def committed(self, body: Any) -> web.Response:
        """Count an applied write and answer it, unless apply-then-fail strikes."""
        self.state.writes += 1
        faults = self.faults
        if faults.roll(faults.apply_then_fail_rate):
            return self.error_response(faults.apply_then_fail_status, "internal error")
        return web.json_response(body)

    # -- the application ------------------------------------------------------------------
    def app(self) -> web.Application:
        """A new aiohttp application serving this simulator (state is shared, not copied)."""

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._guard(request, handler)

        app = web.Application(middlewares=[fault_middleware(self), guard])
        self.add_routes(app)
        app.router.add_get(ADMIN_PREFIX + "state", self._admin_state)
        app.router.add_get(ADMIN_PREFIX + "faults", self._admin_get_faults)
        app.router.add_post(ADMIN_PREFIX + "faults", self._admin_set_faults)
        app.router.add_post(ADMIN_PREFIX + "reset-counters", self._admin_reset)
        return app

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Check auth, then turn SimError and routing errors into vendor-shaped answers."""
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        denied = self.authorize(request)
        if denied is not None:
            return denied
        try:
            return await handler(request)
        except SimError as exc:
            return self.error_response(exc.status, exc.message)
        except _Rejected:
            return self.rejected_response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return self.error_response(exc.status, exc.reason.lower())

    async def _admin_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.to_json())

    async def _admin_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def _admin_set_faults(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.text())
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            self.faults = Faults.from_json(data)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.faults.to_json())

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.state.reset_counters()
        return web.json_response({"ok": True})


class _Rejected(Exception):
    """Internal: a write hit `reject_targets`."""
