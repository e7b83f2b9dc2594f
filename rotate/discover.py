"""`rotate discover`: an inventory CSV from what the endpoints of a config hold; no secret.

Each endpoint's vendor proposes the rows (`VendorType.discover`: for Spark View one `server`
row per listed server, with the username and domain of its stored logon; for Remotix the
address book's connections and the connections of the cloud computers the endpoint's
`computers` setting names).

Rows with the same domain and username are one domain account stored in several places: they
are proposed one `account` value (`DOMAIN\\username`) for a person to review. The `authority`
column is left empty: name one per row, or set `[run] authority`, before `rotate plan`.

The address-book API gives no username back: such rows cannot be rotated until someone fills
the username in. By default they are left out (and counted in a warning), so the output
feeds `rotate plan` unchanged; with `incomplete` they are written with an empty username and
a note saying so (and `rotate plan` rejects the file until they are filled in).

Every endpoint is probed as a run probes it; one that fails is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rotate.backends import Secrets, build_target
from rotate.errors import (
    EXIT_ITEMS_FAILED,
    EXIT_OK,
    EndpointUnavailable,
    InventoryError,
    RotateError,
    UsageError,
)
from rotate.inventory import COLUMNS, load_inventory
from rotate.registry import vendor_of
from rotate.settings import Settings
from rotate.stores.base import SecretStore
from rotate.vendors.base import EndpointSettings

log = logging.getLogger(__name__)

# what the inventory refuses in a cell (and a line break, which would shift line numbers)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
UNKNOWN_USERNAME = (
    "username unknown (the API does not give it): fill it in (and an RDP domain, if any) "
    "before rotating"
)

StoreFactory = Callable[[Settings], SecretStore]


@dataclass(frozen=True)
class Found:
    """One discovered credential: an inventory row without a secret."""

    endpoint: str
    kind: str
    target: str
    protocol: str
    username: str = ""
    port: int | None = None
    domain: str | None = None
    policy: str = ""
    notes: str = ""
    account: str = ""  # proposed: the same value on every row of one domain account

    @property
    def label(self) -> str:
        suffix = f"{self.protocol}_{self.port}" if self.port is not None else self.protocol
        return f"{self.endpoint}/{self.kind}/{self.target}/{suffix}"

    def cells(self) -> dict[str, str]:
        """The row's cells by inventory column (absent columns empty)."""
        values = {
            "endpoint": self.endpoint,
            "kind": self.kind,
            "target": self.target,
            "username": self.username,
            "protocol": self.protocol,
            "port": "" if self.port is None else str(self.port),
            "domain": self.domain or "",
            "policy": self.policy,
            "notes": self.notes,
            "account": self.account,
        }
        return {c: _clean(values.get(c, "")) for c in COLUMNS}


@dataclass
class Discovery:
    """What a discovery found: plan-ready rows, rows lacking a username, and what went wrong."""

    rows: list[Found] = field(default_factory=list)
    incomplete: list[Found] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_endpoints: list[str] = field(default_factory=list)
    partial_endpoints: list[str] = field(default_factory=list)
    shared_accounts: int = 0  # domain accounts found stored more than once

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    @property
    def exit_code(self) -> int:
        """1 when an endpoint was skipped or read only in part; else 0."""
        return EXIT_ITEMS_FAILED if self.skipped_endpoints or self.partial_endpoints else EXIT_OK


def _clean(value: str) -> str:
    """A cell the inventory accepts: no control or invisible formatting characters."""
    return _UNPRINTABLE.sub(" ", value).strip()


