"""Hostile inventories and configs through the real command line, `rotate.cli.main`.

For every generated case whose problems are known in advance: `main` returns 2 (it never raises
and prints no traceback), stderr names each injected problem (row and column for an inventory,
the key for a config), and nothing is touched: no connection reaches the loopback listeners
standing in for Vault and for every endpoint, and no report is written. Inputs that merely look
hostile (HTML in notes, a formula-looking owner, a BOM, CRLF) pass validation: the run then
stops at "Vault" (a listener answering HTTP 500) with exit 3, which proves validation let it by.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotate.cli import main
from rotate.errors import EXIT_REFUSED, EXIT_USAGE
from rotate.inventory import COLUMNS, REQUIRED_COLUMNS, load_inventory

# derandomized and without an example database: the same cases on every machine and in CI
PROFILE = settings(max_examples=100, deadline=None, derandomize=True, database=None)

VAULT_TOKEN = "hvs.hostile-test-token-0d1f"
GW_PASSWORD = "gw-env-secret-5e7a"
MODES = st.sampled_from(["plan", "run", "report"])
LINE_BREAK = re.compile(r"\r\n|\r|\n")
BLAMED_ROW = re.compile(r"^\s*- row (\d+)\b", re.MULTILINE)


# --- the network: loopback listeners that count who knocks ----------------------------------


class Listener:
    """A loopback TCP server that counts connections and answers each with HTTP 500."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._hits = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(65536)
                    if first == b"SYNC":  # the test's own marker, not a client
                        conn.sendall(b"OK")
                        continue
                    with self._lock:
                        self._hits += 1
                    conn.sendall(
                        b"HTTP/1.1 500 Not Vault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                except OSError:
                    with self._lock:
                        self._hits += 1

    def reset(self) -> None:
        with self._lock:
            self._hits = 0

    def hits(self) -> int:
        """Connections so far; every earlier one is accepted first (FIFO), so none is missed."""
        with socket.create_connection(self._sock.getsockname(), timeout=5) as sync:
            sync.sendall(b"SYNC")
            assert sync.recv(2) == b"OK"
        with self._lock:
            return self._hits

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@dataclass
class Net:
    vault: Listener
    endpoint: Listener
    base: Path  # per-case temporary directories go in here
    latin1_file: Path  # a file that is not UTF-8 text


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("hostile")
    latin1 = base / "latin1-token"
    latin1.write_bytes(b"tok\xe9n")
    vault, endpoint = Listener(), Listener()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAULT_ADDR", vault.url)
        mp.setenv("VAULT_TOKEN", VAULT_TOKEN)
        mp.setenv("GW_PASSWORD", GW_PASSWORD)
        mp.setenv("HOME", str(base / "home"))  # never the developer's ~/.vault-token
        for var in ("VAULT_CACERT", "VAULT_NAMESPACE", "ROTATE_CONFIG", "OFFICE_TOKEN"):
            mp.delenv(var, raising=False)
        yield Net(vault, endpoint, base, latin1)
    vault.close()
    endpoint.close()


@dataclass
class Outcome:
    code: int
    stderr: str
    vault_hits: int
    endpoint_hits: int
    written: list[str] = field(default_factory=list)  # reports found afterwards


def invoke(
    net: Net,
    config: bytes,
    inventory: bytes,
    mode: str = "plan",
    env: dict[str, str | None] | None = None,
) -> Outcome:
    """`rotate MODE inventory --config ... --out-dir ... --json ...` in a fresh directory."""
    with tempfile.TemporaryDirectory(dir=net.base) as tmp, pytest.MonkeyPatch.context() as mp:
        work = Path(tmp)
        (work / "rotate.toml").write_bytes(config)
        (work / "inventory.csv").write_bytes(inventory)
        for var, value in (env or {}).items():
            if value is None:
                mp.delenv(var, raising=False)
            else:
                mp.setenv(var, value)
        out_dir, json_path = work / "reports", work / "run.json"
        argv = [mode, str(work / "inventory.csv"), "--config", str(work / "rotate.toml")]
        argv += ["--out-dir", str(out_dir), "--json", str(json_path)]
        net.vault.reset()
        net.endpoint.reset()
        err = io.StringIO()
        handler = logging.StreamHandler(err)  # a logged traceback counts too
        logging.getLogger().addHandler(handler)
        try:
            with redirect_stdout(io.StringIO()), redirect_stderr(err):
                code = main(argv)
        finally:
            logging.getLogger().removeHandler(handler)
        written = [p.name for p in (out_dir, json_path) if p.exists()]
        return Outcome(code, err.getvalue(), net.vault.hits(), net.endpoint.hits(), written)


def assert_rejected(out: Outcome, expected: list[str], secrets: Sequence[str] = ()) -> None:
    """Exit 2, no traceback, every expected fragment named, no secret echoed, nothing touched."""
    assert out.code == EXIT_USAGE, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    missing = [e for e in expected if e not in out.stderr]
    assert not missing, f"not named: {missing}\n{out.stderr}"
    for secret in (VAULT_TOKEN, GW_PASSWORD, *secrets):
        assert secret not in out.stderr
    assert (out.vault_hits, out.endpoint_hits) == (0, 0), "a connection before validation"
    assert out.written == [], "a report was written"


def assert_accepted(out: Outcome) -> None:
    """Validation passed: the run went on to Vault (a listener, not Vault) and stopped there."""
    assert out.code != EXIT_USAGE, out.stderr
    assert out.code == EXIT_REFUSED, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "does not answer like Vault" in out.stderr, out.stderr
    assert out.vault_hits >= 1
    assert out.endpoint_hits == 0  # Vault is checked before any endpoint
    assert out.written == ["run.json"]  # the refusal is recorded; no report is written


# --- configs --------------------------------------------------------------------------------

Sections = dict[str, dict[str, str]]  # "[section]" -> key -> TOML literal


def base_config(endpoint_url: str) -> Sections:
    return {
        "vault": {"mount": '"secret"', "prefix": '"rotate"', "auth": '"token"'},
        "run": {
            "concurrency": "4",
            "per_endpoint_concurrency": "2",
            "retries": "0",
            "authority": '"none"',
        },
        "policies.default": {"length": "24"},
        "policies.vnc": {"length": "8", "max_length": "8"},
        "endpoints.office": {
            "system": '"remotix"',
            "url": f'"{endpoint_url}"',
            "token_env": '"OFFICE_TOKEN"',
        },
        "endpoints.gw": {
            "system": '"sparkview"',
            "url": f'"{endpoint_url}"',
            "gateway_password_env": '"GW_PASSWORD"',
        },
    }


def render(sections: Sections, newline: str = "\n", bom: bool = False) -> bytes:
    lines = ["# rotate config under test"]
    for section, keys in sections.items():
        lines += ["", f"[{section}]"] + [f"{key} = {value}" for key, value in keys.items()]
    text = newline.join(lines) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


class ConfigFault(NamedTuple):
    """One problem to inject: TOML edits (None removes the key), what stderr must hold."""

    slot: str  # two faults on one slot would hide each other: at most one per case
    edits: tuple[tuple[str, str, str | None], ...]
    expect: tuple[str, ...]
    env: tuple[tuple[str, str | None], ...] = ()
    secret: str | None = None  # must never be echoed


def _set(slot: str, section: str, key: str, literal: str, *expect: str) -> ConfigFault:
    return ConfigFault(slot, ((section, key, literal),), expect or (f"{section}.{key}",))


# @URL@: the endpoint listener; @LATIN1@: a file that is not UTF-8 text
CONFIG_FAULTS = [
    # wrong types
    _set("run.concurrency", "run", "concurrency", '"many"', "run.concurrency: expected int"),
    _set("run.retries", "run", "retries", "2.5", "run.retries: expected int"),
    _set("run.timeout_s", "run", "timeout_s", "true", "run.timeout_s: expected float"),
    _set("run.per_endpoint", "run", "per_endpoint_concurrency", "[8]"),
    _set("run.max_age_days", "run", "max_age_days", "1979-05-27", "run.max_age_days: expected"),
    _set("vault.connections", "vault", "connections", '"8"', "vault.connections: expected"),
    _set("office.system", "endpoints.office", "system", '["remotix"]', "endpoints.office.system"),
    _set("office.system", "endpoints.office", "system", '{ name = "remotix" }'),
    _set("office.system", "endpoints.office", "system", '"citrix"', "endpoints.office.system"),
    _set("office.verify", "endpoints.office", "insecure", '"no"', "endpoints.office.insecure"),
    _set("office.url", "endpoints.office", "url", "8750", "endpoints.office.url: expected str"),
    _set("policy.vnc", "policies.vnc", "length", '"8"', "policies.vnc.length: expected int"),
    # unknown sections and keys
    _set("run.typo", "run", "concurency", "8", "run: unknown key 'concurency'"),
    _set("run.html", "run", '"<script>alert(1)</script>"', "1", "unknown key '<script>alert(1)"),
    _set("office.colour", "endpoints.office", "colour", '"red"', "endpoints.office: unknown key"),
    _set("section", "colour", "shade", '"red"', "unknown section [colour]"),
    _set("section", '"<b>x</b>"', "a", "1", "unknown section [<b>x</b>]"),
    _set("endpoints.flat", "endpoints", "flat", "1", "[endpoints.flat] must be a table"),
    _set("policies.flat", "policies", "strong", "32", "[policies.strong] must be a table"),
    # secrets in the file
    ConfigFault(
        "vault.token",
        (("vault", "token", '"s3cr3t-in-file"'),),
        ("vault.token: secrets never live in the config file",),
        secret="s3cr3t-in-file",
    ),
    ConfigFault(
        "vault.secret_id",
        (("vault", "secret_id", '"approle-s3cr3t"'),),
        ("vault.secret_id: secrets never live",),
        secret="approle-s3cr3t",
    ),
    ConfigFault(
        "gw.password",
        (("endpoints.gw", "gateway_password", '"gw-file-s3cr3t"'),),
        ("endpoints.gw.gateway_password: secrets never live",),
        secret="gw-file-s3cr3t",
    ),
    ConfigFault(
        "office.password",
        (("endpoints.office", "password", '"pw-file-s3cr3t"'),),
        ("endpoints.office.password: secrets never live",),
        secret="pw-file-s3cr3t",
    ),
    # bad URLs
    _set("office.url", "endpoints.office", "url", '"ftp://h"', "endpoints.office.url"),
    _set("office.url", "endpoints.office", "url", '"http://"', "endpoints.office.url"),
    _set("office.url", "endpoints.office", "url", '"http://127.0.0.1:99999"'),
    _set("office.url", "endpoints.office", "url", '"javascript:alert(1)"'),
    _set("office.url", "endpoints.office", "url", "\"=cmd|' /C calc'!A0\""),
    _set("office.url", "endpoints.office", "url", '"http://exa mple.net"'),
    _set("office.url", "endpoints.office", "url", '"http://h\\u0000.net"'),
    ConfigFault(
        "office.url",
        (("endpoints.office", "url", '"http://admin:url-s3cr3t@127.0.0.1:9"'),),
        ("endpoints.office.url: must not carry a user name or password",),
        secret="url-s3cr3t",
    ),
    ConfigFault(
        "vault.addr", (), ("vault.addr: '127.0.0.1:8200'",), (("VAULT_ADDR", "127.0.0.1:8200"),)
    ),
    ConfigFault(
        "vault.addr",
        (("vault", "addr", '"http://"'),),
        ("vault.addr: 'http://' has no host",),
        (("VAULT_ADDR", None),),
    ),
    ConfigFault(
        "vault.addr",
        (),
        ("vault.addr: must not carry a user name or password",),
        (("VAULT_ADDR", "http://root:addr-s3cr3t@127.0.0.1:9"),),
        secret="addr-s3cr3t",
    ),
    # negative, zero, non-finite and overflowing numbers
    _set("run.concurrency", "run", "concurrency", "-1", "run.concurrency: must be greater than 0"),
    _set("run.retries", "run", "retries", "-3", "run.retries: must be 0 or more"),
    _set("run.timeout_s", "run", "timeout_s", "-0.5", "run.timeout_s: must be greater than 0"),
    _set("run.timeout_s", "run", "timeout_s", "nan", "run.timeout_s: must be a finite number"),
    _set("run.per_endpoint", "run", "per_endpoint_concurrency", "0"),
    _set("run.max_age_days", "run", "max_age_days", "-90", "run.max_age_days: must be greater"),
    _set("run.backoff_s", "run", "backoff_s", "-1", "run.backoff_s: must be 0 or more"),
    _set("run.max_backoff", "run", "max_backoff_s", "-10", "run.max_backoff_s: must be 0 or more"),
    _set("run.retry_after", "run", "max_retry_after_s", "-60", "run.max_retry_after_s"),
    _set("vault.timeout_s", "vault", "timeout_s", "nan", "vault.timeout_s: must be a finite"),
    _set("vault.timeout_s", "vault", "timeout_s", "inf", "vault.timeout_s: must be a finite"),
    _set("vault.timeout_s", "vault", "timeout_s", "1e10", "vault.timeout_s: must be at most"),
    _set("vault.timeout_s", "vault", "timeout_s", "-1", "vault.timeout_s: must be greater"),
    _set(
        "vault.connections",
        "vault",
        "connections",
        "-4",
        "vault.connections: must be greater than 0",
    ),
    _set("office.conc", "endpoints.office", "per_endpoint_concurrency", "-2"),
    _set("gw.timeout", "endpoints.gw", "timeout_s", "-inf", "endpoints.gw.timeout_s"),
    _set("policy.default", "policies.default", "length", "-8", "policies.default.length"),
    # policies that cannot be satisfied
    _set("policy.default", "policies.default", "length", "3", "policies.default.length: 3 is"),
    ConfigFault(
        "policy.none",
        tuple(("policies.none", k, "false") for k in ("lower", "upper", "digits", "symbols")),
        ("policies.none: at least one character class must be enabled",),
    ),
    ConfigFault(
        "policy.cap",
        (("policies.cap", "length", "12"), ("policies.cap", "max_length", "8")),
        ("policies.cap.length: 12 exceeds max_length 8",),
    ),
    _set("policy.sym", "policies.sym", "symbol_set", '""', "policies.sym.symbol_set: empty"),
    _set("policy.html", "policies.html", "symbol_set", '"<script>"', "policies.html.symbol_set"),
    # vault paths and auth
    _set("vault.auth", "vault", "auth", '"ldap"', "vault.auth: 'ldap' is not supported"),
    _set("vault.paths", "vault", "prefix", '"/rotate"', "vault.prefix: '/rotate' must be"),
    _set("vault.paths", "vault", "prefix", '"ro\\u0000tate"', "vault.prefix:"),
    _set("vault.paths", "vault", "pending_prefix", '"rotate"', "vault.pending_prefix: 'rotate'"),
    _set("vault.mount", "vault", "mount", '""', "vault.mount: '' must be"),
    _set("vault.mount", "vault", "mount", '"sec\\u202eret"', "vault.mount:"),
    ConfigFault(
        "vault.token_file",
        (("vault", "token_file", '"/tmp/tok\\u0000en"'),),
        ("vault.token_file:",),
        (("VAULT_TOKEN", None),),
    ),
    ConfigFault(
        "vault.token_file",
        (("vault", "token_file", '"@LATIN1@"'),),
        ("vault.token_file:", "not UTF-8"),
        (("VAULT_TOKEN", None),),
    ),
    # endpoints
    ConfigFault(
        "gw.gateway",
        (("endpoints.gw", "gateway_password_env", None),),
        ("endpoints.gw: a sparkview endpoint needs gateway_password_env",),
    ),
    _set("gw.gateway", "endpoints.gw", "gateway_password_vault", '"infra/gw"', "expected '<path>#"),
    ConfigFault(
        "gw2",
        (("endpoints.gw2", "system", '"sparkview"'), ("endpoints.gw2", "url", '"@URL@"')),
        ("endpoints.gw2: a sparkview endpoint needs",),
    ),
    _set("third", "endpoints.third", "system", '"remotix"', "endpoints.third: missing required"),
    _set("fourth", "endpoints.fourth", "url", '"@URL@"', "endpoints.fourth: missing required"),
    _set(
        "office.ca",
        "endpoints.office",
        "ca_bundle",
        '"/nonexistent/ca.pem"',
        "endpoints.office.ca_bundle",
    ),
]


def _faulty_config(net: Net, faults: list[ConfigFault]) -> Sections:
    sections = base_config(net.endpoint.url)
    for fault in faults:
        for section, key, literal in fault.edits:
            keys = sections.setdefault(section, {})
            if literal is None:
                keys.pop(key, None)
            else:
                literal = literal.replace("@URL@", net.endpoint.url)
                keys[key] = literal.replace("@LATIN1@", str(net.latin1_file))
    return sections


# --- inventories ----------------------------------------------------------------------------

HEADER = list(COLUMNS)
KINDS = ("connection", "computer", "server")


def base_row(kind: str, index: int) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    if kind == "connection":
        row |= {"endpoint": "office", "target": f"4567-{index:04X}", "protocol": "RDP"}
        row |= {"username": "administrator", "domain": "EXAMPLE"}
    elif kind == "computer":
        row |= {"endpoint": "office", "target": f"{100000 + index}", "protocol": "RDP"}
        row |= {"port": "3390", "username": "admin", "domain": "EXAMPLE"}
    else:
        row |= {"endpoint": "gw", "target": f"srv-{index}", "username": "svc"}
    return row | {"kind": kind}


# valid cells that look hostile: data, never code
NOTES = [
    "",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "=cmd|' /C calc'!A0",
    "+1",
    "-2+3",
    "@SUM(A1:A9)",
    '=HYPERLINK("http://x","y")',
    "two\nlines",
    "three\r\nlines\rhere",
    "tab\there",
    "a, b",
    'say "hi"',
    "NULL",
    "n" * 20_000,
    "é ✓ 中文 🙂",
]
OWNERS = ["", "IT", "=cmd|' /C calc'!A0", "+1", "@SUM(A1)", '<b>IT</b> & "Ops"', "-1"]
USERNAMES = ["administrator", "=1+1", "@admin", "+admin", "<b>admin</b>"]

ALL = frozenset(KINDS)
REMOTIX = frozenset({"connection", "computer"})


class RowFault(NamedTuple):
    label: str
    kinds: frozenset[str]
    cells: dict[str, str]
    column: str  # where the loader must say the problem is


ROW_FAULTS = [
    RowFault("unknown endpoint", ALL, {"endpoint": "nowhere"}, "endpoint"),
    RowFault("html endpoint", ALL, {"endpoint": "<script>alert(1)</script>"}, "endpoint"),
    RowFault("formula endpoint", ALL, {"endpoint": "=cmd|' /C calc'!A0"}, "endpoint"),
    RowFault("very long endpoint", ALL, {"endpoint": "e" * 100_000}, "endpoint"),
    RowFault("empty endpoint", ALL, {"endpoint": ""}, "endpoint"),
    RowFault("NUL in endpoint", ALL, {"endpoint": "off\x00ice"}, "endpoint"),
    RowFault("unknown kind", ALL, {"kind": "laptop"}, "kind"),
    RowFault("formula kind", ALL, {"kind": "@SUM(A1:A9)"}, "kind"),
    RowFault("server on remotix", frozenset({"server"}), {"endpoint": "office"}, "kind"),
    RowFault("connection on sparkview", frozenset({"connection"}), {"endpoint": "gw"}, "kind"),
    RowFault("empty target", ALL, {"target": ""}, "target"),
    RowFault("slash in target", ALL, {"target": "fin/ws-01"}, "target"),
    RowFault("html target", ALL, {"target": "<img src=x onerror=alert(1)/>"}, "target"),
    RowFault("dot-dot target", ALL, {"target": ".."}, "target"),
    RowFault("NUL in target", ALL, {"target": "45\x0067"}, "target"),
    RowFault("quoted newline in target", ALL, {"target": "45\n67"}, "target"),
    RowFault("very long target", ALL, {"target": "t" * 50_000 + "/x"}, "target"),
    RowFault("blank username", ALL, {"username": "  "}, "username"),
    RowFault("NUL in username", ALL, {"username": "adm\x00in"}, "username"),
    RowFault("bidi username", ALL, {"username": "adm\u202enimda"}, "username"),
    RowFault("escape username", ALL, {"username": "admin\x1b[31m"}, "username"),
    RowFault("unknown protocol", ALL, {"protocol": "SSH"}, "protocol"),
    RowFault("formula protocol", ALL, {"protocol": "+1"}, "protocol"),
    RowFault("missing protocol", REMOTIX, {"protocol": ""}, "protocol"),
    RowFault(
        "VNC connection", frozenset({"connection"}), {"protocol": "VNC", "domain": ""}, "protocol"
    ),
    RowFault("port not computer", frozenset({"connection", "server"}), {"port": "3390"}, "port"),
    RowFault("signed port", frozenset({"computer"}), {"port": "+1"}, "port"),
    RowFault("negative port", frozenset({"computer"}), {"port": "-1"}, "port"),
    RowFault("float port", frozenset({"computer"}), {"port": "1e3"}, "port"),
    RowFault("port too big", frozenset({"computer"}), {"port": "70000"}, "port"),
    RowFault("non-ASCII port", frozenset({"computer"}), {"port": "٣٣٩٠"}, "port"),
    RowFault("formula age", ALL, {"max_age_days": "@SUM(A1)"}, "max_age_days"),
    RowFault("negative age", ALL, {"max_age_days": "-5"}, "max_age_days"),
    RowFault("zero age", ALL, {"max_age_days": "0"}, "max_age_days"),
    RowFault("fractional age", ALL, {"max_age_days": "1.5"}, "max_age_days"),
    RowFault("very long age", ALL, {"max_age_days": "9" * 1000}, "max_age_days"),
    RowFault("formula policy", ALL, {"policy": '=HYPERLINK("http://x","y")'}, "policy"),
    RowFault(
        "VNC default policy", frozenset({"computer"}), {"protocol": "VNC", "domain": ""}, "policy"
    ),
    RowFault("domain on NEAR", REMOTIX, {"protocol": "NEAR"}, "domain"),
    RowFault("NUL in notes", ALL, {"notes": "a\x00b"}, "notes"),
    RowFault("bell in owner", ALL, {"owner": "IT\x07"}, "owner"),
    RowFault("absolute vault path", ALL, {"vault_path": "/rotate/x"}, "vault_path"),
    RowFault("empty path segment", ALL, {"vault_path": "rotate//x"}, "vault_path"),
    RowFault("pending area", ALL, {"vault_path": "rotate/_pending/x"}, "vault_path"),
]
DUPLICATE = RowFault("duplicate", ALL, {}, "target")


class Spec(NamedTuple):
    """One record: its kind, its fault (None: valid), its harmless decoration."""

    kind: str
    fault: RowFault | None
    notes: str
    owner: str
    username: str


def _fault_for(kind: str) -> st.SearchStrategy[RowFault]:
    return st.sampled_from([f for f in [*ROW_FAULTS, DUPLICATE] if kind in f.kinds])


def _spec(faulty: bool) -> st.SearchStrategy[Spec]:
    return st.sampled_from(KINDS).flatmap(
        lambda kind: st.builds(
            Spec,
            st.just(kind),
            _fault_for(kind) if faulty else st.none(),
            st.sampled_from(NOTES),
            st.sampled_from(OWNERS),
            st.sampled_from(USERNAMES),
        )
    )


class Layout(NamedTuple):
    header: list[str]
    newline: str
    bom: bool
    leading_blank_lines: int
    final_newline: bool


layouts = st.builds(
    Layout,
    st.permutations(HEADER),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
    st.integers(0, 2),
    st.booleans(),
)


def _record(cells: list[str]) -> str:
    buffer = io.StringIO()
    # "\r\n" as terminator: only then does the writer quote a cell holding a line break
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue().removesuffix("\r\n")


class Built(NamedTuple):
    data: bytes
    blamed: list[tuple[int, str, str | None]]  # line, column, other words the message holds
    lines: list[int]  # the line each record starts on


NOT_UTF8 = "\ue000"  # stands for the byte 0xe9 (Latin-1 "é"), swapped in after encoding


def build_inventory(
    specs: list[Spec],
    layout: Layout,
    header: list[str] | None = None,
    around: dict[int, tuple[str, str]] | None = None,
) -> Built:
    """The CSV and, for each injected fault, the line and column the loader must name.

    `around` puts raw text before and after some records (by index), to break the CSV itself.
    """
    header = header or layout.header
    around = around or {}
    text = layout.newline * layout.leading_blank_lines + _record(header)
    blamed: list[tuple[int, str, str | None]] = []
    lines: list[int] = []
    valid: list[tuple[int, dict[str, str]]] = []
    for index, spec in enumerate(specs):
        text += layout.newline
        line = 1 + len(LINE_BREAK.findall(text))
        lines.append(line)
        row = base_row(spec.kind, index)
        row |= {"notes": spec.notes, "owner": spec.owner, "username": spec.username}
        fault = spec.fault
        if fault is DUPLICATE:
            same_kind = [(first, r) for first, r in valid if r["kind"] == spec.kind]
            if same_kind:
                first, original = same_kind[0]
                row = original | {"notes": "again"}
                blamed.append((line, "target", f"duplicate of line {first}"))
            else:
                fault = None  # nothing to duplicate yet: a valid row
        elif fault is not None:
            row |= fault.cells
            blamed.append((line, fault.column, None))
        if fault is None:
            valid.append((line, row))
        before, after = around.get(index, ("", ""))
        text += before + _record([row.get(column, "") for column in header]) + after
    if layout.final_newline:
        text += layout.newline
    data = text.encode("utf-8").replace(NOT_UTF8.encode("utf-8"), b"\xe9")
    return Built((b"\xef\xbb\xbf" if layout.bom else b"") + data, blamed, lines)


def _valid_config(net: Net, newline: str = "\n", bom: bool = False) -> bytes:
    return render(base_config(net.endpoint.url), newline, bom)


# --- properties: inventories ----------------------------------------------------------------


@PROFILE
@given(
    valid=st.lists(_spec(faulty=False), max_size=6),
    faulty=st.lists(_spec(faulty=True), min_size=1, max_size=6),
    order=st.randoms(use_true_random=False),
    layout=layouts,
    mode=MODES,
)
def test_a_hostile_inventory_is_rejected_naming_every_bad_cell(
    net: Net,
    valid: list[Spec],
    faulty: list[Spec],
    order: object,
    layout: Layout,
    mode: str,
) -> None:
    specs = valid + faulty
    order.shuffle(specs)  # type: ignore[attr-defined]
    built = build_inventory(specs, layout)
    if not built.blamed:  # only duplicates with nothing before them: add a certain fault
        specs.append(Spec("connection", ROW_FAULTS[0], "", "", "admin"))
        built = build_inventory(specs, layout)
    out = invoke(net, _valid_config(net), built.data, mode)
    expected = [f"row {line}, column {column!r}: " for line, column, _ in built.blamed]
    expected += [words for _, _, words in built.blamed if words]
    assert_rejected(out, expected)
    # a valid row is never blamed
    assert {int(n) for n in BLAMED_ROW.findall(out.stderr)} <= {b[0] for b in built.blamed}


@PROFILE
@given(
    rows=st.lists(_spec(faulty=False), min_size=0, max_size=4),
    layout=layouts,
    missing=st.sets(st.sampled_from(REQUIRED_COLUMNS), max_size=4),
    extra=st.lists(
        st.sampled_from(
            [
                "password",
                "<script>alert(1)</script>",
                "=cmd|' /C calc'!A0",
                "+1",
                "@SUM(A1)",
                "Endpoint",
                "x" * 5000,
                "pass\x00word",
            ]
        ),
        unique=True,
        max_size=3,
    ),
    twice=st.lists(st.sampled_from(COLUMNS), unique=True, max_size=2),
    mode=MODES,
)
def test_a_hostile_header_names_every_column_problem(
    net: Net,
    rows: list[Spec],
    layout: Layout,
    missing: set[str],
    extra: list[str],
    twice: list[str],
    mode: str,
) -> None:
    twice = [c for c in twice if c not in missing]
    if not (missing or extra or twice):
        missing = {"username"}
    header = [c for c in layout.header if c not in missing] + extra + twice
    built = build_inventory(rows, layout, header)
    out = invoke(net, _valid_config(net), built.data, mode)
    expected = [f"column {c!r}: required column is missing" for c in sorted(missing)]
    expected += [f"row 1, column {c!r}: unknown column" for c in extra]
    expected += [f"row 1, column {c!r}: column appears twice" for c in twice]
    # the header row is line 1 after any blank lines skipped before it
    expected = [e.replace("row 1,", f"row {1 + layout.leading_blank_lines},") for e in expected]
    assert_rejected(out, expected)


FILE_FAULTS = ["not-utf8", "too-many-fields", "unclosed-quote", "semicolons", "empty"]


@PROFILE
@given(
    rows=st.lists(_spec(faulty=False), min_size=1, max_size=5),
    layout=layouts,
    fault=st.sampled_from(FILE_FAULTS),
    at=st.integers(0, 4),
    mode=MODES,
)
def test_a_file_that_is_not_a_clean_csv_is_rejected_as_a_whole(
    net: Net, rows: list[Spec], layout: Layout, fault: str, at: int, mode: str
) -> None:
    at %= len(rows)
    last = len(rows) - 1
    line = build_inventory(rows, layout).lines[at]
    around: dict[int, tuple[str, str]] = {}
    if fault == "not-utf8":
        around[at] = (NOT_UTF8, "")
        expected = ["not UTF-8", "0xe9", f"on line {line} "]
    elif fault == "too-many-fields":
        around[at] = ("", ",extra,cells")
        width = len(layout.header)
        expected = [f"row {line}: {width + 2} fields where the header has {width}"]
    elif fault == "unclosed-quote":
        around[last] = ("", '\n"never closed')  # a record of its own, open to the end
        line = 1 + len(
            LINE_BREAK.findall(
                build_inventory(rows, layout, around=around)[0]
                .decode("utf-8-sig")
                .rsplit('"never closed', 1)[0]
            )
        )
        expected = [f"row {line}: ", "never closed"]
    elif fault == "semicolons":
        expected = ["the file must be comma-separated"]
    else:
        expected = ["file is empty"]
    data = build_inventory(rows, layout, around=around).data
    if fault == "semicolons":
        data = data.replace(b",", b";")
    elif fault == "empty":
        data = (b"\xef\xbb\xbf" if layout.bom else b"") + layout.newline.encode() * at
    out = invoke(net, _valid_config(net), data, mode)
    assert_rejected(out, expected)


@PROFILE
@given(
    rows=st.lists(_spec(faulty=False), min_size=1, max_size=8),
    layout=layouts,
    mode=MODES,
)
def test_a_file_over_the_size_limit_is_refused_unread(
    net: Net, rows: list[Spec], layout: Layout, mode: str
) -> None:
    built = build_inventory(rows, layout)
    # the loader's limit, made small: the same code path as a file over 200 MiB
    limits = load_inventory.__kwdefaults__
    assert limits is not None
    saved = limits["max_bytes"]
    try:
        limits["max_bytes"] = len(built.data) - 1
        out = invoke(net, _valid_config(net), built.data, mode)
        assert_rejected(out, [f"larger than the limit of {len(built.data) - 1:,} bytes"])
        limits["max_bytes"] = len(built.data)  # exactly at the limit: read and accepted
        assert_accepted(invoke(net, _valid_config(net), built.data, mode))
    finally:
        limits["max_bytes"] = saved


@PROFILE
@given(
    rows=st.lists(_spec(faulty=False), min_size=1, max_size=8),
    layout=layouts,
    config_newline=st.sampled_from(["\n", "\r\n"]),
    config_bom=st.booleans(),
    mode=MODES,
)
def test_input_that_only_looks_hostile_is_accepted(
    net: Net,
    rows: list[Spec],
    layout: Layout,
    config_newline: str,
    config_bom: bool,
    mode: str,
) -> None:
    # HTML and script in notes, formula-looking owners and usernames, quoted newlines,
    # very long notes, BOMs and CRLF: all plain data
    built = build_inventory(rows, layout)
    assert built.blamed == []
    config = _valid_config(net, config_newline, config_bom)
    assert_accepted(invoke(net, config, built.data, mode))


# --- properties: configs --------------------------------------------------------------------


@PROFILE
@given(
    faults=st.lists(
        st.sampled_from(CONFIG_FAULTS), min_size=1, max_size=6, unique_by=lambda f: f.slot
    ),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    rows=st.lists(_spec(faulty=False), min_size=1, max_size=3),
    layout=layouts,
    mode=MODES,
)
def test_a_hostile_config_is_rejected_naming_every_key(
    net: Net,
    faults: list[ConfigFault],
    newline: str,
    bom: bool,
    rows: list[Spec],
    layout: Layout,
    mode: str,
) -> None:
    config = render(_faulty_config(net, faults), newline, bom)
    env = {var: value for f in faults for var, value in f.env}
    out = invoke(net, config, build_inventory(rows, layout).data, mode, env)
    expected = [e for f in faults for e in f.expect]
    assert_rejected(out, expected, [f.secret for f in faults if f.secret])


CORRUPTIONS = [
    ("[never_closed", "Expected ']'"),
    ("= =", "Invalid statement"),
    ("<html><body>", "Invalid statement"),
    ("=cmd|' /C calc'!A0", "Invalid statement"),
    ("endpoint,kind,target,username", "Expected '='"),
    ('addr = "unterminated', "Illegal character"),
    ('prefix = "a\x00b"', "Illegal character"),
    ("concurrency = 1\nconcurrency = 2", "Cannot overwrite a value"),
]


@PROFILE
@given(
    corruption=st.sampled_from(CORRUPTIONS),
    at=st.integers(0, 40),
    newline=st.sampled_from(["\n", "\r\n"]),
    mode=MODES,
)
def test_a_config_that_is_not_toml_is_rejected_with_its_line(
    net: Net, corruption: tuple[str, str], at: int, newline: str, mode: str
) -> None:
    text, words = corruption
    lines = render(base_config(net.endpoint.url), newline).decode().split(newline)
    # at a section's start (or the end) the inserted line is read as a line of its own
    starts = [i for i, ln in enumerate(lines) if ln.startswith("[")] + [len(lines) - 1]
    where = starts[at % len(starts)]
    if text.startswith("concurrency"):
        where = lines.index("[run]") + 1  # the duplicate key must land inside a table
    lines[where:where] = text.split("\n")
    bad_line = where + 1 + text.count("\n")
    out = invoke(net, newline.join(lines).encode(), b"endpoint,kind,target,username\n", mode)
    assert_rejected(out, ["is not valid TOML", words, f"line {bad_line}"])


@PROFILE
@given(
    byte=st.sampled_from([b"\xe9", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]),
    at=st.integers(0, 10_000),
    mode=MODES,
)
def test_a_config_that_is_not_utf8_is_rejected(net: Net, byte: bytes, at: int, mode: str) -> None:
    data = render(base_config(net.endpoint.url))
    at %= len(data)
    while at and data[at] >= 0x80:  # not inside a multi-byte character
        at -= 1
    out = invoke(net, data[:at] + byte + data[at:], b"endpoint,kind,target,username\n", mode)
    assert_rejected(out, ["cannot be read", "utf-8", f"position {at}"])


# --- the environment, and what only the config and the inventory together tell -------------


@pytest.mark.parametrize("mode", ["plan", "run"])
def test_a_sparkview_endpoint_whose_gateway_password_is_unset_is_refused(
    net: Net, mode: str
) -> None:
    inventory = b"endpoint,kind,target,username\ngw,server,srv-1,svc\n"
    out = invoke(net, _valid_config(net), inventory, mode, {"GW_PASSWORD": None})
    assert_rejected(out, ["endpoint gw: environment variable GW_PASSWORD", "is not set"])


def test_a_row_naming_an_endpoint_the_config_lacks_lists_the_known_ones(net: Net) -> None:
    inventory = b"endpoint,kind,target,username\r\noffice,connection,a,u\r\ngw3,server,s,u\r\n"
    out = invoke(net, _valid_config(net), inventory)
    assert_rejected(out, ["row 3, column 'endpoint': unknown endpoint 'gw3' (known: gw, office)"])


def test_a_vault_ca_certificate_that_is_not_a_file_is_a_clean_refusal(net: Net) -> None:
    missing = str(net.base / "no-such-ca.pem")
    https = net.vault.url.replace("http://", "https://")
    inventory = b"endpoint,kind,target,username,protocol\noffice,connection,a,u,RDP\n"
    out = invoke(
        net, _valid_config(net), inventory, "plan", {"VAULT_ADDR": https, "VAULT_CACERT": missing}
    )
    assert out.code in (EXIT_USAGE, EXIT_REFUSED), out.stderr
    assert "Traceback" not in out.stderr
    assert missing in out.stderr
    assert (out.vault_hits, out.endpoint_hits) == (0, 0)
    # Refused (exit 3): only its --json record, with the reason; no report.
    assert out.written == (["run.json"] if out.code == EXIT_REFUSED else [])


# --- each catalogued fault alone: every one is exercised, whatever the sampling ----------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [pytest.param(f, k, id=f"{f.label}-{k}") for f in ROW_FAULTS for k in KINDS if k in f.kinds],
)
def test_each_row_fault_alone_is_named_on_its_row(net: Net, fault: RowFault, kind: str) -> None:
    layout = Layout(list(COLUMNS), "\n", False, 0, True)
    specs = [Spec("server", None, "", "IT", "svc"), Spec(kind, fault, "", "IT", "admin")]
    out = invoke(net, _valid_config(net), build_inventory(specs, layout).data)
    assert_rejected(out, [f"row 3, column {fault.column!r}: "])
    assert set(BLAMED_ROW.findall(out.stderr)) == {"3"}


@pytest.mark.parametrize(
    "fault", [pytest.param(f, id=f"{i:02}-{f.slot}") for i, f in enumerate(CONFIG_FAULTS)]
)
def test_each_config_fault_alone_is_named(net: Net, fault: ConfigFault) -> None:
    inventory = b"endpoint,kind,target,username,protocol\noffice,connection,a,u,RDP\n"
    out = invoke(net, render(_faulty_config(net, [fault])), inventory, "run", dict(fault.env))
    assert_rejected(out, list(fault.expect), [fault.secret] if fault.secret else [])


def test_blank_lines_before_the_header_count_in_its_row_number(net: Net) -> None:
    out = invoke(net, _valid_config(net), b"\r\n\r\nendpoint,kind,target,username,colour\r\n")
    assert_rejected(out, ["row 3, column 'colour': unknown column"])


def test_a_bad_byte_after_a_bom_is_placed_exactly(net: Net) -> None:
    data = b"\xef\xbb\xbfendpoint,kind,target,username\n\xe9office,connection,a,u\n"
    out = invoke(net, _valid_config(net), data)
    assert_rejected(out, ["not UTF-8 text: byte 0xe9 on line 2 (offset 33)"])
