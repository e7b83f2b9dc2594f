"""`make bench`: how `rotate` copes with a fleet, on a real OpenBao and the vendor simulators.

A benchmark, never a test: it prints figures and PASS/FAIL against the targets of the
"Fleet scale" issue, and asserts nothing. Each scenario builds its own world on loopback:

* an inventory of N credentials spread evenly over E endpoints (3/4 Remotix: half address-
  book connections, write-only; half cloud-computer RDP and NEAR connections, read back;
  1/4 Spark View servers, read back) and a config allowing C requests in flight per endpoint
  and E x C items in flight in all;
* an OpenBao dev server (`rotate.devvault.DevVault`, its own `bao` process);
* the simulators in their own process (`python -m rotate simulate ... --latency-ms L
  --free-ports`), each vendor request delayed by L ms;
* `python -m rotate run` as a separate process, measured from the outside: wall time, peak
  RSS and CPU seconds (`os.wait4` on its pid), the simulators' request counters
  (`GET /_sim/state`), the `stats` of its `--json` record when it has them;
* the sequential peer (`bench/peer.py`), the script a user would write, on the same world.

Scenarios (default: all four):

  latency     10,000 credentials, 20 endpoints x 8 in flight, 50 ms per vendor request
  throughput  5,000 credentials, 0 ms latency
  large       100,000 rows: `rotate plan` (every usage looked at on its endpoint: a read
              each, no wall-time target) and `rotate plan --no-usage-checks` (the quick
              preview, <= 60 s) and `rotate report` against an empty Vault prefix, then
              `rotate report` again once every row has a secret (as after a rotation)
  shared      2,500 accounts of 4 usages each (10,000 rows over the 20 endpoints, 50 ms) on
              one `ldap` authority: `rotate simulate`'s directory stand-in, 50 ms per
              operation, reached through a relay here that counts the LDAP operations;
              `rotate run`, then `rotate run --force`; the end state checked after each
              (every usage holds its account's current password, which binds at the
              directory; nothing pending or stale)

    .venv/bin/python bench/run_bench.py [--scenario NAME ...] [--quick]
        [--rows N] [--endpoints E] [--latency-ms L] [--concurrency C] [--timeout S]

Only 127.0.0.1 is used; every process started here is stopped on the way out (Ctrl-C too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import http.client
import json
import os
import resource
import secrets
import select
import shutil
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
from typing import IO, Any
from urllib.parse import urlsplit

import ldap3  # type: ignore[import-untyped,unused-ignore]

from rotate.devvault import DevVault
from rotate.inventory import group_accounts, load_inventory
from rotate.models import Account
from rotate.settings import load_settings
from rotate.stores.kv import fan_out
from rotate.stores.kvhttp import HttpKV

PEER = Path(__file__).resolve().with_name("peer.py")
LOOPBACK = "127.0.0.1"
MOUNT = "secret"
PREFIX = "bench"
_MEASURED = Path(__file__).resolve().with_name("measured.py")
USERNAMES = ("administrator", "svc-backup", "svc-scan", "jdoe", "asmith", "kiosk", "ops")
CSV_HEADER = ("endpoint", "kind", "target", "protocol", "port", "username", "domain", "policy")
SHARED_HEADER = (*CSV_HEADER, "account", "authority")
DIRECTORY = "dir"  # the ldap authority of the shared scenario
DIRECTORY_BIND_DN = "cn=rotate,dc=example,dc=org"
DIRECTORY_BIND_ENV = "BENCH_DIR_BIND"
DIRECTORY_BASE_DN = "ou=people,dc=example,dc=org"
_PLACEHOLDER_URL = "http://127.0.0.1:9"  # the simulators pick free ports (--free-ports)
_SIM_START_S = 300.0  # seeding 100,000 rows takes a while on two cores
_PEER_SAMPLE = 500  # with latency, the peer is timed on the first rows and extrapolated

Say = Any  # Callable[[str], None]; kept loose so a plain print works too


# --- scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One world to measure and the issue's targets for it."""

    name: str
    rows: int
    endpoints: int = 20
    concurrency: int = 8  # per endpoint
    latency_ms: float = 50.0
    kind: str = "run"  # run: `rotate run` + the peer; inventory: `rotate plan` + `report`
    max_wall_s: float | None = None
    min_rate: float | None = None
    max_rss_mb: float | None = None
    peer_sample: int | None = None  # None: _PEER_SAMPLE with latency, all rows without
    custom: bool = False  # parameters differ from the issue's: targets are not judged
    usages: int = 1  # usages per account; above 1 the accounts live in one LDAP directory
    ldap_connections: int = 0  # [authorities.<name>] connections (0: rotate's default)

    @property
    def shared(self) -> bool:
        return self.kind == "shared"

    def describe(self) -> str:
        what = {"inventory": "rotate plan + report", "shared": "rotate run, then run --force"}
        text = (
            f"{self.name}: {what.get(self.kind, 'rotate run')}, {self.rows:,} credentials over "
            f"{self.endpoints} endpoints, {self.concurrency} in flight per endpoint, "
            f"{self.latency_ms:g} ms per vendor request"
        )
        if self.shared:
            text += (
                f"; {self.rows // self.usages:,} accounts of {self.usages} usages on one ldap "
                f"authority ({self.latency_ms:g} ms per operation, connections = "
                f"{self.ldap_connections or 'default'})"
            )
        return text


SCENARIOS = {
    "latency": Scenario("latency", 10_000, latency_ms=50.0, max_wall_s=30.0),
    "throughput": Scenario("throughput", 5_000, latency_ms=0.0, min_rate=400.0),
    "large": Scenario(
        "large", 100_000, latency_ms=0.0, kind="inventory", max_wall_s=60.0, max_rss_mb=300.0
    ),
    "shared": Scenario(
        "shared", 10_000, latency_ms=50.0, kind="shared", usages=4, ldap_connections=32
    ),
}
QUICK = Scenario("quick", 1_000, latency_ms=50.0, peer_sample=200, custom=True)


# --- the inventory and config --------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    system: str  # remotix | sparkview

    @property
    def gateway_env(self) -> str:
        return f"BENCH_{self.name.upper()}_PASSWORD"


