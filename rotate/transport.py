"""The HTTP transport behind every async client: aiohttp under the httpx API, failures mapped
so that "not sent" means not sent.

Measured on this project's machine (bench/README.md): httpx's own async transport costs about
1 ms of CPU per request once many are in flight; aiohttp behind the httpx API (the
`httpx-aiohttp` package) about 0.2 ms. Its error mapping, though, turns a dropped connection
into `httpx.ConnectTimeout`, which the callers read as "the server never saw the request":
a password write that reached the target would then count as not sent. `Transport` maps
aiohttp's failures by what they prove instead:

- `ConnectError` / `ConnectTimeout`: no connection was made, nothing was sent;
- `ReadTimeout`: sent, no answer in time;
- `ReadError`: sent, then the connection dropped or the answer broke off.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

_URL_QUERY = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"]*)[?#][^\s'\"]*")


def _without_queries(text: str) -> str:
    """The text with every URL cut before its query string: some aiohttp errors quote the
    request URL whole ("Connection timeout to host <url>"), and Spark View's carry secrets."""
    return _URL_QUERY.sub(r"\1", text)


def _mapped(exc: BaseException) -> httpx.TransportError:
    """The httpx error that says what an aiohttp failure proves (its text quotes no query)."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    text = _without_queries(str(cause or exc)) or type(cause or exc).__name__
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(cause, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake
        return httpx.ConnectError(text)
    if isinstance(cause, TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
        return httpx.ReadTimeout(text)
    if isinstance(cause, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(type(cause).__name__)  # its text holds the URL
    return httpx.ReadError(text)


class _Body(httpx.AsyncByteStream):
    """The response body, with a failure while reading it mapped like the request's."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc) from None

    async def aclose(self) -> None:
        await self._inner.aclose()


class Transport(AiohttpTransport):
    """httpx-aiohttp's transport with failures mapped by what they prove (see above)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc) from None
        response.stream = _Body(response.stream)  # type: ignore[arg-type]
        return response


def transport(verify: ssl.SSLContext | bool, limit: int) -> Transport:
    """A transport holding at most `limit` connections (kept alive between requests)."""
    return Transport(
        verify=verify,
        trust_env=False,
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
    )
