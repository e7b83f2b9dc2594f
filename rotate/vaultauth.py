"""How a scheduled run gets its Vault/OpenBao token, keeps it alive, and gives it back.

`[vault] auth` picks the method:

- ``token``: the token is given (``VAULT_TOKEN``, else the Vault CLI's token file). It is
  renewed during a long run when it is renewable, and never revoked: it is not ours.
- ``approle``: role id and secret id from ``VAULT_ROLE_ID`` / ``VAULT_SECRET_ID``, else from
  the files ``role_id_file`` / ``secret_id_file``; ``POST auth/<approle_mount>/login``.
- ``kubernetes``: the pod's service-account JWT (``kubernetes_jwt_file``) for the Vault role
  ``kubernetes_role``; ``POST auth/<kubernetes_mount>/login``.

A login happens once, at the start (`VaultStore.check`), through the store's own client, so
it honours ``VAULT_NAMESPACE`` and ``VAULT_CACERT`` like every other request. The files are
read at login (the kubelet rotates a projected JWT). A `TokenKeeper` holds the one token every
thread's client uses, renews it at two thirds of its TTL, logs in again when a token it
created can no longer be renewed (its max TTL is near, or it is a batch token), and revokes
the tokens it created when the store closes.

No role id, secret id, JWT or token is ever part of a message: every message is built from
the method, the mount and Vault's short error strings, with each known secret masked.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions as hvac_errors
import requests

from rotate.errors import StoreError, StoreUnavailable
from rotate.models import Secret
from rotate.settings import VaultSettings

log = logging.getLogger(__name__)

#: renew when this share of the token's TTL has passed
RENEW_AT = 2 / 3
#: never wake the renewer more often than this (a TTL of a second or two, in tests)
MIN_DELAY_S = 0.2
#: after a failed renewal, try again within this many seconds (sooner when it runs out sooner)
RETRY_DELAY_S = 30.0

#: describes an hvac/requests error in a few words, every secret given masked
Describe = Callable[[BaseException, tuple[str, ...]], str]
NewClient = Callable[[], hvac.Client]

_CALL_ERRORS = (hvac_errors.VaultError, requests.exceptions.RequestException, OSError)


@dataclass(frozen=True)
class Login:
    """One login request: how messages name it, where it goes, and what it sends."""

    method: str  # "AppRole" | "Kubernetes"
    mount: str
    body: Mapping[str, str] = field(repr=False)  # holds the secrets
    who: str = ""  # " (role 'x')" for messages: never a secret

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(v for k, v in self.body.items() if k != "role")

    def refused(self, detail: str) -> str:
        return f"{self.method} login refused at {self.mount}{self.who}: {detail}"


@dataclass(frozen=True)
class Grant:
    """A token and what Vault said about its life when it was obtained or last renewed."""

    token: Secret
    ttl_s: float  # seconds left at `at`; 0: it never expires
    renewable: bool
    batch: bool  # batch tokens can be neither renewed nor revoked
    at: float = field(default_factory=time.monotonic)

    @property
    def expires(self) -> float:
        return self.at + self.ttl_s if self.ttl_s > 0 else math.inf

    @property
    def renew_at(self) -> float:
        return self.at + self.ttl_s * RENEW_AT if self.ttl_s > 0 else math.inf


def login_request(settings: VaultSettings) -> Login | None:
    """The login `settings` call for, its secrets read now; None for ``auth = "token"``.

    StoreUnavailable (exit 3) names a secret that cannot be had (load_settings has checked
    the sources already, so this is a file that went away or became empty since).
    """
    if settings.auth == "approle":
        role_id = _secret(settings.role_id, "role_id_file", settings.role_id_file, "VAULT_ROLE_ID")
        secret_id = _secret(
            settings.secret_id, "secret_id_file", settings.secret_id_file, "VAULT_SECRET_ID"
        )
        return Login(
            "AppRole", settings.approle_mount, {"role_id": role_id, "secret_id": secret_id}
        )
    if settings.auth == "kubernetes":
        role = settings.kubernetes_role
        if not role:
            raise StoreUnavailable("Kubernetes login needs vault.kubernetes_role")
        jwt = _read_file("kubernetes_jwt_file", settings.kubernetes_jwt_file)
        return Login(
            "Kubernetes", settings.kubernetes_mount, {"role": role, "jwt": jwt}, f" (role {role!r})"
        )
    if settings.auth != "token":
        raise StoreUnavailable(f"unknown Vault auth method {settings.auth!r}")
    return None


def _secret(given: Secret | None, key: str, path: str | None, var: str) -> str:
    if given is not None:
        return given.reveal()
    if path:
        return _read_file(key, path)
    what = key.removesuffix("_file").replace("_", " ")
    raise StoreUnavailable(f"AppRole login needs a {what}: set {var} or vault.{key}")


def _read_file(key: str, path: str) -> str:
    """The stripped content of a secret file named by `vault.<key>`; never shown."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StoreUnavailable(
            f"vault.{key} {path!r} cannot be read: {exc.strerror or type(exc).__name__}"
        ) from None
    except ValueError as exc:  # not UTF-8, or a NUL in the path
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "invalid path"
        raise StoreUnavailable(f"vault.{key} {path!r} cannot be read: {why}") from None
    if not text:
        raise StoreUnavailable(f"vault.{key} {path!r} is empty")
    return text


