"""The SecretStore on HashiCorp Vault / OpenBao KV v2, through hvac, one client per thread.

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
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

import hvac
import hvac.exceptions as hvac_errors
import requests
from hvac.utils import format_url
from requests.adapters import HTTPAdapter

from rotate.errors import CasConflict, PendingConflict, StoreError, StoreUnavailable
from rotate.models import Credential, PendingCandidate, Secret, SecretState
from rotate.settings import VaultSettings
from rotate.vaultauth import TokenKeeper

log = logging.getLogger(__name__)

#: builds the hvac client of one thread; the default follows the VaultSettings
ClientFactory = Callable[[], hvac.Client]

#: custom_metadata keys rotate writes on each promotion (user keys are left alone)
META_ROTATED_AT = "rotated_at"
META_RUN_ID = "run_id"
META_ROTATED_BY = "rotated_by"
META_ADOPTED_AT = "adopted_at"
META_LAST_FAILURE_AT = "last_failure_at"
META_LAST_FAILURE_RUN = "last_failure_run"
ROTATED_BY = "rotate"

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


# --- helpers shared with the in-memory store ----------------------------------------------


def check_path(path: str, pending_root: str) -> None:
    """Refuse a malformed path, or one inside the pending area (it would mix the two)."""
    if not path or path != path.strip("/") or any(s in ("", ".", "..") for s in path.split("/")):
        raise StoreError(f"invalid secret path {path!r}: empty, '/' at an end, '//', '.' or '..'")
    if path == pending_root or path.startswith(pending_root + "/"):
        raise StoreError(f"secret path {path!r} lies inside the pending area {pending_root!r}")


def pending_path_of(path: str, pending_root: str) -> str:
    """Where the candidate of `path` is staged, relative to the mount."""
    return f"{pending_root}/{path}"


def credential_data(credential: Credential) -> dict[str, str]:
    """The fields a secret holds: username, password and, when there is one, domain."""
    data = {"username": credential.username, "password": credential.password.reveal()}
    if credential.domain:
        data["domain"] = credential.domain
    return data


def credential_from(data: Mapping[str, Any], where: str) -> Credential:
    """Read a credential back from secret data; StoreError when it is not one."""
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise StoreError(f"secret {where} lacks a string 'username' or 'password'")
    domain = data.get("domain")
    return Credential(
        username, Secret(password), domain if isinstance(domain, str) and domain else None
    )


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC; a naive datetime is taken as UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def parse_time(value: object) -> datetime | None:
    """An aware datetime from Vault's (nanosecond) timestamps or our ISO strings, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def rotation_metadata(run_id: str, rotated_at: datetime | None) -> dict[str, str | None]:
    """The custom_metadata rotate sets on each promotion.

    `rotated_at` None marks a password of unknown age (adopted from a target by reconcile):
    `rotated_at` is removed (None deletes a key in a JSON merge patch) and `adopted_at` set,
    so the planner sees the secret as never rotated and the next run rotates it.
    """
    if rotated_at is None:
        return {
            META_ROTATED_AT: None,
            META_ADOPTED_AT: utc_iso(datetime.now(UTC)),
            META_RUN_ID: run_id,
            META_ROTATED_BY: ROTATED_BY,
        }
    return {META_ROTATED_AT: utc_iso(rotated_at), META_RUN_ID: run_id, META_ROTATED_BY: ROTATED_BY}


def failure_metadata(run_id: str, at: datetime) -> dict[str, str | None]:
    """The custom_metadata a failed or in-doubt attempt leaves (no error text: no secret)."""
    return {META_LAST_FAILURE_AT: utc_iso(at), META_LAST_FAILURE_RUN: run_id}


def last_rotation(custom: Mapping[str, Any], created: object) -> datetime | None:
    """When the password was last set: our record, else the version's creation time, else
    None for an adopted password of unknown age."""
    recorded = parse_time(custom.get(META_ROTATED_AT))
    if recorded is not None:
        return recorded
    if custom.get(META_ADOPTED_AT):
        return None
    return parse_time(created)