def fleet(count: int) -> list[Endpoint]:
    """`count` endpoints: a quarter Spark View gateways (at least one from two up), the rest
    Remotix apps."""
    spark = count // 4 if count >= 4 else (1 if count >= 2 else 0)
    remotix = count - spark
    return [Endpoint(f"rx{i:02d}", "remotix") for i in range(1, remotix + 1)] + [
        Endpoint(f"sv{i:02d}", "sparkview") for i in range(1, spark + 1)
    ]


def make_inventory(
    rows: int, endpoints: Sequence[Endpoint], usages: int = 1
) -> list[tuple[str, ...]]:
    """`rows` distinct credentials, round-robin over `endpoints` so each gets its share.

    On a Remotix endpoint every fourth-row cycle holds two address-book connections
    (RDP/NEAR/APPLE, write-only) and one cloud computer with an RDP and a NEAR connection
    (read back); on a Spark View endpoint every row is a server (read back).

    With `usages` above 1, every `usages` consecutive rows (so on as many different
    endpoints) are the usages of one account of the LDAP authority (`account`, `authority`
    columns; the account's uid as username, no domain); else each row is an account of its
    own and the config's `[run] authority = "none"` applies (copies only).
    """
    out: list[tuple[str, ...]] = []
    for i in range(rows):
        e = endpoints[i % len(endpoints)]
        k = i // len(endpoints)  # this row's index on its endpoint
        user = USERNAMES[i % len(USERNAMES)]
        domain = "EXAMPLE" if i % 2 else ""
        if usages > 1:
            user, domain = f"svc-{i // usages:06d}", ""
        if e.system == "sparkview":
            out.append((e.name, "server", f"srv-{i:06d}", "RDP", "", user, domain, ""))
        elif k % 4 in (0, 2):
            protocol = ("RDP", "NEAR", "APPLE")[i % 3]
            uid = f"{(i >> 16) & 0xFFFF:04X}-{i & 0xFFFF:04X}"
            out.append(
                (e.name, "connection", uid, protocol, "", user, domain * (protocol == "RDP"), "")
            )
        else:
            computer = f"cmp-{e.name}-{k // 4:06d}"
            protocol = "RDP" if k % 4 == 1 else "NEAR"
            out.append(
                (e.name, "computer", computer, protocol, "", user, domain * (protocol == "RDP"), "")
            )
    if usages > 1:
        out = [(*r, f"acct-{i // usages:06d}", DIRECTORY) for i, r in enumerate(out)]
    return out


def write_inventory(path: Path, rows: Sequence[tuple[str, ...]]) -> Path:
    header = CSV_HEADER if not rows or len(rows[0]) == len(CSV_HEADER) else SHARED_HEADER
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def vendor_trips(row: tuple[str, ...]) -> int:
    """Vendor round trips the full protocol needs for a row: the write, plus the read-back
    where the API has one (everything but an address-book connection)."""
    return 1 if row[1] == "connection" else 2


def config_text(
    vault_addr: str,
    prefix: str,
    endpoints: Sequence[Endpoint],
    urls: Mapping[str, str],
    per_endpoint: int,
    directory: tuple[str, int] | None = None,
) -> str:
    """rotate's TOML config for the scenario: E x C items in flight, C per endpoint; with
    `directory` (its URL and `connections`), the shared scenario's ldap authority."""
    out = [
        "# generated by bench/run_bench.py",
        "[vault]",
        f'addr = "{vault_addr}"',
        f'mount = "{MOUNT}"',
        f'prefix = "{prefix}"',
        'auth = "token"',
        "",
        "[run]",
        f"concurrency = {per_endpoint * len(endpoints)}",
        f"per_endpoint_concurrency = {per_endpoint}",
        "timeout_s = 10",
        "retries = 3",
        "max_age_days = 90",
        'lease_name = "bench"',
        'authority = "none"',
        "",
        "[policies.default]",
        "length = 20",
        "",
    ]
    for e in endpoints:
        out += [
            f"[endpoints.{e.name}]",
            f'system = "{e.system}"',
            f'url = "{urls.get(e.name, _PLACEHOLDER_URL)}"',
        ]
        if e.system == "sparkview":
            out.append(f'gateway_password_env = "{e.gateway_env}"')
        out.append("")
    if directory is not None:
        url, connections = directory
        out += [
            f"[authorities.{DIRECTORY}]",
            'type = "ldap"',
            f'url = "{url}"',
            f'bind_dn = "{DIRECTORY_BIND_DN}"',
            f'bind_password_env = "{DIRECTORY_BIND_ENV}"',
            f'base_dn = "{DIRECTORY_BASE_DN}"',
            "timeout_s = 10",
        ]
        if connections:
            out.append(f"connections = {connections}")
        out.append("")
    return "\n".join(out)


# --- measuring a process -------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """A child process measured from the outside."""

    exit_code: int | None  # None: killed at the timeout
    wall_s: float
    cpu_s: float  # user + system
    max_rss_mb: float  # peak resident set, 10^6 bytes
    log: Path

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


def _reap(pid: int, deadline: float | None) -> tuple[int, Any] | None:
    """(wait status, rusage) of child `pid` once it ends, or None at `deadline`."""
    fd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    try:
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return status, usage
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return None
            if fd is not None:
                select.select([fd], [], [], left)
            else:
                time.sleep(0.01 if left is None else min(0.01, left))
    finally:
        if fd is not None:
            os.close(fd)


def measure(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path, timeout_s: float
) -> Measured:
    """Run `argv` to its end (SIGKILL after `timeout_s`): wall time, CPU, peak RSS."""
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed argv
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches the bench only, which stops it
        )
    reaped: tuple[int, Any] | None = None
    timed_out = False
    try:
        reaped = _reap(proc.pid, started + timeout_s)
        if reaped is None:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            reaped = _reap(proc.pid, None)
        wall = time.perf_counter() - started
    finally:
        if reaped is None:  # interrupted: stop it and collect it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
    assert reaped is not None
    status, usage = reaped
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        exit_code=None if timed_out else proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss * 1024 / 1e6,  # Linux reports KiB
        log=log,
    )