def log_in(client: hvac.Client, login: Login, addr: str, describe: Describe) -> Grant:
    """Send `login` through `client` (its namespace, CA bundle and timeout); the new token.

    Login paths are unauthenticated: the client's current token, if any, plays no part.
    """
    try:
        if login.method == "AppRole":
            answer = client.auth.approle.login(
                login.body["role_id"],
                login.body["secret_id"],
                use_token=False,
                mount_point=login.mount,
            )
        else:
            answer = client.auth.kubernetes.login(
                login.body["role"], login.body["jwt"], use_token=False, mount_point=login.mount
            )
    except (hvac_errors.Forbidden, hvac_errors.InvalidPath) as exc:
        # Vault answers a login at a path where nothing is mounted with 403 (or 404).
        hint = f" (is the {login.method} auth method enabled at auth/{login.mount}/?)"
        raise StoreUnavailable(login.refused(describe(exc, login.secrets) + hint)) from None
    except hvac_errors.VaultError as exc:
        raise StoreUnavailable(login.refused(describe(exc, login.secrets))) from None
    except (requests.exceptions.RequestException, OSError) as exc:
        raise StoreUnavailable(
            f"Vault at {addr} is unreachable: {describe(exc, login.secrets)}"
        ) from None
    auth = answer.get("auth") if isinstance(answer, dict) else None
    token = auth.get("client_token") if isinstance(auth, dict) else None
    if not isinstance(auth, dict) or not isinstance(token, str) or not token:
        raise StoreUnavailable(f"{login.method} login at {login.mount}{login.who} gave no token")
    return Grant(
        token=Secret(token),
        ttl_s=_seconds(auth.get("lease_duration")),
        renewable=bool(auth.get("renewable")),
        batch=auth.get("token_type") == "batch",
    )


def _seconds(value: object) -> float:
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