def to_csv(rows: Iterable[Found]) -> str:
    """The inventory CSV: the contract's columns, header first."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.cells())
    return buffer.getvalue()


# -- one endpoint -----------------------------------------------------------------------------


class _Reader:
    """What one endpoint's vendor proposes (a DiscoverySink); a failed read of one object is
    a warning, and the endpoint partial."""

    def __init__(self, endpoint: EndpointSettings, settings: Settings, found: Discovery) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.found = found
        self.rows: list[Found] = []
        self.partial = False

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
        self.rows.append(
            Found(self.endpoint.name, kind, target, protocol, username, port, domain, policy, notes)
        )

    def warn(self, message: str, *, partial: bool = False) -> None:
        self.found.warn(f"endpoint {self.endpoint.name}: {message}")
        self.partial = self.partial or partial

    def policy_within(self, max_length: int) -> str | None:
        names = ["default", *(n for n in self.settings.policies if n != "default")]
        for name in names:
            policy = self.settings.policies.get(name)
            if policy is not None and policy.length <= max_length:
                return "" if name == "default" else name
        return None


async def _endpoint(
    endpoint: EndpointSettings, settings: Settings, secrets_: Secrets, found: Discovery
) -> list[Found]:
    """The rows of one endpoint, or none (and a warning) when it fails its probe."""
    reader = _Reader(endpoint, settings, found)
    vendor = vendor_of(endpoint)
    try:
        target = build_target(endpoint, settings, secrets_)
    except RotateError as exc:  # its credential's variable is not set
        found.warn(f"endpoint {endpoint.name} skipped: {exc}")
        found.skipped_endpoints.append(endpoint.name)
        return []
    try:
        try:
            detail = await target.probe()
        except EndpointUnavailable as exc:
            found.warn(f"endpoint {endpoint.name} skipped: failed its probe: {exc}")
            found.skipped_endpoints.append(endpoint.name)
            return []
        log.info("endpoint %s: %s", endpoint.name, detail)
        await vendor.discover(target, reader)
    finally:
        await target.aclose()
    if reader.partial:
        found.partial_endpoints.append(endpoint.name)
    return sorted(reader.rows, key=lambda r: (r.kind, r.target, r.protocol, r.port or 0))


async def _discover(settings: Settings, secrets_: Secrets) -> Discovery:
    found = Discovery()
    endpoints = list(settings.endpoints.values())
    per_endpoint = await asyncio.gather(
        *(_endpoint(e, settings, secrets_, found) for e in endpoints)
    )
    for endpoint, rows in zip(endpoints, per_endpoint, strict=True):
        complete = [r for r in rows if r.username]
        missing = [
            replace(r, notes=f"{UNKNOWN_USERNAME}; {r.notes}") for r in rows if not r.username
        ]
        found.rows.extend(complete)
        found.incomplete.extend(missing)
        if missing:
            kinds = ", ".join(sorted({r.kind for r in missing}))
            found.warn(
                f"endpoint {endpoint.name}: {len(missing)} {kinds} row(s) have no username "
                "the API gives back (address-book connections never do)"
            )
    return found


def propose_accounts(rows: Sequence[Found]) -> tuple[list[Found], int]:
    """Rows with one `account` value per domain account (same domain and user name, case
    aside) that is stored more than once, and how many such accounts there are. Rows without
    a domain are local accounts of their hosts: never grouped."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        if row.domain and row.username:
            groups.setdefault((row.domain.casefold(), row.username.casefold()), []).append(i)
    out = list(rows)
    shared = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        shared += 1
        first = rows[members[0]]
        name = f"{first.domain}\\{first.username}"
        for i in members:
            out[i] = replace(rows[i], account=name)
    return out, shared


