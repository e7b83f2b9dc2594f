"""Spark View gateway HTTP API: server definitions with stored logon credentials (readable),
and what embeds them: access links (/SYMLINK) and two-factor enrolments (/CONTROL)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from rotate.errors import EndpointUnavailable, Missing, Rejected, RemoteError
from rotate.models import Credential, Row, Secret
from rotate.vendors.base import UsageCheck
from rotate.vendors.http import Endpoint, HttpTarget, error_text
from rotate.vendors.sparkview.api import gateway_hash, read_failure, write_failure
from rotate.vendors.sparkview.links import AccessLinks
from rotate.vendors.sparkview.settings import SparkViewSettings


def twofa_user(credential: Credential) -> str:
    """The `user` of /CONTROL?target=twofa: `DOMAIN\\user`, or the bare user without one."""
    if credential.domain:
        return f"{credential.domain}\\{credential.username}"
    return credential.username


class SparkViewTarget(HttpTarget[SparkViewSettings]):
    """GET /SERVER?action=update (write) and /SERVER?action=list&id= (read back); after a
    rotation, /SYMLINK?action=update of the links embedding the logon, and optionally
    /CONTROL?target=twofa."""

    def __init__(self, settings: SparkViewSettings, http: Endpoint, gateway_password: Secret):
        super().__init__(settings, http)
        self._pwd_hash = gateway_hash(gateway_password)
        http.redact.add(gateway_password, self._pwd_hash)
        # id -> (displayName, server), learnt from the probe's authenticated list.
        self._definitions: dict[str, tuple[str, str]] = {}
        self._links = AccessLinks(settings, http, self._auth)

    def _auth(self) -> dict[str, str]:
        return {"gatewayPwd": self._pwd_hash.reveal()}

    def _missing(self, response: httpx.Response) -> bool:
        """The gateway's answer for a server id it does not define (a 500 `error:` body)."""
        detail = error_text(response).lower()
        return bool(detail) and any(word in detail for word in self.settings.missing_errors)

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
                    failure=read_failure,
                )
            ).json()
        except Rejected as exc:
            raise EndpointUnavailable(
                f"gateway refused the server list ({exc}); is the gateway password right?"
            ) from None
        except RemoteError as exc:
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
                raise Missing(f"server {row.target!r} is not defined on the gateway")
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
            failure=write_failure(self.settings.write_refusals),
            missing=self._missing,
            what="GET /SERVER?action=update",
            secrets=(credential.password,),
        )

    async def _server(self, row: Row, *, missing: bool = False) -> httpx.Response:
        """`GET /SERVER?action=list&id=<id>`: the server with its stored logon (`missing`:
        the gateway's "no such server" raises Missing)."""
        return await self.http.request(
            "GET",
            "/SERVER",
            params={"action": "list", "id": row.target, **self._auth()},
            what="GET /SERVER?action=list&id=<id>",
            failure=read_failure,
            missing=self._missing if missing else None,
        )

    async def read_back(self, row: Row) -> Secret | None:
        response = await self._server(row)
        try:
            body = response.json()
        except ValueError:
            return None
        rdp = body.get("rdp") if isinstance(body, dict) else None
        value = rdp.get("password") if isinstance(rdp, dict) else None
        return Secret(value) if isinstance(value, str) else None

    async def inspect(self, row: Row) -> UsageCheck:
        """The server read by id (`action=list&id=`; its password is dropped): whether the
        gateway defines it, and the username of its stored logon."""
        try:
            response = await self._server(row, missing=True)
        except Missing as exc:
            return UsageCheck(False, detail=str(exc))
        try:
            body = response.json()
        except ValueError:
            raise RemoteError("GET /SERVER?action=list&id=<id>: the answer is not JSON") from None
        rdp = body.get("rdp") if isinstance(body, dict) else None
        username = rdp.get("username") if isinstance(rdp, dict) else None
        return UsageCheck(True, username if isinstance(username, str) and username else None)

    # -- follow-ups: access links and two-factor enrolment --------------------------------

    async def follow_up(self, row: Row, credential: Credential) -> Sequence[str]:
        """Update the access links that embed this logon; reset two-factor enrolment if set.

        Every step is tried; if any failed, RemoteError names what failed and what was done
        (never a password, a link's parameters or a URL with its query).
        """
        done: list[str] = []
        failed: list[str] = []
        if self.settings.update_links:
            done, failed = await self._links.update(row, credential)
        if self.settings.reset_twofa:
            user = twofa_user(credential)
            try:
                await self.http.request(
                    "GET",
                    "/CONTROL",
                    params={"target": "twofa", "user": user, **self._auth()},
                    write=True,
                    failure=write_failure(self.settings.write_refusals),
                    what="GET /CONTROL?target=twofa",
                    secrets=(credential.password,),
                )
            except RemoteError as exc:
                failed.append(f"two-factor enrolment of {user} not reset: {exc}")
            else:
                done.append(f"two-factor enrolment reset for {user}")
        if failed:
            so_far = f" (done: {', '.join(done)})" if done else ""
            raise RemoteError("; ".join(failed) + so_far)
        return done

    # -- reads for `rotate discover` (never a password) -----------------------------------

    def server_ids(self) -> list[str]:
        """The server ids of the gateway's list, as the probe read it."""
        return list(self._definitions)

    def server_definition(self, server_id: str) -> tuple[str, str]:
        """(displayName, server host) of a listed server."""
        return self._definitions.get(server_id, ("", ""))

    async def server_logon(self, server_id: str) -> tuple[str, str | None]:
        """The username and domain a server stores (its password is read, and dropped)."""
        response = await self.http.request(
            "GET",
            "/SERVER",
            params={"action": "list", "id": server_id, **self._auth()},
            what="GET /SERVER?action=list&id=<id>",
            failure=read_failure,
        )
        try:
            body = response.json()
        except ValueError:
            raise RemoteError("GET /SERVER?action=list&id=<id>: the answer is not JSON") from None
        rdp = body.get("rdp") if isinstance(body, dict) else None
        if not isinstance(rdp, Mapping):
            return "", None
        username = rdp.get("username")
        domain = rdp.get("domain")
        return (
            username if isinstance(username, str) else "",
            domain if isinstance(domain, str) and domain else None,
        )