def where_cpu_goes(samples: Path, top: int = 25) -> str:
    """py-spy's collapsed stacks summarised: the share of samples by library (where the
    innermost frame is) and the functions with the most samples, self and inclusive."""
    by_library: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        leaf = frames[-1] if frames else "?"
        by_library[_library(leaf)] += n
        own[_function(leaf)] += n
        for name in {_function(f) for f in frames}:
            inclusive[name] += n
    if not total:
        return "no samples\n"

    def table(title: str, counts: Counter[str], limit: int) -> list[str]:
        rows = [f"{title}:"]
        rows += [f"  {100 * n / total:5.1f} %  {name}" for name, n in counts.most_common(limit)]
        return rows

    out = [f"{total} samples"]
    out += table("by library (innermost frame)", by_library, 15)
    out += table("functions, self", own, top)
    out += table("functions, inclusive", inclusive, top)
    return "\n".join(out) + "\n"


def _function(frame: str) -> str:
    """`name (path:line)` -> `name (file)`: lines of one function counted together."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def _library(frame: str) -> str:
    path = frame.partition(" (")[2]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            rest = path.split(marker, 1)[1].lstrip("/0123456789.")
            return rest.split("/", 1)[0].removesuffix(".py") or "?"
    return "rotate" if "/rotate/" in path else path.split(":", 1)[0] or "?"


def proc_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command name: state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float | None:
    """CPU seconds all cores together have spent busy since boot (/proc/stat), or None."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds used so far: the machine's, the bench's, OpenBao's, the simulators'."""

    machine: float | None
    bench: float
    vault: float | None
    sims: float | None


@dataclass(frozen=True)
class CpuShare:
    """Who else used the cores while one measured process ran."""

    wall_s: float
    vault: float | None
    sims: float | None
    foreign: float | None  # jobs that are not this benchmark's

    def describe(self, cores: int) -> str:
        parts = []
        if self.vault is not None:
            parts.append(f"OpenBao {self.vault:.1f} s")
        if self.sims is not None:
            parts.append(f"simulators {self.sims:.1f} s")
        if self.foreign is not None:
            parts.append(f"other jobs {self.foreign:.1f} s")
        return f"{', '.join(parts) or 'n/a'} (of {cores} x {self.wall_s:.1f} s)"

    def busy(self, cores: int) -> bool:
        """Other jobs took more than 5 % of the machine: the figures are low."""
        return self.foreign is not None and self.foreign > 0.05 * cores * self.wall_s


def cpu_share(before: CpuClock, after: CpuClock, measured: Measured) -> CpuShare:
    def spent(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    vault, sims = spent(before.vault, after.vault), spent(before.sims, after.sims)
    machine = spent(before.machine, after.machine)
    foreign = None
    if machine is not None:
        ours = measured.cpu_s + (vault or 0.0) + (sims or 0.0) + after.bench - before.bench
        foreign = max(0.0, machine - ours)
    return CpuShare(measured.wall_s, vault, sims, foreign)


# --- the simulators in their own process ---------------------------------------------------


class Simulators:
    """`rotate simulate` in a process of its own, on free loopback ports."""

    def __init__(self, inventory: Path, config: Path, latency_ms: float, env: Mapping[str, str]):
        self.inventory = inventory
        self.config = config
        self.latency_ms = latency_ms
        self.env = dict(env)
        self.urls: dict[str, str] = {}
        self.directories: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._out = config.with_name("simulate.out")
        self._log = config.with_name("simulate.log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(
        self, expected: int, timeout_s: float = _SIM_START_S, directories: int = 0
    ) -> dict[str, str]:
        """Start serving; return each endpoint's URL once all `expected` listen (and the
        `directories` stand-ins, whose URLs land in `self.directories`)."""
        argv = [
            sys.executable,
            "-m",
            "rotate",
            "simulate",
            str(self.inventory),
            "--config",
            str(self.config),
            "--latency-ms",
            f"{self.latency_ms:g}",
            "--free-ports",
        ]
        with self._out.open("wb") as out, self._log.open("wb") as err:
            self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed argv
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=self.config.parent,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            # `rotate simulate` prints "<name> <system> <url>" per endpoint once it listens
            # (and "<name> <type> <url>" per directory stand-in, ldap:// or ldaps://)
            lines = [ln.split() for ln in self._out.read_text().splitlines()]
            found = {p[0]: p[2] for p in lines if len(p) == 3 and "://" in p[2]}
            self.urls = {n: u for n, u in found.items() if u.startswith("http")}
            self.directories = {n: u for n, u in found.items() if u.startswith("ldap")}
            if len(self.urls) >= expected and len(self.directories) >= directories:
                return self.urls
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the simulators did not start; {self._log}:\n{tail}")
            time.sleep(0.1)

    def _call(self, url: str, method: str = "GET") -> dict[str, Any]:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port, timeout=60)
        try:
            conn.request(method, parts.path)
            answer = conn.getresponse()
            body = answer.read()
        finally:
            conn.close()
        if answer.status != 200:
            raise RuntimeError(f"{method} {url}: HTTP {answer.status}")
        data: dict[str, Any] = json.loads(body)
        return data

    def reset_counters(self) -> None:
        for url in self.urls.values():
            self._call(f"{url}/_sim/reset-counters", "POST")

    def counters(self) -> dict[str, dict[str, int]]:
        """Each simulator's `requests`, `writes` and `max_in_flight` since the last reset."""
        out = {}
        for name, url in self.urls.items():
            state = self._call(f"{url}/_sim/state")
            out[name] = {k: int(state[k]) for k in ("requests", "writes", "max_in_flight")}
            out[name]["forbidden"] = len(state.get("forbidden_calls", []))
        return out

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # `rotate simulate` closes its servers on SIGTERM
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- counting what reaches the directory ---------------------------------------------------

# LDAP protocol operations by their BER tag (RFC 4511, [APPLICATION n])
_LDAP_REQUESTS = {
    0x60: "bind",
    0x42: "unbind",
    0x63: "search",
    0x66: "modify",
    0x68: "add",
    0x4A: "delete",
    0x6E: "compare",
    0x50: "abandon",
    0x77: "extended",
}
_LDAP_DONE = frozenset({0x61, 0x65, 0x67, 0x69, 0x6B, 0x6D, 0x6F, 0x78})  # final responses
_EXTENDED = {
    "1.3.6.1.4.1.4203.1.11.1": "password modify",
    "1.3.6.1.4.1.4203.1.11.3": "whoami",
    "1.3.6.1.4.1.1466.20037": "starttls",
}


