"""Config file (TOML) + environment -> frozen settings, with every problem reported at once."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rotate.authorities.base import AuthoritySettings
from rotate.configparse import (
    FORBIDDEN_SECRET_KEYS,
    build,
    not_negative,
    positive,
    timeouts,
    unreadable,
    url_problem,
)
from rotate.errors import ConfigError
from rotate.models import NO_AUTHORITY, Secret
from rotate.vendors.base import EndpointSettings
from rotate.vendors.config import parse_endpoint

MAX_PASSWORD_LENGTH = 256
_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DEFAULT_SYMBOLS = "!#%+-.:=?@^_~"


@dataclass(frozen=True)
class VaultSettings:
    """Where the secrets live and how to log in."""

    addr: str = "http://127.0.0.1:8200"
    mount: str = "secret"
    prefix: str = "rotate"
    pending_prefix: str = ""  # journal records of candidates; default "<prefix>/_pending"
    auth: str = "token"  # token | approle | kubernetes (see rotate/vaultauth.py)
    token: Secret | None = field(default=None, repr=False)  # from VAULT_TOKEN or token_file only
    token_file: str = "~/.vault-token"  # noqa: S105 - a path, not a secret
    # auth = "approle": role id and secret id from VAULT_ROLE_ID / VAULT_SECRET_ID, else from
    # these files (read at login); never from the config file itself
    role_id: Secret | None = field(default=None, repr=False)  # from VAULT_ROLE_ID only
    secret_id: Secret | None = field(default=None, repr=False)  # from VAULT_SECRET_ID only
    role_id_file: str | None = None
    secret_id_file: str | None = None
    approle_mount: str = "approle"
    # auth = "kubernetes": the pod's service-account JWT (read at login: the kubelet rotates it)
    kubernetes_role: str | None = None
    kubernetes_jwt_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    kubernetes_mount: str = "kubernetes"
    # a writing run first asks Vault (sys/capabilities-self) whether its token may do what
    # the run needs, and refuses before any change when it may not
    preflight: bool = True
    cacert: str | None = None
    namespace: str | None = None
    timeout_s: float = 10.0
    connections: int = 16  # requests in flight to Vault at once (its connection pool)

    @property
    def pending_root(self) -> str:
        return self.pending_prefix or f"{self.prefix}/_pending"

    @property
    def lease_root(self) -> str:
        """Where run leases live (one writer at a time), apart from every secret."""
        return f"{self.prefix}/_lease"

    @property
    def stale_root(self) -> str:
        """Where the usages that did not take their account's password are recorded."""
        return f"{self.prefix}/_stale"


@dataclass(frozen=True)
class RunSettings:
    """Bounds and retry behaviour of a run."""

    stage_batch: int = 100  # candidates staged in one journal record before they are pushed
    concurrency: int = 64
    per_endpoint_concurrency: int = 8
    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 0.5  # first retry delay; doubles each retry, with jitter
    max_backoff_s: float = 10.0
    max_retry_after_s: float = 60.0  # a longer Retry-After is not waited for
    max_age_days: int = 90  # default when a row gives none
    lease_name: str = "default"  # runs sharing a lease name never rotate at the same time
    lease_ttl_s: float = 300.0  # renewed every third of this while the run lives
    # the authority of rows that name none: an [authorities.<name>] section, or "none" for
    # copy-only rotation; empty: every row must name one
    authority: str = ""


