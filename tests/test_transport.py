"""The aiohttp transport under httpx: a failure says "not sent" only when nothing was sent,
and no error text quotes a URL's query string (Spark View puts passwords there)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from rotate.transport import _mapped, transport

SECRET = "gw-Secret-pass-77"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("Connection timeout to host x"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.ReadError),
        (aiohttp.ClientPayloadError("Response payload is not completed"), httpx.ReadError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (TimeoutError(), httpx.ReadTimeout),
    ],
)
def test_failures_map_to_what_they_prove(error: BaseException, expected: type) -> None:
    mapped = _mapped(error)
    assert type(mapped) is expected
    # The stock mapping of httpx-aiohttp, wrapped as its transport raises it, is remapped too.
    wrapped = httpx.ConnectTimeout("as httpx-aiohttp maps it")
    wrapped.__cause__ = error
    assert type(_mapped(wrapped)) is expected


def test_no_query_string_in_any_mapped_text() -> None:
    url = f"https://127.0.0.1:1/SERVER?action=update&gatewayPassword={SECRET}&password=x"
    for error in (
        aiohttp.ConnectionTimeoutError(f"Connection timeout to host {url}"),
        aiohttp.ClientPayloadError(f"400, message='bad', url='{url}'"),
    ):
        text = str(_mapped(error))
        assert SECRET not in text
        assert "https://127.0.0.1:1/SERVER" in text


@pytest.fixture
def hang_up() -> Iterator[int]:
    """A server that reads a request, then closes the connection without an answer."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _put(url: str) -> None:
    async with httpx.AsyncClient(transport=transport(False, 2), timeout=5) as client:
        await client.put(url, json={"password": SECRET})


def test_a_request_the_server_received_is_never_not_sent(hang_up: int) -> None:
    """A dropped connection after the write: the caller must treat it as maybe applied."""
    url = f"http://127.0.0.1:{hang_up}/SERVER?action=update&gatewayPassword={SECRET}"
    with pytest.raises(httpx.TransportError) as info:
        asyncio.run(_put(url))
    assert not isinstance(info.value, httpx.ConnectError | httpx.ConnectTimeout)
    assert isinstance(info.value, httpx.ReadError)
    assert SECRET not in str(info.value)


@pytest.mark.integration  # a socket of its own on loopback
def test_a_refused_connection_is_not_sent() -> None:
    url = f"http://127.0.0.1:{_free_port()}/SERVER?gatewayPassword={SECRET}"
    with pytest.raises(httpx.ConnectError) as info:
        asyncio.run(_put(url))
    assert SECRET not in str(info.value)