def _ber_length(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(length, where the value starts) of the BER element whose length octets are at
    `pos`, or None when `buf` ends first."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if pos + 1 + count > len(buf):
        return None
    return int.from_bytes(buf[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def _ldap_messages(buf: bytearray) -> Iterator[bytes]:
    """Each complete LDAPMessage's protocolOp (tag, length octets and value) at the head of
    `buf`, consumed from it; an incomplete tail stays for the next read."""
    while len(buf) >= 2:
        head = _ber_length(buf, 1)
        if head is None or head[1] + head[0] > len(buf):
            return
        length, start = head
        end = start + length
        ident = _ber_length(buf, start + 1)  # messageID: INTEGER
        if ident is not None and ident[1] + ident[0] < end:
            yield bytes(buf[ident[1] + ident[0] : end])
        del buf[:end]


def _first_value(op: bytes) -> bytes:
    """The value of the first element inside a constructed protocolOp (b"" if none)."""
    outer = _ber_length(op, 1)
    if outer is None or outer[1] >= len(op):
        return b""
    inner = _ber_length(op, outer[1] + 1)
    return b"" if inner is None else op[inner[1] : inner[1] + inner[0]]


class LdapRelay:
    """A TCP relay in front of a directory stand-in (plain LDAP) that counts the operations
    rotate sends through it, by kind, the failed binds, the connections and the most
    operations awaiting an answer at once. It reads the stream, never changes it, and
    keeps no password (a bind's name is compared with the admin's DN, nothing else)."""

    def __init__(self, upstream: str, admin_dn: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or LOOPBACK, parts.port or 389)
        self._admin = admin_dn.lower().encode()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ldap-relay")
        self._server: asyncio.Server | None = None
        self._lock = threading.Lock()
        self.url = ""
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.ops: Counter[str] = Counter()
            self.failed_binds = 0
            self.connections = 0
            self.max_in_flight = 0
            self._in_flight = 0

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.ops)
            out.update(
                failed_binds=self.failed_binds,
                connections=self.connections,
                max_in_flight=self.max_in_flight,
            )
        return out

    def start(self) -> str:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, LOOPBACK, 0, backlog=512), self._loop
        ).result(10)
        self._server = server
        self.url = f"ldap://{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
        return self.url

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, self._request)),
            asyncio.ensure_future(self._pump(up_reader, writer, self._response)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        note: Callable[[bytes], None],
    ) -> None:
        buf = bytearray()
        while chunk := await reader.read(65536):
            writer.write(chunk)
            buf += chunk
            for op in _ldap_messages(buf):
                note(op)
            await writer.drain()

    def _request(self, op: bytes) -> None:
        kind = _LDAP_REQUESTS.get(op[0], f"tag 0x{op[0]:02x}")
        if kind == "bind":  # version INTEGER, then the name: the admin or an account
            outer = _ber_length(op, 1)
            version = outer and _ber_length(op, outer[1] + 1)
            name = b""
            if version:
                named = _ber_length(op, version[1] + version[0] + 1)
                if named:
                    name = op[named[1] : named[1] + named[0]]
            kind = "admin bind" if name.lower() == self._admin else "account bind"
        elif kind == "extended":
            kind = _EXTENDED.get(_first_value(op).decode(errors="replace"), "extended")
        with self._lock:
            self.ops[kind] += 1
            if kind not in ("unbind", "abandon"):
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _response(self, op: bytes) -> None:
        if op[0] not in _LDAP_DONE:
            return
        with self._lock:
            self._in_flight -= 1
            if op[0] == 0x61 and _first_value(op) not in (b"\x00", b""):
                self.failed_binds += 1


# --- results -------------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the final table."""

    figure: str
    value: str
    target: str = ""
    verdict: str = ""


@dataclass
class Outcome:
    scenario: Scenario
    figures: list[Figure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # measurements other jobs disturbed

    def note_cpu(self, what: str, share: CpuShare) -> None:
        if share.busy(_cores()):
            self.busy.append(
                f"{what}: other jobs used {share.foreign or 0.0:.1f} CPU-s of "
                f"{_cores()} x {share.wall_s:.1f} s: its figures are low"
            )

    def add(
        self,
        figure: str,
        value: str,
        target: str = "",
        ok: bool | None = None,
        *,
        check: bool = False,
    ) -> None:
        """A figure; with a target, its verdict (a `check` is judged whatever the
        parameters, a performance target only for the issue's own)."""
        verdict = ""
        if target and ok is not None:
            custom = self.scenario.custom and not check
            verdict = "n/a (custom)" if custom else ("PASS" if ok else "FAIL")
        self.figures.append(Figure(figure, value, target, verdict))


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _per(count: float | None, n: int) -> str:
    return "n/a" if count is None or n == 0 else f"{count / n:.2f}"


def _stats(record: Mapping[str, Any] | None, key: str) -> int | None:
    stats = (record or {}).get("stats")
    value = stats.get(key) if isinstance(stats, dict) else None
    return value if isinstance(value, int) else None


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])[:600] or "(empty log)"


# --- the scenarios -------------------------------------------------------------------------


@dataclass
class World:
    """What one scenario runs against: files, OpenBao, the simulators, the environment."""

    scenario: Scenario
    workdir: Path
    vault: DevVault
    endpoints: list[Endpoint]
    rows: list[tuple[str, ...]]
    inventory: Path
    config: Path
    env: dict[str, str]
    sims: Simulators
    timeout_s: float
    profile: bool = False  # sample the rotate process with py-spy (figures then include it)
    relay: LdapRelay | None = None  # the shared scenario: counts what reaches the directory

    def clock(self) -> CpuClock:
        return CpuClock(
            machine_busy_s(), own_cpu_s(), proc_cpu_s(self.vault.pid), proc_cpu_s(self.sims.pid)
        )

    def measure(self, argv: Sequence[str], tag: str) -> tuple[Measured, CpuShare]:
        """Run one process of the scenario to its end; its figures and who shared the cores."""
        before = self.clock()
        m = measure(argv, self.env, self.workdir, self.workdir / f"{tag}.log", self.timeout_s)
        return m, cpu_share(before, self.clock(), m)

    def rotate(
        self, command: str, tag: str, *extra: str
    ) -> tuple[Measured, CpuShare, dict[str, Any] | None]:
        record = self.workdir / f"{tag}.json"
        high_water = self.workdir / f"{tag}.hwm"
        high_water.unlink(missing_ok=True)
        argv = [
            sys.executable,
            str(_MEASURED),
            str(high_water),
            command,
            str(self.inventory),
            "--config",
            str(self.config),
            "--out-dir",
            str(self.workdir / "reports"),
            "--json",
            str(record),
            "-q",
            *extra,
        ]
        samples = self.workdir / f"{tag}.pyspy"
        if self.profile:
            spy = Path(sys.executable).with_name("py-spy")
            argv = [str(spy), "record", "--rate", "200", "--format", "raw", "-o", str(samples),
                    "--", *argv]  # fmt: skip
        m, share = self.measure(argv, tag)
        if high_water.exists():  # the program's own peak (see bench/measured.py)
            m = replace(m, max_rss_mb=int(high_water.read_text()) * 1024 / 1e6)
        if self.profile and samples.exists():
            (self.workdir / f"{tag}.profile.txt").write_text(where_cpu_goes(samples))
        return m, share, _load_json(record)


