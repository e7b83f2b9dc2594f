"""Fault injection: seeded fault settings and the aiohttp middleware that applies them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

#: the path prefix of the simulators' own admin endpoints, which faults never touch
ADMIN_PREFIX = "/_sim/"

_RATES = ("error_rate", "rate_limit_rate", "hang_rate", "drop_rate", "apply_then_fail_rate")


@dataclass
class Faults:
    """What a simulator does wrong, and how often; every draw comes from one seeded generator.

    Request faults (every API request, or only writes with `writes_only`, checked in this
    order after the latency): `drop_rate` closes the connection without an answer;
    `hang_rate` sleeps `hang_s` (past a client's timeout) and then answers normally, so a hung
    write is still applied; `rate_limit_rate` answers 429 with `Retry-After: <retry_after_s>`;
    `error_rate` answers `error_status` before the request is applied.
    Write faults (writes only): a write whose target id is in `reject_targets` gets a definite
    rejection and is not applied; `apply_then_fail_rate` applies the write, then answers
    `apply_then_fail_status`, so the client cannot know the value was taken.
    `max_faults` caps how many request and write faults are injected in all (None: no cap),
    so "fail twice, then succeed" is deterministic; `injected` counts those injected so far.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0  # uniform extra latency in [0, jitter)
    error_rate: float = 0.0
    error_status: int = 503
    rate_limit_rate: float = 0.0
    retry_after_s: int = 1
    hang_rate: float = 0.0
    hang_s: float = 30.0
    drop_rate: float = 0.0
    apply_then_fail_rate: float = 0.0
    apply_then_fail_status: int = 500
    reject_targets: set[str] = field(default_factory=set)
    writes_only: bool = False  # request faults spare reads (probes, read-backs)
    max_faults: int | None = None
    seed: int | None = None
    rng: random.Random = field(init=False, repr=False, compare=False)
    injected: int = field(init=False, default=0, compare=False)

    def __post_init__(self) -> None:
        for name in _RATES:
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        for name in ("latency_ms", "latency_jitter_ms", "hang_s", "retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_faults is not None and self.max_faults < 0:
            raise ValueError("max_faults must not be negative")
        self.reject_targets = set(self.reject_targets)
        self.rng = random.Random(self.seed)

    def roll(self, rate: float) -> bool:
        """True with probability `rate`, while `max_faults` allows; counts what it injects.

        Rates of exactly 0 or 1 draw nothing, nor does a roll once the cap is reached.
        """
        if rate <= 0.0:
            return False
        if self.max_faults is not None and self.injected >= self.max_faults:
            return False
        hit = rate >= 1.0 or self.rng.random() < rate
        if hit:
            self.injected += 1
        return hit

    def delay_s(self) -> float:
        """The latency to add to one request, in seconds."""
        extra = self.rng.uniform(0.0, self.latency_jitter_ms) if self.latency_jitter_ms else 0.0
        return (self.latency_ms + extra) / 1000.0

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-ready values (the generator's state is not included)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        out["reject_targets"] = sorted(self.reject_targets)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        """Build from a JSON object; unknown keys and bad values raise ValueError."""
        known = {f.name: f for f in fields(cls) if f.init}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "reject_targets":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError("reject_targets must be a list of strings")
                kwargs[key] = set(value)
            elif key in ("seed", "max_faults"):
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ValueError(f"{key} must be an integer or null")
                kwargs[key] = value
            elif key == "writes_only":
                if not isinstance(value, bool):
                    raise ValueError("writes_only must be true or false")
                kwargs[key] = value
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            elif key in ("error_status", "retry_after_s", "apply_then_fail_status"):
                kwargs[key] = int(value)
            else:
                kwargs[key] = float(value)
        return cls(**kwargs)


class Counters(Protocol):
    """The request counters a simulator's state keeps."""

    requests: int
    in_flight: int
    max_in_flight: int


class Faulty(Protocol):
    """What the middleware needs from a simulator."""

    @property
    def faults(self) -> Faults:
        """The current fault settings (may be replaced between requests)."""
        ...

    @property
    def counters(self) -> Counters:
        """Where requests are counted."""
        ...

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """A failure in the vendor's own shape."""
        ...

    def note_forbidden(self, request: web.Request) -> None:
        """Record the request if a rotation tool must never send it."""
        ...

    def is_write(self, request: web.Request) -> bool:
        """Whether the request would change the simulator's state."""
        ...


def fault_middleware(sim: Faulty) -> Middleware:
    """The outermost middleware: count, record forbidden calls, then inject request faults."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        counters = sim.counters
        counters.requests += 1
        counters.in_flight += 1
        if counters.in_flight > counters.max_in_flight:
            counters.max_in_flight = counters.in_flight
        try:
            sim.note_forbidden(request)
            if request.body_exists:
                # read now: a request that hangs is still applied after its client gave up
                await request.read()
            faults = sim.faults
            delay = faults.delay_s()
            if delay > 0:
                await asyncio.sleep(delay)
            if faults.writes_only and not sim.is_write(request):
                return await handler(request)
            if faults.roll(faults.drop_rate):
                return _drop(request)
            if faults.roll(faults.hang_rate):
                await asyncio.sleep(faults.hang_s)
            if faults.roll(faults.rate_limit_rate):
                return sim.error_response(
                    429, "too many requests", {"Retry-After": str(faults.retry_after_s)}
                )
            if faults.roll(faults.error_rate):
                return sim.error_response(faults.error_status, "service unavailable")
            return await handler(request)
        finally:
            counters.in_flight -= 1

    return middleware


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection with nothing sent; aiohttp then fails to write the answer, quietly."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=599)
