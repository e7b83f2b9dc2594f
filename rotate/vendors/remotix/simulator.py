"""A stateful simulator of the Remotix HTTP API (address-book connections and cloud computers),
and the hook that seeds and serves it for `rotate simulate`, the demo and the tests."""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rotate.models import Row
from rotate.sim.base import SimCounters, SimError, Simulator, state_of
from rotate.sim.faults import Faults
from rotate.vendors.base import EndpointSettings
from rotate.vendors.config import settings_of
from rotate.vendors.remotix.kinds import CONNECTION
from rotate.vendors.remotix.settings import RemotixSettings

#: protocols of an address-book connection, and types of a cloud computer's connection
CONNECTION_PROTOCOLS = ("NEAR", "RDP", "APPLE")
COMPUTER_TYPES = ("NEAR", "RDP", "VNC")

#: the neutral names the state stores credentials under; the API prefixes them (`rdp.username`)
CREDENTIAL_FIELDS = ("username", "password", "domain")

#: the address-book group seeded connections go to
SEED_GROUP = "Imported"

_SUFFIX = re.compile(r"^(NEAR|RDP|VNC)(?:_([0-9]{1,5}))?$")
_FORBIDDEN_DELETE = re.compile(r"^/(connection|computer)/[^/]+/?$")


def parse_suffix(suffix: str) -> tuple[str, int | None] | None:
    """`RDP_3390` -> ("RDP", 3390); `VNC` -> ("VNC", None); anything else -> None."""
    m = _SUFFIX.match(suffix)
    if m is None:
        return None
    return m.group(1), int(m.group(2)) if m.group(2) else None


def _fields_of(protocol: str) -> tuple[str, ...]:
    return CREDENTIAL_FIELDS if protocol == "RDP" else ("username", "password")


def _credentials(username: str, password: str, domain: str | None) -> dict[str, str]:
    creds: dict[str, str] = {}
    if username:
        creds["username"] = username
    if password:
        creds["password"] = password
    if domain is not None:
        creds["domain"] = domain
    return creds


def _new_uid(taken: Mapping[str, object]) -> str:
    while True:
        uid = f"{secrets.token_hex(2)}-{secrets.token_hex(2)}".upper()
        if uid not in taken:
            return uid


@dataclass
class RemotixGroup:
    """An address-book group."""

    uid: str
    name: str


@dataclass
class RemotixConnection:
    """An address-book connection and its stored credentials (neutral field names)."""

    uid: str
    name: str
    protocol: str  # NEAR | RDP | APPLE
    group_uid: str | None = None
    credentials: dict[str, str] = field(default_factory=dict)


@dataclass
class ComputerConnection:
    """One connection of a cloud computer: settings, their defaults, stored credentials."""

    type: str  # NEAR | RDP | VNC
    port: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # what `null` resets a key to
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        """The path segment: `RDP` or `RDP_3390`."""
        return f"{self.type}_{self.port}" if self.port is not None else self.type


@dataclass
class RemotixComputer:
    """A cloud computer of the owner's Hub."""

    id: str
    name: str
    info: dict[str, Any] = field(default_factory=dict)
    connections: dict[str, ComputerConnection] = field(default_factory=dict)


