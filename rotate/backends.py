"""The back ends one invocation talks to, built from the settings: a target per endpoint, an
authority per authority name, and the secrets they need (gateway and bind passwords, tokens)
read from the environment or Vault. A back end that cannot be built (its secret unreadable)
is built as one that fails its probe, so its rows are reported, never raised."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rotate.authorities.base import Authority
from rotate.authorities.none import WARNING as COPY_ONLY
from rotate.errors import AuthorityUnavailable, ConfigError, EndpointUnavailable, StoreError
from rotate.models import NO_AUTHORITY, Account, Credential, Row, Secret
from rotate.registry import authority_type, vendor_of
from rotate.settings import Settings
from rotate.stores.base import DataPlane, SecretStore
from rotate.vendors.base import EndpointSettings, Target


class _Unavailable:
    """A target that could not be built (no gateway password): it fails its probe."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    async def probe(self) -> str:
        raise EndpointUnavailable(self.why)

    def verifiable(self, row: Row) -> bool:
        return False

    async def push(self, row: Row, credential: Credential) -> None:  # pragma: no cover
        raise EndpointUnavailable(self.why)

    async def read_back(self, row: Row) -> Secret | None:  # pragma: no cover
        raise EndpointUnavailable(self.why)

    async def follow_up(self, row: Row, credential: Credential) -> Sequence[str]:
        return ()

    @property
    def requests(self) -> int:
        return 0

    async def aclose(self) -> None:
        pass


class Secrets:
    """Back ends' own credentials (gateway and bind passwords, tokens): the environment, else
    Vault. `store` is the run's store, or what opens one on first need (`rotate discover`
    opens none unless a credential lives in Vault); `close()` closes only one it opened."""

    def __init__(
        self, env: Mapping[str, str], store: SecretStore | Callable[[], SecretStore] | None = None
    ) -> None:
        self.env = env
        self._store = store
        self._opened: SecretStore | None = None

    def secret(self, env_var: str | None, vault_ref: str | None, what: str) -> Secret:
        if env_var and self.env.get(env_var):
            return Secret(self.env[env_var])
        if vault_ref:
            path, _, key = vault_ref.partition("#")
            try:
                return Secret(self._vault().read_field(path, key))
            except StoreError as exc:
                raise StoreError(f"{what} not readable from Vault: {exc}") from None
        raise ConfigError(f"{what}: environment variable {env_var} is not set")

    def vault(self) -> DataPlane:
        return self._vault()

    def optional(self, env_var: str | None) -> Secret | None:
        if env_var and self.env.get(env_var):
            return Secret(self.env[env_var])
        return None

    def _vault(self) -> SecretStore:
        if self._store is None:
            raise StoreError("no Vault to read it from")
        if not callable(self._store):
            return self._store
        if self._opened is None:
            self._opened = self._store()
        return self._opened

    def close(self) -> None:
        """Close the store this opened, if it opened one."""
        if self._opened is not None:
            self._opened.close()


class _UnavailableAuthority:
    """An authority that could not be built (its bind password unreadable): it fails its probe."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    async def probe(self) -> str:
        raise AuthorityUnavailable(self.why)

    async def login(self, account: Account, password: Secret) -> bool:  # pragma: no cover
        raise AuthorityUnavailable(self.why)

    async def change(self, account: Account, password: Secret) -> None:  # pragma: no cover
        raise AuthorityUnavailable(self.why)

    async def aclose(self) -> None:
        pass


def build_authorities(
    rows: Sequence[Row], settings: Settings, store: SecretStore
) -> dict[str, Authority]:
    """One authority per name the rows' accounts use (copy-only ones need none)."""
    secrets = Secrets(settings.env, store)
    built: dict[str, Authority] = {}
    for name in sorted({r.authority for r in rows if r.authority != NO_AUTHORITY}):
        config = settings.authorities[name]
        plugin = authority_type(config.type)
        if plugin is None:  # pragma: no cover - load_settings checked the type
            raise ConfigError(f"authorities.{name}: unknown type {config.type!r}")
        try:
            built[name] = plugin.build(config, secrets)
        except StoreError as exc:
            built[name] = _UnavailableAuthority(name, str(exc))
    return built


def check_environment(rows: Sequence[Row], settings: Settings) -> None:
    """Config that depends on the environment, checked before any network call."""
    problems = []
    for name in sorted({r.endpoint for r in rows}):
        endpoint = settings.endpoints[name]
        for var in vendor_of(endpoint).required_env(endpoint):
            if not settings.env.get(var):
                problems.append(
                    f"endpoint {name}: environment variable {var} (its credential) is not set"
                )
    for name in sorted({r.authority for r in rows}):
        config = settings.authorities.get(name)
        for var in config.required_env() if config is not None else ():
            if not settings.env.get(var):
                problems.append(
                    f"authority {name}: environment variable {var} (its credential) is not set"
                )
        for why in config.unreadable_files() if config is not None else ():
            problems.append(f"authority {name}: {why}")
    if problems:
        raise ConfigError("\n".join(problems))


def build_targets(rows: Sequence[Row], settings: Settings, store: SecretStore) -> dict[str, Target]:
    """One target per endpoint the inventory uses; their credentials from env or Vault."""
    secrets = Secrets(settings.env, store)
    return {
        name: build_target(settings.endpoints[name], settings, secrets)
        for name in sorted({r.endpoint for r in rows})
    }


def build_target(endpoint: EndpointSettings, settings: Settings, secrets: Secrets) -> Target:
    """The target of one endpoint, or one that fails its probe when its credential cannot
    be read from Vault."""
    try:
        return vendor_of(endpoint).build(endpoint, settings.run, secrets)
    except StoreError as exc:
        return _Unavailable(endpoint.name, f"endpoint {endpoint.name}: {exc}")


def settings_warnings(rows: Sequence[Row], settings: Settings) -> tuple[str, ...]:
    """What every report of these rows must say about the settings: checks switched off, and
    accounts whose host account is not changed (copy-only)."""
    warnings = tuple(
        f"endpoint {name}: TLS certificate checks are OFF (insecure = true); "
        "anyone on the path can read the passwords sent"
        for name in sorted({r.endpoint for r in rows})
        if settings.endpoints[name].insecure
    )
    for name in sorted({r.authority for r in rows}):
        config = settings.authorities.get(name)
        warnings += config.warnings() if config is not None else ()
    copy_only = sorted({r.account for r in rows if r.authority == NO_AUTHORITY})
    if copy_only:
        warnings += (f"{len(copy_only)} account(s) have authority = none: {COPY_ONLY}",)
    return warnings
