"""The SecretStore on HashiCorp Vault / OpenBao KV v2.

The data plane (reading state, staging, promoting: rotate/stores/kv.py) runs on async HTTP
(rotate/stores/kvhttp.py), where the CPU per request decides how fast a run goes. The
control plane stays on hvac, one client per thread (rotate/stores/hvacclients.py): health
and mount checks (rotate/stores/vaultcheck.py), login and token renewal, the capability
preflight (rotate/stores/preflight.py), gateway passwords and the run lease.

Error translation happens at the edge (rotate/stores/vaulterrors.py): hvac and requests
exceptions become StoreError (or StoreUnavailable from `check`) with a message built from the
path and Vault's short error strings, scrubbed of the token and of the password being
written. The hvac exception is never chained (`from None`): it carries the raw response body.

The token comes from a `TokenKeeper` (rotate/vaultauth.py): given, or logged in for once in
`check` (AppRole, Kubernetes); every thread's client sends the same one; it is renewed during
a long run and, when the run created it, revoked by `close`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import hvac.exceptions as hvac_errors
from hvac.utils import format_url

from rotate.errors import CasConflict, StoreError
from rotate.models import Secret
from rotate.settings import VaultSettings
from rotate.stores.hvacclients import ClientFactory, HvacClients
from rotate.stores.kv import KVSecrets
from rotate.stores.kvhttp import HttpKV
from rotate.stores.layout import check_path
from rotate.stores.preflight import Preflight
from rotate.stores.vaultcheck import check_health, check_mount, look_up_token
from rotate.stores.vaulterrors import VaultErrors, is_cas_mismatch
from rotate.vaultauth import TokenKeeper

__all__ = ["ClientFactory", "VaultStore"]


class VaultStore(KVSecrets):
    """SecretStore on a KV v2 mount: the data plane (rotate/stores/kv.py) over async HTTP,
    the control plane over hvac, one client per thread."""

    def __init__(
        self, settings: VaultSettings, *, client_factory: ClientFactory | None = None
    ) -> None:
        self._settings = settings
        self._mount = settings.mount
        # The keeper comes last (it needs the clients and the errors), hence the lambdas.
        self._errors = VaultErrors(settings, lambda: self._keeper.masked())
        self._clients = HvacClients(settings, lambda: self._keeper.token, client_factory)
        self._keeper = TokenKeeper(
            settings, self._clients.fresh, self._clients.set_token, self._errors.describe
        )
        self._preflight = Preflight(settings, self._clients.get, self._errors)
        self._http = HttpKV(settings, lambda: self._keeper.token, self._keeper.masked)
        super().__init__(
            self._http, settings.pending_root, settings.lease_root, settings.stale_root
        )

    @property
    def requests(self) -> int:
        """Round trips to Vault so far, both planes."""
        return self._clients.requests + self._http.requests

    # --- SecretStore ------------------------------------------------------------------------

    def check(self) -> str:
        """Fail with StoreUnavailable unless Vault is reachable, unsealed and takes the token."""
        addr = self._settings.addr
        client = self._clients.get()
        check_health(client, addr, self._errors)
        self._keeper.ensure_token(client)  # AppRole / Kubernetes: log in, once
        data = look_up_token(client, addr, self._errors)
        self._keeper.watch(data)  # renewed from now on when it may expire during the run
        check_mount(client, self._mount, addr)
        # Never data["id"]: that is the token itself.
        return str(data.get("display_name") or data.get("entity_id") or "token")

    def preflight(self, paths: Sequence[str], *, lease: str | None = None) -> None:
        """Refuse a writing run before any change when its token may not do what it needs.

        One request to sys/capabilities-self asks for the token's capabilities where the run
        writes: for a sample of `paths` (secret paths relative to the mount, one per
        top-level folder), the current secret's data and metadata; the journal and
        stale-usage records and LIST on their folders; and the run lease `lease`.
        StoreUnavailable (exit 3) names every missing capability with its path. A token that
        may not ask is let through with a warning: a denied call then fails its own item, as
        it does with `[vault] preflight = false` (rotate/stores/preflight.py).
        """
        self._preflight.check(paths, lease)

    def read_field(self, path: str, key: str) -> str:
        """One string field of the current version; StoreError if it is missing."""
        check_path(path, self._root)
        where = self._where(path)
        response = self._read_latest(path)
        if response is None:
            raise StoreError(f"no secret at {where}")
        value = (response["data"]["data"] or {}).get(key)
        if value is None:
            raise StoreError(f"secret {where} has no field {key!r}")
        if not isinstance(value, str):
            raise StoreError(f"field {key!r} of secret {where} is not a string")
        return value

    async def read_engine(self, path: str) -> Mapping[str, object] | None:
        """The `data` of a read of a path outside the KV mount (`ldap/static-cred/<role>`)."""
        url = "/".join(quote(segment, safe="") for segment in path.split("/"))
        answer = await self._http.sys("GET", url, f"Vault path {path!r}")
        if answer is None:
            return None
        data = answer.get("data")
        if not isinstance(data, dict):
            raise StoreError(f"Vault path {path!r} answered without data")
        return data

    async def generate_password(self, policy: str) -> Secret:
        """A password from Vault's password policy `policy` (sys/policies/password)."""
        url = format_url("sys/policies/password/{name}/generate", name=policy)
        where = f"password policy {policy!r}"
        answer = await self._http.sys("GET", url, where)
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
        response = self._read_latest(path)
        if response is None:
            return None
        data = response["data"]["data"] or {}
        return {str(k): str(v) for k, v in data.items()}, int(
            response["data"]["metadata"]["version"]
        )

    def write_record(self, path: str, data: Mapping[str, str], cas: int) -> int:
        """Write with check-and-set `cas` (0: create only); CasConflict when it moved."""
        where = self._where(path)
        with self._errors.translate(where):
            try:
                written = self._clients.get().secrets.kv.v2.create_or_update_secret(
                    path, dict(data), cas=cas, mount_point=self._mount
                )
            except hvac_errors.InvalidRequest as exc:
                if not is_cas_mismatch(exc):
                    raise
                raise CasConflict(f"{where} changed (expected version {cas})") from None
        return int(written["data"]["version"])

    def delete_record(self, path: str) -> None:
        """Delete a record with all its versions; a no-op when there is none."""
        with self._errors.translate(self._where(path)):
            self._clients.get().secrets.kv.v2.delete_metadata_and_all_versions(
                path, mount_point=self._mount
            )

    # --- closing ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the data plane's connections (those of the running event loop)."""
        await self._http.aclose()

    def close(self) -> None:
        """Stop renewing the token and revoke it if this run logged in for it (never a token
        it was given); close every thread's session; later calls fail with StoreError."""
        self._clients.close()
        self._http.closed = True
        self._keeper.close()

    def __enter__(self) -> VaultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VaultStore({self._settings.addr}, mount={self._mount!r})"

    # --- reads ------------------------------------------------------------------------------

    def _where(self, path: str) -> str:
        return f"{self._mount}/{path}"

    def _read_latest(self, path: str) -> dict[str, Any] | None:
        """The latest version as hvac returns it, or None when Vault says there is none."""
        with self._errors.translate(self._where(path)):
            try:
                response: dict[str, Any] = self._clients.get().secrets.kv.v2.read_secret_version(
                    path, mount_point=self._mount, raise_on_deleted_version=True
                )
            except hvac_errors.InvalidPath as exc:
                self._errors.missing(exc)
                return None
        return response