@dataclass
class RemotixState(SimCounters):
    """Everything a Remotix app knows; mutate only on the server's event loop."""

    groups: dict[str, RemotixGroup] = field(default_factory=dict)
    connections: dict[str, RemotixConnection] = field(default_factory=dict)
    computers: dict[str, RemotixComputer] = field(default_factory=dict)

    # -- seeding --------------------------------------------------------------------------
    def add_group(self, name: str, uid: str | None = None) -> str:
        """Add (or rename) a group; return its uid."""
        uid = uid or _new_uid(self.groups)
        self.groups[uid] = RemotixGroup(uid=uid, name=name)
        return uid

    def add_connection(
        self,
        uid: str,
        name: str,
        protocol: str,
        group_uid: str | None = None,
        username: str = "",
        password: str = "",
        domain: str | None = None,
    ) -> RemotixConnection:
        """Add or replace an address-book connection with the given credentials."""
        protocol = protocol.upper()
        if protocol not in CONNECTION_PROTOCOLS:
            raise ValueError(f"unknown connection protocol {protocol!r}")
        if group_uid is not None and group_uid not in self.groups:
            raise ValueError(f"unknown group {group_uid!r}")
        conn = RemotixConnection(
            uid=uid,
            name=name,
            protocol=protocol,
            group_uid=group_uid,
            credentials=_credentials(username, password, domain),
        )
        self.connections[uid] = conn
        return conn

    def add_computer(
        self,
        id: str,
        name: str,
        connections: Mapping[str, Mapping[str, Any]] | None = None,
        **info: Any,
    ) -> RemotixComputer:
        """Add or replace a computer; `connections` maps `RDP_3390` to its keys.

        Keys may be neutral (`username`) or prefixed (`rdp.username`); credential fields
        become the stored credentials, any other key a setting whose seeded value is its default.
        """
        computer = RemotixComputer(id=id, name=name, info=dict(info))
        self.computers[id] = computer
        for suffix, keys in (connections or {}).items():
            self.add_computer_connection(id, suffix, keys)
        return computer

    def add_computer_connection(
        self, id: str, suffix: str, keys: Mapping[str, Any] | None = None
    ) -> ComputerConnection:
        """Add or replace one connection of an existing computer."""
        parsed = parse_suffix(suffix)
        if parsed is None:
            raise ValueError(f"bad connection type {suffix!r} (expected NEAR|RDP|VNC[_port])")
        creds: dict[str, str] = {}
        settings: dict[str, Any] = {}
        for key, value in (keys or {}).items():
            name = key.rsplit(".", 1)[-1]
            if name in CREDENTIAL_FIELDS:
                if value is not None:
                    creds[name] = str(value)
            else:
                settings[key] = value
        conn = ComputerConnection(
            type=parsed[0],
            port=parsed[1],
            settings=dict(settings),
            defaults=dict(settings),
            credentials=creds,
        )
        self.computers[id].connections[conn.suffix] = conn
        return conn

    # -- inspection -----------------------------------------------------------------------
    def connection_credentials(self, uid: str) -> dict[str, str]:
        """A copy of a connection's stored credentials (`username`, `password`, `domain`)."""
        conn = self.connections.get(uid)
        return dict(conn.credentials) if conn else {}

    def connection_password(self, uid: str) -> str | None:
        """The password a connection stores, or None."""
        return self.connection_credentials(uid).get("password")

    def computer_credentials(self, id: str, suffix: str) -> dict[str, str]:
        """A copy of a computer connection's stored credentials."""
        computer = self.computers.get(id)
        conn = computer.connections.get(suffix) if computer else None
        return dict(conn.credentials) if conn else {}

    def computer_password(self, id: str, suffix: str) -> str | None:
        """The password a computer connection stores, or None."""
        return self.computer_credentials(id, suffix).get("password")