@contextlib.contextmanager
def world(
    scenario: Scenario, root: Path, timeout_s: float, say: Say, profile: bool = False
) -> Iterator[World]:
    """Build the scenario's files, start OpenBao and the simulators; stop both afterwards."""
    workdir = root / scenario.name
    workdir.mkdir(parents=True, exist_ok=True)
    endpoints = fleet(scenario.endpoints)
    rows = make_inventory(scenario.rows, endpoints, scenario.usages if scenario.shared else 1)
    inventory = write_inventory(workdir / "inventory.csv", rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "ROTATE_"))}
    env.update({e.gateway_env: secrets.token_urlsafe(12) for e in endpoints})
    # the shared scenario's directory: `rotate simulate` serves it, rotate binds as its admin
    directory = ("ldap://127.0.0.1:9", scenario.ldap_connections) if scenario.shared else None
    env[DIRECTORY_BIND_ENV] = secrets.token_urlsafe(12)
    relay: LdapRelay | None = None
    with DevVault() as vault:
        env.update(VAULT_ADDR=vault.addr, VAULT_TOKEN=vault.token.reveal())
        config = workdir / "rotate.toml"
        config.write_text(
            config_text(vault.addr, PREFIX, endpoints, {}, scenario.concurrency, directory)
        )
        sims = Simulators(inventory, config, scenario.latency_ms, env)
        try:
            say(f"OpenBao at {vault.addr}; starting {len(endpoints)} simulators")
            urls = sims.start(len(endpoints), directories=int(directory is not None))
            if directory is not None:
                relay = LdapRelay(sims.directories[DIRECTORY], DIRECTORY_BIND_DN)
                directory = (relay.start(), directory[1])
                say(f"directory {sims.directories[DIRECTORY]}, counted through {relay.url}")
            config.write_text(
                config_text(vault.addr, PREFIX, endpoints, urls, scenario.concurrency, directory)
            )
            yield World(
                scenario,
                workdir,
                vault,
                endpoints,
                rows,
                inventory,
                config,
                env,
                sims,
                timeout_s,
                profile,
                relay,
            )
        finally:
            if relay is not None:
                relay.stop()
            sims.stop()


def run_scenario(w: World, peer: bool, say: Say) -> Outcome:
    """`rotate run` on every row (all due: the Vault prefix is empty), then the peer."""
    s = w.scenario
    o = Outcome(s)
    n = len(w.rows)
    cores = _cores()
    w.sims.reset_counters()
    say(f"rotate run: {n:,} credentials")
    m, share, record = w.rotate("run", "run")
    o.note_cpu("rotate run", share)
    counters = w.sims.counters()

    summary = (record or {}).get("summary") or {}
    items = (record or {}).get("items") or []
    rotated = sum(1 for i in items if i.get("status") == "rotated")
    ok_run = m.exit_code == 0 and rotated == n and len(items) == n
    if m.timed_out:
        o.problems.append(f"rotate run killed after {w.timeout_s:g} s")
    elif not ok_run:
        o.problems.append(
            f"rotate run exited {m.exit_code}, {rotated}/{n} rotated, summary {summary}; "
            f"log {m.log}: {_tail(m.log)}"
        )
    rate = n / m.wall_s
    trips = sum(vendor_trips(r) for r in w.rows)
    ideal = trips * s.latency_ms / 1000 / (s.endpoints * s.concurrency)
    sim_requests = sum(c["requests"] for c in counters.values())
    peak = max((c["max_in_flight"] for c in counters.values()), default=0)
    forbidden = sum(c["forbidden"] for c in counters.values())

    wall = f"{m.wall_s:.1f} s" + (" (killed at the timeout)" if m.timed_out else "")
    if s.max_wall_s is not None:
        o.add("wall time", wall, f"<= {s.max_wall_s:g} s", m.wall_s <= s.max_wall_s)
    else:
        o.add("wall time", wall)
    if s.min_rate is not None:
        o.add("credentials/s", f"{rate:,.0f}", f">= {s.min_rate:g}", rate >= s.min_rate)
    else:
        o.add("credentials/s", f"{rate:,.0f}")
    o.add(
        "exit code, items rotated",
        f"{m.exit_code}, {rotated:,}/{n:,}",
        "0, all",
        ok_run,
        check=True,
    )
    o.add("peak RSS (rotate)", f"{m.max_rss_mb:.0f} MB")
    o.add(
        "CPU s / 1,000 credentials",
        f"{m.cpu_s * 1000 / n:.2f} s (total {m.cpu_s:.1f} s: {m.cpu_s / m.wall_s:.2f} of a core)",
    )
    o.add("CPU of the others during the run", share.describe(cores))
    o.add("Vault requests / credential", f"{_per(_stats(record, 'vault_requests'), n)} (record)")
    o.add(
        "vendor requests / credential",
        f"{_per(sim_requests, n)} (simulators), "
        f"{_per(_stats(record, 'vendor_requests'), n)} (record), "
        f"protocol minimum {trips / n:.2f}",
    )
    o.add(
        "max in flight per endpoint",
        f"{peak} (limit {s.concurrency})",
        f"<= {s.concurrency}",
        peak <= s.concurrency,
        check=True,
    )
    if forbidden:
        o.problems.append(f"{forbidden} forbidden vendor call(s) recorded by the simulators")
    if s.latency_ms > 0:
        o.add(
            "ideal (latency bound)",
            f"{ideal:.2f} s = {trips / n:.2f} trips x {s.latency_ms:g} ms x {n:,} "
            f"/ ({s.endpoints} x {s.concurrency})",
        )
        o.add("wall / ideal", f"{m.wall_s / ideal:.1f}")
    else:
        o.add("ideal (latency bound)", "0 s (no latency): CPU-bound")

    if peer:
        run_peer(w, o, m.wall_s, say)
    return o


