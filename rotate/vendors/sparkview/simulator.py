"""A stateful simulator of the Spark View gateway HTTP API (servers, links, sessions, control),
and the hook that seeds and serves it for `rotate simulate`, the demo and the tests."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from rotate.models import Row
from rotate.sim.base import SimCounters, SimError, Simulator, state_of
from rotate.sim.faults import Faults
from rotate.vendors.base import EndpointSettings
from rotate.vendors.config import settings_of
from rotate.vendors.sparkview.settings import SparkViewSettings

SERVER_COLUMNS = ("id", "displayName", "server", "remoteProgram", "command")
SYMLINK_COLUMNS = (
    "id",
    "resourceId",
    "password",
    "validFrom",
    "validTime",
    "validTo",
    "parameters",
    "comment",
)
SESSION_COLUMNS = ("id", "server", "user", "domain", "symlink", "protocol", "startTime")

_VALID_TIME = re.compile(r"^([0-9]+)([mhd])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
_LOOPBACK = frozenset({"127.0.0.1", "::1"})


def _now_ms() -> int:
    return int(time.time() * 1000)


def gateway_password_hash(password: str) -> str:
    """What the API expects as `gatewayPwd`: the lowercase hex MD5 of the gateway password."""
    return hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()


def _table(columns: tuple[str, ...], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "display": True,
        "type": "NORMALLIST",
        "cols": [{"name": c} for c in columns],
        "rows": rows,
    }


@dataclass
class SparkServer:
    """A server definition: its parameters and its stored RDP logon (neutral names)."""

    id: str
    params: dict[str, str] = field(default_factory=dict)  # displayName, server, protocols, ...
    rdp: dict[str, str] = field(default_factory=dict)  # username, password, domain


@dataclass
class SparkSymlink:
    """An access link; `parameters` is the URL-encoded query string it appends."""

    id: str
    resource_id: str
    password: str = ""
    valid_from: int | str = ""
    valid_time: str = ""
    valid_to: int | str = ""
    parameters: str = ""
    comment: str = ""

    def as_row(self) -> list[Any]:
        """The row of the list-all table, in SYMLINK_COLUMNS order."""
        return [
            self.id,
            self.resource_id,
            self.password,
            self.valid_from,
            self.valid_time,
            self.valid_to,
            self.parameters,
            self.comment,
        ]

    def as_record(self) -> dict[str, Any]:
        """The answer of a one-link list."""
        return dict(zip(SYMLINK_COLUMNS, self.as_row(), strict=True))


@dataclass
class SparkSession:
    """A live session on the gateway."""

    id: str
    server: str
    user: str
    domain: str = ""
    symlink: str = ""
    protocol: str = "rdp"
    start_time: int = 0

    def as_row(self) -> list[Any]:
        """The row of the session table, in SESSION_COLUMNS order."""
        return [
            self.id,
            self.server,
            self.user,
            self.domain,
            self.symlink,
            self.protocol,
            self.start_time,
        ]


@dataclass
class SparkViewState(SimCounters):
    """Everything a Spark View gateway knows; mutate only on the server's event loop."""

    servers: dict[str, SparkServer] = field(default_factory=dict)
    symlinks: dict[str, SparkSymlink] = field(default_factory=dict)
    sessions: dict[str, SparkSession] = field(default_factory=dict)
    twofa_resets: list[str] = field(default_factory=list)
    license: str | None = None

    # -- seeding --------------------------------------------------------------------------
    def add_server(
        self,
        id: str,
        display_name: str,
        server: str,
        username: str = "",
        password: str = "",
        domain: str | None = None,
        **params: str,
    ) -> SparkServer:
        """Add or replace a server definition with a stored RDP logon."""
        rdp: dict[str, str] = {}
        if username:
            rdp["username"] = username
        if password:
            rdp["password"] = password
        if domain is not None:
            rdp["domain"] = domain
        definition = {"displayName": display_name, "server": server, "protocols": "rdp"}
        definition.update(params)
        self.servers[id] = SparkServer(id=id, params=definition, rdp=rdp)
        return self.servers[id]

    def add_symlink(
        self,
        id: str,
        server: str,
        parameters: str = "",
        valid_time: str = "",
        password: str = "",
        comment: str = "",
    ) -> SparkSymlink:
        """Add or replace an access link to `server`; `parameters` is a URL-encoded query."""
        valid_from = _now_ms()
        link = SparkSymlink(
            id=id,
            resource_id=server,
            password=password,
            valid_from=valid_from,
            valid_time=valid_time,
            valid_to=_valid_to(valid_from, valid_time),
            parameters=parameters,
            comment=comment,
        )
        self.symlinks[id] = link
        return link

    def add_session(
        self,
        server: str,
        user: str,
        domain: str = "",
        symlink: str = "",
        id: str | None = None,
        protocol: str = "rdp",
    ) -> SparkSession:
        """Add a live session (the simulator never starts one by itself)."""
        sid = id or secrets.token_hex(8)
        session = SparkSession(sid, server, user, domain, symlink, protocol, _now_ms())
        self.sessions[sid] = session
        return session

    # -- inspection -----------------------------------------------------------------------
    def server_credentials(self, id: str) -> dict[str, str]:
        """A copy of a server's stored logon (`username`, `password`, `domain`)."""
        server = self.servers.get(id)
        return dict(server.rdp) if server else {}

    def server_password(self, id: str) -> str | None:
        """The password a server stores, or None."""
        return self.server_credentials(id).get("password")