def _check(rows: list[Found], settings: Settings, found: Discovery) -> list[Found]:
    """The rows the inventory loader accepts with this config; the others dropped, warned.
    The authority is not discovered: rows are checked as if the config named a default."""
    if not settings.run.authority:
        settings = replace(settings, run=replace(settings.run, authority="none"))
    for _ in range(3):
        with tempfile.TemporaryDirectory(prefix="rotate-discover-") as tmp:
            path = Path(tmp) / "discovered.csv"
            path.write_text(to_csv(rows), encoding="utf-8")
            try:
                load_inventory(path, settings)
            except InventoryError as exc:
                problems = exc.problems
            else:
                return rows
        bad: dict[int, list[str]] = {}
        for problem in problems:
            if problem.row is None or not 2 <= problem.row < len(rows) + 2:
                raise UsageError(f"discover: the rows found do not make an inventory: {problem}")
            bad.setdefault(problem.row - 2, []).append(
                f"{problem.column}: {problem.message}" if problem.column else problem.message
            )
        for index, messages in sorted(bad.items()):
            found.warn(f"{rows[index].label} left out: {'; '.join(messages)}")
        rows = [r for i, r in enumerate(rows) if i not in bad]
    raise UsageError("discover: the rows found do not make an inventory")  # pragma: no cover


def _open_store(settings: Settings, store_factory: StoreFactory | None) -> SecretStore:
    if store_factory is not None:
        return store_factory(settings)
    from rotate.stores.vault import VaultStore

    return VaultStore(settings.vault)


def discover(settings: Settings, *, store_factory: StoreFactory | None = None) -> Discovery:
    """Read every endpoint of `settings`; rows checked against the inventory contract."""
    if not settings.endpoints:
        raise UsageError(f"config {settings.source} names no endpoint")
    secrets_ = Secrets(settings.env, lambda: _open_store(settings, store_factory))
    try:
        found = asyncio.run(_discover(settings, secrets_))
    finally:
        secrets_.close()
    found.rows, shared = propose_accounts(found.rows)
    found.rows = _check(found.rows, settings, found)
    found.shared_accounts = shared
    return found


def write_output(text: str, out: Path | None, *, force: bool) -> None:
    """`text` to stdout, or to `out`, which is never overwritten unless `force`."""
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        with tmp.open("x", encoding="utf-8", newline="") as f:
            f.write(text)
        if force:
            os.replace(tmp, out)
        else:
            _link_or_replace(tmp, out)
    except FileExistsError:
        raise UsageError(f"{out} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _link_or_replace(tmp: Path, out: Path) -> None:
    """Move `tmp` to `out` unless `out` exists (a hard link fails rather than overwrites)."""
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if out.exists():
            raise FileExistsError(out) from None
        os.replace(tmp, out)


def run_discover(
    settings: Settings,
    out: Path | None,
    *,
    force: bool = False,
    incomplete: bool = False,
    store_factory: StoreFactory | None = None,
) -> int:
    """`rotate discover`: write the CSV; 0, or 1 when an endpoint was skipped or partial."""
    if out is not None and out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    found = discover(settings, store_factory=store_factory)
    rows: Sequence[Found] = found.rows + (found.incomplete if incomplete else [])
    write_output(to_csv(rows), out, force=force)
    left_out = (
        ""
        if incomplete or not found.incomplete
        else (f", {len(found.incomplete)} without a username left out (--incomplete lists them)")
    )
    where = f" to {out}" if out is not None else ""
    skipped = (
        f"; endpoint(s) skipped: {', '.join(found.skipped_endpoints)}"
        if found.skipped_endpoints
        else ""
    )
    if found.partial_endpoints:
        skipped += f"; read in part: {', '.join(found.partial_endpoints)}"
    print(f"discover: {len(rows)} row(s){where}{left_out}{skipped}", file=sys.stderr)
    if found.shared_accounts:
        print(
            f"discover: {found.shared_accounts} domain account(s) are stored in several places: "
            "their rows share a proposed `account` value (same domain and user name); review "
            "them",
            file=sys.stderr,
        )
    if not settings.run.authority:
        print(
            "discover: the `authority` column is empty: name where each account's password is "
            "checked (an [authorities.<name>] section, or `none` for copies only), or set "
            "`[run] authority`, before `rotate plan`",
            file=sys.stderr,
        )
    return found.exit_code


__all__ = [
    "Discovery",
    "Found",
    "discover",
    "propose_accounts",
    "run_discover",
    "to_csv",
]