def run_peer(w: World, o: Outcome, rotate_wall_s: float, say: Say) -> None:
    """The sequential peer on the same world (another Vault prefix), timed on a sample when
    latency would make the whole inventory take minutes."""
    s = w.scenario
    n = len(w.rows)
    sample = s.peer_sample if s.peer_sample is not None else (_PEER_SAMPLE if s.latency_ms else 0)
    limit = sample if 0 < sample < n else n
    say(f"sequential peer: {limit:,} credentials" + (" (a sample)" if limit < n else ""))
    w.sims.reset_counters()
    argv = [sys.executable, str(PEER), str(w.inventory), "--config", str(w.config)]
    argv += ["--limit", str(limit), "--prefix", "peer"]
    m, share = w.measure(argv, "peer")
    o.note_cpu("the peer", share)
    log = m.log
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    done = int(result.get("credentials", 0))
    loop_s = float(result.get("elapsed_s", 0.0))
    if m.exit_code != 0 or not done or result.get("failed"):
        o.problems.append(f"the peer exited {m.exit_code}: {_tail(log)}")
        o.add("peer (sequential)", "failed")
        return
    peer_rate = done / loop_s
    # start-up once, then the loop's pace over the whole inventory
    peer_wall = (m.wall_s - loop_s) + n / peer_rate
    how = f"extrapolated from the first {done:,}" if done < n else "all rows"
    o.add(
        "peer (sequential)",
        f"{peer_rate:,.1f} credentials/s, {peer_wall:,.1f} s for {n:,} ({how})",
    )
    o.add("speed-up over the peer", f"{peer_wall / rotate_wall_s:.1f}x")


def shared_scenario(w: World, say: Say) -> Outcome:
    """Accounts of several usages on one ldap authority: `rotate run` (every account set at
    the directory for the first time), then `rotate run --force` (each account verified with
    Vault's current password first); after each, the end state is checked from outside."""
    s = w.scenario
    o = Outcome(s)
    n = len(w.rows)
    accounts = len({r[-2] for r in w.rows})
    relay = w.relay
    assert relay is not None
    connections = s.ldap_connections or 4
    trips = sum(vendor_trips(r) for r in w.rows)
    for tag, extra in (("run", ()), ("force", ("--force",))):
        label = "run 1" if tag == "run" else "run 2 (--force)"
        w.sims.reset_counters()
        relay.reset()
        say(f"rotate run {' '.join(extra)}: {accounts:,} accounts, {n:,} usages")
        m, share, record = w.rotate("run", tag, *extra)
        o.note_cpu(f"rotate {label}", share)
        counters = w.sims.counters()
        ops = relay.snapshot()
        items = (record or {}).get("items") or []
        records = (record or {}).get("accounts") or []
        rotated = sum(1 for i in items if i.get("status") == "rotated")
        done = sum(1 for a in records if a.get("status") == "rotated")
        verified = sum(1 for a in records if a.get("login_verified") is True)
        ok_run = m.exit_code == 0 and rotated == n == len(items) and done == accounts
        if m.timed_out:
            o.problems.append(f"rotate {label} killed after {w.timeout_s:g} s")
        elif not ok_run:
            statuses = Counter(str(a.get("status")) for a in records)
            o.problems.append(
                f"rotate {label} exited {m.exit_code}, {done}/{accounts} accounts and "
                f"{rotated}/{n} usages rotated, accounts {dict(statuses)}; "
                f"log {m.log}: {_tail(m.log)}"
            )
        wall = f"{m.wall_s:.1f} s" + (" (killed at the timeout)" if m.timed_out else "")
        o.add(f"{label}: wall time", wall)
        o.add(
            f"{label}: accounts/s, usages/s",
            f"{accounts / m.wall_s:,.0f}, {n / m.wall_s:,.0f}",
        )
        o.add(
            f"{label}: exit, accounts / usages rotated",
            f"{m.exit_code}, {done:,}/{accounts:,} / {rotated:,}/{n:,} "
            f"({verified:,} logins verified)",
            "0, all",
            ok_run,
            check=True,
        )
        o.add(f"{label}: peak RSS (rotate)", f"{m.max_rss_mb:.0f} MB")
        o.add(
            f"{label}: CPU s / 1,000 usages",
            f"{m.cpu_s * 1000 / n:.2f} s (total {m.cpu_s:.1f} s: "
            f"{m.cpu_s / m.wall_s:.2f} of a core)",
        )
        o.add(f"{label}: CPU of the others", share.describe(_cores()))
        o.add(
            f"{label}: Vault requests / usage",
            f"{_per(_stats(record, 'vault_requests'), n)} (record; "
            f"{_per(_stats(record, 'vault_requests'), accounts)} / account)",
        )
        sim_requests = sum(c["requests"] for c in counters.values())
        o.add(
            f"{label}: vendor requests / usage",
            f"{_per(sim_requests, n)} (simulators), "
            f"{_per(_stats(record, 'vendor_requests'), n)} (record), "
            f"protocol minimum {trips / n:.2f}",
        )
        per_account = sum(v for k, v in ops.items() if k in _DIRECTORY_OPS) / accounts
        kinds = ", ".join(f"{k} {ops[k] / accounts:.2f}" for k in _DIRECTORY_OPS if ops.get(k))
        o.add(
            f"{label}: directory operations / account",
            f"{per_account:.2f} ({kinds}; failed binds {ops['failed_binds']}; "
            f"{ops['connections']} connections)",
        )
        o.add(
            f"{label}: directory operations in flight",
            f"{ops['max_in_flight']} at most (connections = {connections})",
            f"<= {connections}",
            ops["max_in_flight"] <= connections,
            check=True,
        )
        peak = max((c["max_in_flight"] for c in counters.values()), default=0)
        o.add(
            f"{label}: max in flight per endpoint",
            f"{peak} (limit {s.concurrency})",
            f"<= {s.concurrency}",
            peak <= s.concurrency,
            check=True,
        )
        if s.latency_ms > 0:
            vendor_ideal = trips * s.latency_ms / 1000 / (s.endpoints * s.concurrency)
            directory_ideal = per_account * accounts * s.latency_ms / 1000 / connections
            o.add(
                f"{label}: ideal (latency bound)",
                f"vendors {vendor_ideal:.2f} s, directory {directory_ideal:.2f} s "
                f"(= {per_account:.2f} ops x {s.latency_ms:g} ms x {accounts:,} / "
                f"{connections}); wall / ideal "
                f"{m.wall_s / max(vendor_ideal, directory_ideal):.1f}",
            )
        forbidden = sum(c["forbidden"] for c in counters.values())
        if forbidden:
            o.problems.append(f"{forbidden} forbidden vendor call(s) recorded by the simulators")
        say(f"checking the end state of {label}")
        summary, problems = end_state(w)
        o.add(f"{label}: end state", summary, "all", not problems, check=True)
        o.problems += [f"{label}: {p}" for p in problems[:20]]
        if len(problems) > 20:
            o.problems.append(f"{label}: ... and {len(problems) - 20} more")
    return o


