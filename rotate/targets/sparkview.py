"""Spark View gateway HTTP API: server definitions with stored logon credentials (readable),
and what embeds them: access links (/SYMLINK) and two-factor enrolments (/CONTROL)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus

import httpx

from rotate.errors import EndpointUnavailable, Rejected, RemoteError
from rotate.models import Credential, Row, Secret
from rotate.settings import EndpointSettings
from rotate.targets.http import Endpoint, ErrorText, HttpTarget, error_text


def link_ref(link_id: str) -> str:
    """How reports name an access link: its id opens the link, so only a digest of it."""
    return "#" + hashlib.sha256(link_id.encode("utf-8")).hexdigest()[:10]


def gateway_hash(password: Secret) -> Secret:
    """`gatewayPwd`: the lowercase hex MD5 of the gateway password; as secret as the password."""
    digest = hashlib.md5(password.reveal().encode("utf-8"), usedforsecurity=False)
    return Secret(digest.hexdigest())


def twofa_user(credential: Credential) -> str:
    """The `user` of /CONTROL?target=twofa: `DOMAIN\\user`, or the bare user without one."""
    if credential.domain:
        return f"{credential.domain}\\{credential.username}"
    return credential.username


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


def _table_rows(table: Any, what: str) -> list[dict[str, Any]]:
    """The rows of a list-all answer (`{"cols": [{"name": ...}], "rows": [[...]]}`) as dicts."""
    try:
        names = [str(c["name"]) for c in table["cols"]]
        return [dict(zip(names, r, strict=False)) for r in table["rows"]]
    except (KeyError, TypeError):
        raise RemoteError(f"{what}: unexpected answer shape") from None


def _text(value: Any) -> str:
    """A table cell as text (numbers stay as written; a missing cell is empty)."""
    return "" if value is None else str(value)


def parse_query(text: str) -> list[tuple[str, str, str]]:
    """A URL-encoded query as (name, value, raw piece) triples, in order, blanks kept."""
    out = []
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        out.append((unquote_plus(name), unquote_plus(value), piece))
    return out


def _same(a: str, b: str) -> bool:
    """Windows account and domain names compare without regard to case."""
    return a.casefold() == b.casefold()


# The list columns a careful update resends under their own names (update may replace);
# the server id goes back as `server`, as when the link was created. Never `validTime`.
_KEPT_LINK_FIELDS = ("password", "validFrom", "validTo", "comment")


@dataclass
class _Link:
    """An access link as listed: its cells, and its parameters (which may hold passwords)."""

    id: str
    server: str
    parameters: str
    cells: dict[str, str]


class SparkViewTarget(HttpTarget):
    """GET /SERVER?action=update (write) and /SERVER?action=list&id= (read back); after a
    rotation, /SYMLINK?action=update of the links embedding the logon, and optionally
    /CONTROL?target=twofa."""

    def __init__(self, settings: EndpointSettings, http: Endpoint, gateway_password: Secret):
        super().__init__(settings, http)
        self._pwd_hash = gateway_hash(gateway_password)
        http.redact.add(gateway_password, self._pwd_hash)
        # id -> (displayName, server), learnt from the probe's authenticated list.
        self._definitions: dict[str, tuple[str, str]] = {}
        # The access links, listed once per run by the first follow-up (or why they could
        # not be); the lock makes the items of one endpoint share that one list call.
        self._links: list[_Link] | None = None
        self._links_error: str | None = None
        self._links_lock = asyncio.Lock()

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

    # -- follow-ups: access links and two-factor enrolment --------------------------------

    async def follow_up(self, row: Row, credential: Credential) -> Sequence[str]:
        """Update the access links that embed this logon; reset two-factor enrolment if set.

        Every step is tried; if any failed, RemoteError names what failed and what was done
        (never a password, a link's parameters or a URL with its query).
        """
        done: list[str] = []
        failed: list[str] = []
        if self.settings.update_links:
            try:
                links = await self._all_links()
            except RemoteError as exc:
                failed.append(f"access links not checked: {exc}")
            else:
                for link in links:
                    if not self._embeds(link, row, credential):
                        continue
                    try:
                        await self._update_link(link, credential)
                    except RemoteError as exc:
                        failed.append(f"access link {link_ref(link.id)} not updated: {exc}")
                    else:
                        done.append(f"access link {link_ref(link.id)} updated")
        if self.settings.reset_twofa:
            user = twofa_user(credential)
            try:
                await self.http.request(
                    "GET",
                    "/CONTROL",
                    params={"target": "twofa", "user": user, **self._auth()},
                    write=True,
                    failure=_write_failure(self.settings.write_refusals),
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

    async def _all_links(self) -> list[_Link]:
        """Every access link of the gateway: listed by the first caller, then remembered."""
        async with self._links_lock:
            if self._links is None and self._links_error is None:
                try:
                    self._links = await self._list_links()
                except RemoteError as exc:
                    # Remembered too: one list per run, not one failing list per item.
                    self._links_error = str(exc)
            if self._links is None:
                raise RemoteError(self._links_error or "GET /SYMLINK?action=list failed")
            return self._links

    async def _list_links(self) -> list[_Link]:
        what = "GET /SYMLINK?action=list"
        response = await self.http.request(
            "GET",
            "/SYMLINK",
            params={"action": "list", **self._auth()},
            what=what,
            failure=_failure,
        )
        try:
            table = response.json()
        except ValueError:
            raise RemoteError(f"{what}: the answer is not JSON") from None
        column = self.settings.link_server_column
        links = []
        for cells in _table_rows(table, what):
            text = {k: _text(v) for k, v in cells.items()}
            if not text.get("id"):
                continue
            link = _Link(text["id"], text.get(column, ""), text.get("parameters", ""), text)
            # Whatever a gateway message might echo of any link stays out of every message.
            self.http.redact.add(*self._link_secrets(link))
            links.append(link)
        return links

    def _link_secrets(self, link: _Link) -> list[Secret]:
        """The passwords a link holds: its own, and those its parameters embed."""
        name = self.settings.password_param
        values = [v for n, v, _ in parse_query(link.parameters) if n == name]
        values.append(link.cells.get("password", ""))
        return [Secret(v) for v in values if v]

    def _embeds(self, link: _Link, row: Row, credential: Credential) -> bool:
        """Whether a link logs on to this row's server as this account, with a password."""
        if link.server != row.target:
            return False
        s = self.settings
        params = parse_query(link.parameters)
        names = {name for name, _, _ in params}
        if s.password_param not in names:
            return False  # the link prompts for the password: nothing to update
        users = [value for name, value, _ in params if name == s.user_param]
        domains = [value for name, value, _ in params if name == s.domain_param and value]
        if len(users) != 1:
            return False
        user = users[0]
        if "\\" in user:  # DOMAIN\user in the user parameter
            domain, _, user = user.partition("\\")
            domains.append(domain)
        if not _same(user, credential.username):
            return False
        # Where the link names a domain, it must be the account's.
        return all(_same(d, credential.domain or "") for d in domains)

    def _link_params(self, link: _Link, credential: Credential) -> dict[str, str]:
        """The update query: the new `parameters` (only the password changed, every other
        parameter byte for byte as it was) and, if set, the fields the update must keep."""
        s = self.settings
        pieces = []
        for name, _, piece in parse_query(link.parameters):
            if name == s.password_param:
                piece = f"{quote(name, safe='')}={quote(credential.password.reveal(), safe='')}"
            pieces.append(piece)
        params = {"action": "update", "symlink": link.id}
        if s.send_link_fields_on_update:
            params["server"] = link.server
            for name in _KEPT_LINK_FIELDS:
                value = link.cells.get(name, "")
                if value:
                    params[name] = value
        params["parameters"] = "&".join(pieces)
        return params

    async def _update_link(self, link: _Link, credential: Credential) -> None:
        params = self._link_params(link, credential)
        # The new password, the old one and the link's own: none may reach a message.
        await self.http.request(
            "GET",
            "/SYMLINK",
            params={**params, **self._auth()},
            write=True,
            failure=_write_failure(self.settings.write_refusals),
            what="GET /SYMLINK?action=update",
            secrets=(credential.password, *self._link_secrets(link)),
        )
        link.parameters = params["parameters"]  # the remembered list stays true

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
            failure=_failure,
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
