"""Whether a Vault server can serve a run: its health, the token's lookup, a KV v2 mount."""

from __future__ import annotations

from typing import Any

import hvac
import hvac.exceptions as hvac_errors
import requests
from hvac.utils import format_url

from rotate.errors import StoreUnavailable
from rotate.stores.vaulterrors import VaultErrors, status_and_json


def check_health(client: hvac.Client, addr: str, errors: VaultErrors) -> None:
    """StoreUnavailable unless the server answers like Vault, initialised and unsealed."""
    # sys/health lives in the root namespace only: asked within one, OpenBao answers 400.
    namespace, client.adapter.namespace = client.adapter.namespace, None
    try:
        health = client.adapter.get(
            "/v1/sys/health",
            raise_exception=False,
            params={"standbyok": "true", "perfstandbyok": "true"},
        )
    except OSError as exc:  # requests' errors, and a CA bundle path that is no file
        raise errors.unreachable(exc) from None
    finally:
        client.adapter.namespace = namespace
    status, body = status_and_json(health)
    # An uninitialised server is sealed too: say the more useful thing first.
    if body.get("initialized") is False or status == 501:
        raise StoreUnavailable(f"Vault at {addr} is not initialised")
    if body.get("sealed") is True or status == 503:
        raise StoreUnavailable(f"Vault at {addr} is sealed")
    if status != 200 or "sealed" not in body:
        raise StoreUnavailable(
            f"Vault at {addr} does not answer like Vault (sys/health: HTTP {status})"
        )


def look_up_token(client: hvac.Client, addr: str, errors: VaultErrors) -> dict[str, Any]:
    """What Vault says of the client's token (lookup-self); StoreUnavailable if refused."""
    if not client.token:
        raise StoreUnavailable(
            f"no token for Vault at {addr}: set VAULT_TOKEN or write it to ~/.vault-token"
        )
    try:
        data: dict[str, Any] = client.auth.token.lookup_self()["data"]
    except (hvac_errors.Forbidden, hvac_errors.Unauthorized):
        raise StoreUnavailable(
            f"Vault token refused by {addr}: it is invalid, expired or revoked "
            "(or lacks the default policy, which lets a token look itself up)"
        ) from None
    except OSError as exc:
        raise errors.unreachable(exc) from None
    except hvac_errors.VaultError as exc:
        raise StoreUnavailable(
            f"Vault at {addr} failed the token lookup: {errors.detail(exc, ())}"
        ) from None
    return data


def check_mount(client: hvac.Client, mount: str, addr: str) -> None:
    """Refuse a KV version 1 mount, where `data/...` paths would silently be plain keys."""
    url = format_url("/v1/sys/internal/ui/mounts/{mount}", mount=mount)
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
            f"{mount}/ at {addr} is not a KV version 2 mount "
            f"(type {info.get('type')!r}, version {version})"
        )