class TokenKeeper:
    """The run's one token: obtained once, shared by every thread's client, kept alive, and
    revoked at the end when this run created it. Thread-safe.

    `new_client` builds a client of the store's kind (the keeper's renewer thread and the
    final revocation each use one of their own); `on_token` hands a new token to every client
    the store has; `describe` turns an hvac/requests error into a short, secret-free reason.
    """

    def __init__(
        self,
        settings: VaultSettings,
        new_client: NewClient,
        on_token: Callable[[str], None],
        describe: Describe,
    ) -> None:
        self._settings = settings
        self._new_client = new_client
        self._on_token = on_token
        self._describe = describe
        self._lock = threading.Lock()
        self._login_lock = threading.Lock()  # one login at a time
        given = settings.token if settings.auth == "token" else None
        self._token = given.reveal() if given is not None else ""
        self._masked: set[str] = {self._token} - {""}
        self._grant: Grant | None = None  # what is known about the current token's life
        self._full_ttl = 0.0  # the TTL it was issued with: a renewal giving less hit a max
        self._next = math.inf  # when the renewer acts next (monotonic)
        # tokens this run logged in for, with their latest known life: revoked at close
        self._created: dict[str, Grant] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def logs_in(self) -> bool:
        """True when the run logs in itself (and so owns, and revokes, its tokens)."""
        return self._settings.auth != "token"

    @property
    def token(self) -> str:
        """The token to send ("" before the login)."""
        with self._lock:
            return self._token

    def masked(self) -> tuple[str, ...]:
        """Every secret seen (tokens, role and secret ids, JWTs), to mask in messages."""
        with self._lock:
            return tuple(self._masked)

    def ensure_token(self, client: hvac.Client) -> None:
        """Log in through `client` unless a token is given or the login was done already."""
        if not self.logs_in:
            return
        with self._login_lock:
            if self.token:
                return
            self._login(client)

    def watch(self, lookup: Mapping[str, Any]) -> None:
        """Keep the token alive from what lookup-self says of it (ttl, renewable, type)."""
        ttl = _seconds(lookup.get("ttl"))
        grant = Grant(
            token=Secret(self.token),
            ttl_s=ttl,
            renewable=bool(lookup.get("renewable")),
            batch=lookup.get("type") == "batch",
        )
        with self._lock:
            if self._closed:
                return
            self._grant = grant
            self._full_ttl = max(_seconds(lookup.get("creation_ttl")), ttl)
            self._next = grant.renew_at
            needed = ttl > 0 and (grant.renewable or self.logs_in)
            if not needed or self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._keep_alive, name="rotate-vault-token", daemon=True
            )
        log.debug(
            "Vault token: %.0f s to live, %s; renewed at %.0f%% of it",
            ttl,
            "renewable" if grant.renewable else "not renewable",
            RENEW_AT * 100,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop renewing; revoke the tokens this run created (best effort, never raises)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout=self._settings.timeout_s + 1)
        with self._lock:
            created, self._created = self._created, {}
        now = time.monotonic()
        doomed = [g for g in created.values() if not g.batch and g.expires > now]
        if not doomed:
            return
        client = self._new_client()
        try:
            for grant in doomed:
                client.token = grant.token.reveal()
                try:
                    client.auth.token.revoke_self()
                except _CALL_ERRORS as exc:
                    left = grant.expires - time.monotonic()
                    log.warning(
                        "could not revoke the Vault token this run logged in for (%s); "
                        "it expires by itself%s",
                        self._describe(exc, self.masked()),
                        f" within {left:.0f} s" if math.isfinite(left) else "",
                    )
                else:
                    log.debug("revoked the Vault token this run logged in for")
        finally:
            client.adapter.close()

    # --- inside -------------------------------------------------------------------------------

    def _login(self, client: hvac.Client) -> Grant:
        login = login_request(self._settings)
        if login is None:  # pragma: no cover - logs_in was checked by the callers
            raise StoreError("no login method configured")
        with self._lock:
            self._masked.update(login.secrets)
        grant = log_in(client, login, self._settings.addr, self._describe)
        token = grant.token.reveal()
        with self._lock:
            self._token = token
            self._masked.add(token)
            self._created[token] = grant
            self._grant = grant
            self._full_ttl = grant.ttl_s
            self._next = grant.renew_at
        self._on_token(token)
        log.info("logged in to Vault with %s at %s", login.method, login.mount)
        return grant

    def _keep_alive(self) -> None:
        """The renewer thread: sleep until the next renewal, renew (or log in again), repeat."""
        client: hvac.Client | None = None
        try:
            while True:
                with self._lock:
                    delay = self._next - time.monotonic()
                if math.isinf(delay):
                    return
                if self._stop.wait(max(delay, MIN_DELAY_S)):
                    return
                if client is None:
                    client = self._new_client()
                try:
                    self._refresh(client)
                except StoreError as exc:
                    with self._lock:
                        grant = self._grant
                        left = grant.expires - time.monotonic() if grant else 0.0
                        self._next = time.monotonic() + min(RETRY_DELAY_S, max(left / 3, 1.0))
                    log.warning("%s; trying again before it runs out", exc)
        finally:
            if client is not None:
                client.adapter.close()

    def _refresh(self, client: hvac.Client) -> None:
        """Renew the token; log in again when that cannot extend a token of ours."""
        with self._lock:
            grant = self._grant
            full = self._full_ttl
        if grant is None:  # pragma: no cover - watch() or _login() set it first
            return
        if grant.renewable:
            client.token = grant.token.reveal()
            try:
                answer = client.auth.token.renew_self()
            except _CALL_ERRORS as exc:
                if not self.logs_in:
                    raise StoreError(
                        f"Vault token renewal failed: {self._describe(exc, self.masked())}"
                    ) from None
                log.warning(
                    "Vault token renewal failed (%s); logging in again",
                    self._describe(exc, self.masked()),
                )
            else:
                auth = answer.get("auth") if isinstance(answer, dict) else None
                auth = auth if isinstance(auth, dict) else {}
                renewed = Grant(
                    token=grant.token,
                    ttl_s=_seconds(auth.get("lease_duration")),
                    renewable=bool(auth.get("renewable")),
                    batch=grant.batch,
                )
                # A renewal capped well short of the token's TTL means its max TTL is near.
                capped = renewed.ttl_s < full * RENEW_AT
                with self._lock:
                    self._grant = renewed
                    self._next = renewed.renew_at
                    if grant.token.reveal() in self._created:
                        self._created[grant.token.reveal()] = renewed
                if not capped:
                    log.debug("renewed the Vault token: %.0f s to live", renewed.ttl_s)
                    return
                if not self.logs_in:
                    with self._lock:
                        self._next = math.inf
                    log.warning(
                        "the Vault token reached its maximum TTL and expires in %.0f s; "
                        "a longer run needs a token with a longer max TTL",
                        renewed.ttl_s,
                    )
                    return
        elif not self.logs_in:  # pragma: no cover - watch() starts no renewer for these
            return
        with self._login_lock:
            self._login(client)
