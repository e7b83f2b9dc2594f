"""Shared httpx plumbing of the vendor targets: clients, bounded requests, retries, and error
translation."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from rotate.errors import Missing, OutcomeUnknown, Rejected, RemoteError
from rotate.models import Secret
from rotate.settings import RunSettings
from rotate.transport import transport
from rotate.vendors.base import EndpointSettings

# Statuses that say "try again later" rather than "no".
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Transport failures after which the server cannot have seen the request.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def redact_url(url: str | httpx.URL) -> str:
    """The URL without its query string, user info or fragment (Spark View puts passwords there)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Redactor:
    """Replaces every known secret in a text by `***` before the text can reach an output."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._values = {s.reveal() for s in secrets if len(s) >= 3}

    def add(self, *secrets: Secret) -> None:
        self._values.update(s.reveal() for s in secrets if len(s) >= 3)

    def __call__(self, text: str, *extra: Secret) -> str:
        for value in sorted(
            self._values | {s.reveal() for s in extra if len(s) >= 3}, key=len, reverse=True
        ):
            text = text.replace(value, "***")
        return text


def tls_context(endpoint: EndpointSettings) -> ssl.SSLContext | bool:
    """Certificate checks against the system CAs or the endpoint's own; off only if insecure.
    Endpoints with the same files share one context (each holds the CA store: about 1 MB)."""
    if endpoint.insecure:
        return False
    files = (endpoint.ca_bundle, endpoint.client_cert, endpoint.client_key)
    return _shared_context(files, tuple(_version(f) for f in files))


def _version(path: str | None) -> int | None:
    """Which version of a file a context was made from (a file replaced makes a new one)."""
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None  # loading it will say what is wrong


@functools.lru_cache(maxsize=32)
def _shared_context(
    files: tuple[str | None, str | None, str | None], versions: tuple[int | None, ...]
) -> ssl.SSLContext:
    ca_bundle, client_cert, client_key = files
    context = ssl.create_default_context(cafile=ca_bundle)
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


def make_client(endpoint: EndpointSettings, run: RunSettings) -> httpx.AsyncClient:
    """One small-pooled client per endpoint, on the aiohttp transport (rotate/transport.py):
    both measured to cost far less CPU per request than one shared httpx pool."""
    limit = endpoint.per_endpoint_concurrency or run.per_endpoint_concurrency
    # The bearer token, if any, is sent per request by the target (see Endpoint.headers), so
    # it never sits in a client object that might be printed.
    headers = {"Accept": "application/json", "User-Agent": "rotate"}
    verify: ssl.SSLContext | bool = tls_context(endpoint)
    return httpx.AsyncClient(
        base_url=endpoint.url,
        headers=headers,
        timeout=httpx.Timeout(endpoint.timeout_s or run.timeout_s),
        transport=transport(verify, limit),
        follow_redirects=False,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures."""

    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_retry_after_s: float = 60.0

    @classmethod
    def from_settings(cls, run: RunSettings) -> RetryPolicy:
        return cls(run.retries, run.backoff_s, run.max_backoff_s, run.max_retry_after_s)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        base = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        return float(base * random.uniform(0.5, 1.0))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


ErrorText = tuple[str, bool]  # (message, definite): what a vendor's failure body says


def _refusal(
    what: str,
    message: str,
    maybe_applied: bool,
    missing: Callable[[httpx.Response], bool] | None,
    response: httpx.Response,
) -> RemoteError:
    """What a definite "no" from the target is: Missing (the object is not there), Rejected,
    or OutcomeUnknown when an earlier attempt may have applied this very write (the "no" may
    be about that: a target refusing to set the password it already has)."""
    if maybe_applied:
        return OutcomeUnknown(
            f"{what}: {message}, after an earlier attempt that may have applied it"
        )
    if missing is not None and missing(response):
        return Missing(f"{what}: {message}")
    return Rejected(f"{what}: {message}")