@dataclass(frozen=True)
class PolicySettings:
    """A password policy: length, required classes, allowed symbols."""

    name: str
    length: int = 24
    max_length: int | None = None  # the target's maximum; `length` must not exceed it
    lower: bool = True
    upper: bool = True
    digits: bool = True
    symbols: bool = True
    symbol_set: str = DEFAULT_SYMBOLS
    # "secrets": made here with Python's secrets module from the rules above; "vault": asked
    # of Vault's password policy `vault_policy` (sys/policies/password/<name>/generate), and
    # each candidate checked to be `length` characters long.
    generator: str = "secrets"
    vault_policy: str | None = None


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one invocation."""

    vault: VaultSettings = field(default_factory=VaultSettings)
    run: RunSettings = field(default_factory=RunSettings)
    policies: Mapping[str, PolicySettings] = field(
        default_factory=lambda: {"default": PolicySettings(name="default")}
    )
    endpoints: Mapping[str, EndpointSettings] = field(default_factory=dict)
    authorities: Mapping[str, AuthoritySettings] = field(default_factory=dict)
    source: str = "<defaults>"
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def with_endpoint_urls(self, urls: Mapping[str, str]) -> Settings:
        """A copy with some endpoint URLs replaced (the demo points them at simulators)."""
        endpoints = {n: replace(e, url=urls.get(n, e.url)) for n, e in self.endpoints.items()}
        return replace(self, endpoints=endpoints)


_SECTIONS = {"vault", "run", "policies", "endpoints", "authorities"}
_COMMON_ENDPOINT_KEYS = frozenset(f.name for f in fields(EndpointSettings)) - {"name", "system"}
VAULT_AUTH_METHODS = ("token", "approle", "kubernetes")
# [vault] keys that would put a login secret in the file (token and secret_id are above)
_VAULT_SECRET_KEYS = ("role_id", "jwt", "kubernetes_jwt")


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the config file (if any) and apply the environment; raise ConfigError listing all.
    Each section is parsed on its own ([endpoints.*] and [authorities.*] by the back end
    their `system` or `type` names), and every problem in any of them is reported at once."""
    env = dict(os.environ if env is None else env)
    errors: list[str] = []
    raw, source = _read(path)
    for key in raw:
        if key not in _SECTIONS:
            errors.append(f"unknown section [{key}] (known: {', '.join(sorted(_SECTIONS))})")

    def table(name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            errors.append(f"[{name}] must be a table")
            return {}
        return value

    vault = _vault(table("vault"), env, errors)
    run = _run(table("run"), errors)
    policies = _policies(table("policies"), errors)
    endpoints = _endpoints(table("endpoints"), errors)
    authorities = _authorities(table("authorities"), errors)
    if run.authority and run.authority != NO_AUTHORITY and run.authority not in authorities:
        known = ", ".join([NO_AUTHORITY, *sorted(authorities)])
        errors.append(
            f"run.authority: {run.authority!r} is not an [authorities.<name>] section "
            f"(known: {known})"
        )
    if errors:
        raise ConfigError(f"config {source} rejected:\n" + "\n".join(f"  - {e}" for e in errors))
    return Settings(
        vault=vault,
        run=run,
        policies=policies,
        endpoints=endpoints,
        authorities=authorities,
        source=source,
        env=env,
    )


def _read(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """The config file's tables, and how to name it in messages."""
    if path is None:
        return {}, "<defaults>"
    p = Path(path)
    try:
        # utf-8-sig: a BOM (Windows editors) is not a TOML error at line 1, column 1
        return tomllib.loads(p.read_text(encoding="utf-8-sig")), str(p)
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None


def _vault(raw: Mapping[str, Any], env: Mapping[str, str], errors: list[str]) -> VaultSettings:
    """[vault], then the environment over it (VAULT_ADDR, VAULT_TOKEN, ...)."""
    for key in _VAULT_SECRET_KEYS:
        if key in raw:
            errors.append(
                f"vault.{key}: secrets never live in the config file; "
                "use the environment or a file (see README)"
            )
    raw = {k: v for k, v in raw.items() if k not in _VAULT_SECRET_KEYS}
    vault = build(VaultSettings, raw, "vault", errors) or VaultSettings()
    vault = replace(vault, **_vault_overrides(vault, env, errors))
    errors.extend(vault_auth_problems(vault))
    if why := url_problem(vault.addr):
        errors.append(f"vault.addr: {why}")
    for key in ("mount", "prefix", "pending_prefix", "approle_mount", "kubernetes_mount"):
        value = getattr(vault, key)
        if key == "pending_prefix" and not value:
            continue  # empty: the default, <prefix>/_pending
        if (
            not value
            or value.strip("/") != value
            or ".." in value.split("/")
            or not value.isprintable()
        ):
            errors.append(
                f"vault.{key}: {value!r} must be a non-empty path without "
                "leading or trailing '/', '..' or control characters"
            )
    if vault.pending_prefix and (vault.prefix + "/").startswith(vault.pending_prefix + "/"):
        # journal records live under <pending_root>: every secret would lie in the pending area
        errors.append(
            f"vault.pending_prefix: {vault.pending_prefix!r} must be neither the prefix "
            f"{vault.prefix!r} nor a parent of it"
        )
    positive(errors, "vault", timeout_s=vault.timeout_s, connections=vault.connections)
    timeouts(errors, "vault", timeout_s=vault.timeout_s)
    return vault


def _vault_overrides(
    vault: VaultSettings, env: Mapping[str, str], errors: list[str]
) -> dict[str, Any]:
    """What the environment (and the token file) set over [vault]."""
    overrides: dict[str, Any] = {}
    for var, attr in (
        ("VAULT_ADDR", "addr"),
        ("VAULT_CACERT", "cacert"),
        ("VAULT_NAMESPACE", "namespace"),
    ):
        if env.get(var):
            overrides[attr] = env[var]
    # With a login method the run gets its own token: VAULT_TOKEN (perhaps a stale one in a
    # scheduler's environment) and the token file are not used, nor read.
    token = env.get("VAULT_TOKEN") if vault.auth == "token" else None
    if not token and vault.auth == "token":
        token_path = Path(vault.token_file).expanduser()
        try:
            token = token_path.read_text(encoding="utf-8").strip() or None
        except OSError:
            token = None
        except ValueError as exc:  # a NUL in the path, or a file that is not UTF-8 text
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            errors.append(f"vault.token_file: {vault.token_file!r} cannot be read: {reason}")
            token = None
    if token:
        overrides["token"] = Secret(token)
    if vault.auth == "approle":
        for var, attr in (("VAULT_ROLE_ID", "role_id"), ("VAULT_SECRET_ID", "secret_id")):
            if env.get(var, "").strip():
                overrides[attr] = Secret(env[var].strip())
    return overrides


def _run(raw: Mapping[str, Any], errors: list[str]) -> RunSettings:
    """[run]: the bounds and retry behaviour of a run."""
    run = build(RunSettings, raw, "run", errors) or RunSettings()
    positive(
        errors,
        "run",
        concurrency=run.concurrency,
        stage_batch=run.stage_batch,
        per_endpoint_concurrency=run.per_endpoint_concurrency,
        timeout_s=run.timeout_s,
        max_age_days=run.max_age_days,
        lease_ttl_s=run.lease_ttl_s,
    )
    not_negative(
        errors,
        "run",
        retries=run.retries,
        backoff_s=run.backoff_s,
        max_backoff_s=run.max_backoff_s,
        max_retry_after_s=run.max_retry_after_s,
    )
    timeouts(errors, "run", timeout_s=run.timeout_s)
    name = run.lease_name
    if not name or any(c in name for c in "/ \t") or name in (".", ".."):
        errors.append(f"run.lease_name: {name!r} must be one path segment")
    return run


def _policies(raw: Mapping[str, Any], errors: list[str]) -> dict[str, PolicySettings]:
    """Each [policies.<name>], and `default` when the file names none."""
    policies: dict[str, PolicySettings] = {}
    for name, data in raw.items():
        if not isinstance(data, dict):
            errors.append(f"[policies.{name}] must be a table")
            continue
        policy = build(PolicySettings, data, f"policies.{name}", errors, name=name)
        if policy is not None:
            errors.extend(policy_problems(policy))
            policies[name] = policy
    policies.setdefault("default", PolicySettings(name="default"))
    return policies


def _tables(
    raw: Mapping[str, Any], section: str, what: str, errors: list[str]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, where, table) of each `[<section>.<name>]`; a bad name or a non-table is a
    problem (a bad table is skipped)."""
    for name, data in raw.items():
        where = f"{section}.{name}"
        if not _ENDPOINT_NAME.fullmatch(name):
            # The name is a segment of Vault paths and of report file rows.
            errors.append(
                f"[{where}]: an {what} name is letters, digits, '.', '_' and '-' only, "
                "starting with a letter or digit"
            )
        if not isinstance(data, dict):
            errors.append(f"[{where}] must be a table")
            continue
        yield name, where, data


def _endpoints(raw: Mapping[str, Any], errors: list[str]) -> dict[str, EndpointSettings]:
    """Each [endpoints.<name>] section, parsed by the vendor its `system` names."""
    from rotate.registry import vendor_names, vendor_type

    found: dict[str, EndpointSettings] = {}
    for name, where, data in _tables(raw, "endpoints", "endpoint", errors):
        system = data.get("system")
        vendor = vendor_type(system) if isinstance(system, str) else None
        if "system" not in data:
            errors.append(f"{where}: missing required key 'system'")
        elif vendor is None:
            known = ", ".join(vendor_names())
            errors.append(
                f"{where}.system: expected one of {known}, got {type(system).__name__} {system!r}"
            )
        if vendor is None:
            # the other keys belong to a vendor: those every endpoint has are checked, and
            # none may hold a secret
            checked = _COMMON_ENDPOINT_KEYS | FORBIDDEN_SECRET_KEYS
            common = {k: v for k, v in data.items() if k in checked}
            parse_endpoint(EndpointSettings, name, common, errors, system="")
            continue
        parsed = vendor.parse(name, data, errors)
        if parsed is not None:
            found[name] = parsed
    return found


def _authorities(raw: Mapping[str, Any], errors: list[str]) -> dict[str, AuthoritySettings]:
    """Each [authorities.<name>] section, parsed by the plugin its `type` names."""
    from rotate.registry import authority_type, authority_type_names

    found: dict[str, AuthoritySettings] = {}
    for name, where, data in _tables(raw, "authorities", "authority", errors):
        kind = data.get("type")
        plugin = authority_type(kind) if isinstance(kind, str) else None
        if plugin is None:
            known = ", ".join(authority_type_names())
            shown = "missing" if kind is None else repr(kind)
            errors.append(f"{where}.type: {shown}; expected one of {known}")
            continue
        if name == NO_AUTHORITY and kind != NO_AUTHORITY:
            errors.append(f"[{where}]: the name 'none' is kept for copy-only rotation")
            continue
        parsed = plugin.parse(name, data, errors)
        if parsed is not None:
            found[name] = parsed
    return found


def vault_auth_problems(vault: VaultSettings) -> list[str]:
    """What keeps the login method from working, found before any network call.

    Only the sources of the login secrets are checked (an environment variable set, or a file
    that exists and is readable); the files are read at login, never echoed.
    """
    if vault.auth not in VAULT_AUTH_METHODS:
        supported = ", ".join(repr(m) for m in VAULT_AUTH_METHODS)
        return [f"vault.auth: {vault.auth!r} is not supported (supported: {supported})"]
    problems = []
    if vault.auth == "approle":
        for what, value, var, key in (
            ("role id", vault.role_id, "VAULT_ROLE_ID", "role_id_file"),
            ("secret id", vault.secret_id, "VAULT_SECRET_ID", "secret_id_file"),
        ):
            path = getattr(vault, key)
            if value is not None:
                continue  # the environment wins over the file
            if not path:
                problems.append(
                    f"vault: auth = 'approle' needs a {what}: set {var} "
                    f"or name a file in vault.{key}"
                )
            elif why := unreadable(path):
                problems.append(f"vault.{key}: {path!r} {why}")
    elif vault.auth == "kubernetes":
        if not vault.kubernetes_role:
            problems.append(
                "vault: auth = 'kubernetes' needs vault.kubernetes_role (the Vault role "
                "bound to this service account)"
            )
        if why := unreadable(vault.kubernetes_jwt_file):
            problems.append(
                f"vault.kubernetes_jwt_file: {vault.kubernetes_jwt_file!r} {why} "
                "(is this running in a pod with a service-account token?)"
            )
    return problems


def policy_problems(policy: PolicySettings) -> list[str]:
    """What makes a policy unusable (an empty list when it is fine)."""
    where = f"policies.{policy.name}"
    problems = []
    if policy.generator not in ("secrets", "vault"):
        problems.append(f"{where}.generator: {policy.generator!r} is not 'secrets' or 'vault'")
    if policy.generator == "vault" and not (
        policy.vault_policy and re.fullmatch(r"[A-Za-z0-9._-]{1,128}", policy.vault_policy)
    ):
        problems.append(
            f"{where}.vault_policy: generator = 'vault' needs the name of a Vault password policy"
        )
    classes = sum((policy.lower, policy.upper, policy.digits, policy.symbols))
    if classes == 0:
        problems.append(f"{where}: at least one character class must be enabled")
    if policy.length < max(classes, 4):
        problems.append(
            f"{where}.length: {policy.length} is too short (at least {max(classes, 4)})"
        )
    if policy.length > MAX_PASSWORD_LENGTH:
        problems.append(
            f"{where}.length: {policy.length} is longer than {MAX_PASSWORD_LENGTH}, "
            "which no target takes"
        )
    if policy.max_length is not None and policy.length > policy.max_length:
        problems.append(f"{where}.length: {policy.length} exceeds max_length {policy.max_length}")
    if policy.symbols and not policy.symbol_set:
        problems.append(f"{where}.symbol_set: empty while symbols are required")
    if any(
        c.isspace() or not c.isprintable() or c.isalnum() or not c.isascii()
        for c in policy.symbol_set
    ):
        problems.append(
            f"{where}.symbol_set: only printable ASCII symbols (no letters, digits or spaces)"
        )
    return problems
