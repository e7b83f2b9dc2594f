"""Frozen records passed between the stages; a secret's repr and str are redacted."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType


class Secret:
    """A secret string: printing, formatting or repr-ing it shows `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The clear text, for the one call that must send or store it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not to be pickled")


class Status(enum.StrEnum):
    ROTATED = "rotated"
    FAILED = "failed"
    SKIPPED = "skipped"
    IN_DOUBT = "in_doubt"
    NOT_ATTEMPTED = "not_attempted"
    DUE = "due"
    NOT_DUE = "not_due"
    COMPLIANT = "compliant"
    OVERDUE = "overdue"
    NEVER_ROTATED = "never_rotated"
    LAST_ATTEMPT_FAILED = "last_attempt_failed"  # report: the latest rotation attempt failed
    IN_SYNC = "in_sync"  # reconcile: target, Vault current and pending agree
    REPAIRED = "repaired"  # a stale usage, or Vault or a target, was brought back in line
    STALE = "stale"  # the account changed, this usage did not take it: the next run repairs it
    DRIFT = "drift"  # Vault's current password no longer logs in at the authority


class Stage(enum.StrEnum):
    """How far an item got in the runbook."""

    PLANNED = "planned"
    GENERATED = "generated"
    STAGED = "staged"
    CHANGED = "changed"  # the authority holds the candidate (logged in with it)
    PUSHED = "pushed"
    VERIFIED = "verified"
    PROMOTED = "promoted"


#: the authority name of an account whose copies are the only place its password lives
NO_AUTHORITY = "none"


@dataclass(frozen=True, slots=True)
class Row:
    """One validated inventory row: one usage (a stored copy) of an account's password."""

    line: int  # line number in the CSV (header = 1)
    endpoint: str
    kind: str  # one of its endpoint's vendor's kinds (`connection`, `server`, ...)
    target: str
    username: str
    protocol: str  # upper case; the kind's default protocol when the row names none
    port: int | None = None
    domain: str | None = None
    policy: str = "default"
    max_age_days: int | None = None
    vault_path: str = ""  # the account's secret, relative to the KV mount
    owner: str = ""
    notes: str = ""
    account: str = ""  # the account whose password this usage stores (none named: its label)
    authority: str = NO_AUTHORITY  # where that password is checked ([authorities.<name>])
    host: str | None = None  # the host of a local account (ssh authorities)
    # endpoint/kind/target/protocol[_port]: a short human name, and the usage's key in the
    # journal, stale records and logs; made once (a run reads it several times a usage)
    label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        label = f"{self.endpoint}/{self.kind}/{self.target}/{self.protocol_suffix}"
        object.__setattr__(self, "label", label)
        if not self.account:  # a row that names no account is an account of its own
            object.__setattr__(self, "account", label)

    @property
    def key(self) -> tuple[str, str, str, str, int | None]:
        """The credential's identity: two rows with the same key are duplicates."""
        return (self.endpoint, self.kind, self.target, self.protocol, self.port)

    @property
    def protocol_suffix(self) -> str:
        """`RDP` or `RDP_3390`: the Remotix path segment of a computer connection."""
        return f"{self.protocol}_{self.port}" if self.port is not None else self.protocol


@dataclass(frozen=True, slots=True)
class Account:
    """One identity with one password, checked at its authority and stored by its usages."""

    name: str  # the inventory's `account` value (or the label of a row without one)
    authority: str  # a name of [authorities.<name>], or "none"
    username: str  # the login name at the authority (uid, sAMAccountName, local user)
    domain: str | None
    host: str | None
    vault_path: str  # its one secret, relative to the KV mount
    policy: str
    max_age_days: int | None
    usages: tuple[Row, ...]

    @property
    def line(self) -> int:
        """The inventory line of its first usage."""
        return self.usages[0].line

    @property
    def changes_host(self) -> bool:
        """False for a copy-only account (`authority = none`): no host account changes."""
        return self.authority != NO_AUTHORITY

    def __repr__(self) -> str:
        return f"Account({self.name!r}, {self.authority!r}, {len(self.usages)} usage(s))"


@dataclass(frozen=True, slots=True)
class StaleUsage:
    """A usage that did not take its account's current password (recorded in Vault)."""

    usage: str  # the usage's label
    held_version: int | None  # the version of the account's secret it holds, if known
    since: datetime | None
    run_id: str = ""


@dataclass(frozen=True, slots=True)
class Credential:
    """What a target stores and Vault keeps: username, password, optional domain."""

    username: str
    password: Secret
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class PendingCandidate:
    """A staged password not yet promoted: the target may already hold it."""

    credential: Credential
    run_id: str
    staged_at: datetime
    base_version: int | None = None  # the current version when it was staged


#: the stale usages of an account that has none
NO_STALE: Mapping[str, StaleUsage] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SecretState:
    """What Vault knows of one row's secret (no secret value in it but the pending one)."""

    path: str
    current_version: int | None  # None: no current secret yet
    rotated_at: datetime | None  # the current version's created_time (or a recorded exception)
    pending: PendingCandidate | None
    last_failure_at: datetime | None = None  # the latest failed or in-doubt attempt
    # by usage label; none: one shared empty mapping (a 100,000-account run reads as many)
    stale: Mapping[str, StaleUsage] = field(default_factory=lambda: NO_STALE)


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The recorded outcome of one row. It has no password field, by construction."""

    row: Row
    status: Status
    stage: Stage = Stage.PLANNED
    verified: bool | None = None  # None: not applicable (not pushed); False: pushed, not verified
    vault_path: str = ""
    vault_version: int | None = None
    reason: str = ""  # why it is due / skipped / not attempted
    error: str = ""
    duration_s: float = 0.0
    last_rotated: datetime | None = None
    age_days: float | None = None  # at the time of the record; None: never rotated
    max_age_days: int | None = None  # the row's, else the config's default
    due_before_next_run: bool | None = None  # report: overdue before the next scheduled run
    last_failure_at: datetime | None = None  # the latest failed or in-doubt attempt, if any
    followups: tuple[str, ...] = ()  # what else was updated after the rotation (access links)
    # plan: what the usage's target showed wrong (missing, another username); "" when fine
    problem: str = ""

    def as_record(self) -> dict[str, object]:
        """The `--json` item record of DESIGN.md (and a little more)."""
        r = self.row
        return {
            "endpoint": r.endpoint,
            "kind": r.kind,
            "target": r.target,
            "protocol": r.protocol,
            "port": r.port,
            "username": r.username,
            "domain": r.domain,
            "account": r.account,
            "authority": r.authority,
            "host": r.host,
            "owner": r.owner,
            "line": r.line,
            "status": self.status.value,
            "stage": self.stage.value,
            "verified": self.verified,
            "vault_path": self.vault_path,
            "vault_version": self.vault_version,
            "reason": self.reason,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "last_rotated": self.last_rotated.isoformat() if self.last_rotated else None,
            "policy": r.policy,
            "age_days": round(self.age_days, 2) if self.age_days is not None else None,
            "max_age_days": self.max_age_days,
            "due_before_next_run": self.due_before_next_run,
            "last_failure_at": self.last_failure_at.isoformat() if self.last_failure_at else None,
            "followups": list(self.followups),
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class AccountResult:
    """The recorded outcome of one account: its change at the authority and its usages."""

    account: Account
    authority_type: str  # ldap | ad | none | ...
    status: Status
    reason: str = ""
    error: str = ""
    vault_version: int | None = None
    last_changed: datetime | None = None  # when Vault's current password was set
    login_verified: bool | None = None  # None: not checked (no authority, or no password yet)
    in_sync: int = 0  # usages known to hold Vault's current password
    stale: int = 0  # usages known not to (recorded in Vault)

    def as_record(self) -> dict[str, object]:
        """The `--json` account record (no secret: the Account has none)."""
        a = self.account
        return {
            "account": a.name,
            "authority": a.authority,
            "authority_type": self.authority_type,
            "changes_host_account": a.changes_host,
            "username": a.username,
            "domain": a.domain,
            "host": a.host,
            "vault_path": a.vault_path,
            "status": self.status.value,
            "reason": self.reason,
            "error": self.error,
            "vault_version": self.vault_version,
            "last_changed": self.last_changed.isoformat() if self.last_changed else None,
            "login_verified": self.login_verified,
            "usages": len(a.usages),
            "in_sync": self.in_sync,
            "stale": self.stale,
        }


@dataclass(frozen=True)
class EndpointProbe:
    """The result of probing one endpoint before any write."""

    endpoint: str
    system: str  # the endpoint's vendor
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class AuthorityProbe:
    """The result of logging in to one authority as rotate's admin before any change."""

    name: str
    type: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Drift:
    """Compliance drift: secrets under the prefix with no row, rows with no secret."""

    secrets_without_row: tuple[str, ...] = ()
    rows_without_secret: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRecord:
    """Everything a report is built from; secret-free."""

    run_id: str
    mode: str  # plan | run | report
    dry_run: bool
    started_at: datetime
    finished_at: datetime
    inventory: str
    config: str
    items: tuple[ItemResult, ...]
    probes: tuple[EndpointProbe, ...] = ()
    accounts: tuple[AccountResult, ...] = ()
    authority_probes: tuple[AuthorityProbe, ...] = ()
    vault_addr: str = ""
    vault_mount: str = ""
    aborted: str = ""  # why the run stopped early, if it did
    identity: str = ""  # who ran it: the Vault token's display name or entity
    tool_version: str = ""
    inventory_sha256: str = ""
    config_sha256: str = ""
    plan_hash: str = ""  # plan: what `rotate run --plan-hash` must match
    schedule_days: float | None = None  # report: days until the next scheduled run
    drift: Drift | None = None  # report: Vault and the inventory disagreeing
    stats: Mapping[str, int] = field(default_factory=dict)  # round trips to Vault and vendors
    warnings: tuple[str, ...] = ()  # shown on every report (e.g. TLS checks switched off)

    def summary(self) -> dict[str, int]:
        """Counts by status; the six DESIGN.md keys are always present."""
        counts = {
            "total": len(self.items),
            "rotated": 0,
            "failed": 0,
            "skipped": 0,
            "in_doubt": 0,
            "not_attempted": 0,
        }
        for item in self.items:
            counts[item.status.value] = counts.get(item.status.value, 0) + 1
        return counts
