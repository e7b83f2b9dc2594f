"""Serve simulators and stand-ins on loopback ports, in the caller's loop or a background thread."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from rotate.registry import vendor_of
from rotate.sim.base import SimCounters, Simulator
from rotate.sim.directory import DirectoryServer, DirectoryState
from rotate.sim.faults import Faults
from rotate.sim.sshhost import SshHostServer, SshHostState
from rotate.vendors.base import EndpointSettings

LOOPBACK = "127.0.0.1"

_T = TypeVar("_T")


@dataclass
class _Running:
    system: str
    simulator: Simulator
    runner: web.AppRunner
    url: str


def _listen(port: int) -> socket.socket:
    """A TCP socket bound to loopback (port 0: any free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock


class AsyncSimulatorHost:
    """Simulators served from the running event loop; every method runs on that loop."""

    def __init__(self, *, shutdown_timeout: float = 0.5, tls: ssl.SSLContext | None = None) -> None:
        self._shutdown_timeout = shutdown_timeout
        self._tls = tls  # serve HTTPS with this server context (see rotate.sim.tls)
        self._running: dict[str, _Running] = {}
        self._directories: dict[str, DirectoryServer] = {}
        self._ssh_hosts: dict[str, SshHostServer] = {}

    @property
    def urls(self) -> dict[str, str]:
        """Base URL (`http://127.0.0.1:<port>`, `ldap://...` for directories) of each
        simulator, by name."""
        urls = {name: r.url for name, r in self._running.items()}
        urls.update((name, d.url) for name, d in self._directories.items())
        return urls

    async def add_simulator(
        self, name: str, simulator: Simulator, *, system: str = "", port: int = 0
    ) -> str:
        """Serve a vendor simulator (of vendor `system`) under `name`; return its URL."""
        return await self._start(name, system, simulator, port)

    async def add_endpoint(
        self,
        endpoint: EndpointSettings,
        state: SimCounters,
        faults: Faults | None = None,
        *,
        port: int = 0,
        **secrets: str | None,
    ) -> str:
        """Start the simulator an endpoint's settings describe, under the endpoint's name.
        `secrets` are those its vendor's simulator expects (a `token`, a `gateway_password`:
        see VendorSimulator.secrets); None values are left out."""
        given = {k: v for k, v in secrets.items() if v is not None}
        simulator = vendor_of(endpoint).simulator.serve(endpoint, state, faults, given)
        return await self._start(endpoint.name, endpoint.system, simulator, port)

    async def add_directory(
        self,
        name: str,
        state: DirectoryState,
        *,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
        starttls: ssl.SSLContext | None = None,
    ) -> str:
        """Start an LDAP directory stand-in (see rotate.sim.directory); return its URL:
        `ldaps://127.0.0.1:<port>` with `tls`, else `ldap://...` (offering StartTLS with the
        `starttls` context, if given)."""
        self._check_free(name)
        server = DirectoryServer(state, tls=tls, starttls=starttls)
        sock = _listen(port)
        try:
            url = await server.start(sock)
        except BaseException:
            sock.close()
            raise
        self._directories[name] = server
        return url

    def directory(self, name: str) -> DirectoryServer:
        """The running directory stand-in called `name`."""
        return self._directories[name]

    async def add_ssh_host(
        self,
        name: str,
        state: SshHostState,
        *,
        authorized_key: str,
        port: int = 0,
    ) -> str:
        """Start an SSH host stand-in (see rotate.sim.sshhost) whose login user logs in with
        `authorized_key` (an OpenSSH public key line); return its `127.0.0.1:<port>` (its
        known_hosts entry: `ssh_host(name).known_hosts_line`)."""
        self._check_free(name)
        server = SshHostServer(state, authorized_key)
        sock = _listen(port)
        try:
            address = await server.start(sock)
        except BaseException:
            sock.close()
            raise
        self._ssh_hosts[name] = server
        return address

    def ssh_host(self, name: str) -> SshHostServer:
        """The running SSH host stand-in called `name`."""
        return self._ssh_hosts[name]

    def _check_free(self, name: str) -> None:
        if name in self._running or name in self._directories or name in self._ssh_hosts:
            raise ValueError(f"a simulator named {name!r} is already running")

    async def _start(self, name: str, system: str, sim: Simulator, port: int) -> str:
        self._check_free(name)
        # no access log: Spark View URLs carry passwords in their query strings
        runner = web.AppRunner(sim.app(), access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        sock: socket.socket | None = None
        try:
            sock = _listen(port)
            await web.SockSite(runner, sock, backlog=1024, ssl_context=self._tls).start()
        except BaseException:
            if sock is not None:
                sock.close()
            await runner.cleanup()
            raise
        scheme = "https" if self._tls is not None else "http"
        url = f"{scheme}://{LOOPBACK}:{sock.getsockname()[1]}"
        self._running[name] = _Running(system, sim, runner, url)
        return url

    def simulator(self, name: str) -> Simulator:
        """The running simulator called `name`."""
        return self._running[name].simulator

    def state(self, name: str) -> SimCounters:
        """The state a simulator serves (live: the same object, not a copy)."""
        return self._running[name].simulator.state

    def system(self, name: str) -> str:
        """Which vendor API a simulator speaks."""
        return self._running[name].system

    def set_faults(self, name: str, faults: Faults) -> None:
        """Replace a simulator's fault settings; later requests see them."""
        self._running[name].simulator.faults = faults

    async def close(self) -> None:
        """Stop every simulator (hung handlers are cancelled after the shutdown timeout)."""
        running, self._running = self._running, {}
        directories, self._directories = self._directories, {}
        ssh_hosts, self._ssh_hosts = self._ssh_hosts, {}
        await asyncio.gather(
            *(r.runner.cleanup() for r in running.values()),
            *(d.close(self._shutdown_timeout) for d in directories.values()),
            *(h.close(self._shutdown_timeout) for h in ssh_hosts.values()),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class SimulatorHost:
    """Simulators served by one background thread running its own event loop.

    Its methods are called from any other thread; they wait until the loop has done the
    work. States are mutated on the loop only; reading them from another thread is fine
    for tests (plain dicts and ints).
    """

    def __init__(self, *, shutdown_timeout: float = 0.5, tls: ssl.SSLContext | None = None) -> None:
        self._host = AsyncSimulatorHost(shutdown_timeout=shutdown_timeout, tls=tls)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rotate-sim")
        self._thread.daemon = True
        self._thread.start()
        self._closed = False

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise RuntimeError("the simulator host is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def urls(self) -> dict[str, str]:
        """Base URL of each simulator, by name."""
        return self._host.urls

    def add_simulator(
        self, name: str, simulator: Simulator, *, system: str = "", port: int = 0
    ) -> str:
        """Serve a vendor simulator (of vendor `system`) under `name`; return its URL."""
        return self._call(self._host.add_simulator(name, simulator, system=system, port=port))

    def add_endpoint(
        self,
        endpoint: EndpointSettings,
        state: SimCounters,
        faults: Faults | None = None,
        *,
        port: int = 0,
        **secrets: str | None,
    ) -> str:
        """Start the simulator an endpoint's settings describe, under the endpoint's name
        (`secrets`: see AsyncSimulatorHost.add_endpoint)."""
        return self._call(self._host.add_endpoint(endpoint, state, faults, port=port, **secrets))

    def add_directory(
        self,
        name: str,
        state: DirectoryState,
        *,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
        starttls: ssl.SSLContext | None = None,
    ) -> str:
        """Start an LDAP directory stand-in (LDAPS with `tls`); return its URL."""
        return self._call(
            self._host.add_directory(name, state, tls=tls, port=port, starttls=starttls)
        )

    def directory_state(self, name: str) -> DirectoryState:
        """The live state of a directory stand-in (thread-safe: it has its own lock)."""
        return self._host.directory(name).state

    def add_ssh_host(
        self, name: str, state: SshHostState, *, authorized_key: str, port: int = 0
    ) -> str:
        """Start an SSH host stand-in whose login user logs in with `authorized_key` (an
        OpenSSH public key line); return its `127.0.0.1:<port>`."""
        return self._call(
            self._host.add_ssh_host(name, state, authorized_key=authorized_key, port=port)
        )

    def ssh_host(self, name: str) -> SshHostServer:
        """A running SSH host stand-in: its `state` (thread-safe), `port`, `host_key` and
        `known_hosts_line` (read them from any thread)."""
        return self._host.ssh_host(name)

    def simulator(self, name: str) -> Simulator:
        """The running simulator called `name`."""
        return self._host.simulator(name)

    def state(self, name: str) -> SimCounters:
        """The live state a simulator serves."""
        return self._host.state(name)

    def set_faults(self, name: str, faults: Faults) -> None:
        """Replace a simulator's fault settings before the next request it answers."""

        async def apply() -> None:
            self._host.set_faults(name, faults)

        self._call(apply())

    def reset_counters(self, name: str) -> None:
        """Zero a simulator's request and write counters."""

        async def apply() -> None:
            self._host.state(name).reset_counters()

        self._call(apply())

    def close(self) -> None:
        """Stop every simulator and the thread; safe to call twice."""
        if self._closed:
            return
        try:
            self._call(self._host.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_forever(host: SimulatorHost) -> None:
    """Block the main thread until SIGINT or SIGTERM, then close `host`."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        host.close()


async def serve_until_signalled(host: AsyncSimulatorHost) -> None:
    """Serve from the running loop until SIGINT or SIGTERM, then close `host`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    sigs = (signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)
        await host.close()