_DIRECTORY_OPS = ("search", "admin bind", "account bind", "password modify", "modify", "whoami")


def sim_passwords(w: World) -> dict[str, str | None]:
    """What each simulator holds, by row label (`GET /_sim/state`: the state, passwords
    included: a simulator's state is no secret)."""
    held: dict[str, str | None] = {}
    for name, url in w.sims.urls.items():
        state = w.sims._call(f"{url}/_sim/state")
        for row in w.rows:
            if row[0] != name:
                continue
            endpoint, kind, target, protocol = row[:4]
            if kind == "server":
                creds = (state["servers"].get(target) or {}).get("rdp") or {}
            elif kind == "connection":
                creds = (state["connections"].get(target) or {}).get("credentials") or {}
            else:
                computer = state["computers"].get(target) or {}
                creds = ((computer.get("connections") or {}).get(protocol) or {}).get(
                    "credentials"
                ) or {}
            held[f"{endpoint}/{kind}/{target}/{protocol}"] = creds.get("password")
    return held


def end_state(w: World) -> tuple[str, list[str]]:
    """After a run of the shared scenario: every usage holds its account's current password
    in Vault, that password logs in at the directory (an LDAP bind from here, straight to the
    stand-in), and no candidate is pending nor any usage recorded stale. Never a password in
    the answer."""
    settings = load_settings(w.config, w.env)
    accounts = group_accounts(load_inventory(w.inventory, settings))
    kv = HttpKV(settings.vault, w.vault.token.reveal)

    async def read() -> tuple[list[Any], list[str], list[str]]:
        try:
            current = await fan_out(lambda a: kv.read(a.vault_path), accounts, 32)
            pending = await kv.list(settings.vault.pending_root)
            stale = await kv.list(settings.vault.stale_root)
        finally:
            await kv.aclose()
        return current, pending, stale

    current, pending, stale = asyncio.run(read())
    held = sim_passwords(w)
    problems: list[str] = []
    if pending:
        problems.append(f"{len(pending)} journal record(s) left pending")
    if stale:
        problems.append(f"{len(stale)} account(s) with usages recorded stale")
    passwords: dict[str, str] = {}
    in_sync = 0
    for account, version in zip(accounts, current, strict=True):
        password = (version.data or {}).get("password") if version is not None else None
        if not isinstance(password, str):
            problems.append(f"account {account.name}: no current password in Vault")
            continue
        passwords[account.name] = password
        for row in account.usages:
            if held.get(row.label) == password:
                in_sync += 1
            else:
                problems.append(f"{row.label}: does not hold account {account.name}'s password")
    url = w.sims.directories[DIRECTORY]

    def logs_in(account: Account) -> bool:
        password = passwords.get(account.name)
        if password is None:
            return False
        dn = f"uid={account.username},{DIRECTORY_BASE_DN}"
        conn = ldap3.Connection(ldap3.Server(url, connect_timeout=10), dn, password)
        try:
            return bool(conn.bind())
        except ldap3.core.exceptions.LDAPException:
            return False
        finally:
            with contextlib.suppress(Exception):
                conn.unbind()

    with ThreadPoolExecutor(32) as pool:
        logged = list(pool.map(logs_in, accounts))
    for account, ok in zip(accounts, logged, strict=True):
        if not ok and account.name in passwords:
            problems.append(f"account {account.name}: Vault's current does not log in")
    usages = sum(len(a.usages) for a in accounts)
    summary = (
        f"{in_sync:,}/{usages:,} usages hold their account's current; "
        f"{sum(logged):,}/{len(accounts):,} log in at the directory; "
        f"pending {len(pending)}, stale {len(stale)}"
    )
    return summary, problems


