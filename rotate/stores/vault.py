"""The SecretStore on HashiCorp Vault / OpenBao KV v2.

The data plane (reading state, staging, promoting: rotate/stores/kv.py) runs on async HTTP
(rotate/stores/kvhttp.py), where the CPU per request decides how fast a run goes. The
control plane stays on hvac, one client per thread: health and mount checks, login and token
renewal, the capability preflight, gateway passwords and the run lease.

Error translation happens here, at the edge: hvac and requests exceptions become StoreError
(or StoreUnavailable from `check`) with a message built from the path and Vault's short error
strings, scrubbed of the token and of the password being written. The hvac exception is never
chained (`from None`): it carries the raw response body.

The token comes from a `TokenKeeper` (rotate/vaultauth.py): given, or logged in for once in
`check` (AppRole, Kubernetes); every thread's client sends the same one; it is renewed during
a long run and, when the run created it, revoked by `close`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import hvac
import hvac.exceptions as hvac_errors
import requests
from hvac.utils import format_url
from requests import Response
from requests.adapters import HTTPAdapter

from rotate.errors import CasConflict, StoreError, StoreUnavailable
from rotate.models import Secret
from rotate.settings import VaultSettings
from rotate.stores.kv import KVSecrets, check_path
from rotate.stores.kvhttp import HttpKV, vault_errors
from rotate.vaultauth import TokenKeeper

log = logging.getLogger(__name__)

#: builds the hvac client of one thread; the default follows the VaultSettings
ClientFactory = Callable[[], hvac.Client]

_MAX_DETAIL = 200
_HTTP_STATUS = {
    hvac_errors.InvalidRequest: 400,
    hvac_errors.Unauthorized: 401,
    hvac_errors.Forbidden: 403,
    hvac_errors.InvalidPath: 404,
    hvac_errors.RateLimitExceeded: 429,
    hvac_errors.InternalServerError: 500,
    hvac_errors.VaultNotInitialized: 501,
    hvac_errors.BadGateway: 502,
    hvac_errors.VaultDown: 503,
}


# --- the store ----------------------------------------------------------------------------


class VaultStore(KVSecrets):
    """SecretStore on a KV v2 mount: the data plane (rotate/stores/kv.py) over async HTTP,
    the control plane over hvac, one client per thread."""

    def __init__(
        self, settings: VaultSettings, *, client_factory: ClientFactory | None = None
    ) -> None:
        self._settings = settings
        self._mount = settings.mount
        self._root = settings.pending_root
        self._factory = client_factory or self._new_client
        # One hvac client (and requests Session) per thread: a Session is not thread-safe,
        # and a shared client behind a lock would serialise the whole run on Vault.
        self._local = threading.local()
        self._clients: list[hvac.Client] = []
        self._lock = threading.Lock()
        self._closed = False
        self._hvac_requests = 0
        self._keeper = TokenKeeper(
            settings, lambda: self._factory(), self._set_token, self._describe
        )
        self._kv = HttpKV(settings, lambda: self._keeper.token, self._keeper.masked)
        super().__init__(self._kv, settings.pending_root, settings.lease_root, settings.stale_root)

    @property
    def requests(self) -> int:
        """Round trips to Vault so far, both planes."""
        return self._hvac_requests + self._kv.requests

    # --- SecretStore ------------------------------------------------------------------------

    def check(self) -> str:
        """Fail with StoreUnavailable unless Vault is reachable, unsealed and takes the token."""
        addr = self._settings.addr
        client = self._client()
        # sys/health lives in the root namespace only: asked within one, OpenBao answers 400.
        namespace, client.adapter.namespace = client.adapter.namespace, None
        try:
            health = client.adapter.get(
                "/v1/sys/health",
                raise_exception=False,
                params={"standbyok": "true", "perfstandbyok": "true"},
            )
        except OSError as exc:  # requests' errors, and a CA bundle path that is no file
            raise StoreUnavailable(f"Vault at {addr} is unreachable: {_reason(exc)}") from None
        finally:
            client.adapter.namespace = namespace
        status, body = _status_and_json(health)
        # An uninitialised server is sealed too: say the more useful thing first.
        if body.get("initialized") is False or status == 501:
            raise StoreUnavailable(f"Vault at {addr} is not initialised")
        if body.get("sealed") is True or status == 503:
            raise StoreUnavailable(f"Vault at {addr} is sealed")
        if status != 200 or "sealed" not in body:
            raise StoreUnavailable(
                f"Vault at {addr} does not answer like Vault (sys/health: HTTP {status})"
            )

        self._keeper.ensure_token(client)  # AppRole / Kubernetes: log in, once
        if not client.token:
            raise StoreUnavailable(
                f"no token for Vault at {addr}: set VAULT_TOKEN or write it to ~/.vault-token"
            )
        try:
            data = client.auth.token.lookup_self()["data"]
        except (hvac_errors.Forbidden, hvac_errors.Unauthorized):
            raise StoreUnavailable(
                f"Vault token refused by {addr}: it is invalid, expired or revoked "
                "(or lacks the default policy, which lets a token look itself up)"
            ) from None
        except OSError as exc:
            raise StoreUnavailable(f"Vault at {addr} is unreachable: {_reason(exc)}") from None
        except hvac_errors.VaultError as exc:
            raise StoreUnavailable(
                f"Vault at {addr} failed the token lookup: {self._detail(exc, ())}"
            ) from None
        self._keeper.watch(data)  # renewed from now on when it may expire during the run
        self._check_mount(client)
        # Never data["id"]: that is the token itself.
        return str(data.get("display_name") or data.get("entity_id") or "token")

    def preflight(self, paths: Sequence[str], *, lease: str | None = None) -> None:
        """Refuse a writing run before any change when its token may not do what it needs.

        One request to sys/capabilities-self (Vault's default policy allows it) asks for the
        token's capabilities where the run writes: for a sample of `paths` (secret paths
        relative to the mount, one per top-level folder), the current secret's data and
        metadata and the pending candidate's data and metadata; and the run lease `lease`.
        StoreUnavailable (exit 3) names every missing capability with its path. A token that
        may not ask is let through with a warning: a denied call then fails its own item, as
        it does with `[vault] preflight = false`. A missing LIST only warns (the run reads
        row by row instead).
        """
        if not self._settings.preflight:
            return
        needs = self._needs(paths, lease)
        if not needs:
            return
        addr = self._settings.addr
        client = self._client()
        try:
            answer = client.adapter.post(
                "/v1/sys/capabilities-self", json={"paths": sorted({n.path for n in needs})}
            )
        except (
            hvac_errors.Forbidden,
            hvac_errors.InvalidPath,
            hvac_errors.InvalidRequest,
            hvac_errors.UnsupportedOperation,
            hvac_errors.UnexpectedError,
        ) as exc:
            log.warning(
                "the token's capabilities were not checked before the run: Vault answered "
                "sys/capabilities-self with %s (give the token the default policy); "
                "a denied path fails its items one by one",
                self._describe(exc),
            )
            return
        except (requests.exceptions.RequestException, OSError) as exc:
            raise StoreUnavailable(f"Vault at {addr} is unreachable: {_reason(exc)}") from None
        except hvac_errors.VaultError as exc:
            raise StoreUnavailable(
                f"Vault at {addr} failed the capability check: {self._describe(exc)}"
            ) from None
        body: dict[str, Any] = answer if isinstance(answer, dict) else {}
        data = body.get("data")
        granted: dict[str, Any] = data if isinstance(data, dict) else body
        if not any(isinstance(granted.get(n.path), list) for n in needs):
            log.warning(
                "the token's capabilities were not checked before the run: Vault's answer to "
                "sys/capabilities-self names none of the paths asked about"
            )
            return
        # The same gap on every sampled folder is said once: (what, why) -> the paths.
        missing: dict[tuple[str, str], list[str]] = {}
        for need in needs:
            have = granted.get(need.path)
            if not isinstance(have, list):
                log.warning("Vault did not say what the token may do on %s", need.path)
                continue
            lacking = need.lacking({str(c) for c in have})
            if not lacking:
                continue
            if need.required:
                missing.setdefault((lacking, need.purpose), []).append(need.path)
            else:
                log.warning("the Vault token lacks %s on %s (%s)", lacking, need.path, need.purpose)
        if missing:
            gaps = []
            for (lacking, purpose), where in missing.items():
                more = len(where) - 1
                like = f" and on {more} more path(s) like it" if more else ""
                gaps.append(f"{lacking} on {where[0]} ({purpose}){like}")
            raise StoreUnavailable(
                "the Vault token may not do what this run needs, so nothing was changed: it "
                "lacks " + "; ".join(gaps) + ". Grant these in its policy "
                "(see deploy/vault-policy.hcl)"
            )
        log.debug("the Vault token may do what this run needs (%d paths checked)", len(needs))

    def _needs(self, paths: Sequence[str], lease: str | None) -> list[_Need]:
        """The capabilities a writing run needs (and the LISTs it would like), by API path."""
        samples: dict[str, str] = {}
        for path in paths:
            try:
                check_path(path, self._root)
            except StoreError:
                continue  # the item fails on its own, with this message
            samples.setdefault("/".join(path.split("/")[:2]), path)
            if len(samples) >= _PREFLIGHT_SAMPLES:
                break
        m = self._mount
        needs: list[_Need] = []
        for path in samples.values():
            needs += [
                _Need(f"{m}/data/{path}", ("read", "create", "update"), "the current password"),
                _Need(
                    f"{m}/metadata/{path}",
                    ("read", "patch|update"),
                    "its versions and custom_metadata",
                ),
            ]
        if needs:
            journal = f"{self._root}/{_PREFLIGHT_JOURNAL}"
            needs += [
                _Need(
                    f"{m}/data/{journal}",
                    ("read", "create", "update"),
                    "staging candidates in journal records",
                ),
                _Need(
                    f"{m}/metadata/{journal}",
                    ("delete",),
                    "dropping a journal record once its candidates are settled",
                ),
                _Need(
                    f"{m}/metadata/{self._root}/",
                    ("list",),
                    "finding unfinished rotations",
                ),
                _Need(
                    f"{m}/data/{self._stale_root}/{_PREFLIGHT_JOURNAL}",
                    ("read", "create", "update"),
                    "recording usages that did not take their account's password",
                ),
                _Need(
                    f"{m}/metadata/{self._stale_root}/{_PREFLIGHT_JOURNAL}",
                    ("delete",),
                    "dropping a stale-usage record once its usages are repaired",
                ),
                _Need(
                    f"{m}/metadata/{self._stale_root}/",
                    ("list",),
                    "finding stale usages to repair",
                ),
            ]
        if lease:
            needs += [
                _Need(f"{m}/data/{lease}", ("read", "create", "update"), "the run lease"),
                _Need(f"{m}/metadata/{lease}", ("delete",), "releasing the run lease"),
            ]
        return needs

    def read_field(self, path: str, key: str) -> str:
        """One string field of the current version; StoreError if it is missing."""
        check_path(path, self._root)
        where = self._where(path)
        with self._translate(where):
            response = self._read_latest(self._client(), path)
        if response is None:
            raise StoreError(f"no secret at {where}")
        value = (response["data"]["data"] or {}).get(key)
        if value is None:
            raise StoreError(f"secret {where} has no field {key!r}")
        if not isinstance(value, str):
            raise StoreError(f"field {key!r} of secret {where} is not a string")
        return value

    async def generate_password(self, policy: str) -> Secret:
        """A password from Vault's password policy `policy` (sys/policies/password)."""
        url = format_url("sys/policies/password/{name}/generate", name=policy)
        where = f"password policy {policy!r}"
        answer = await self._kv.sys("GET", url, where)
        if answer is None:
            raise StoreError(f"Vault has no {where}")
        data = answer.get("data")
        value = data.get("password") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise StoreError(f"Vault's {where} answered without a password")
        return Secret(value)

    # --- bookkeeping records (leases): plain string maps, never secrets ----------------------

    def read_record(self, path: str) -> tuple[dict[str, str], int] | None:
        """A record's data and KV version, or None when there is none."""
        where = self._where(path)
        with self._translate(where):
            response = self._read_latest(self._client(), path)
        if response is None:
            return None
        data = response["data"]["data"] or {}
        return {str(k): str(v) for k, v in data.items()}, int(
            response["data"]["metadata"]["version"]
        )

    def write_record(self, path: str, data: Mapping[str, str], cas: int) -> int:
        """Write with check-and-set `cas` (0: create only); CasConflict when it moved."""
        where = self._where(path)
        with self._translate(where):
            try:
                written = self._client().secrets.kv.v2.create_or_update_secret(
                    path, dict(data), cas=cas, mount_point=self._mount
                )
            except hvac_errors.InvalidRequest as exc:
                if not _is_cas_mismatch(exc):
                    raise
                raise CasConflict(f"{where} changed (expected version {cas})") from None
        return int(written["data"]["version"])

    def delete_record(self, path: str) -> None:
        """Delete a record with all its versions; a no-op when there is none."""
        with self._translate(self._where(path)):
            self._client().secrets.kv.v2.delete_metadata_and_all_versions(
                path, mount_point=self._mount
            )

    async def aclose(self) -> None:
        """Close the data plane's connections (those of the running event loop)."""
        await self._kv.aclose()

    def close(self) -> None:
        """Stop renewing the token and revoke it if this run logged in for it (never a token
        it was given); close every thread's session; later calls fail with StoreError."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        self._kv.closed = True
        self._keeper.close()
        for client in clients:
            client.adapter.close()

    def __enter__(self) -> VaultStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VaultStore({self._settings.addr}, mount={self._mount!r})"

    # --- clients ----------------------------------------------------------------------------

    def _client(self) -> hvac.Client:
        if self._closed:
            raise StoreError("the Vault store is closed")
        client: hvac.Client | None = getattr(self._local, "client", None)
        if client is None:
            with self._lock:
                if self._closed:
                    raise StoreError("the Vault store is closed")
                client = self._factory()
                self._clients.append(client)
            self._local.client = client
        return client

    def _count(self, response: Response, *args: object, **kwargs: object) -> None:
        """A response hook: how many round trips a run made (for the run record's stats)."""
        with self._lock:
            self._hvac_requests += 1

    def _new_client(self) -> hvac.Client:
        s = self._settings
        session = requests.Session()
        # A thread sends one request at a time: a tiny pool, and no retries hidden in
        # urllib3 (the pipeline decides what to retry).
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = s.cacert or True
        session.hooks["response"].append(self._count)
        return hvac.Client(
            url=s.addr,
            # "" rather than None: hvac would otherwise go looking for a token on its own.
            token=self._keeper.token,
            verify=s.cacert or True,
            timeout=cast(int, s.timeout_s),  # requests takes a float; the stub says int
            session=session,
            namespace=s.namespace or None,
        )

    def _set_token(self, token: str) -> None:
        """Hand a new token (a login) to every thread's client; later clients start with it."""
        with self._lock:
            for client in self._clients:
                client.token = token

    def _describe(self, exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
        """An hvac/requests error in a few words, every known secret masked."""
        if isinstance(exc, hvac_errors.VaultError):
            return self._detail(exc, secrets)
        if isinstance(exc, requests.exceptions.Timeout):
            return f"no answer within {self._settings.timeout_s:g}s"
        if isinstance(exc, OSError):  # requests' errors are OSErrors too
            return _reason(exc)
        return type(exc).__name__

    # --- reads and writes -------------------------------------------------------------------

    def _where(self, path: str) -> str:
        return f"{self._mount}/{path}"

    def _missing(self, exc: hvac_errors.InvalidPath) -> None:
        """Accept a 404 as "no such secret" only when Vault itself says so.

        A 404 without a JSON body comes from something else (a proxy, a wrong address) and
        must not read as "never rotated"; one naming no route means the mount does not exist.
        (A deleted version's 404 carries its metadata and no error list.)
        """
        if not isinstance(exc.json, dict):
            raise StoreError(
                f"{self._settings.addr} answered 404 without a Vault error body: is it Vault?"
            ) from None
        if any("no handler for route" in str(e) for e in exc.errors or ()):
            raise StoreError(f"no secrets engine is mounted at {self._mount}/") from None

    def _read_latest(self, client: hvac.Client, path: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = client.secrets.kv.v2.read_secret_version(
                path, mount_point=self._mount, raise_on_deleted_version=True
            )
        except hvac_errors.InvalidPath as exc:
            self._missing(exc)
            return None
        return response

    def _check_mount(self, client: hvac.Client) -> None:
        """Refuse a KV version 1 mount, where `data/...` paths would silently be plain keys."""
        url = format_url("/v1/sys/internal/ui/mounts/{mount}", mount=self._mount)
        try:
            answer = client.adapter.get(url)
        except (hvac_errors.VaultError, requests.exceptions.RequestException):
            return  # inconclusive: a narrow policy may hide mount details
        info = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(info, dict):
            return
        version = str((info.get("options") or {}).get("version") or "1")
        if info.get("type") != "kv" or version != "2":
            raise StoreUnavailable(
                f"{self._mount}/ at {self._settings.addr} is not a KV version 2 mount "
                f"(type {info.get('type')!r}, version {version})"
            )

    # --- errors -----------------------------------------------------------------------------

    @contextmanager
    def _translate(self, where: str, *secrets: str) -> Iterator[None]:
        """hvac/requests errors -> StoreError naming `where`, never echoing a secret."""
        try:
            yield
        except hvac_errors.Forbidden:
            raise StoreError(f"permission denied on {where}") from None
        except hvac_errors.Unauthorized:
            raise StoreError(f"Vault token refused on {where}") from None
        except hvac_errors.VaultDown:
            raise StoreError(
                f"Vault unreachable: {self._settings.addr} is sealed or down (HTTP 503) on {where}"
            ) from None
        except requests.exceptions.Timeout:
            raise StoreError(
                f"Vault unreachable: no answer from {self._settings.addr} within "
                f"{self._settings.timeout_s:g}s on {where}"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise StoreError(f"Vault unreachable: {_reason(exc)} on {where}") from None
        except hvac_errors.VaultError as exc:
            raise StoreError(
                f"Vault refused the request on {where}: {self._detail(exc, secrets)}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise StoreError(f"Vault request on {where} failed: {type(exc).__name__}") from None
        except OSError as exc:  # e.g. a CA bundle path that is no file
            raise StoreError(f"Vault request on {where} failed: {_reason(exc)}") from None

    def _detail(self, exc: hvac_errors.VaultError, secrets: tuple[str, ...]) -> str:
        """HTTP status and Vault's own error strings, with every known secret masked."""
        status = _HTTP_STATUS.get(type(exc))
        head = f"HTTP {status}" if status else type(exc).__name__
        errors = exc.errors if isinstance(exc.errors, list) else []
        token = self._settings.token.reveal() if self._settings.token else ""
        return vault_errors(head, errors, (*secrets, token, *self._keeper.masked()))


#: secret paths the preflight samples: one per top-level folder (say <prefix>/<endpoint>)
_PREFLIGHT_SAMPLES = 32
#: a journal record name the preflight asks about (records are `<run id>-<n>`)
_PREFLIGHT_JOURNAL = "preflight-00001"


@dataclass(frozen=True)
class _Need:
    """Capabilities one API path must grant; "a|b" is satisfied by either."""

    path: str
    capabilities: tuple[str, ...]
    purpose: str
    required: bool = True

    def lacking(self, have: set[str]) -> str:
        """The missing capabilities, quoted ("'create' and 'update'"), or "" when none."""
        if "root" in have:
            return ""
        missing = [c for c in self.capabilities if not have.intersection(c.split("|"))]
        quoted = [" or ".join(repr(a) for a in c.split("|")) for c in missing]
        return " and ".join(quoted)


def _is_cas_mismatch(exc: hvac_errors.InvalidRequest) -> bool:
    return any("check-and-set" in str(e) for e in exc.errors or ())


def _status_and_json(answer: object) -> tuple[int, dict[str, Any]]:
    """hvac's JSONAdapter gives a dict for a 200 with JSON, else the Response."""
    if isinstance(answer, dict):
        return 200, answer
    if isinstance(answer, requests.Response):
        try:
            body = answer.json()
        except ValueError:
            body = None
        return answer.status_code, body if isinstance(body, dict) else {}
    return 0, {}


_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")
_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)")


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words: urllib3 buries it two levels down."""
    inner: object = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", None)
    text = str(reason if isinstance(reason, BaseException) else exc)
    if reason is None and isinstance(inner, BaseException) and len(inner.args) == 2:
        # A dropped connection: urllib3's ProtocolError("Connection aborted.", <the cause>).
        head, cause = inner.args
        if isinstance(cause, BaseException):
            said = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
            text = f"{str(head).rstrip('.')}: {said or type(cause).__name__}"
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    text = _SSL_SOURCE.sub("", text)
    text = _ERRNO.sub("", text.strip(" ()'\"")).strip()
    if isinstance(exc, requests.exceptions.SSLError):
        text = f"TLS error: {text}"
    return text[:_MAX_DETAIL] or type(exc).__name__
