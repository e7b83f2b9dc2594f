"""What a vendor is: the Target a run talks to, the settings every endpoint has, the kinds of
stored logon it serves, and the `VendorType` plugin that ties them together.

A vendor (Remotix, Spark View, or one another package adds through the entry point group
`rotate.vendors`) parses its own `[endpoints.<name>]` sections, names the inventory kinds it
serves, builds the Target a run talks to, proposes inventory rows for `rotate discover`, and
serves a simulator of its API for `rotate simulate`, the demo and the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rotate.authorities.base import SecretSource
from rotate.models import Credential, Row, Secret

if TYPE_CHECKING:
    import httpx

    from rotate.settings import RunSettings
    from rotate.sim.base import SimCounters, Simulator
    from rotate.sim.faults import Faults


class Target(Protocol):
    """One vendor endpoint. Every write is an idempotent overwrite with the given value."""

    name: str

    @property
    def requests(self) -> int:
        """Round trips made so far, retries included."""
        ...

    async def probe(self) -> str:
        """Check the endpoint answers and accepts our credentials; EndpointUnavailable if not."""
        ...

    def verifiable(self, row: Row) -> bool:
        """Whether the API can read this row's stored password back."""
        ...

    async def push(self, row: Row, credential: Credential) -> None:
        """Store the credential on the target; Rejected, OutcomeUnknown or RemoteError if not."""
        ...

    async def read_back(self, row: Row) -> Secret | None:
        """The password the target now holds, or None when its answer has none."""
        ...

    async def follow_up(self, row: Row, credential: Credential) -> Sequence[str]:
        """After a promoted rotation: update other places holding the password; say which."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class UsageCheck:
    """What a read-only look at one usage's target found (never a password)."""

    exists: bool
    username: str | None = None  # the username it stores, where the API shows one
    detail: str = ""  # why it is missing (the vendor's words), or what was read


@runtime_checkable
class Inspectable(Protocol):
    """A Target that can look at a usage without writing (`rotate plan` checks every usage
    with it); a vendor's target without `inspect` leaves its usages "not checked"."""

    async def inspect(self, row: Row) -> UsageCheck:
        """Whether the row's target exists at the endpoint, and the username it stores;
        RemoteError when the endpoint cannot tell."""
        ...


@dataclass(frozen=True)
class EndpointSettings:
    """The settings every endpoint has; each vendor adds its own fields in a subclass."""

    name: str
    system: str  # the vendor's name (`remotix`, `sparkview`, ...)
    url: str
    per_endpoint_concurrency: int | None = None  # default: [run] per_endpoint_concurrency
    timeout_s: float | None = None
    insecure: bool = False  # TLS without certificate checks: warned about everywhere
    ca_bundle: str | None = None  # PEM file of the CA(s) that signed the endpoint's cert
    client_cert: str | None = None  # PEM client certificate, for gateways that ask for one
    client_key: str | None = None  # its key, when not in client_cert


@dataclass(frozen=True)
class KindSpec:
    """One kind of stored logon a vendor serves (an inventory `kind`), and its rules."""

    name: str
    protocols: tuple[str, ...]  # upper case
    default_protocol: str | None = None  # None: every row names one
    port: bool = False  # a row may name a port (a connection path suffix such as `RDP_3390`)
    domain_protocols: frozenset[str] = frozenset({"RDP"})  # protocols whose logon has a domain
    protocol_in_path: bool = True  # the default Vault path ends in /<protocol>[_<port>]
    # the longest password a protocol's logon takes; protocol -> why a row's is not one here
    max_length: Mapping[str, int] = field(default_factory=dict, hash=False)
    hints: Mapping[str, str] = field(default_factory=dict, hash=False)

    def max_password(self, protocol: str) -> int | None:
        """The longest password this protocol's logon takes (None: no limit of its own)."""
        return self.max_length.get(protocol.upper())

    def vault_path(
        self, prefix: str, endpoint: str, target: str, protocol: str, port: int | None
    ) -> str:
        """`<prefix>/<endpoint>/<kind>/<target>[/<protocol>[_<port>]]`, relative to the mount."""
        path = f"{prefix}/{endpoint}/{self.name}/{target}"
        if not self.protocol_in_path:
            return path
        return f"{path}/{protocol}_{port}" if port is not None else f"{path}/{protocol}"


class VendorSecrets(SecretSource, Protocol):
    """Where an endpoint's own credentials come from (a gateway password, a bearer token)."""

    def optional(self, env_var: str | None) -> Secret | None:
        """The secret in environment variable `env_var`, or None when it is not set."""
        ...


class DiscoverySink(Protocol):
    """Where a vendor's `discover` puts what one endpoint holds (never a password)."""

    def add(
        self,
        kind: str,
        target: str,
        protocol: str,
        username: str = "",
        *,
        port: int | None = None,
        domain: str | None = None,
        policy: str = "",
        notes: str = "",
    ) -> None:
        """Propose one inventory row of this endpoint (an empty username: unknown)."""
        ...

    def warn(self, message: str, *, partial: bool = False) -> None:
        """Say what was skipped; `partial` when something could not be read."""
        ...

    def policy_within(self, max_length: int) -> str | None:
        """A config policy making passwords of at most `max_length` characters: "" for the
        default one, else its name; None when there is none."""
        ...


class VendorSimulator(Protocol):
    """A vendor's stand-in: a state seeded from inventory rows, served as an aiohttp app."""

    def new_state(self) -> SimCounters:
        """An empty state."""
        ...

    def seed(self, state: SimCounters, row: Row, password: str) -> None:
        """Add the object `row` refers to, holding its username, domain and `password`."""
        ...

    def password(self, state: SimCounters, row: Row) -> str | None:
        """The password the state holds for `row` (None: no such object there)."""
        ...

    def secrets(self, settings: EndpointSettings, env: Mapping[str, str]) -> dict[str, str]:
        """What the simulator must expect (a token, a gateway password), read from `env` and
        named as `serve` takes them; ValueError saying which variable to set."""
        ...

    def serve(
        self,
        settings: EndpointSettings,
        state: SimCounters,
        faults: Faults | None,
        secrets: Mapping[str, str],
    ) -> Simulator:
        """The simulator of this endpoint over `state`, its API settings mirrored."""
        ...


class VendorType(Protocol):
    """A vendor (`system = "remotix"`): a plugin the registry finds by its name."""

    name: str
    kinds: Mapping[str, KindSpec]  # the inventory kinds its endpoints serve, by name

    def parse(
        self, name: str, table: Mapping[str, Any], errors: list[str]
    ) -> EndpointSettings | None:
        """Settings from `[endpoints.<name>]`; every problem appended to `errors`."""
        ...

    def required_env(self, settings: EndpointSettings) -> tuple[str, ...]:
        """Environment variables a run needs for this endpoint, checked before any call."""
        ...

    def build(
        self,
        settings: EndpointSettings,
        run: RunSettings,
        secrets: VendorSecrets,
        client: httpx.AsyncClient | None = None,
    ) -> Target:
        """The target a run talks to (`client`: a test's own transport); StoreError when
        its credential cannot be read."""
        ...

    async def discover(self, target: Target, sink: DiscoverySink) -> None:
        """Propose a row per stored logon of a probed endpoint this type built."""
        ...

    @property
    def simulator(self) -> VendorSimulator:
        """Its simulator, for `rotate simulate`, the demo and the tests."""
        ...