class Endpoint:
    """Requests to one vendor endpoint: bounded in flight, retried, translated to our errors."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        limit: int,
        retry: RetryPolicy,
        redactor: Redactor,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.retry = retry
        self.redact = redactor
        self._headers = dict(headers or {})
        self._slots = asyncio.Semaphore(limit)
        self.requests = 0  # round trips so far, retries included (the run record's stats)

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        write: bool = False,
        failure: Any = None,
        missing: Callable[[httpx.Response], bool] | None = None,
        secrets: tuple[Secret, ...] = (),
    ) -> httpx.Response:
        """Send with retries; return a 200 response or raise Rejected/OutcomeUnknown/RemoteError.

        `what` names the call in messages (never the URL: it may carry secrets in its query).
        `failure(response)` may classify a non-200 answer as `(message, definite)`;
        `missing(response)` says whether a definite "no" means the object is not there
        (Missing, a Rejected).
        `secrets` are scrubbed from any vendor text that reaches a message.
        """
        maybe_applied = False
        last = ""
        for attempt in range(self.retry.retries + 1):
            retry_after: float | None = None
            try:
                async with self._slots:
                    self.requests += 1
                    response = await self.client.request(
                        method, path, params=params, json=json, headers=self._headers
                    )
            except _NOT_SENT as exc:
                last = f"{type(exc).__name__} (could not connect{_tls_reason(exc)})"
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise RemoteError(f"{what}: {last}") from None  # no retry will help
            except httpx.TimeoutException as exc:
                maybe_applied = maybe_applied or write
                last = f"{type(exc).__name__} (no answer within the timeout)"
            except httpx.TransportError as exc:
                maybe_applied = maybe_applied or write
                last = f"{type(exc).__name__} (connection dropped)"
            else:
                if response.status_code == 200:
                    return response
                message, definite = self._classify(response, failure, secrets)
                if definite:
                    raise _refusal(what, message, maybe_applied, missing, response)
                if response.status_code != 429:
                    # A 5xx may come after the target applied the write.
                    maybe_applied = maybe_applied or write
                retry_after = _retry_after(response)
                last = message
            if attempt < self.retry.retries:
                await asyncio.sleep(self.retry.delay(attempt, retry_after))
        attempts = self.retry.retries + 1
        if maybe_applied:
            raise OutcomeUnknown(f"{what}: outcome unknown after {attempts} attempt(s): {last}")
        raise RemoteError(f"{what}: failed after {attempts} attempt(s): {last}")

    def _classify(
        self, response: httpx.Response, failure: Any, secrets: tuple[Secret, ...]
    ) -> ErrorText:
        if failure is not None:
            verdict: ErrorText | None = failure(response)
            if verdict is not None:
                return self.redact(verdict[0], *secrets), verdict[1]
        status = response.status_code
        detail = self.redact(error_text(response), *secrets)
        message = f"HTTP {status}" + (f": {detail}" if detail else "")
        return message, status not in _TRANSIENT_STATUSES

    async def aclose(self) -> None:
        await self.client.aclose()


def _tls_reason(exc: Exception) -> str:
    """The TLS verdict of a failed connection, if that is why (the text names no URL)."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        reason = text.split("]", 1)[-1].split("(_ssl", 1)[0].strip()
        return f": TLS {reason}"[:200] if reason else ": TLS handshake failed"
    return ""


def error_text(response: httpx.Response) -> str:
    """The vendor's error text, if its body has one; short, and never the raw body."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        for key in ("error:", "error", "message"):
            value = body.get(key)
            if isinstance(value, str):
                return value[:200]
    return ""


def channel(
    settings: EndpointSettings,
    run: RunSettings,
    client: httpx.AsyncClient | None = None,
    redactor: Redactor | None = None,
    headers: Mapping[str, str] | None = None,
) -> Endpoint:
    """The request channel to one endpoint; `client` lets a test hand in its own transport."""
    limit = settings.per_endpoint_concurrency or run.per_endpoint_concurrency
    return Endpoint(
        settings.name,
        client or make_client(settings, run),
        limit,
        RetryPolicy.from_settings(run),
        redactor or Redactor(),
        headers,
    )


S = TypeVar("S", bound=EndpointSettings)


class HttpTarget(Generic[S]):
    """What every vendor adapter shares: its endpoint's settings and its request channel."""

    def __init__(self, settings: S, http: Endpoint) -> None:
        self.name = settings.name
        self.settings = settings
        self.http = http

    @property
    def requests(self) -> int:
        """Round trips made so far, retries included."""
        return self.http.requests

    async def aclose(self) -> None:
        await self.http.aclose()
