"""Spark View gateway HTTP API: server definitions with stored logon credentials (readable)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import httpx

from rotate.errors import EndpointUnavailable, Rejected, TargetError
from rotate.models import Credential, Row, Secret
from rotate.settings import EndpointSettings
from rotate.targets.http import Endpoint, ErrorText, error_text


def gateway_hash(password: Secret) -> Secret:
    """`gatewayPwd`: the lowercase hex MD5 of the gateway password; as secret as the password."""
    digest = hashlib.md5(password.reveal().encode("utf-8"), usedforsecurity=False)
    return Secret(digest.hexdigest())


def _failure(response: httpx.Response) -> ErrorText | None:
    """Reads: a 500 with the gateway's `error:` body is its definite "no"; others may pass."""
    detail = error_text(response)
    if response.status_code == 500 and detail:
        return f"gateway error: {detail}", True
    return None


def _write_failure(refusals: tuple[str, ...]) -> Callable[[httpx.Response], ErrorText | None]:
    """Writes: the gateway answers *every* failure as a 500 with an `error:` body, including
    one that comes after it applied the update (an internal error), so only a refusal (the
    endpoint's `write_refusals` words) is a definite "no"; any other failure leaves the
    outcome unknown and the candidate pending."""

    def classify(response: httpx.Response) -> ErrorText | None:
        detail = error_text(response)
        if response.status_code == 500 and detail:
            refused = any(word in detail.lower() for word in refusals)
            return f"gateway error: {detail}", refused
        return None

    return classify


class SparkViewTarget:
    """GET /SERVER?action=update (write) and /SERVER?action=list&id= (read back)."""

    def __init__(self, settings: EndpointSettings, http: Endpoint, gateway_password: Secret):
        self.name = settings.name
        self.settings = settings
        self.http = http
        self._pwd_hash = gateway_hash(gateway_password)
        http.redact.add(gateway_password, self._pwd_hash)
        # id -> (displayName, server), learnt from the probe's authenticated list.
        self._definitions: dict[str, tuple[str, str]] = {}

    def _auth(self) -> dict[str, str]:
        return {"gatewayPwd": self._pwd_hash.reveal()}

    async def probe(self) -> str:
        try:
            info = (
                await self.http.request(
                    "GET",
                    "/CONTROL",
                    params={"target": "gateway"},
                    what="GET /CONTROL?target=gateway",
                )
            ).json()
            table = (
                await self.http.request(
                    "GET",
                    "/SERVER",
                    params={"action": "list", **self._auth()},
                    what="GET /SERVER?action=list",
                    failure=_failure,
                )
            ).json()
        except Rejected as exc:
            raise EndpointUnavailable(
                f"gateway refused the server list ({exc}); is the gateway password right?"
            ) from None
        except TargetError as exc:
            raise EndpointUnavailable(f"probe failed: {exc}") from None
        except ValueError:
            raise EndpointUnavailable("probe failed: the answer is not JSON") from None
        try:
            names = [c["name"] for c in table["cols"]]
            rows = [dict(zip(names, r, strict=False)) for r in table["rows"]]
        except (KeyError, TypeError):
            raise EndpointUnavailable("probe failed: unexpected server list shape") from None
        self._definitions = {
            str(r.get("id")): (str(r.get("displayName") or ""), str(r.get("server") or ""))
            for r in rows
        }
        version = info.get("version", "?") if isinstance(info, dict) else "?"
        return f"Spark View {version}, {len(self._definitions)} server(s)"

    def verifiable(self, row: Row) -> bool:
        return True

    async def push(self, row: Row, credential: Credential) -> None:
        s = self.settings
        params = {"id": row.target, "action": "update"}
        if s.send_definition_on_update:
            if row.target not in self._definitions:
                raise Rejected(f"server {row.target!r} is not defined on the gateway")
            display_name, server = self._definitions[row.target]
            params.update({"displayName": display_name, "server": server})
        params[s.user_param] = credential.username
        params[s.password_param] = credential.password.reveal()
        if credential.domain:
            params[s.domain_param] = credential.domain
        params.update(self._auth())
        await self.http.request(
            "GET",
            "/SERVER",
            params=params,
            write=True,
            failure=_write_failure(self.settings.write_refusals),
            what="GET /SERVER?action=update",
            secrets=(credential.password,),
        )

    async def read_back(self, row: Row) -> Secret | None:
        response = await self.http.request(
            "GET",
            "/SERVER",
            params={"action": "list", "id": row.target, **self._auth()},
            what="GET /SERVER?action=list&id=<id>",
            failure=_failure,
        )
        try:
            body = response.json()
        except ValueError:
            return None
        rdp = body.get("rdp") if isinstance(body, dict) else None
        value = rdp.get("password") if isinstance(rdp, dict) else None
        return Secret(value) if isinstance(value, str) else None

    async def follow_up(self, row: Row, credential: Credential) -> Sequence[str]:
        return ()

    @property
    def requests(self) -> int:
        return self.http.requests

    async def aclose(self) -> None:
        await self.http.aclose()