def cas_mismatch_message(where: str, expected_version: int | None) -> str:
    """The message of a promotion whose check-and-set failed."""
    expected = expected_version if expected_version else "no current version"
    return f"current version of {where} changed during the rotation (expected {expected})"


# --- the store ----------------------------------------------------------------------------


class VaultStore:
    """SecretStore on a KV v2 mount. Safe to call from many threads at once."""

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
        self.requests = 0  # round trips to Vault so far
        self._keeper = TokenKeeper(
            settings, lambda: self._factory(), self._set_token, self._describe
        )

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
            pending = pending_path_of(path, self._root)
            needs += [
                _Need(f"{m}/data/{path}", ("read", "create", "update"), "the current password"),
                _Need(
                    f"{m}/metadata/{path}",
                    ("read", "patch|update"),
                    "its versions and custom_metadata",
                ),
                _Need(f"{m}/data/{pending}", ("read", "create", "update"), "its pending candidate"),
                _Need(
                    f"{m}/metadata/{pending}",
                    ("read", "delete"),
                    "dropping the candidate once promoted or discarded",
                ),
            ]
        if needs:
            needs.append(
                _Need(
                    f"{m}/metadata/{self._root}/",
                    ("list",),
                    "finding unfinished rotations in one request",
                    required=False,
                )
            )
        if lease:
            needs += [
                _Need(f"{m}/data/{lease}", ("read", "create", "update"), "the run lease"),
                _Need(f"{m}/metadata/{lease}", ("delete",), "releasing the run lease"),
            ]
        return needs

    def read_state(self, path: str, pending: bool = True) -> SecretState:
        """Current version, last rotation and pending candidate (if any) of one secret;
        `pending=False` skips the candidate's read (list_pending said there is none)."""
        check_path(path, self._root)
        client = self._client()
        with self._translate(self._where(path)):
            meta = self._read_metadata(client, path)
        version = int(meta.get("current_version") or 0) if meta else 0
        rotated_at: datetime | None = None
        run_id: str | None = None
        custom = (meta.get("custom_metadata") if meta else None) or {}
        if meta and version:
            versions = meta.get("versions") or {}
            created = (versions.get(str(version)) or {}).get("created_time")
            rotated_at = last_rotation(custom, created)
            run_id = custom.get(META_RUN_ID) or None
        return SecretState(
            path=path,
            current_version=version or None,
            rotated_at=rotated_at,
            last_run_id=run_id,
            pending=self._read_pending(client, path) if pending else None,
            last_failure_at=parse_time(custom.get(META_LAST_FAILURE_AT)),
        )

    def read_current(self, path: str) -> Credential | None:
        """The current credential, or None when there is none (or it was deleted)."""
        check_path(path, self._root)
        where = self._where(path)
        with self._translate(where):
            response = self._read_latest(self._client(), path)
        return credential_from(response["data"]["data"], where) if response else None

    def stage(self, path: str, credential: Credential, run_id: str) -> None:
        """Create the pending candidate (check-and-set 0); PendingConflict if one is there."""
        check_path(path, self._root)
        pending = pending_path_of(path, self._root)
        where = self._where(pending)
        data = credential_data(credential)
        data.update(run_id=run_id, staged_at=utc_iso(datetime.now(UTC)))
        client = self._client()
        kv = client.secrets.kv.v2
        with self._translate(where, credential.password.reveal()):
            try:
                kv.create_or_update_secret(pending, data, cas=0, mount_point=self._mount)
                return
            except hvac_errors.InvalidRequest as exc:
                if not _is_cas_mismatch(exc):
                    raise
            # Metadata exists. Only a readable version is a candidate that may have reached a
            # target; a soft-deleted leftover (someone ran `kv delete`) may be written over.
            if self._read_pending(client, path) is not None:
                raise PendingConflict(f"a pending candidate already exists at {where}")
            meta = self._read_metadata(client, pending) or {}
            try:
                kv.create_or_update_secret(
                    pending,
                    data,
                    cas=int(meta.get("current_version") or 0),
                    mount_point=self._mount,
                )
            except hvac_errors.InvalidRequest as exc:
                if not _is_cas_mismatch(exc):
                    raise
                raise PendingConflict(f"a pending candidate already exists at {where}") from None

    def promote(
        self,
        path: str,
        credential: Credential,
        expected_version: int | None,
        run_id: str,
        rotated_at: datetime | None,
    ) -> int:
        """Write the new current version (check-and-set), record the rotation, drop the
        candidate: three round trips, in that order, so a crash never loses the password."""
        check_path(path, self._root)
        where = self._where(path)
        client = self._client()
        kv = client.secrets.kv.v2
        with self._translate(where, credential.password.reveal()):
            try:
                written = kv.create_or_update_secret(
                    path,
                    credential_data(credential),
                    cas=expected_version or 0,
                    mount_point=self._mount,
                )
                version = int(written["data"]["version"])
            except hvac_errors.InvalidRequest as exc:
                if not _is_cas_mismatch(exc):
                    raise
                # A retry after a lost response finds its own write: that is success.
                done = self._already_written(client, path, credential, expected_version)
                if done is None:
                    raise StoreError(cas_mismatch_message(where, expected_version)) from None
                version = done
        with self._translate(f"{where} (metadata)"):
            self._record_rotation(client, path, rotation_metadata(run_id, rotated_at))
        # Only now, with the password durable as the current version, may the candidate go.
        pending = pending_path_of(path, self._root)
        with self._translate(self._where(pending)):
            kv.delete_metadata_and_all_versions(pending, mount_point=self._mount)
        return version

    def discard(self, path: str) -> None:
        """Delete the pending candidate with all its versions; a no-op when there is none."""
        check_path(path, self._root)
        pending = pending_path_of(path, self._root)
        with self._translate(self._where(pending)):
            # Vault answers 204 for an absent path too, which makes this idempotent.
            self._client().secrets.kv.v2.delete_metadata_and_all_versions(
                pending, mount_point=self._mount
            )

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

    def generate_password(self, policy: str) -> Secret:
        """A password from Vault's password policy `policy` (sys/policies/password)."""
        url = format_url("/v1/sys/policies/password/{name}/generate", name=policy)
        where = f"password policy {policy!r}"
        with self._translate(where):
            try:
                answer = self._client().adapter.get(url)
            except hvac_errors.InvalidPath:
                raise StoreError(f"Vault has no {where}") from None
        data = answer.get("data") if isinstance(answer, dict) else None
        value = data.get("password") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise StoreError(f"Vault's {where} answered without a password")
        return Secret(value)

    def record_failure(self, path: str, run_id: str, at: datetime) -> None:
        """Note a failed or in-doubt attempt in custom_metadata (for the compliance report)."""
        check_path(path, self._root)
        client = self._client()
        with self._translate(f"{self._where(path)} (metadata)"):
            self._record_rotation(client, path, failure_metadata(run_id, at))

    def list_paths(self, root: str) -> list[str]:
        """Every secret path under `root` (recursive LIST), leaving out rotate's own areas."""
        skip = {self._root + "/", self._settings.lease_root + "/"}
        return sorted(self._walk(root.strip("/") + "/", skip))

    def list_pending(self) -> set[str]:
        """The secret paths that have a staged candidate: one LIST when nothing is pending."""
        head = self._root + "/"
        return {path[len(head) :] for path in self._walk(head, set())}

    def _walk(self, top: str, skip: set[str]) -> Iterator[str]:
        """Recursive LIST of the metadata tree under the folder `top` (ends with '/')."""
        client = self._client()
        folders = [top]
        while folders:
            folder = folders.pop()
            with self._translate(self._where(folder)):
                try:
                    answer = client.secrets.kv.v2.list_secrets(folder, mount_point=self._mount)
                    keys = answer["data"]["keys"]
                except hvac_errors.InvalidPath:
                    keys = []  # an empty folder (or none at all)
            for key in keys:
                path = folder + key
                if not key.endswith("/"):
                    yield path
                elif path not in skip:
                    folders.append(path)

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

    def close(self) -> None:
        """Stop renewing the token and revoke it if this run logged in for it (never a token
        it was given); close every thread's session; later calls fail with StoreError."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
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

    def _count(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        """A response hook: how many round trips a run made (for the run record's stats)."""
        with self._lock:
            self.requests += 1

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

    def _read_metadata(self, client: hvac.Client, path: str) -> dict[str, Any] | None:
        try:
            meta: dict[str, Any] = client.secrets.kv.v2.read_secret_metadata(
                path, mount_point=self._mount
            )["data"]
        except hvac_errors.InvalidPath as exc:
            self._missing(exc)
            return None
        return meta

    def _read_latest(self, client: hvac.Client, path: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = client.secrets.kv.v2.read_secret_version(
                path, mount_point=self._mount, raise_on_deleted_version=True
            )
        except hvac_errors.InvalidPath as exc:
            self._missing(exc)
            return None
        return response

    def _read_pending(self, client: hvac.Client, path: str) -> PendingCandidate | None:
        pending = pending_path_of(path, self._root)
        where = self._where(pending)
        with self._translate(where):
            response = self._read_latest(client, pending)
        if response is None:
            return None
        data = response["data"]["data"] or {}
        created = (response["data"].get("metadata") or {}).get("created_time")
        staged_at = parse_time(data.get("staged_at")) or parse_time(created) or datetime.now(UTC)
        return PendingCandidate(
            credential=credential_from(data, where),
            run_id=str(data.get("run_id") or ""),
            staged_at=staged_at,
        )

    def _already_written(
        self, client: hvac.Client, path: str, credential: Credential, expected: int | None
    ) -> int | None:
        """The version holding exactly `credential` written after `expected`, if any."""
        response = self._read_latest(client, path)
        if response is None:
            return None
        version = int(response["data"]["metadata"]["version"])
        if version <= (expected or 0):
            return None
        try:
            current = credential_from(response["data"]["data"] or {}, self._where(path))
        except StoreError:
            return None
        return version if current == credential else None

    def _record_rotation(self, client: hvac.Client, path: str, ours: dict[str, str | None]) -> None:
        """Merge our keys into custom_metadata, keeping whatever keys users have set.

        One PATCH (JSON merge patch, Vault >= 1.10 and OpenBao) merges server-side in one
        round trip with no lost-update window. A token without the `patch` capability, or a
        server without PATCH, gets read-modify-write instead, as Vault's own CLI does.
        """
        url = format_url("/v1/{mount}/metadata/{path}", mount=self._mount, path=path)
        try:
            client.adapter.request(
                "PATCH",
                url,
                json={"custom_metadata": ours},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            return
        except (hvac_errors.Forbidden, hvac_errors.UnexpectedError, hvac_errors.InvalidPath):
            pass  # no patch right, no PATCH, or no metadata yet (a failure before any rotation)
        meta = self._read_metadata(client, path) or {}
        merged = dict(meta.get("custom_metadata") or {})
        merged.update(ours)
        merged = {k: v for k, v in merged.items() if v is not None}
        # A raw POST: hvac's update_metadata would also reset delete_version_after.
        client.adapter.post(url, json={"custom_metadata": merged})

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
        text = "; ".join(" ".join(str(e).split()) for e in errors)
        token = self._settings.token.reveal() if self._settings.token else ""
        for secret in (*secrets, token, *self._keeper.masked()):
            if secret:
                text = text.replace(secret, "***")
        if len(text) > _MAX_DETAIL:
            text = text[:_MAX_DETAIL] + "..."
        return f"{head}: {text}" if text else head


#: secret paths the preflight samples: one per top-level folder (say <prefix>/<endpoint>)
_PREFLIGHT_SAMPLES = 32


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
