"""Kill test: SIGKILL `rotate run` at random instants under faults; no credential may be lost.

The scenario, seeded (repeatable as far as a concurrent run can be):

1. a deterministic inventory of N credentials over four Remotix endpoints (address-book
   connections NEAR/RDP/APPLE, cloud computers NEAR/RDP/RDP_3390/VNC, VNC rows on an
   8-character policy) and two Spark View gateways (servers), and a config of its own. About
   a third of the rows are usages of accounts of 2-4 usages each, on as many endpoints, whose
   password is checked and changed at a directory: `corp-ldap` (OpenLDAP-like, StartTLS) or
   `corp-ad` (Active Directory-like, LDAPS); the other rows are copy-only accounts of one
   row (`[run] authority = "none"`);
2. the vendor simulators and the two directory stand-ins in this process (`SimulatorHost`),
   seeded, with faults on: latency, 5xx, 429 with Retry-After, dropped connections, writes
   applied then failed, writes that hang past the client's timeout (and land late), a few
   targets rejecting every write; at the directories 5-20 ms per operation (drawn per run)
   and, on about one run in seven, one directory whose password changes hang (half the time
   applied first): the client times out, the outcome is unknown;
3. two calibration runs let to finish (the first rotates every row), then, until K kills:
   start `rotate run` (`--force` on some iterations) as a subprocess, SIGKILL it after a
   seeded delay drawn over the calibrated run time, wait until no simulator has a request in
   flight, and check the no-lockout invariant on every row and every directory account: a
   target (of a copy-only account) or a directory whose password is no longer its initial
   one holds Vault's current password or the pending candidate of its account. A usage of
   a directory account may hold an older password of its account (a stale copy: the
   directory holds Vault's current); after a run that finished it must be recorded stale
   in Vault (`<prefix>/_stale/`), unless its account is still in doubt;
4. every fault off, one clean `rotate run` to completion, then convergence: every target
   holds its account's current password in Vault, that password logs in at the account's
   directory, no candidate is left pending and no usage recorded stale.

Standalone (it starts its own OpenBao dev server; exit 1 on any lockout or non-convergence):

    .venv/bin/python bench/killtest.py --kills 200 --rows 300 --seed 1

`tests/test_kill.py` runs a smaller instance against the test session's OpenBao. No password
is ever printed: a lockout names the row or account, says what its target or directory holds
("neither" current nor pending) and what Vault has.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions

from rotate.demo import sim_password
from rotate.devvault import DevVault
from rotate.inventory import group_accounts, load_inventory
from rotate.models import Row, Secret
from rotate.registry import vendor_of
from rotate.settings import load_settings
from rotate.sim.base import SimCounters
from rotate.sim.directory import DirectoryState
from rotate.sim.faults import Faults
from rotate.sim.host import SimulatorHost
from rotate.sim.seed import seed_directories, seed_states
from rotate.sim.tls import make_tls


@dataclass(frozen=True)
class Directory:
    """An authority of the kill test: a directory stand-in served in this process."""

    name: str
    type: str  # ldap (StartTLS) | ad (LDAPS)
    bind_dn: str
    base_dn: str
    env: str  # the bind password's variable

    def section(self, url: str | None, timeout_s: float, ca_file: Path | None) -> list[str]:
        placeholder = "ldaps://127.0.0.1:9" if self.type == "ad" else "ldap://127.0.0.1:9"
        out = [
            f"[authorities.{self.name}]",
            f'type = "{self.type}"',
            f'url = "{url or placeholder}"',
            f'bind_dn = "{self.bind_dn}"',
            f'bind_password_env = "{self.env}"',
            f'base_dn = "{self.base_dn}"',
            f"timeout_s = {timeout_s}",
        ]
        if self.type == "ldap":
            out.append("starttls = true")
        if ca_file is not None:
            out.append(f'ca_bundle = "{ca_file}"')
        return [*out, ""]


DIRECTORIES = (
    Directory(
        "corp-ldap",
        "ldap",
        "cn=rotate,dc=example,dc=org",
        "ou=people,dc=example,dc=org",
        "KILLTEST_LDAP_BIND",
    ),
    Directory(
        "corp-ad",
        "ad",
        "CN=rotate-svc,CN=Users,DC=example,DC=net",
        "DC=example,DC=net",
        "KILLTEST_AD_BIND",
    ),
)
REMOTIX_ENDPOINTS = ("rx1", "rx2", "rx3", "rx4")
SPARKVIEW_ENDPOINTS = ("gw1", "gw2")
MOUNT = "secret"
USERNAMES = ("administrator", "svc-backup", "svc-scan", "jdoe", "asmith", "kiosk", "ops")
COMPUTER_CONNECTIONS = (("NEAR", None), ("RDP", None), ("RDP", 3390), ("VNC", None))
_PLACEHOLDER_URL = "http://127.0.0.1:9"  # until the simulators have their ports
_SETTLE_S = 0.05  # after the simulators are quiet, for a Vault request of the dead run

Say = Callable[[str], None]


# --- parameters and results ----------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """One kill test: its size, its seed and its fault and timing knobs."""

    rows: int = 300
    kills: int = 200
    seed: int = 1
    force_share: float = 0.5  # iterations that run with --force (every row rotates again)
    delay_span: tuple[float, float] = (0.2, 1.2)  # kill delay, as a share of a calibrated run
    max_iterations: int = 0  # 0: 3 * kills + 20 (a finished run is no kill: try again)
    timeout_s: float = 1.0  # [run] timeout_s; hung requests answer a little after it
    run_timeout_s: float = 600.0  # a run let to finish must finish within this
    faults: bool = True
    account_share: float = 1 / 3  # rows regrouped into accounts of 2-4 usages on a directory
    directory_latency_s: tuple[float, float] = (0.005, 0.02)  # drawn per iteration
    hang_share: float = 0.15  # iterations on which one directory's password changes hang


@dataclass(frozen=True)
class Lockout:
    """A row whose target, or an account whose directory, holds a password Vault has
    neither as current nor as pending."""

    iteration: int
    after: str  # "kill", "completed run", "calibration run" or "final run"
    label: str
    held: str  # "neither" (nor current nor pending); "initial" when Vault claims a rotation
    vault: str  # what Vault has: "current v3, pending" ...
    history: str  # whether the held password is an older Vault version
    last_status: str = ""  # the row's status and error in that run's --json, if it finished
    holder: str = "target"  # or "directory" (an account at its authority)

    def __str__(self) -> str:
        text = (
            f"iteration {self.iteration} (after {self.after}): {self.label}: {self.holder} "
            f"holds {self.held}; Vault: {self.vault}; {self.history}"
        )
        return f"{text}; run record: {self.last_status}" if self.last_status else text


@dataclass(frozen=True)
class Iteration:
    """One `rotate run`: how it ended and what it left behind."""

    index: int
    force: bool
    delay_s: float  # when it was (or would have been) killed
    killed: bool
    exit_code: int
    elapsed_s: float
    pending: int  # rows with a pending candidate afterwards
    pending_on_target: int  # of those, rows whose target already holds the candidate
    accounts_pending: int = 0  # directory accounts with a pending candidate afterwards
    hung: str = ""  # the directory whose password changes hung during this run, if any


@dataclass
class KillTestResult:
    """What a kill test found; `ok` is the verdict."""

    params: Params
    endpoints: int = 0
    kills: int = 0
    completed_runs: int = 0  # runs that finished before their kill (calibration, final apart)
    lockouts: list[Lockout] = field(default_factory=list)
    converged: int = 0
    total: int = 0
    pending_left: int = 0
    accounts_total: int = 0  # accounts on a directory (2-4 usages each)
    account_rows: int = 0  # the rows that are their usages
    accounts_converged: int = 0
    stale_left: int = 0  # usages still recorded stale after the final run
    unrecorded: list[str] = field(default_factory=list)  # stale copies a finished run missed
    unconverged: list[str] = field(default_factory=list)
    final_exit: int | None = None
    problems: list[str] = field(default_factory=list)  # refused runs, crashes, forbidden calls
    iterations: list[Iteration] = field(default_factory=list)
    calibration_s: dict[str, float] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)  # item statuses of finished runs
    duration_s: float = 0.0

    @property
    def kills_with_pending(self) -> int:
        """Kills after which at least one candidate was pending: the kill hit a rotation."""
        return sum(1 for it in self.iterations if it.killed and it.pending)

    @property
    def kills_between_push_and_promote(self) -> int:
        """Kills after which a target held a candidate Vault had not promoted yet."""
        return sum(1 for it in self.iterations if it.killed and it.pending_on_target)

    @property
    def kills_with_account_pending(self) -> int:
        """Kills after which a directory account had a candidate pending."""
        return sum(1 for it in self.iterations if it.killed and it.accounts_pending)

    @property
    def hung_runs(self) -> tuple[int, int]:
        """(runs during which a directory's changes hung, of those the killed ones)."""
        hung = [it for it in self.iterations if it.hung]
        return len(hung), sum(1 for it in hung if it.killed)

    @property
    def ok(self) -> bool:
        return (
            not self.lockouts
            and not self.problems
            and not self.unrecorded
            and self.final_exit == 0
            and self.total > 0
            and self.converged == self.total
            and self.pending_left == 0
            and self.accounts_converged == self.accounts_total
            and self.stale_left == 0
            and self.kills >= self.params.kills
        )

    def summary(self) -> str:
        p = self.params
        share = 100.0 * self.converged / self.total if self.total else 0.0
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none"
        hung, hung_killed = self.hung_runs
        lines = [
            f"kill test: seed {p.seed}, {self.total} rows over {self.endpoints} endpoints, "
            f"faults {'on' if p.faults else 'off'}",
            f"  accounts: {self.accounts_total} on directories ({self.account_rows} rows as "
            f"their usages), the other {self.total - self.account_rows} rows copy-only",
            f"  runs: {len(self.iterations)} in all, {self.kills} killed (SIGKILL), "
            f"{self.completed_runs} finished before their kill",
        ]
        if self.calibration_s:
            lines.append(
                "  calibration: "
                + ", ".join(f"{k} run {v:.2f} s" for k, v in self.calibration_s.items())
            )
        lines += [
            f"  kills that left a candidate pending: {self.kills_with_pending}; "
            f"with a target holding an unpromoted candidate: "
            f"{self.kills_between_push_and_promote}; with a directory account's candidate "
            f"pending: {self.kills_with_account_pending}",
            f"  runs with a directory's password changes hanging: {hung} ({hung_killed} killed)",
            f"  item statuses of the finished runs: {statuses}",
            f"  lockouts: {len(self.lockouts)}"
            + (
                f" ({len({lk.label for lk in self.lockouts})} rows/accounts)"
                if self.lockouts
                else ""
            )
            + f"; stale copies a finished run did not record: {len(self.unrecorded)}",
            f"  converged: {self.converged}/{self.total} rows ({share:.1f} %), "
            f"{self.accounts_converged}/{self.accounts_total} accounts log in with Vault's "
            f"current; pending left: {self.pending_left}, stale left: {self.stale_left}, "
            f"final run exit {self.final_exit}",
            f"  wall time: {self.duration_s:.1f} s",
        ]
        lines += [f"  LOCKOUT {lk}" for lk in self.lockouts[:50]]
        if len(self.lockouts) > 50:
            lines.append(f"  ... and {len(self.lockouts) - 50} more lockouts")
        lines += [f"  UNRECORDED STALE {u}" for u in self.unrecorded[:50]]
        lines += [f"  NOT CONVERGED {u}" for u in self.unconverged[:50]]
        lines += [f"  PROBLEM {pr}" for pr in self.problems[:50]]
        lines.append(f"  verdict: {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(lines)


# --- the inventory and config --------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One generated inventory row."""

    endpoint: str
    kind: str  # connection | computer | server
    target: str
    protocol: str
    port: int | None
    username: str
    domain: str
    policy: str
    account: str = ""  # several usages of one account share it (and its authority)
    authority: str = ""  # empty: [run] authority = "none" (copies only)

    @property
    def reject_key(self) -> str:
        """The id a simulator's `reject_targets` matches for this credential's writes only."""
        if self.kind == "computer":
            suffix = f"{self.protocol}_{self.port}" if self.port else self.protocol
            return f"{self.target}/{suffix}"
        return self.target

    def csv_row(self) -> list[str]:
        port = "" if self.port is None else str(self.port)
        return [
            self.endpoint,
            self.kind,
            self.target,
            self.protocol,
            port,
            self.username,
            self.domain,
            self.policy,
            self.account,
            self.authority,
        ]


CSV_HEADER = (
    "endpoint",
    "kind",
    "target",
    "protocol",
    "port",
    "username",
    "domain",
    "policy",
    "account",
    "authority",
)


def make_inventory(count: int, rng: random.Random) -> list[Entry]:
    """`count` distinct credentials: 3/4 on Remotix (connections, computers), 1/4 Spark View."""
    entries: list[Entry] = []
    uids: set[str] = set()
    computers: dict[str, dict[str, set[tuple[str, int | None]]]] = {
        e: {} for e in REMOTIX_ENDPOINTS
    }
    serial = 0

    def domain_for(protocol: str) -> str:
        return "EXAMPLE" if protocol == "RDP" and rng.random() < 0.5 else ""

    while len(entries) < count:
        serial += 1
        user = rng.choice(USERNAMES)
        if rng.random() < 0.25:
            endpoint = rng.choice(SPARKVIEW_ENDPOINTS)
            target = f"srv-{serial:04d}"
            entries.append(
                Entry(endpoint, "server", target, "RDP", None, user, domain_for("RDP"), "default")
            )
            continue
        endpoint = rng.choice(REMOTIX_ENDPOINTS)
        if rng.random() < 0.5:
            uid = f"{rng.randrange(16**4):04X}-{rng.randrange(16**4):04X}"
            if uid in uids:
                continue
            uids.add(uid)
            protocol = rng.choice(("NEAR", "RDP", "APPLE"))
            entries.append(
                Entry(endpoint, "connection", uid, protocol, None, user, domain_for(protocol), "")
            )
            continue
        known = computers[endpoint]
        free = {
            cid: [c for c in COMPUTER_CONNECTIONS if c not in used] for cid, used in known.items()
        }
        open_ones = sorted(cid for cid, left in free.items() if left)
        if open_ones and rng.random() < 0.4:
            cid = rng.choice(open_ones)
        else:
            cid = f"cmp-{serial:04d}"
            known[cid] = set()
            free[cid] = list(COMPUTER_CONNECTIONS)
        protocol, port = rng.choice(free[cid])
        known[cid].add((protocol, port))
        policy = "vnc" if protocol == "VNC" else ""
        entries.append(
            Entry(endpoint, "computer", cid, protocol, port, user, domain_for(protocol), policy)
        )
    return entries


def make_accounts(entries: Sequence[Entry], share: float, rng: random.Random) -> list[Entry]:
    """About `share` of the rows regrouped as usages of accounts of 2-4 usages each, every
    usage of one account on another endpoint, the accounts alternating between the two
    directories (uid / sAMAccountName `acct-NNN`, no domain); VNC rows (an 8-character
    policy of their own) stay single. The rest is unchanged: copy-only accounts of one row."""
    out = list(entries)
    pool = [i for i, e in enumerate(entries) if e.policy != "vnc"]
    rng.shuffle(pool)
    wanted = int(len(entries) * share)
    taken = 0
    serial = 0
    while taken < wanted and len(pool) >= 2:
        size = rng.randint(2, 4)
        group: list[int] = []
        for i in list(pool):
            if all(entries[i].endpoint != entries[j].endpoint for j in group):
                group.append(i)
                pool.remove(i)
                if len(group) == size:
                    break
        if len(group) < 2:
            break
        serial += 1
        authority = DIRECTORIES[serial % len(DIRECTORIES)].name
        name = f"acct-{serial:03d}"
        for i in group:
            out[i] = replace(
                entries[i], username=name, domain="", account=name, authority=authority
            )
        taken += len(group)
    return out


def write_inventory(path: Path, entries: Sequence[Entry]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        writer.writerows(e.csv_row() for e in entries)
    return path


def gateway_env(name: str) -> str:
    return f"KILLTEST_{name.upper()}_PASSWORD"


def config_text(
    prefix: str,
    vault_addr: str,
    urls: Mapping[str, str],
    timeout_s: float,
    ca_file: Path | None = None,
) -> str:
    """The TOML config: this test's Vault prefix, short timeouts, the simulators' and the
    directories' URLs (`ca_file`: the stand-ins' CA); rows without an authority column are
    copy-only (`[run] authority = "none"`)."""
    out = [
        "# generated by bench/killtest.py",
        "[vault]",
        f'addr = "{vault_addr}"',
        f'mount = "{MOUNT}"',
        f'prefix = "{prefix}"',
        'auth = "token"',
        "",
        "[run]",
        "concurrency = 64",
        "per_endpoint_concurrency = 8",
        f"timeout_s = {timeout_s}",
        "retries = 2",
        "backoff_s = 0.05",
        "max_backoff_s = 0.2",
        "max_age_days = 90",
        'authority = "none"',
        "",
        "[policies.default]",
        "length = 20",
        "",
        "[policies.vnc]",
        "length = 8",
        "max_length = 8",
        "",
    ]
    for name in REMOTIX_ENDPOINTS:
        url = urls.get(name, _PLACEHOLDER_URL)
        out += [f"[endpoints.{name}]", 'system = "remotix"', f'url = "{url}"', ""]
    for name in SPARKVIEW_ENDPOINTS:
        url = urls.get(name, _PLACEHOLDER_URL)
        out += [
            f"[endpoints.{name}]",
            'system = "sparkview"',
            f'url = "{url}"',
            f'gateway_password_env = "{gateway_env(name)}"',
            "",
        ]
    for d in DIRECTORIES:
        out += d.section(urls.get(d.name), timeout_s, ca_file)
    return "\n".join(out)


def chaos(rng: random.Random, timeout_s: float, reject: set[str]) -> Faults:
    """The faults of one simulator during the kill phase."""
    return Faults(
        latency_ms=5.0,
        latency_jitter_ms=15.0,
        error_rate=0.05,
        rate_limit_rate=0.03,
        retry_after_s=rng.choice((0, 1)),
        drop_rate=0.03,
        apply_then_fail_rate=0.05,
        hang_rate=0.01,
        hang_s=timeout_s + 0.3,  # past the client's timeout: a hung write lands late
        reject_targets=reject,
        seed=rng.randrange(2**32),
    )


# --- looking behind rotate's back ----------------------------------------------------------


@dataclass(frozen=True)
class VaultRow:
    """Vault's view of one row: current password and version, pending candidate."""

    current: Secret | None
    version: int | None
    pending: Secret | None

    def describe(self) -> str:
        current = f"current v{self.version}" if self.current is not None else "no current"
        pending = "pending candidate" if self.pending is not None else "no pending"
        return f"{current}, {pending}"


class VaultView:
    """Reads the rows' secrets as root with hvac, on a few threads (one client each)."""

    def __init__(
        self, addr: str, token: Secret, pending_root: str, stale_root: str, workers: int = 8
    ) -> None:
        self._addr = addr
        self._token = token
        self._pending_root = pending_root
        self._stale_root = stale_root
        self._local = threading.local()
        self._clients: list[hvac.Client] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="killtest-vault")
        self._versions: dict[tuple[str, int], str | None] = {}  # never printed

    def _client(self) -> hvac.Client:
        client: hvac.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = hvac.Client(url=self._addr, token=self._token.reveal(), timeout=30)
            with self._lock:
                self._clients.append(client)
            self._local.client = client
        return client

    def _read(self, path: str, version: int | None = None) -> tuple[Secret | None, int | None]:
        try:
            answer = self._client().secrets.kv.v2.read_secret_version(
                path=path, version=version, mount_point=MOUNT, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None, None
        password = (answer["data"]["data"] or {}).get("password")
        number = int(answer["data"]["metadata"]["version"])
        return (Secret(password) if isinstance(password, str) else None), number

    def journal(self) -> dict[str, Secret]:
        """Every candidate a journal record lists, by secret path (rotate/stores/kv.py)."""
        kv = self._client().secrets.kv.v2
        try:
            names = kv.list_secrets(path=self._pending_root, mount_point=MOUNT)["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return {}
        found: dict[str, Secret] = {}
        for name in names:
            try:
                record = kv.read_secret_version(
                    path=f"{self._pending_root}/{name}",
                    mount_point=MOUNT,
                    raise_on_deleted_version=True,
                )
            except hvac.exceptions.InvalidPath:
                continue  # deleted between the LIST and the read
            for path, entry in ((record["data"]["data"] or {}).get("candidates") or {}).items():
                found[path] = Secret(entry["password"])
        return found

    def stale(self) -> dict[str, set[str]]:
        """The usages recorded stale, by their account's secret path (rotate/stores/kv.py:
        one record per account under the stale root)."""
        kv = self._client().secrets.kv.v2
        try:
            names = kv.list_secrets(path=self._stale_root, mount_point=MOUNT)["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return {}
        found: dict[str, set[str]] = {}
        for name in names:
            try:
                record = kv.read_secret_version(
                    path=f"{self._stale_root}/{name}",
                    mount_point=MOUNT,
                    raise_on_deleted_version=True,
                )
            except hvac.exceptions.InvalidPath:
                continue  # cleared between the LIST and the read
            data = record["data"]["data"] or {}
            usages = set((data.get("usages") or {}).keys())
            if usages:
                found.setdefault(str(data.get("path")), set()).update(usages)
        return found

    def rows(self, rows: Sequence[Row]) -> dict[str, VaultRow]:
        """Vault's view of each row, by label (the rows of one account share one secret)."""
        paths = self.paths(sorted({r.vault_path for r in rows}))
        return {r.label: paths[r.vault_path] for r in rows}

    def paths(self, paths: Sequence[str]) -> dict[str, VaultRow]:
        journal = self.journal()

        def one(path: str) -> VaultRow:
            current, version = self._read(path)
            return VaultRow(current, version, journal.get(path))

        return dict(zip(paths, self._pool.map(one, paths), strict=True))

    def older_version(self, path: str, password: str | None, newest: int | None) -> int | None:
        """The older version of the secret at `path` that holds `password`, or None (versions
        never change once written: each is read once)."""
        if password is None:
            return None
        for number in range((newest or 0) - 1, 0, -1):
            key = (path, number)
            if key not in self._versions:
                try:
                    held, _ = self._read(path, number)
                except hvac.exceptions.VaultError:
                    held = None
                self._versions[key] = held.reveal() if held is not None else None
            if self._versions[key] == password:
                return number
        return None

    def version_holding(self, path: str, password: str | None, newest: int | None) -> str:
        """Which older version of the secret holds `password` (never printed itself)."""
        if password is None:
            return "the target holds no password"
        number = self.older_version(path, password, newest)
        if number is not None:
            return f"it is the older version v{number} (history), not the current one"
        return "it is in no version of the secret: Vault never had it or discarded it"

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for client in self._clients:
            client.adapter.close()


# --- the scene -----------------------------------------------------------------------------


class KillTest:
    """The inventory, config, simulators and Vault view of one kill test, and its steps."""

    def __init__(
        self,
        params: Params,
        vault_addr: str,
        vault_token: Secret,
        prefix: str,
        workdir: Path,
        host: SimulatorHost,
        say: Say,
    ) -> None:
        self.params = params
        self.host = host
        self.say = say
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.records = workdir / "records"
        self.out_dir = workdir / "reports"
        for d in (self.logs, self.records, self.out_dir):
            d.mkdir(parents=True, exist_ok=True)
        seed = params.seed
        entries = make_inventory(params.rows, random.Random(f"{seed}/inventory"))
        entries = make_accounts(entries, params.account_share, random.Random(f"{seed}/accounts"))
        self.entries = entries
        self.inventory = write_inventory(workdir / "inventory.csv", entries)
        self.config = workdir / "rotate.toml"
        self.gateways = {gateway_env(n): f"{n}-{seed}-Gateway-Pass" for n in SPARKVIEW_ENDPOINTS}
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("VAULT_", "BAO_", "ROTATE_", "KILLTEST_"))
        }
        self.env.update(self.gateways, VAULT_ADDR=vault_addr, VAULT_TOKEN=vault_token.reveal())

        tls = make_tls(workdir / "tls")
        self.config.write_text(config_text(prefix, vault_addr, {}, params.timeout_s, tls.ca_file))
        settings = load_settings(self.config, env=self.env)
        rows = load_inventory(self.inventory, settings)
        # Each account's usages, and its directory, start with one password (a fleet in sync
        # before rotate came) that Vault does not know; the directory holds rotate's admin.
        initial: dict[str, str] = {}
        self.states: dict[str, SimCounters] = seed_states(
            rows, settings.endpoints, rng_seed=seed, passwords=initial
        )
        self.initial = {r.label: sim_password(self.states[r.endpoint], r) for r in rows}
        seeded = seed_directories(
            group_accounts(rows), settings.authorities, rng_seed=seed, passwords=initial
        )
        self.directories: dict[str, DirectoryState] = {}
        for spec in DIRECTORIES:
            if spec.name in seeded:
                self.env[spec.env] = seeded[spec.name].admin_password
                self.directories[spec.name] = seeded[spec.name].state

        fault_rng = random.Random(f"{seed}/faults")
        picks = fault_rng.sample(entries, k=min(len(entries), max(2, len(entries) // 60)))
        rejects: dict[str, set[str]] = {}
        for entry in picks:
            rejects.setdefault(entry.endpoint, set()).add(entry.reject_key)
        self.chaos = {
            name: chaos(fault_rng, params.timeout_s, rejects.get(name, set()))
            for name in sorted(self.states)
        }
        urls = {}
        for name, state in sorted(self.states.items()):
            endpoint = settings.endpoints[name]
            faults = self.chaos[name] if params.faults else Faults()
            secrets = vendor_of(endpoint).simulator.secrets(endpoint, self.gateways)
            urls[name] = host.add_endpoint(endpoint, state, faults, **secrets)
        self.directory_rng = random.Random(f"{seed}/directories")
        for spec in DIRECTORIES:
            directory = self.directories.get(spec.name)
            if directory is None:
                continue
            if spec.type == "ad":  # Active Directory: LDAPS
                urls[spec.name] = host.add_directory(spec.name, directory, tls=tls.server)
            else:  # OpenLDAP-like: StartTLS
                urls[spec.name] = host.add_directory(spec.name, directory, starttls=tls.server)
        self._hung = ""
        self._accounts_record: dict[str, dict[str, Any]] = {}
        self.set_directory_faults(hang=False)
        self.config.write_text(config_text(prefix, vault_addr, urls, params.timeout_s, tls.ca_file))
        self.settings = load_settings(self.config, env=self.env)
        self.rows = load_inventory(self.inventory, self.settings)
        self.accounts = [a for a in group_accounts(self.rows) if a.authority in self.directories]
        self.initial_accounts = {
            a.name: self.directories[a.authority].password(a.username) for a in self.accounts
        }
        self.vault = VaultView(
            vault_addr,
            vault_token,
            self.settings.vault.pending_root,
            self.settings.vault.stale_root,
        )
        self._lockout_seen: dict[str, str | None] = {}  # label -> what it held (never printed)
        self.result = KillTestResult(
            params,
            endpoints=len(self.states),
            total=len(self.rows),
            accounts_total=len(self.accounts),
            account_rows=sum(len(a.usages) for a in self.accounts),
        )

    # -- one run ---------------------------------------------------------------------------

    def _launch(self, tag: str, force: bool) -> tuple[subprocess.Popen[bytes], Path]:
        args = [
            sys.executable,
            "-m",
            "rotate",
            "-q",
            "run",
            str(self.inventory),
            "--config",
            str(self.config),
            "--out-dir",
            str(self.out_dir),
            "--json",
            str(self.records / f"{tag}.json"),
        ]
        if force:
            args.append("--force")
        log = self.logs / f"{tag}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed argv
                args,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        return proc, log

    def run_once(
        self,
        index: int,
        force: bool,
        delay_s: float,
        after: str,
        kill_when: Callable[[], bool] | None = None,
    ) -> Iteration:
        """Start a run, SIGKILL it after `delay_s` (or once `kill_when()` holds) unless it
        finished, then check every row."""
        tag = f"{index:04d}"
        started = time.monotonic()
        proc, log = self._launch(tag, force)
        try:
            try:
                if kill_when is None:
                    code = proc.wait(timeout=delay_s)
                else:
                    code = _wait_for(proc, kill_when, delay_s)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        elapsed = time.monotonic() - started
        killed = code == -signal.SIGKILL
        record = None
        if not killed:
            self._note_exit(index, after, code, log)
            record = self._record(tag)
        self.settle()
        pending, on_target, accounts = self.check(
            index, "kill" if killed else after, record, completed=not killed
        )
        return Iteration(
            index,
            force,
            delay_s,
            killed,
            code,
            elapsed,
            pending,
            on_target,
            accounts,
            self._hung,
        )

    def finish(self, index: int, force: bool, after: str) -> Iteration:
        """A run let to finish (bounded by `run_timeout_s`: a run that hangs is a problem)."""
        it = self.run_once(index, force, self.params.run_timeout_s, after)
        if it.killed:
            self.result.problems.append(
                f"iteration {index} ({after}): still running after "
                f"{self.params.run_timeout_s:g} s, killed"
            )
        return it

    def _note_exit(self, index: int, after: str, code: int, log: Path) -> None:
        if code in (0, 1):  # everything done; some items failed or in doubt (faults)
            return
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        said = [ln for ln in lines if ln.startswith("rotate:")] or lines[-3:] or ["(no output)"]
        message = " | ".join(said)[:500]
        if "lease" in message:
            message += " <- a lease refused after the holder was SIGKILLed"
        self.result.problems.append(f"iteration {index} ({after}) exited {code}: {message}")

    def _record(self, tag: str) -> dict[str, dict[str, Any]] | None:
        """The finished run's --json record by row label, its statuses counted."""
        path = self.records / f"{tag}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        self._accounts_record = {
            str(a.get("account")): a for a in record.get("accounts") or () if isinstance(a, dict)
        }
        items: dict[str, dict[str, Any]] = {}
        for item in record.get("items", []):
            self.result.statuses[str(item.get("status"))] += 1
            protocol = str(item.get("protocol") or "")
            port = item.get("port")
            suffix = f"{protocol}_{port}" if port not in (None, "") else protocol
            items[f"{item.get('endpoint')}/{item.get('kind')}/{item.get('target')}/{suffix}"] = item
        return items

    # -- checks ----------------------------------------------------------------------------

    def settle(self) -> None:
        """Wait until no simulator has a request in flight (hung writes have landed) and no
        directory an operation, but for the password changes that hang for good (those
        applied before hanging are applied already)."""
        deadline = time.monotonic() + self.params.timeout_s + 30.0
        names = sorted(self.states)

        def busy() -> bool:
            if any(self.host.simulator(n).counters.in_flight for n in names):
                return True
            for state in self.directories.values():
                with state.lock:
                    if state.counters.in_flight > state.counters.hung_changes:
                        return True
            return False

        while busy():
            if time.monotonic() > deadline:
                self.result.problems.append("simulators still busy 30 s after a run ended")
                break
            time.sleep(0.02)
        time.sleep(_SETTLE_S)

    def set_directory_faults(self, *, hang: bool, off: bool = False) -> str:
        """Each directory's faults for the next run: a latency drawn from the span, and with
        `hang`, now and then one directory whose password changes hang (past the client's
        timeout: outcome unknown), half the time applied first. Returns which one hangs."""
        rng = self.directory_rng
        lo, hi = self.params.directory_latency_s
        faults = self.params.faults and not off
        pick, apply = "", False
        if faults and hang and self.directories and rng.random() < self.params.hang_share:
            pick = rng.choice(sorted(self.directories))
            apply = rng.random() < 0.5
        for name, state in sorted(self.directories.items()):
            state.latency_s = rng.uniform(lo, hi) if faults else 0.0
            state.apply_before_hang = name == pick and apply
            state.hang_changes = name == pick
        self._hung = f"{pick} ({'applied' if apply else 'not applied'})" if pick else ""
        return self._hung

    def check(
        self,
        index: int,
        after: str,
        record: Mapping[str, Mapping[str, Any]] | None,
        completed: bool = False,
    ) -> tuple[int, int, int]:
        """The no-lockout invariant on every row and every directory account; returns
        (rows with a pending candidate, of those the rows whose target holds it, accounts
        with a pending candidate).

        A row of a copy-only account: its target, once changed, holds Vault's current or
        the pending candidate. A directory account: its directory, once changed, holds
        Vault's current or the pending candidate of the account (invariant 6). A usage of a
        directory account may hold an older version of the account's password (or its
        seeded one): a stale copy, not a lost password; after a completed run it must be
        recorded stale in Vault, unless the account is still in doubt (a candidate pending).
        """
        paths = sorted({r.vault_path for r in self.rows})
        by_path = self.vault.paths(paths)
        stale = self.vault.stale() if completed else {}
        pending = on_target = 0
        for row in self.rows:
            v = by_path[row.vault_path]
            held = sim_password(self.states[row.endpoint], row)
            current = v.current.reveal() if v.current is not None else None
            candidate = v.pending.reveal() if v.pending is not None else None
            if candidate is not None and candidate != current:  # else: promoted, not cleared
                pending += 1
                if held == candidate:
                    on_target += 1
            if held is not None and held in (current, candidate):
                continue
            if row.authority in self.directories:
                older = held == self.initial[row.label] or (
                    self.vault.older_version(row.vault_path, held, v.version) is not None
                )
                if older:
                    if (
                        completed
                        and candidate is None
                        and row.label not in stale.get(row.vault_path, set())
                    ):
                        self._unrecorded(index, after, row.label, v)
                    continue
                what = "neither"
            elif held == self.initial[row.label]:
                if current is None or candidate is not None:
                    continue  # never rotated, or a candidate staged and not sent: fine
                what = "initial"  # Vault's current was promoted without the target taking it
            else:
                what = "neither"
            item = (record or {}).get(row.label)
            last = ""
            if item is not None:
                last = f"{item.get('status')}: {item.get('error') or item.get('reason') or ''}"
            self._lockout(index, after, row.label, row.vault_path, held, what, v, last)
        accounts_pending = 0
        for account in self.accounts:
            v = by_path[account.vault_path]
            held = self.directories[account.authority].password(account.username)
            current = v.current.reveal() if v.current is not None else None
            candidate = v.pending.reveal() if v.pending is not None else None
            if candidate is not None and candidate != current:
                accounts_pending += 1
            if held is not None and held in (current, candidate):
                continue
            if held == self.initial_accounts[account.name]:
                if current is None or candidate is not None:
                    continue  # never rotated, or a change staged and not (yet) applied
                what = "initial"  # promoted without the directory taking it
            else:
                what = "neither"
            last = ""
            if record is not None:
                last = self._account_status(account.name)
            label = f"account {account.name} at {account.authority} ({len(account.usages)} usages)"
            self._lockout(index, after, label, account.vault_path, held, what, v, last)
        return pending, on_target, accounts_pending

    def _lockout(
        self,
        index: int,
        after: str,
        label: str,
        path: str,
        held: str | None,
        what: str,
        v: VaultRow,
        last: str,
    ) -> None:
        if self._lockout_seen.get(label, object()) == held:
            return  # the same lockout as before: already recorded
        self._lockout_seen[label] = held
        holder = "directory" if label.startswith("account ") else "target"
        lockout = Lockout(
            index,
            after,
            label,
            what,
            v.describe(),
            self.vault.version_holding(path, held, v.version),
            last,
            holder,
        )
        self.result.lockouts.append(lockout)
        self.say(f"LOCKOUT {lockout}")

    def _unrecorded(self, index: int, after: str, label: str, v: VaultRow) -> None:
        text = (
            f"iteration {index} (after {after}): {label} holds an older password of its "
            f"account and is not recorded stale in Vault ({v.describe()})"
        )
        if text not in self.result.unrecorded:
            self.result.unrecorded.append(text)
            self.say(f"UNRECORDED STALE {text}")

    def _account_status(self, name: str) -> str:
        entry = self._accounts_record.get(name)
        if entry is None:
            return ""
        return f"{entry.get('status')}: {entry.get('error') or entry.get('reason') or ''}"

    def convergence(self) -> None:
        """After the clean run: every target holds its account's current password in Vault,
        every directory account logs in with it, nothing is pending, no usage is stale."""
        view = self.vault.rows(self.rows)
        stale = self.vault.stale()
        converged = pending = 0
        for row in self.rows:
            v = view[row.label]
            held = sim_password(self.states[row.endpoint], row)
            same = v.current is not None and held == v.current.reveal()
            if v.pending is not None:
                pending += 1
            if same and v.pending is None:
                converged += 1
            else:
                on = "current" if same else "neither"
                if v.pending is not None and held == v.pending.reveal():
                    on = "pending"
                self.result.unconverged.append(
                    f"{row.label}: target holds {on}; Vault: {v.describe()}"
                )
        accounts = 0
        for account in self.accounts:
            v = view[account.usages[0].label]
            directory = self.directories[account.authority]
            logs_in = v.current is not None and directory.logs_in(
                account.username, v.current.reveal()
            )
            if logs_in and v.pending is None and account.vault_path not in stale:
                accounts += 1
            else:
                self.result.unconverged.append(
                    f"account {account.name} at {account.authority}: Vault's current "
                    f"{'logs in' if logs_in else 'does not log in'}; Vault: {v.describe()}; "
                    f"stale usages recorded: {len(stale.get(account.vault_path, ()))}"
                )
        self.result.converged = converged
        self.result.pending_left = pending
        self.result.accounts_converged = accounts
        self.result.stale_left = sum(len(u) for u in stale.values())

    # -- the whole scenario ----------------------------------------------------------------

    def run(self) -> KillTestResult:
        p = self.params
        res = self.result
        schedule = random.Random(f"{p.seed}/schedule")
        index = 0
        # Calibration: the first run rotates every row, the second finds little to do.
        self.set_directory_faults(hang=False)
        full = self.finish(index, False, "calibration run")
        index += 1
        quick = self.finish(index, False, "calibration run")
        res.iterations += [full, quick]
        res.calibration_s = {"full": full.elapsed_s, "idle": quick.elapsed_s}
        self.say(f"calibrated: full run {full.elapsed_s:.2f} s, idle run {quick.elapsed_s:.2f} s")
        cap = p.max_iterations or 3 * p.kills + 20
        lo, hi = p.delay_span
        while res.kills < p.kills and index < cap:
            index += 1
            force = schedule.random() < p.force_share
            base = full.elapsed_s if force else quick.elapsed_s
            delay = schedule.uniform(lo, hi) * base
            self.set_directory_faults(hang=True)
            it = self.run_once(index, force, delay, "completed run")
            res.iterations.append(it)
            if it.killed:
                res.kills += 1
                if res.kills % 10 == 0:
                    self.say(
                        f"{res.kills} kills, {res.completed_runs} finished runs, "
                        f"{len(res.lockouts)} lockouts"
                    )
            else:
                res.completed_runs += 1
        if res.kills < p.kills:
            res.problems.append(f"only {res.kills} kills in {index} iterations")
        # Every fault off (reject_targets and the directories' too), then one clean run.
        for name in sorted(self.states):
            self.host.set_faults(name, Faults())
        self.set_directory_faults(hang=False, off=True)
        index += 1
        final = self.finish(index, False, "final run")
        res.iterations.append(final)
        res.final_exit = final.exit_code
        self.convergence()
        for name in sorted(self.states):
            for call in self.host.simulator(name).counters.forbidden_calls:
                res.problems.append(f"{name}: forbidden call {call}")
        return res

    def close(self) -> None:
        self.vault.close()


def _wait_for(proc: subprocess.Popen[bytes], condition: Callable[[], bool], limit_s: float) -> int:
    """The exit code once `proc` ends; TimeoutExpired as soon as `condition()` holds."""
    deadline = time.monotonic() + limit_s
    while True:
        code = proc.poll()
        if code is not None:
            return code
        if condition() or time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, limit_s)
        time.sleep(0.002)


def run_refusal_after_kill(
    vault_addr: str,
    vault_token: Secret,
    prefix: str,
    workdir: Path,
    rows: int = 12,
    seed: int = 1,
    say: Say | None = None,
) -> KillTestResult:
    """A kill that leaves candidates on their targets, then targets that refuse writes.

    Every row is rotated once (clean). A `--force` run is SIGKILLed while its writes hang in
    the simulators; they land after the kill, so the targets hold candidates Vault has
    pending. The targets then refuse every write (an account locked, an API token revoked)
    and one run resumes the candidates; then faults go off and one clean run follows. The
    invariant is checked after each step, convergence at the end: a re-send that is refused
    says nothing about what an earlier send delivered, so a candidate must not be dropped.
    """
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    params = Params(rows=rows, kills=1, seed=seed, faults=False, run_timeout_s=120.0)
    with SimulatorHost(shutdown_timeout=0.2) as host:
        test = KillTest(
            params, vault_addr, vault_token, prefix, workdir, host, say or (lambda _: None)
        )
        res = test.result
        names = sorted(test.states)
        try:
            res.iterations.append(test.finish(0, False, "clean run"))
            # Every write hangs a little (under the client's timeout), then is applied.
            hang = test.params.timeout_s / 2
            for name in names:
                host.set_faults(name, Faults(hang_rate=1.0, hang_s=hang, writes_only=True))
            target = min(rows, 8)

            def writes_in_flight() -> bool:
                return sum(host.simulator(n).faults.injected for n in names) >= target

            killed = test.run_once(1, True, 60.0, "kill", kill_when=writes_in_flight)
            res.iterations.append(killed)
            res.kills = int(killed.killed)
            if not killed.killed:
                res.problems.append("the --force run finished before its writes were in flight")
            refuse = {e.endpoint: set[str]() for e in test.entries}
            for entry in test.entries:
                refuse[entry.endpoint].add(entry.reject_key)
            for name in names:
                host.set_faults(name, Faults(reject_targets=refuse.get(name, set())))
            res.iterations.append(test.finish(2, False, "run against refusing targets"))
            for name in names:
                host.set_faults(name, Faults())
            final = test.finish(3, False, "final run")
            res.iterations.append(final)
            res.final_exit = final.exit_code
            test.convergence()
        finally:
            test.close()
    res.duration_s = time.monotonic() - started
    return res


def run_kill_test(
    params: Params,
    vault_addr: str,
    vault_token: Secret,
    prefix: str,
    workdir: Path,
    say: Say | None = None,
) -> KillTestResult:
    """The whole kill test against a running Vault; simulators start and stop in here."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    with SimulatorHost(shutdown_timeout=0.2) as host:
        test = KillTest(
            params, vault_addr, vault_token, prefix, workdir, host, say or (lambda _: None)
        )
        try:
            result = test.run()
        finally:
            test.close()
    result.duration_s = time.monotonic() - started
    return result


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="rotate-killtest-") as tmp:
        yield Path(tmp)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs to deliver")
    parser.add_argument("--rows", type=int, default=300, help="credentials in the inventory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--force-share", type=float, default=0.5, help="share of runs started with --force"
    )
    parser.add_argument(
        "--account-share",
        type=float,
        default=1 / 3,
        help="share of rows that are usages of directory accounts (2-4 usages each)",
    )
    parser.add_argument(
        "--hang-share",
        type=float,
        default=0.15,
        help="share of runs during which one directory's password changes hang",
    )
    parser.add_argument("--no-faults", action="store_true", help="kills only, no faults")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep inventory, config, logs here"
    )
    args = parser.parse_args(argv)
    params = Params(
        rows=args.rows,
        kills=args.kills,
        seed=args.seed,
        force_share=args.force_share,
        faults=not args.no_faults,
        account_share=args.account_share,
        hang_share=args.hang_share,
    )
    # A SIGKILLed client leaves the simulators' aiohttp server a traceback per cut request.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    # SIGTERM unwinds like Ctrl-C: the run in flight, the simulators and OpenBao are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    with _workdir(args.workdir) as workdir, DevVault() as vault:
        say(f"OpenBao at {vault.addr}; work directory {workdir}")
        result = run_kill_test(params, vault.addr, vault.token, "killtest", workdir, say)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