class RemotixSimulator(Simulator):
    """The Remotix HTTP API over a RemotixState; the key prefixes per protocol are settings."""

    state: RemotixState

    def __init__(
        self,
        state: RemotixState,
        faults: Faults | None = None,
        *,
        token: str | None = None,
        near_key: str = "rxp",
        rdp_key: str = "rdp",
        apple_key: str = "apple",
        vnc_key: str = "apple",
        vnc_max_password: int = 8,
        missing_status: int = 404,
    ) -> None:
        super().__init__(state, faults)
        self.missing_status = missing_status  # what it answers for an object not there
        self.token = token
        self.connection_prefix = {"NEAR": near_key, "RDP": rdp_key, "APPLE": apple_key}
        self.computer_prefix = {"NEAR": near_key, "RDP": rdp_key, "VNC": vnc_key}
        self.vnc_max_password = vnc_max_password

    # -- policy ---------------------------------------------------------------------------
    def authorize(self, request: web.Request) -> web.Response | None:
        if self.token is None:
            return None
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, f"Bearer {self.token}".encode()):
            return None
        return self.error_response(401, "unauthorized", {"WWW-Authenticate": "Bearer"})

    def forbidden_call(self, request: web.Request) -> str | None:
        if request.method == "DELETE" and _FORBIDDEN_DELETE.match(request.path):
            return f"DELETE {request.path.rstrip('/')}"
        return None

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/groups", self.get_groups)
        r.add_get("/group/{uid}", self.get_group)
        r.add_put("/group/", self.create_group)
        r.add_put("/connection/", self.create_connection)
        r.add_put("/connection/{uid}", self.update_connection)
        r.add_put("/connection/{uid}/credentials", self.put_connection_credentials)
        r.add_delete("/connection/{uid}/credentials", self.delete_connection_credentials)
        r.add_delete("/connection/{uid}", self.delete_connection)
        r.add_get("/computer/{id}", self.get_computer)
        r.add_delete("/computer/{id}", self.delete_computer)
        r.add_get("/computer/{id}/connections", self.get_computer_connections)
        r.add_get("/computer/{id}/{ctype}", self.get_computer_connection)
        r.add_put("/computer/{id}/{ctype}", self.put_computer_connection)
        r.add_get("/computer/{id}/{ctype}/credentials", self.get_computer_credentials)
        r.add_delete("/computer/{id}/{ctype}/credentials", self.delete_computer_credentials)

    # -- groups ---------------------------------------------------------------------------
    async def get_groups(self, request: web.Request) -> web.Response:
        groups = [{"group_uid": g.uid, "name": g.name} for g in self.state.groups.values()]
        return web.json_response(groups)

    async def get_group(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.state.groups:
            raise SimError(self.missing_status, "group not found")
        items = [
            {"uid": c.uid, "name": c.name, "type": c.protocol}
            for c in self.state.connections.values()
            if c.group_uid == uid
        ]
        return web.json_response(items)

    async def create_group(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        _only(body, {"name"})
        name = _string(body, "name")
        uid = self.state.add_group(name)
        return self.committed({"group_uid": uid})

    # -- address-book connections ---------------------------------------------------------
    async def create_connection(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        _only(body, {"name", "category_uid", "type"})
        name = _string(body, "name")
        group = self._group_of(body)
        protocol = self._protocol_of(body) or "RDP"
        uid = _new_uid(self.state.connections)
        self.state.add_connection(uid, name, protocol, group_uid=group)
        return self.committed({"uid": uid})

    async def update_connection(self, request: web.Request) -> web.Response:
        conn = self._connection(request)
        body = await _json_object(request)
        _only(body, {"name", "category_uid", "type"})
        name = _string(body, "name") if "name" in body else None
        group = self._group_of(body)
        protocol = self._protocol_of(body)
        self.check_reject([conn.uid])
        if name is not None:
            conn.name = name
        if "category_uid" in body:
            conn.group_uid = group
        if protocol is not None and protocol != conn.protocol:
            conn.protocol = protocol
            conn.credentials.clear()  # another protocol's keys mean nothing to it
        return self.committed({})

    async def put_connection_credentials(self, request: web.Request) -> web.Response:
        conn = self._connection(request)
        body = await _json_object(request)
        prefix = self.connection_prefix[conn.protocol]
        changes = _credential_changes(body, prefix, _fields_of(conn.protocol), conn.protocol)
        self.check_reject([conn.uid])
        _apply(conn.credentials, changes)
        return self.committed({})

    async def delete_connection_credentials(self, request: web.Request) -> web.Response:
        conn = self._connection(request)
        self.check_reject([conn.uid])
        conn.credentials.clear()
        return self.committed({})

    async def delete_connection(self, request: web.Request) -> web.Response:
        conn = self._connection(request)
        self.check_reject([conn.uid])
        del self.state.connections[conn.uid]
        return self.committed({})

    # -- cloud computers ------------------------------------------------------------------
    async def get_computer(self, request: web.Request) -> web.Response:
        computer = self._computer(request)
        return web.json_response({**computer.info, "id": computer.id, "name": computer.name})

    async def delete_computer(self, request: web.Request) -> web.Response:
        computer = self._computer(request)
        self.check_reject([computer.id])
        del self.state.computers[computer.id]
        return self.committed({})

    async def get_computer_connections(self, request: web.Request) -> web.Response:
        computer = self._computer(request)
        items = [
            {"id": c.suffix, "type": c.type, "port": c.port} for c in computer.connections.values()
        ]
        return web.json_response(items)

    async def get_computer_connection(self, request: web.Request) -> web.Response:
        _, conn = self._computer_connection(request)
        prefix = self.computer_prefix[conn.type]
        view: dict[str, Any] = {"type": conn.type, "port": conn.port, **conn.settings}
        for name, value in conn.credentials.items():
            if name != "password":
                view[f"{prefix}.{name}"] = value
        return web.json_response(view)

    async def put_computer_connection(self, request: web.Request) -> web.Response:
        computer, conn = self._computer_connection(request)
        body = await _json_object(request)
        prefix = self.computer_prefix[conn.type]
        known = set(conn.settings) | set(conn.defaults)
        cred_body = {k: v for k, v in body.items() if k not in known}
        changes = _credential_changes(cred_body, prefix, _fields_of(conn.type), conn.type)
        password = changes.get("password")
        if conn.type == "VNC" and password is not None and len(password) > self.vnc_max_password:
            raise SimError(
                400, f"a VNC password is at most {self.vnc_max_password} characters long"
            )
        self.check_reject([computer.id, f"{computer.id}/{conn.suffix}"])
        for key in known & set(body):
            value = body[key]
            if value is not None:
                conn.settings[key] = value
            elif key in conn.defaults:
                conn.settings[key] = conn.defaults[key]
            else:
                conn.settings.pop(key, None)
        _apply(conn.credentials, changes)
        return self.committed({})

    async def get_computer_credentials(self, request: web.Request) -> web.Response:
        _, conn = self._computer_connection(request)
        prefix = self.computer_prefix[conn.type]
        return web.json_response({f"{prefix}.{k}": v for k, v in conn.credentials.items()})

    async def delete_computer_credentials(self, request: web.Request) -> web.Response:
        computer, conn = self._computer_connection(request)
        self.check_reject([computer.id, f"{computer.id}/{conn.suffix}"])
        conn.credentials.clear()
        return self.committed({})

    # -- lookups --------------------------------------------------------------------------
    def _connection(self, request: web.Request) -> RemotixConnection:
        conn = self.state.connections.get(request.match_info["uid"])
        if conn is None:
            raise SimError(self.missing_status, "connection not found")
        return conn

    def _computer(self, request: web.Request) -> RemotixComputer:
        computer = self.state.computers.get(request.match_info["id"])
        if computer is None:
            raise SimError(self.missing_status, "computer not found")
        return computer

    def _computer_connection(
        self, request: web.Request
    ) -> tuple[RemotixComputer, ComputerConnection]:
        computer = self._computer(request)
        ctype = request.match_info["ctype"]
        if parse_suffix(ctype) is None:
            raise SimError(self.missing_status, f"unknown connection type {ctype!r}")
        conn = computer.connections.get(ctype)
        if conn is None:
            raise SimError(self.missing_status, "connection not found")
        return computer, conn

    def _group_of(self, body: Mapping[str, Any]) -> str | None:
        group = body.get("category_uid")
        if group is None:
            return None
        if not isinstance(group, str) or group not in self.state.groups:
            raise SimError(self.missing_status, "group not found")
        return group

    @staticmethod
    def _protocol_of(body: Mapping[str, Any]) -> str | None:
        protocol = body.get("type")
        if protocol is None:
            return None
        if not isinstance(protocol, str) or protocol.upper() not in CONNECTION_PROTOCOLS:
            raise SimError(400, f"unknown connection type {protocol!r}")
        return protocol.upper()


def remotix_app(
    state: RemotixState,
    faults: Faults | None = None,
    token: str | None = None,
    **settings: Any,
) -> web.Application:
    """An aiohttp application serving the Remotix API over `state` (see RemotixSimulator)."""
    return RemotixSimulator(state, faults, token=token, **settings).app()


# -- request helpers -------------------------------------------------------------------------
async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.text())
    except (ValueError, UnicodeDecodeError):
        raise SimError(400, "malformed JSON body") from None
    if not isinstance(body, dict):
        raise SimError(400, "the body must be a JSON object")
    return body


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise SimError(400, f"unknown key(s): {', '.join(extra)}")


def _string(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise SimError(400, f"{key!r} must be a non-empty string")
    return value


def _credential_changes(
    body: Mapping[str, Any], prefix: str, allowed: tuple[str, ...], protocol: str
) -> dict[str, str | None]:
    """Map `{"rdp.password": "x"}` to `{"password": "x"}`; a foreign key is a 400."""
    changes: dict[str, str | None] = {}
    for key, value in body.items():
        head, _, name = key.partition(".")
        if head != prefix or name not in allowed:
            raise SimError(400, f"key {key!r} does not belong to a {protocol} connection")
        if value is not None and not isinstance(value, str):
            raise SimError(400, f"{key!r} must be a string or null")
        changes[name] = value
    return changes


def _apply(credentials: dict[str, str], changes: Mapping[str, str | None]) -> None:
    for name, value in changes.items():
        if value is None:
            credentials.pop(name, None)
        else:
            credentials[name] = value


# -- the hook: seeded from inventory rows, served with an endpoint's settings ----------------
class RemotixStandIn:
    """The Remotix simulator as `rotate simulate`, the demo and the tests use it."""

    def new_state(self) -> RemotixState:
        return RemotixState()

    def seed(self, state: SimCounters, row: Row, password: str) -> None:
        state = state_of(RemotixState, state)
        if row.kind == CONNECTION.name:
            state.add_connection(
                row.target,
                row.target,
                row.protocol,
                group_uid=_seed_group(state),
                username=row.username,
                password=password,
                domain=row.domain,
            )
            return
        if row.target not in state.computers:
            state.add_computer(row.target, row.target)
        keys = {"username": row.username, "password": password}
        if row.domain is not None:
            keys["domain"] = row.domain
        state.add_computer_connection(row.target, row.protocol_suffix, keys)

    def password(self, state: SimCounters, row: Row) -> str | None:
        state = state_of(RemotixState, state)
        if row.kind == CONNECTION.name:
            return state.connection_password(row.target)
        return state.computer_password(row.target, row.protocol_suffix)

    def secrets(self, settings: EndpointSettings, env: Mapping[str, str]) -> dict[str, str]:
        """The bearer token the simulator checks, when the endpoint's `token_env` is set."""
        var = settings_of(RemotixSettings, settings).token_env
        return {"token": env[var]} if var and env.get(var) else {}

    def serve(
        self,
        settings: EndpointSettings,
        state: SimCounters,
        faults: Faults | None,
        secrets: Mapping[str, str],
    ) -> RemotixSimulator:
        s = settings_of(RemotixSettings, settings)
        return RemotixSimulator(
            state_of(RemotixState, state),
            faults,
            token=secrets.get("token"),
            near_key=s.near_key,
            rdp_key=s.rdp_key,
            apple_key=s.apple_key,
            vnc_key=s.vnc_key,
            missing_status=s.missing_status,
        )


def _seed_group(state: RemotixState) -> str:
    for group in state.groups.values():
        if group.name == SEED_GROUP:
            return group.uid
    return state.add_group(SEED_GROUP)