def inventory_scenario(w: World, say: Say) -> Outcome:
    """`rotate plan` and `rotate report` over the whole inventory with the prefix empty, then
    `rotate report` once more with a secret for every row (the common case in production:
    each row's metadata read finds a version, and the drift check lists every folder)."""
    s = w.scenario
    o = Outcome(s)
    n = len(w.rows)
    runs: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("plan", "plan", ()),
        ("plan", "plan-quick", ("--no-usage-checks",)),
        ("report", "report", ()),
        ("report", "report-full", ()),
    )
    for command, tag, flags in runs:
        if tag == "report-full":
            say(f"writing a secret for each of the {n:,} rows (not measured)")
            populate(w)
        w.sims.reset_counters()
        more = ", every secret present" if tag == "report-full" else " ".join(("", *flags))
        say(f"rotate {command}: {n:,} rows{more}")
        m, share, record = w.rotate(command, tag, *flags)
        o.note_cpu(f"rotate {tag}", share)
        counters = w.sims.counters()
        items = (record or {}).get("items") or []
        if m.timed_out:
            o.problems.append(f"rotate {tag} killed after {w.timeout_s:g} s")
        elif m.exit_code != 0 or len(items) != n:
            o.problems.append(
                f"rotate {tag} exited {m.exit_code} with {len(items):,}/{n:,} items; "
                f"log {m.log}: {_tail(m.log)}"
            )
        wall = f"{m.wall_s:.1f} s" + (" (killed at the timeout)" if m.timed_out else "")
        # a plan that reads every usage is a read per row, like a run's read-back: no target
        if s.max_wall_s is not None and tag != "plan":
            o.add(f"{tag}: wall time", wall, f"<= {s.max_wall_s:g} s", m.wall_s <= s.max_wall_s)
        else:
            o.add(f"{tag}: wall time", wall)
        o.add(f"{tag}: rows/s", f"{n / m.wall_s:,.0f}")
        rss = f"{m.max_rss_mb:.0f} MB"
        if s.max_rss_mb is not None:
            o.add(f"{tag}: peak RSS", rss, f"<= {s.max_rss_mb:g} MB", m.max_rss_mb <= s.max_rss_mb)
        else:
            o.add(f"{tag}: peak RSS", rss)
        o.add(
            f"{tag}: CPU s / 1,000 rows",
            f"{m.cpu_s * 1000 / n:.2f} s ({m.cpu_s / m.wall_s:.2f} of a core)",
        )
        o.add(f"{tag}: CPU of the others", share.describe(_cores()))
        o.add(
            f"{tag}: requests / row",
            f"Vault {_per(_stats(record, 'vault_requests'), n)} (record), vendor "
            f"{sum(c['requests'] for c in counters.values())} in all (probes)",
        )
    return o


def populate(w: World) -> None:
    """Give every row of the inventory a current secret in Vault, as a rotation would."""
    settings = load_settings(w.config, {})
    rows = load_inventory(w.inventory, settings)
    kv = HttpKV(w.vault.settings(), w.vault.token.reveal)

    async def fill() -> None:
        try:
            await fan_out(
                lambda r: kv.write(
                    r.vault_path, {"username": r.username, "password": secrets.token_urlsafe(15)}, 0
                ),
                rows,
                48,
            )
        finally:
            await kv.aclose()

    asyncio.run(fill())


# --- the command ---------------------------------------------------------------------------


def print_table(outcomes: Sequence[Outcome], out: IO[str]) -> None:
    head = ("scenario", "figure", "value", "target", "verdict")
    rows: list[tuple[str, ...]] = []
    for o in outcomes:
        for i, f in enumerate(o.figures):
            rows.append((o.scenario.name if i == 0 else "", f.figure, f.value, f.target, f.verdict))
        for p in o.problems:
            rows.append(("", "PROBLEM", p, "", "FAIL"))
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    widths[2] = min(widths[2], 70)

    def line(r: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r)).rstrip()

    print(line(head), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    previous = None
    for r in rows:
        if r[0] and previous is not None:
            print(file=out)
        print(line(r), file=out)
        previous = r
    for o in outcomes:
        print(f"\n{o.scenario.describe()}", file=out)
        for note in o.busy:
            print(f"  BUSY MACHINE: {note}", file=out)


def choose(args: argparse.Namespace) -> list[Scenario]:
    overrides = {
        k: v
        for k, v in (
            ("rows", args.rows),
            ("endpoints", args.endpoints),
            ("latency_ms", args.latency_ms),
            ("concurrency", args.concurrency),
            ("peer_sample", args.peer_sample),
        )
        if v is not None
    }
    judged = {k for k in overrides if k != "peer_sample"}
    if args.quick:
        chosen = [QUICK]
    elif args.scenario:
        names = list(SCENARIOS) if "all" in args.scenario else list(dict.fromkeys(args.scenario))
        chosen = [SCENARIOS[name] for name in names]
    elif judged:
        chosen = [replace(SCENARIOS["latency"], name="custom", custom=True)]
    else:
        chosen = list(SCENARIOS.values())
    return [replace(s, **overrides, custom=s.custom or bool(judged)) for s in chosen]


def code_version() -> str:
    """The commit the figures belong to (`+dirty`: uncommitted changes), when git can say."""
    repo = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(repo), "describe", "--always", "--dirty=+dirty"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        help="a scenario to run (repeatable; default: all four)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 credentials, 50 ms: a smoke check"
    )
    parser.add_argument("--rows", type=int, default=None, help="credentials in the inventory")
    parser.add_argument("--endpoints", type=int, default=None, help="endpoints (default 20)")
    parser.add_argument(
        "--latency-ms", type=float, default=None, help="added to each vendor request"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="requests in flight per endpoint (8)"
    )
    parser.add_argument(
        "--peer-sample",
        type=int,
        default=None,
        help=f"time the peer on the first N rows (default {_PEER_SAMPLE} with latency; 0: all)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the sequential peer")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample rotate with py-spy; where its CPU goes lands in <tag>.profile.txt "
        "(use with --workdir; the timings then include the sampler)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="kill a measured process after S seconds"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep inventories, configs, logs here"
    )
    args = parser.parse_args(argv)
    if (args.rows is not None and args.rows < 1) or (
        args.endpoints is not None and args.endpoints < 1
    ):
        parser.error("--rows and --endpoints must be at least 1")
    scenarios = choose(args)
    version = code_version()

    signal.signal(signal.SIGTERM, _terminate)  # unwinds like Ctrl-C: everything is stopped
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    root = args.workdir or Path(tempfile.mkdtemp(prefix="rotate-bench-"))
    outcomes: list[Outcome] = []
    try:
        for s in scenarios:
            say(s.describe())
            try:
                with world(s, root, args.timeout, say, args.profile) as w:
                    if s.kind == "inventory":
                        outcome = inventory_scenario(w, say)
                    elif s.shared:
                        outcome = shared_scenario(w, say)
                    else:
                        outcome = run_scenario(w, not args.no_peer, say)
            except (RuntimeError, OSError) as exc:
                outcome = Outcome(s)
                outcome.problems.append(f"could not run: {exc}")
            outcomes.append(outcome)
    except KeyboardInterrupt:
        say("interrupted: every process started here is stopped")
        if outcomes:
            print_table(outcomes, sys.stdout)
        return 130
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(file=sys.stdout)
    print_table(outcomes, sys.stdout)
    print(
        f"\nrotate at {version}, {time.strftime('%Y-%m-%d')}; "
        f"{_cores()} cores; OpenBao, the simulators and rotate share them."
        " Figures drift between runs: compare ratios measured side by side.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
