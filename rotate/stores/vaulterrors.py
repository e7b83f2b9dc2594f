"""hvac and requests errors in a few words: StoreError at the edge, never echoing a secret.

Messages are built from the path, the server's address and Vault's short error strings, with
the token, the secrets of a login and the password being written masked. The hvac exception
is never chained (`from None`): it carries the raw response body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hvac.exceptions as hvac_errors
import requests

from rotate.errors import StoreError, StoreUnavailable
from rotate.settings import VaultSettings
from rotate.stores.kvhttp import vault_errors

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
_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")
_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)")


class VaultErrors:
    """Translates the control plane's errors for one server: its address, mount, timeout
    and the secrets to mask (`masked`: those of a login, known only once it happened)."""

    def __init__(self, settings: VaultSettings, masked: Callable[[], tuple[str, ...]]) -> None:
        self._settings = settings
        self._masked = masked

    @contextmanager
    def translate(self, where: str, *secrets: str) -> Iterator[None]:
        """hvac/requests errors -> StoreError naming `where`, never echoing a secret."""
        addr = self._settings.addr
        try:
            yield
        except hvac_errors.Forbidden:
            raise StoreError(f"permission denied on {where}") from None
        except hvac_errors.Unauthorized:
            raise StoreError(f"Vault token refused on {where}") from None
        except hvac_errors.VaultDown:
            raise StoreError(
                f"Vault unreachable: {addr} is sealed or down (HTTP 503) on {where}"
            ) from None
        except requests.exceptions.Timeout:
            raise StoreError(
                f"Vault unreachable: no answer from {addr} within "
                f"{self._settings.timeout_s:g}s on {where}"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise StoreError(f"Vault unreachable: {reason(exc)} on {where}") from None
        except hvac_errors.VaultError as exc:
            raise StoreError(
                f"Vault refused the request on {where}: {self.detail(exc, secrets)}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise StoreError(f"Vault request on {where} failed: {type(exc).__name__}") from None
        except OSError as exc:  # e.g. a CA bundle path that is no file
            raise StoreError(f"Vault request on {where} failed: {reason(exc)}") from None

    def detail(self, exc: hvac_errors.VaultError, secrets: tuple[str, ...]) -> str:
        """HTTP status and Vault's own error strings, with every known secret masked."""
        status = _HTTP_STATUS.get(type(exc))
        head = f"HTTP {status}" if status else type(exc).__name__
        errors = exc.errors if isinstance(exc.errors, list) else []
        token = self._settings.token.reveal() if self._settings.token else ""
        return vault_errors(head, errors, (*secrets, token, *self._masked()))

    def describe(self, exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
        """An hvac/requests error in a few words, every known secret masked."""
        if isinstance(exc, hvac_errors.VaultError):
            return self.detail(exc, secrets)
        if isinstance(exc, requests.exceptions.Timeout):
            return f"no answer within {self._settings.timeout_s:g}s"
        if isinstance(exc, OSError):  # requests' errors are OSErrors too
            return reason(exc)
        return type(exc).__name__

    def unreachable(self, exc: BaseException) -> StoreUnavailable:
        """The refusal of a run whose server could not be reached at all."""
        return StoreUnavailable(f"Vault at {self._settings.addr} is unreachable: {reason(exc)}")

    def missing(self, exc: hvac_errors.InvalidPath) -> None:
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
            raise StoreError(f"no secrets engine is mounted at {self._settings.mount}/") from None


def is_cas_mismatch(exc: hvac_errors.InvalidRequest) -> bool:
    """Whether Vault refused a write because its check-and-set version moved."""
    return any("check-and-set" in str(e) for e in exc.errors or ())


def status_and_json(answer: object) -> tuple[int, dict[str, Any]]:
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


def reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words: urllib3 buries it two levels down."""
    inner: object = exc.args[0] if exc.args else None
    why = getattr(inner, "reason", None)
    text = str(why if isinstance(why, BaseException) else exc)
    if why is None and isinstance(inner, BaseException) and len(inner.args) == 2:
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
