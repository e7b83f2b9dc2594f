"""KV v2 on Vault / OpenBao over async HTTP: the hot path of a run, where hvac is too costly.

hvac is synchronous (requests) and costs about 0.5 ms of client CPU per call; a run makes
one or two KV calls per credential and a report one or two per row, so those go straight
through aiohttp (about 0.1 ms a call measured side by side; httpx on the aiohttp transport,
which the vendor calls use, costs 0.22 ms, httpx alone 1 ms). hvac keeps the control plane
(health, login, token renewal, capability check, lease) in rotate/stores/vault.py.

Requests wait their turn in a FIFO gate as wide as the connection pool: aiohttp's own pool
queue is not fair, and under a steady load a request could wait there past its timeout.

Errors are translated here, at the edge, into StoreError naming the path, with Vault's short
error strings and every known secret (the token, the password being written) masked.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import re
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from rotate.errors import CasConflict, StoreError
from rotate.settings import VaultSettings
from rotate.stores.layout import Metadata, Version

_MAX_DETAIL = 200
_REASON = re.compile(r"\[(?:Errno -?\d+\] )?([^\]]+)\]?\s*$")


def vault_tls(settings: VaultSettings) -> ssl.SSLContext:
    """Certificate checks against the system CAs or VAULT_CACERT / `[vault] cacert`."""
    return ssl.create_default_context(cafile=settings.cacert or None)


class HttpKV:
    """The KV protocol of rotate/stores/kv.py on one mount; one client per event loop."""

    def __init__(
        self,
        settings: VaultSettings,
        token: Callable[[], str],
        masked: Callable[[], tuple[str, ...]] = tuple,
    ) -> None:
        self._settings = settings
        self._mount = settings.mount
        self._token = token
        self._masked = masked
        self._client: aiohttp.ClientSession | None = None
        self._gate: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.requests = 0
        self.closed = False  # set by the store's close(): later calls fail

    def where(self, path: str) -> str:
        return f"{self._mount}/{path}"

    # --- KV -------------------------------------------------------------------------------

    async def metadata(self, path: str) -> Metadata | None:
        body = await self._send("GET", f"metadata/{path}", self.where(path), missing_ok=True)
        if body is None:
            return None
        data = body.get("data") or {}
        version = int(data.get("current_version") or 0)
        created = ((data.get("versions") or {}).get(str(version)) or {}).get("created_time")
        custom = data.get("custom_metadata") or {}
        return Metadata(version, created, {str(k): str(v) for k, v in custom.items()})

    async def read(self, path: str) -> Version | None:
        body = await self._send("GET", f"data/{path}", self.where(path), missing_ok=True)
        data = (body or {}).get("data") or {}
        if body is None or data.get("data") is None:
            return None  # absent, or its latest version deleted
        meta = data.get("metadata") or {}
        return Version(data["data"], int(meta.get("version") or 0), meta.get("created_time"))

    async def write(
        self, path: str, data: Mapping[str, Any], cas: int, secrets: tuple[str, ...] = ()
    ) -> int:
        body = await self._send(
            "POST",
            f"data/{path}",
            self.where(path),
            json={"data": dict(data), "options": {"cas": cas}},
            secrets=secrets,
        )
        return int(((body or {}).get("data") or {}).get("version") or 0)

    async def patch_metadata(self, path: str, custom: Mapping[str, str | None]) -> None:
        where = f"{self.where(path)} (metadata)"
        try:
            await self._send(
                "PATCH",
                f"metadata/{path}",
                where,
                json={"custom_metadata": dict(custom)},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            return
        except _NoPatch:
            pass  # no metadata yet (a failure before any rotation), or no PATCH: merge here
        meta = await self.metadata(path)
        merged = {**(meta.custom if meta else {}), **custom}
        await self._send(
            "POST",
            f"metadata/{path}",
            where,
            json={"custom_metadata": {k: v for k, v in merged.items() if v is not None}},
        )

    async def delete(self, path: str) -> None:
        # Vault answers 204 for an absent path too, which makes this idempotent.
        await self._send("DELETE", f"metadata/{path}", self.where(path))

    async def list(self, folder: str) -> list[str]:
        body = await self._send(
            "LIST", f"metadata/{folder.strip('/')}/", self.where(folder), missing_ok=True
        )
        keys = ((body or {}).get("data") or {}).get("keys") or []
        return [str(k) for k in keys]

    async def sys(self, method: str, path: str, where: str) -> dict[str, Any] | None:
        """A call outside the mount (`sys/...`), translated like the others."""
        return await self._send(method, path, where, mount=False, missing_ok=True)

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()

    # --- HTTP -----------------------------------------------------------------------------

    def _http(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._gate is None or self._loop is not loop:
            s = self._settings
            headers = {"Accept": "application/json", "User-Agent": "rotate"}
            if s.namespace:
                headers["X-Vault-Namespace"] = s.namespace
            self._client = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=s.timeout_s),
                connector=aiohttp.TCPConnector(limit=s.connections, ssl=vault_tls(s)),
                trust_env=False,
            )
            self._gate = asyncio.Semaphore(s.connections)
            self._loop = loop
        return self._client, self._gate

    async def _send(
        self,
        method: str,
        path: str,
        where: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
        mount: bool = True,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """One request; the JSON body of a 2xx, None for a Vault 404 when `missing_ok`."""
        if self.closed:
            raise StoreError("the Vault store is closed")
        route = f"{self._mount}/{quote(path)}" if mount else quote(path)
        url = f"{self._settings.addr.rstrip('/')}/v1/{route}"
        sent = {"X-Vault-Token": self._token(), **(headers or {})}
        status, raw = await self._round_trip(method, url, where, json, sent)
        body = _json(raw)
        if 200 <= status < 300:
            return body if body is not None else {}
        self._refusal(method, status, body, where, secrets, missing_ok)
        return None

    async def _round_trip(
        self, method: str, url: str, where: str, json: Any, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Status and body of one request, through the gate; StoreError when none came."""
        client, gate = self._http()
        async with gate:
            try:
                self.requests += 1
                async with client.request(
                    method, url, json=json, headers=headers, allow_redirects=False
                ) as response:
                    return response.status, await response.read()
            except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
                raise StoreError(
                    f"Vault unreachable: no answer from {self._settings.addr} within "
                    f"{self._settings.timeout_s:g}s on {where}"
                ) from None
            except aiohttp.ClientError as exc:
                raise StoreError(f"Vault unreachable: {_reason(exc)} on {where}") from None

    def _refusal(
        self,
        method: str,
        status: int,
        body: dict[str, Any] | None,
        where: str,
        secrets: tuple[str, ...],
        missing_ok: bool,
    ) -> None:
        """Raise what a non-2xx answer means; return only for a Vault 404 that means "none"
        when `missing_ok` (or for a DELETE: already gone)."""
        addr = self._settings.addr
        errors = [str(e) for e in (body or {}).get("errors") or []]
        if method == "PATCH" and status in (403, 404, 405):
            # No metadata yet (OpenBao answers a bare 404, no body), no `patch` capability
            # (the preflight accepts "patch or update"), or no PATCH: merge by read and write;
            # those requests tell a foreign 404, a missing mount or a real denial apart.
            raise _NoPatch
        if status == 404:
            if body is None:
                raise StoreError(f"{addr} answered 404 without a Vault error body: is it Vault?")
            if any("no handler for route" in e for e in errors):
                raise StoreError(f"no secrets engine is mounted at {self._mount}/")
            if missing_ok or method == "DELETE":
                return
        if status == 400 and any("check-and-set" in e for e in errors):
            raise CasConflict(f"{where} changed")
        if status == 403:
            raise StoreError(f"permission denied on {where}")
        if status == 401:
            raise StoreError(f"Vault token refused on {where}")
        if status == 503:
            raise StoreError(f"Vault unreachable: {addr} is sealed or down (HTTP 503) on {where}")
        raise StoreError(
            f"Vault refused the request on {where}: {self._detail(status, errors, secrets)}"
        )

    def _detail(self, status: int, errors: Sequence[str], secrets: tuple[str, ...]) -> str:
        return vault_errors(f"HTTP {status}", errors, (*secrets, self._token(), *self._masked()))


def vault_errors(head: str, errors: Iterable[object], secrets: Iterable[str]) -> str:
    """`head` and Vault's own error strings, short, with every secret given masked."""
    text = "; ".join(" ".join(str(e).split()) for e in errors)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return f"{head}: {text}" if text else head


class _NoPatch(Exception):
    """The server or the path takes no PATCH of metadata: merge by read and write instead."""


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        body = jsonlib.loads(raw) if raw else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _reason(exc: aiohttp.ClientError) -> str:
    """Why a connection failed, in a few words (aiohttp names host and port, no secret)."""
    text = str(exc)
    found = _REASON.search(text)
    reason = found.group(1) if found else text
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = "TLS error: certificate verify failed"
    return reason.strip()[:_MAX_DETAIL] or type(exc).__name__
