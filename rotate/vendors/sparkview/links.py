"""The access links (/SYMLINK) of a Spark View gateway that embed a server's logon: listed
once per run, and updated after a rotation so that they log on with the new password."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

from rotate.errors import RemoteError
from rotate.models import Credential, Row, Secret
from rotate.vendors.http import Endpoint
from rotate.vendors.sparkview.api import read_failure, table_rows, text, write_failure
from rotate.vendors.sparkview.settings import SparkViewSettings


def link_ref(link_id: str) -> str:
    """How reports name an access link: its id opens the link, so only a digest of it."""
    return "#" + hashlib.sha256(link_id.encode("utf-8")).hexdigest()[:10]


def parse_query(query: str) -> list[tuple[str, str, str]]:
    """A URL-encoded query as (name, value, raw piece) triples, in order, blanks kept."""
    out = []
    for piece in query.split("&"):
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


class AccessLinks:
    """The links of one gateway; `auth()` gives the query parameters that authenticate."""

    def __init__(
        self, settings: SparkViewSettings, http: Endpoint, auth: Callable[[], dict[str, str]]
    ) -> None:
        self.settings = settings
        self.http = http
        self._auth = auth
        # Listed once per run by the first follow-up (or why they could not be); the lock
        # makes the items of one endpoint share that one list call.
        self._links: list[_Link] | None = None
        self._links_error: str | None = None
        self._links_lock = asyncio.Lock()

    async def update(self, row: Row, credential: Credential) -> tuple[list[str], list[str]]:
        """Update every link that embeds this row's logon: (what was done, what failed)."""
        done: list[str] = []
        failed: list[str] = []
        try:
            links = await self._all_links()
        except RemoteError as exc:
            return done, [f"access links not checked: {exc}"]
        for link in links:
            if not self._embeds(link, row, credential):
                continue
            try:
                await self._update_link(link, credential)
            except RemoteError as exc:
                failed.append(f"access link {link_ref(link.id)} not updated: {exc}")
            else:
                done.append(f"access link {link_ref(link.id)} updated")
        return done, failed

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
            failure=read_failure,
        )
        try:
            table = response.json()
        except ValueError:
            raise RemoteError(f"{what}: the answer is not JSON") from None
        column = self.settings.link_server_column
        links = []
        for cells in table_rows(table, what):
            values = {k: text(v) for k, v in cells.items()}
            if not values.get("id"):
                continue
            link = _Link(values["id"], values.get(column, ""), values.get("parameters", ""), values)
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
            failure=write_failure(self.settings.write_refusals),
            what="GET /SYMLINK?action=update",
            secrets=(credential.password, *self._link_secrets(link)),
        )
        link.parameters = params["parameters"]  # the remembered list stays true