def _moment(value: str) -> int | str:
    """A validFrom/validTo query value: epoch milliseconds as the number the list shows."""
    return int(value) if value.isascii() and value.isdigit() else value


def _valid_to(valid_from: int, valid_time: str) -> int | str:
    m = _VALID_TIME.match(valid_time)
    if m is None:
        return ""
    return valid_from + int(m.group(1)) * _UNIT_MS[m.group(2)]


class SparkViewSimulator(Simulator):
    """The Spark View gateway API over a SparkViewState; all calls are GETs with a query."""

    state: SparkViewState
    error_key = "error:"  # sic: the vendor manual prints the key with the colon inside

    def __init__(
        self,
        state: SparkViewState,
        gateway_password: str,
        faults: Faults | None = None,
        *,
        trust_local: bool = False,
        user_param: str = "user",
        password_param: str = "pwd",  # noqa: S107 - a parameter name, not a password
        domain_param: str = "domain",
        version: str = "6.6.0",
        build_number: str = "1234",
        not_found: str = "not found",
    ) -> None:
        super().__init__(state, faults)
        self.not_found = not_found  # its error for a server id it does not define
        self._gateway_pwd = gateway_password_hash(gateway_password).encode()
        self.trust_local = trust_local
        self.credential_params = {
            user_param: "username",
            password_param: "password",
            domain_param: "domain",
        }
        self.version = version
        self.build_number = build_number
        self.started_ms = _now_ms()

    # -- policy ---------------------------------------------------------------------------
    def authorize(self, request: web.Request) -> web.Response | None:
        if request.path == "/CONTROL" and request.query.get("target") == "gateway":
            return None
        if self.trust_local and request.remote in _LOOPBACK:
            return None
        given = request.query.get("gatewayPwd", "").encode()
        if hmac.compare_digest(given, self._gateway_pwd):
            return None
        return self.error_response(500, "invalid gateway password")

    def forbidden_call(self, request: web.Request) -> str | None:
        if request.path == "/SERVER" and request.query.get("action") == "delete":
            return f"GET /SERVER?action=delete&id={request.query.get('id', '')}"
        return None

    def rejected_response(self) -> web.Response:
        return self.error_response(500, "rejected")

    def is_write(self, request: web.Request) -> bool:
        """Every call is a GET: a write is any /SERVER or /SYMLINK call but a list, and the
        /CONTROL calls that reset two-factor enrolment or upload a licence."""
        q = request.query
        if request.path in ("/SERVER", "/SYMLINK"):
            return q.get("action", "") != "list"
        if request.path == "/CONTROL":
            return q.get("target") == "twofa" or q.get("licenseFile", ".") != "."
        return False

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/SERVER", self.server)
        r.add_get("/SYMLINK", self.symlink)
        r.add_get("/SESSION", self.session)
        r.add_get("/CONTROL", self.control)

    # -- /SERVER --------------------------------------------------------------------------
    async def server(self, request: web.Request) -> web.Response:
        q = request.query
        action = q.get("action", "")
        if action == "list":
            if "id" in q:
                return web.json_response(self._server_record(self._server(q["id"])))
            rows = [
                [s.id, *(s.params.get(c, "") for c in SERVER_COLUMNS[1:])]
                for s in self.state.servers.values()
            ]
            return web.json_response(_table(SERVER_COLUMNS, rows))
        sid = _required(q, "id")
        if action == "":
            if sid in self.state.servers:
                raise SimError(500, "already exists")
            server = _required(q, "server")
            self.check_reject([sid])
            self.state.servers[sid] = SparkServer(
                sid, {"displayName": sid, "server": server, "protocols": "rdp"}
            )
            self._merge(self.state.servers[sid], q)
            return self.committed({"id": sid})
        if action == "update":
            existing = self._server(sid)
            self.check_reject([sid])
            self._merge(existing, q)
            return self.committed({"id": sid})
        if action == "delete":
            self._server(sid)
            self.check_reject([sid])
            del self.state.servers[sid]
            return self.committed({"id": sid})
        raise SimError(500, "unknown action")

    def _merge(self, server: SparkServer, q: MultiMapping[str]) -> None:
        for key, value in q.items():
            if key in ("gatewayPwd", "action", "id"):
                continue
            name = self.credential_params.get(key)
            if name is not None:
                server.rdp[name] = value
            else:
                server.params[key] = value

    def _server(self, sid: str) -> SparkServer:
        server = self.state.servers.get(sid)
        if server is None:
            raise SimError(500, self.not_found)
        return server

    @staticmethod
    def _server_record(server: SparkServer) -> dict[str, Any]:
        record: dict[str, Any] = {"id": server.id, **server.params}
        if server.rdp:
            record["rdp"] = dict(server.rdp)
        return record

    # -- /SYMLINK -------------------------------------------------------------------------
    async def symlink(self, request: web.Request) -> web.Response:
        q = request.query
        action = q.get("action", "")
        links = self.state.symlinks
        if action == "list":
            if "symlink" in q:
                return web.json_response(self._link(q["symlink"]).as_record())
            rows = [link.as_row() for link in links.values()]
            return web.json_response(_table(SYMLINK_COLUMNS, rows))
        if action == "":
            lid = q.get("symlink") or secrets.token_urlsafe(8)
            if lid in links:
                raise SimError(500, "already exists")
            server = _required(q, "server")
            self._server(server)
            valid_time = q.get("validTime", "")
            if valid_time and not _VALID_TIME.match(valid_time):
                raise SimError(500, "invalid validTime")
            self.check_reject([lid, server])
            link = self.state.add_symlink(
                lid,
                server,
                parameters=q.get("parameters", ""),
                valid_time=valid_time,
                password=q.get("password", ""),
                comment=q.get("comment", ""),
            )
            if "validFrom" in q:
                link.valid_from = _moment(q["validFrom"])
            if "validTo" in q:
                link.valid_to = _moment(q["validTo"])
            return self.committed(link.as_record())
        link = self._link(_required(q, "symlink"))
        if action == "update":
            if "server" in q:
                self._server(q["server"])
            new_valid_time = q.get("validTime")
            if new_valid_time and not _VALID_TIME.match(new_valid_time):
                raise SimError(500, "invalid validTime")
            self.check_reject([link.id, link.resource_id])
            link.resource_id = q.get("server", link.resource_id)
            link.parameters = q.get("parameters", link.parameters)
            link.password = q.get("password", link.password)
            link.comment = q.get("comment", link.comment)
            if new_valid_time is not None:
                link.valid_time = new_valid_time
                link.valid_to = _valid_to(_now_ms(), new_valid_time)
            # Merge: a field the update does not name keeps its value; a resent one (a
            # careful client resends what it keeps) is stored as the list shows it.
            if "validFrom" in q:
                link.valid_from = _moment(q["validFrom"])
            if "validTo" in q:
                link.valid_to = _moment(q["validTo"])
            return self.committed(link.as_record())
        if action == "delete":
            self.check_reject([link.id, link.resource_id])
            del links[link.id]
            return self.committed({"id": link.id})
        raise SimError(500, "unknown action")

    def _link(self, lid: str) -> SparkSymlink:
        link = self.state.symlinks.get(lid)
        if link is None:
            raise SimError(500, "not found")
        return link

    # -- /SESSION -------------------------------------------------------------------------
    async def session(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("action") != "list":
            raise SimError(500, "unknown action")
        wanted: set[str] | None = None
        if "id" in q:
            wanted = {q["id"]}
        elif "ids" in q:
            wanted = {i for i in q["ids"].split(",") if i}
        filters = {k: q[k] for k in ("server", "user", "domain", "symlink") if k in q}
        rows = [
            s.as_row()
            for s in self.state.sessions.values()
            if (wanted is None or s.id in wanted)
            and all(getattr(s, k) == v for k, v in filters.items())
        ]
        return web.json_response(_table(SESSION_COLUMNS, rows))

    # -- /CONTROL -------------------------------------------------------------------------
    async def control(self, request: web.Request) -> web.Response:
        q = request.query
        target = q.get("target")
        if target == "gateway":
            return web.json_response(
                {
                    "version": self.version,
                    "buildNumber": self.build_number,
                    "buildTime": "2024-01-01T00:00:00Z",
                    "startTime": self.started_ms,
                }
            )
        if target == "twofa":
            user = _required(q, "user")
            self.check_reject([user])
            self.state.twofa_resets.append(user)
            return self.committed({"user": user})
        if "licenseFile" in q:
            license_file = q["licenseFile"]
            if license_file == ".":
                return web.json_response(self._license())
            self.state.license = license_file
            return self.committed(self._license())
        raise SimError(500, "unknown control request")

    def _license(self) -> dict[str, Any]:
        return {
            "licensee": "rotate simulator",
            "maxSessions": 25,
            "expires": 0,
            "uploaded": self.state.license is not None,
        }


def sparkview_app(
    state: SparkViewState,
    gateway_password: str,
    faults: Faults | None = None,
    **settings: Any,
) -> web.Application:
    """An aiohttp application serving the Spark View API over `state` (see SparkViewSimulator)."""
    return SparkViewSimulator(state, gateway_password, faults, **settings).app()


def _required(q: MultiMapping[str], key: str) -> str:
    value = q.get(key, "")
    if not value:
        raise SimError(500, f"missing {key}")
    return value


def add_access_links(
    state: SparkViewState,
    endpoint: SparkViewSettings,
    new_password: Callable[[], str] | None = None,
) -> list[str]:
    """Access links for every server with a stored logon, as a gateway often has them.

    `<id>-link` embeds the server's logon (user, password and domain, in the endpoint's
    parameter names, between other parameters); `<id>-other` logs on to the same server as
    another account with a password of its own; `<id>-prompt` names the user but no password.
    Returns the ids of the links that embed a server's logon (those a rotation updates).
    """
    alphabet = string.ascii_letters + string.digits
    make = new_password or (lambda: "".join(secrets.choice(alphabet) for _ in range(16)))
    embedding = []
    for server in list(state.servers.values()):
        username = server.rdp.get("username")
        password = server.rdp.get("password")
        if not username or not password:
            continue
        logon = [(endpoint.user_param, username), (endpoint.password_param, password)]
        if server.rdp.get("domain"):
            logon.append((endpoint.domain_param, server.rdp["domain"]))
        around = [("width", "1280"), *logon, ("height", "800")]
        state.add_symlink(
            f"{server.id}-link", server.id, urlencode(around), "5d", comment="helpdesk"
        )
        embedding.append(f"{server.id}-link")
        other = [(endpoint.user_param, f"{username}-other"), (endpoint.password_param, make())]
        state.add_symlink(f"{server.id}-other", server.id, urlencode(other), "8h")
        state.add_symlink(
            f"{server.id}-prompt", server.id, urlencode([(endpoint.user_param, username)])
        )
    return embedding


# -- the hook: seeded from inventory rows, served with an endpoint's settings ----------------
class SparkViewStandIn:
    """The Spark View simulator as `rotate simulate`, the demo and the tests use it."""

    def new_state(self) -> SparkViewState:
        return SparkViewState()

    def seed(self, state: SimCounters, row: Row, password: str) -> None:
        state_of(SparkViewState, state).add_server(
            row.target,
            row.target,
            f"{row.target}.example.test",
            username=row.username,
            password=password,
            domain=row.domain,
        )

    def password(self, state: SimCounters, row: Row) -> str | None:
        return state_of(SparkViewState, state).server_password(row.target)

    def secrets(self, settings: EndpointSettings, env: Mapping[str, str]) -> dict[str, str]:
        """The gateway password the simulator expects, from the endpoint's variable."""
        s = settings_of(SparkViewSettings, settings)
        var = s.gateway_password_env
        if not var:
            raise ValueError(
                f"endpoint {s.name}: the simulator needs gateway_password_env "
                "(it cannot read gateway_password_vault)"
            )
        if not env.get(var):
            raise ValueError(
                f"endpoint {s.name}: set the environment variable {var} "
                "to the gateway password the simulator should expect"
            )
        return {"gateway_password": env[var]}

    def serve(
        self,
        settings: EndpointSettings,
        state: SimCounters,
        faults: Faults | None,
        secrets: Mapping[str, str],
    ) -> SparkViewSimulator:
        s = settings_of(SparkViewSettings, settings)
        if "gateway_password" not in secrets:
            raise ValueError(f"endpoint {s.name!r}: a gateway password is needed")
        return SparkViewSimulator(
            state_of(SparkViewState, state),
            secrets["gateway_password"],
            faults,
            user_param=s.user_param,
            password_param=s.password_param,
            domain_param=s.domain_param,
            not_found=s.missing_errors[0] if s.missing_errors else "not found",
        )
