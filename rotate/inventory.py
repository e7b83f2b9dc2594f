"""Inventory CSV -> validated usages grouped into accounts, or every problem found.

The only module importing pandas. One row is one usage: a stored copy of an account's
password (a Remotix connection, a cloud computer connection, a Spark View server). Rows that
name the same `account` share one password, one Vault secret and one change at the account's
authority; they must agree on the account's login names, authority, host, Vault path and
policy, or the file is refused naming the rows.
"""

from __future__ import annotations

import codecs
import csv
import enum
import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from rotate.errors import InventoryError, Problem
from rotate.models import NO_AUTHORITY, Account, Row
from rotate.passwords import validate_policy_for
from rotate.registry import authority_type, kind_names, kind_spec, vendor_of
from rotate.settings import Settings
from rotate.vendors.base import KindSpec

__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_BYTES",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "account_segment",
    "default_vault_path",
    "group_accounts",
    "load_inventory",
]

REQUIRED_COLUMNS = ("endpoint", "kind", "target", "username")
OPTIONAL_COLUMNS = (
    "protocol",
    "port",
    "domain",
    "policy",
    "max_age_days",
    "vault_path",
    "owner",
    "notes",
    "account",
    "authority",
    "host",
)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
# a bound keeps `timedelta(days=...)` in the planner from overflowing; 100 years is plenty
MAX_AGE_DAYS_LIMIT = 36_500
_FREE_TEXT = frozenset({"owner", "notes"})

_LINE_BREAK = r"\r\n|\r|\n"  # what both the CSV parser and a text editor count as a new line
# C0/C1 controls, DEL, Unicode line separators and bidi overrides (which can disguise a name)
_ODD = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL_IN_TEXT = re.compile(f"[{_ODD}]")  # owner, notes: tabs and line breaks are fine
_CONTROL = re.compile(f"[{_ODD}\t\n\r]")  # identifiers: nothing of the sort
# int() would also take "+1", " 1", "1_0" and non-ASCII digits
_DIGITS = re.compile(r"[0-9]{1,9}")
_EXPECTED_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def default_vault_path(
    settings: Settings, endpoint: str, kind: KindSpec, target: str, protocol: str, port: int | None
) -> str:
    """`<prefix>/<endpoint>/<kind>/<target>[/<protocol>[_<port>]]`, relative to the mount (the
    protocol segment where the kind has one)."""
    return kind.vault_path(settings.vault.prefix, endpoint, target, protocol, port)


_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9._@-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


def account_segment(account: str) -> str:
    """The Vault path segment of an account name: the name itself when it is made of letters,
    digits and `._@-`, else a readable form of it with a short digest that keeps it unique
    (`EXAMPLE\\administrator` -> `EXAMPLE_administrator-<8 hex>`)."""
    if _SAFE_SEGMENT.fullmatch(account) and account not in (".", ".."):
        return account
    digest = hashlib.sha256(account.encode()).hexdigest()[:8]
    readable = _UNSAFE.sub("_", account).strip("._") or "account"
    return f"{readable[:80]}-{digest}"


def account_vault_path(settings: Settings, account: str) -> str:
    """`<prefix>/accounts/<segment>`: the default secret of a named account."""
    return f"{settings.vault.prefix}/accounts/{account_segment(account)}"


def load_inventory(
    path: str | Path, settings: Settings, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[Row]:
    """Read and validate an inventory; raise InventoryError listing every problem found."""
    name = str(path)
    text, skipped = _read_text(Path(path), name, max_bytes)
    frame = _parse(text, name, skipped)
    positions = _columns(frame, name, 1 + skipped)
    spans = _has_breaks_in_values(frame, text)
    lines = _line_numbers(frame, skipped, spans=spans)
    # most files hold no odd character at all: one scan of the text spares a scan per cell
    odd = spans or "\t" in text or bool(_CONTROL_IN_TEXT.search(text))
    if "authority" not in positions and not settings.run.authority:
        raise InventoryError(
            name,
            [
                Problem(
                    None,
                    "authority",
                    "no row names its authority (where the account's password is checked and "
                    "changed): add an `authority` column naming an [authorities.<name>] section "
                    'of the config, or set `[run] authority = "<name>"` as the default; '
                    "`none` rotates only the stored copies and leaves the host accounts "
                    "unchanged. Rows that store one account's password should also share an "
                    "`account` value: `rotate discover` proposes them",
                )
            ],
        )
    rows, problems = _validate(frame.iloc[1:], positions, lines, settings, scan_controls=odd)
    if problems:
        raise InventoryError(name, problems)
    return rows


def _read_text(path: Path, name: str, max_bytes: int) -> tuple[str, int]:
    """The file as text without leading blank lines, and how many lines were skipped."""

    def fail(message: str) -> InventoryError:
        return InventoryError(name, [Problem(None, None, message)])

    try:
        with path.open("rb") as stream:
            # a bounded read also guards pipes and files that grow while being read
            data = stream.read(max_bytes + 1)
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise fail(
            f"file is larger than the limit of {max_bytes:,} bytes; split the inventory "
            "or raise the limit"
        )
    # the BOM is dropped by hand: "utf-8-sig" would count error offsets from after it
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        start = bom + exc.start
        line = _count_breaks(data[:start].decode("utf-8", errors="replace")) + 1
        raise fail(
            f"not UTF-8 text: byte 0x{data[start]:02x} on line {line} (offset "
            f"{start}) cannot be decoded; save the file as UTF-8"
        ) from None
    body = text.lstrip("\r\n")
    if not body.strip():
        raise fail("file is empty: expected a header line naming the columns")
    # pandas finds no header after blank lines; drop them and count them back in line numbers
    return body, _count_breaks(text[: len(text) - len(body)])


def _count_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _parse(text: str, name: str, skipped: int) -> pd.DataFrame:
    """All records as strings, the header as record 0; blank lines kept so records count.

    The text is already decoded (UTF-8, BOM dropped) so that a bad byte can be placed.
    """
    try:
        return pd.read_csv(
            io.StringIO(text),
            header=None,  # names checked by hand: pandas would rename duplicates silently
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            engine="c",
        ).fillna("")
    except ValueError as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise InventoryError(name, [_parse_problem(str(exc), text, skipped)]) from None


def _parse_problem(message: str, text: str, skipped: int) -> Problem:
    """A parser error as a Problem, with the file's line number where it can be found."""
    if match := _EXPECTED_FIELDS.search(message):
        expected, record, saw = int(match[1]), int(match[2]) - 1, int(match[3])
        line = _record_line(text, record)
        where = f"line {line + skipped}" if line else f"record {record + 1}"
        return Problem(
            line + skipped if line else None,
            None,
            f"{saw} fields where the header has {expected} ({where}); a value containing "
            "a comma must be quoted",
        )
    if match := _OPEN_QUOTE.search(message):
        line = _record_line(text, int(match[1]))
        return Problem(
            line + skipped if line else None,
            None,
            "a quoted value is never closed (a '\"' is missing)",
        )
    return Problem(None, None, f"not a readable CSV file: {message.strip()}")


def _record_line(text: str, record: int) -> int | None:
    """The line on which record `record` (0 = header) starts, or None if it cannot be found."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for index in range(record + 1):
            start = reader.line_num + 1
            next(reader)
            if index == record:
                return start
    except (StopIteration, csv.Error):
        pass
    return None


def _columns(frame: pd.DataFrame, name: str, line: int = 1) -> dict[str, int]:
    """Column name -> position; InventoryError if the header (on `line`) is wrong."""
    raw: list[str] = [str(v) for v in frame.iloc[0].tolist()]
    if len(raw) == 1 and ("," not in raw[0]) and (";" in raw[0] or "\t" in raw[0]):
        raise InventoryError(
            name,
            [Problem(line, None, "the header has no ','; the file must be comma-separated")],
        )
    problems: list[Problem] = []
    positions: dict[str, int] = {}
    for position, cell in enumerate(raw):
        column = cell.strip()
        if not column:
            if (frame[position].iloc[1:].str.strip() == "").all():
                continue  # a trailing delimiter (spreadsheet export), not a column
            problems.append(Problem(line, None, f"column {position + 1} has values but no name"))
        elif column in positions:
            problems.append(Problem(line, column, "column appears twice"))
        elif column not in COLUMNS:
            hint = f" (did you mean {column.lower()!r}?)" if column.lower() in COLUMNS else ""
            problems.append(
                Problem(
                    line,
                    column,
                    f"unknown column{hint}; allowed: {', '.join(COLUMNS)}",
                )
            )
        else:
            positions[column] = position
    problems.extend(
        Problem(None, column, "required column is missing")
        for column in REQUIRED_COLUMNS
        if column not in positions
    )
    if problems:
        # rows cannot be read against a wrong header: their problems would only be noise
        raise InventoryError(name, problems)
    return positions


def _line_numbers(frame: pd.DataFrame, skipped: int, *, spans: bool) -> list[int]:
    """The line on which each record starts (header = 1 after any skipped blank lines)."""
    first = 1 + skipped
    if not spans:
        return list(range(first, first + len(frame)))
    breaks = sum(frame[c].str.count(_LINE_BREAK) for c in frame.columns)
    before = pd.Series(breaks).cumsum().shift(1, fill_value=0)
    return [first + i + int(b) for i, b in enumerate(before.tolist())]


def _has_breaks_in_values(frame: pd.DataFrame, text: str) -> bool:
    """Whether some quoted value spans lines (blank lines are records, so counts tell)."""
    if '"' not in text:
        return False
    # one record per line, the last one with or without its line break
    plain = len(frame) - (0 if text.endswith(("\n", "\r")) else 1)
    return _count_breaks(text) != plain


def _show(value: str) -> str:
    """A cell for a message: quoted, escaped and cut short."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _path_problem(path: str) -> str | None:
    if path.startswith("/") or path.endswith("/"):
        return "must not start or end with '/'"
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        return "must not have an empty, '.' or '..' segment"
    return None


def _validate(
    body: pd.DataFrame,
    positions: dict[str, int],
    lines: list[int],
    settings: Settings,
    *,
    scan_controls: bool = True,
) -> tuple[list[Row], list[Problem]]:
    """Every row checked against the contract and the settings; one pass, no row indexing."""
    blank = [""] * len(body)
    values = [
        _one_object_per_value(body[positions[c]].str.strip().tolist(), c in _FEW_VALUES)
        if c in positions
        else blank
        for c in COLUMNS
    ]
    controls = _controls(values) if scan_controls else {}
    checker = _RowChecker(settings)
    rows: list[Row] = []
    for index, cells in enumerate(zip(*values, strict=True)):
        if not any(cells):
            continue  # a blank line
        row = checker.check(lines[index + 1], _Cells(*cells), controls.get(index, ()))
        if row is not None:
            rows.append(row)
    problems = checker.problems + _account_problems(rows)
    problems.sort(key=lambda p: p.row or 0)
    return rows, problems


# Columns with few distinct values: a 100,000-row inventory keeps one string per value,
# not one per cell (about 150 bytes a row).
_FEW_VALUES = frozenset(
    {"endpoint", "kind", "username", "protocol", "domain", "policy", "owner", "authority", "host"}
)


def _one_object_per_value(column: list[str], few: bool) -> list[str]:
    """The column with equal values as one string object, where values repeat."""
    if not few:
        return column
    seen: dict[str, str] = {}
    return [seen.setdefault(value, value) for value in column]


def _account_problems(rows: Sequence[Row]) -> list[Problem]:
    """Rows of one account that disagree, and two accounts that are one login at one
    authority (each would change the same password: invariant 8, one account one password)."""
    problems: list[Problem] = []
    first: dict[str, Row] = {}
    for row in rows:
        seen = first.setdefault(row.account, row)
        if seen is row:
            continue
        for column, mine, theirs in (
            ("username", row.username, seen.username),
            ("domain", row.domain or "", seen.domain or ""),
            ("authority", row.authority, seen.authority),
            ("host", row.host or "", seen.host or ""),
            ("policy", row.policy, seen.policy),
            ("vault_path", row.vault_path, seen.vault_path),
        ):
            if mine != theirs:
                problems.append(
                    Problem(
                        row.line,
                        column,
                        f"account {_show(row.account)} has {column} {_show(theirs)} on line "
                        f"{seen.line} but {_show(mine)} here: every usage of one account "
                        "carries the same one",
                    )
                )
    logins: dict[tuple[str, str, str, str], Row] = {}
    for row in first.values():
        if row.authority == NO_AUTHORITY:
            continue  # copies only: the same user name on two hosts is two accounts
        login = (row.authority, row.username.casefold(), (row.domain or "").casefold(), "")
        if row.host:
            login = (*login[:3], row.host.casefold())
        other = logins.setdefault(login, row)
        if other is not row:
            problems.append(
                Problem(
                    row.line,
                    "account",
                    f"account {_show(row.account)} is the same login as account "
                    f"{_show(other.account)} (line {other.line}) at authority "
                    f"{_show(row.authority)}: give all their rows one `account` value, so the "
                    "password is changed once and every copy gets it",
                )
            )
    paths: dict[str, Row] = {}
    for row in first.values():
        other = paths.setdefault(row.vault_path, row)
        if other is not row:
            problems.append(
                Problem(
                    row.line,
                    "vault_path",
                    f"vault path {_show(row.vault_path)} is also used by line {other.line}, "
                    f"the secret of another account ({_show(other.account)})",
                )
            )
    return problems


def group_accounts(rows: Iterable[Row]) -> list[Account]:
    """The accounts of validated rows, in the order of their first usage."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.account, []).append(row)
    accounts = []
    for name, usages in groups.items():
        head = usages[0]
        ages = [r.max_age_days for r in usages if r.max_age_days is not None]
        accounts.append(
            Account(
                name=name,
                authority=head.authority,
                username=head.username,
                domain=head.domain,
                host=head.host,
                vault_path=head.vault_path,
                policy=head.policy,
                max_age_days=min(ages) if ages else None,
                usages=tuple(usages),
            )
        )
    return accounts


def _controls(values: list[list[str]]) -> dict[int, list[str]]:
    """Record index -> the columns whose cell holds a character it must not hold."""
    found: dict[int, list[str]] = {}
    for column, cells in zip(COLUMNS, values, strict=True):
        pattern = _CONTROL_IN_TEXT if column in _FREE_TEXT else _CONTROL
        for index, cell in enumerate(cells):
            if pattern.search(cell):
                found.setdefault(index, []).append(column)
    return found


class _Invalid(enum.Enum):
    """A cell that was given but is wrong (its problem is recorded): unlike None, not absent."""

    VALUE = "invalid"


_INVALID = _Invalid.VALUE


class _Cells(NamedTuple):
    """One record's stripped cells, in COLUMNS order."""

    endpoint: str
    kind: str
    target: str
    username: str
    protocol: str
    port: str
    domain: str
    policy: str
    max_age_days: str
    vault_path: str
    owner: str
    notes: str
    account: str
    authority: str
    host: str


def _either(names: Sequence[str]) -> str:
    """`a, b or c`."""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _account_name_problem(account: str) -> str | None:
    """Why an `account` value cannot name an account (it becomes a Vault path segment)."""
    if account.startswith(("/", "\\")) or account.endswith(("/", "\\")):
        return "must not start or end with '/' or '\\'"
    if any(part in (".", "..") for part in re.split(r"[/\\]", account)):
        return "must not have a '.' or '..' part (it becomes a Vault path segment)"
    return None


class _RowChecker:
    """Checks rows one by one, remembering what duplicates need; collects every problem."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.problems: list[Problem] = []
        self.keys: dict[tuple[str, str, str, str, int | None], int] = {}
        self.pending = settings.vault.pending_root
        self.lease = settings.vault.lease_root
        self.stale = settings.vault.stale_root
        self.known_endpoints = ", ".join(sorted(settings.endpoints)) or "none configured"
        self.known_policies = ", ".join(sorted(settings.policies))
        self.known_authorities = ", ".join([NO_AUTHORITY, *sorted(settings.authorities)])
        self.line = 0
        self.upper: dict[str, str] = {}  # each protocol spelling's upper case, made once

    def problem(self, column: str, message: str) -> None:
        self.problems.append(Problem(self.line, column, message))

    def check(self, line: int, cells: _Cells, controls: Iterable[str]) -> Row | None:
        """The row if it is valid; its problems are added to `self.problems` either way."""
        self.line = line
        before = len(self.problems)
        for column in controls:
            self.problem(column, "contains a control or invisible formatting character")
        for column in REQUIRED_COLUMNS:
            if not getattr(cells, column):
                self.problem(column, "required value is empty")
        kind = self._kind(cells)
        any_kind = kind or kind_spec(cells.kind.lower())  # checked even if the endpoint is wrong
        target_ok = self._target(cells.target)
        protocol = self._protocol(cells, any_kind)
        port = self._port(cells, any_kind)
        self._domain(cells, any_kind, protocol)
        self._policy(cells, any_kind, protocol)
        max_age = self._number(cells.max_age_days, "max_age_days", MAX_AGE_DAYS_LIMIT)
        authority = self._authority(cells)
        if cells.account and (why := _account_name_problem(cells.account)):
            self.problem("account", f"{_show(cells.account)} {why}")
        path = self._vault_path(cells, kind, protocol, port, target_ok)
        if len(self.problems) > before or kind is None or protocol is None:
            return None
        if isinstance(port, _Invalid) or isinstance(max_age, _Invalid):  # pragma: no cover
            return None  # a problem was recorded: unreachable, here for the type checker
        return Row(
            line=line,
            endpoint=cells.endpoint,
            kind=kind.name,
            target=cells.target,
            username=cells.username,
            protocol=protocol,
            port=port,
            domain=cells.domain or None,
            policy=cells.policy or "default",
            max_age_days=max_age,
            vault_path=path or "",
            owner=cells.owner,
            notes=cells.notes,
            account=cells.account,  # none: the row is an account of its own (Row.account)
            authority=authority,
            host=cells.host or None,
        )

    def _authority(self, cells: _Cells) -> str:
        """The row's authority (its own, else `[run] authority`), its login names checked."""
        name = cells.authority or self.settings.run.authority
        if not name:
            self.problem(
                "authority",
                "no authority: name an [authorities.<name>] section of the config (or `none` "
                "to rotate the stored copies only), or set `[run] authority` as the default",
            )
            return ""
        if name == NO_AUTHORITY:
            return name
        settings = self.settings.authorities.get(name)
        if settings is None:
            self.problem(
                "authority", f"unknown authority {_show(name)} (known: {self.known_authorities})"
            )
            return name
        plugin = authority_type(settings.type)
        if plugin is not None and cells.username:
            for column, message in plugin.check_account(
                settings,
                cells.username,
                cells.domain or None,
                cells.host or None,
                account=cells.account,
            ):
                self.problem(column, message)
        return name

    def _kind(self, cells: _Cells) -> KindSpec | None:
        """The row's kind, if it is one and its endpoint (known) serves it."""
        site = self.settings.endpoints.get(cells.endpoint)
        if cells.endpoint and site is None:
            self.problem(
                "endpoint",
                f"unknown endpoint {_show(cells.endpoint)} (known: {self.known_endpoints})",
            )
        name = cells.kind.lower()
        served = vendor_of(site).kinds if site is not None else {}
        kind = served.get(name) or kind_spec(name)
        if cells.kind and kind is None:
            expected = _either(kind_names())
            self.problem("kind", f"unknown kind {_show(cells.kind)}; expected {expected}")
        if kind is not None and site is not None and name not in served:
            self.problem(
                "kind",
                f"endpoint {cells.endpoint!r} is a {site.system} endpoint: it has "
                f"{' or '.join(served)} rows, not {kind.name}",
            )
            return None
        return kind if site is not None else None

    def _target(self, target: str) -> bool:
        if target in (".", "..") or "/" in target:
            self.problem(
                "target",
                f"{_show(target)} cannot be a target: it must not contain '/' "
                "nor be '.' or '..' (it becomes one segment of a vault path)",
            )
            return False
        return bool(target)

    def _protocol(self, cells: _Cells, kind: KindSpec | None) -> str | None:
        """The upper-case protocol (the kind's default if it has one), None if it is wrong."""
        protocol = self.upper.setdefault(cells.protocol, cells.protocol.upper())
        if kind is None:
            return None
        allowed = kind.protocols
        if not protocol and kind.default_protocol:
            return kind.default_protocol
        if not protocol:
            self.problem("protocol", f"required for a {kind.name} (one of {', '.join(allowed)})")
            return None
        if protocol not in allowed:
            hint = f"; {kind.hints[protocol]}" if protocol in kind.hints else ""
            self.problem(
                "protocol",
                f"a {kind.name} has no protocol {_show(cells.protocol)} (one of "
                f"{', '.join(allowed)}){hint}",
            )
            return None
        return protocol

    def _port(self, cells: _Cells, kind: KindSpec | None) -> int | _Invalid | None:
        """The port, None when there is none, _INVALID when it is wrong."""
        if not cells.port:
            return None
        if kind is not None and not kind.port:
            takers = [k for k in kind_names() if (spec := kind_spec(k)) and spec.port]
            self.problem(
                "port",
                f"a port only applies to a {' or '.join(takers) or 'no'} connection, "
                f"not a {kind.name}",
            )
            return _INVALID
        return self._number(cells.port, "port", 65535, what="a port number")

    def _domain(self, cells: _Cells, kind: KindSpec | None, protocol: str | None) -> None:
        if not cells.domain or kind is None or protocol is None:
            return
        if protocol not in kind.domain_protocols:
            applies = " or ".join(sorted(kind.domain_protocols))
            why = f"a domain only applies to {applies}" if applies else f"a {kind.name} has none"
            self.problem("domain", f"{why}, not {protocol}")

    def _number(
        self, text: str, column: str, high: int, what: str = "a whole number of days"
    ) -> int | _Invalid | None:
        """A positive integer up to `high`, None when empty, _INVALID when wrong."""
        if not text:
            return None
        if _DIGITS.fullmatch(text) and 1 <= int(text) <= high:
            return int(text)
        self.problem(column, f"{_show(text)} is not {what} from 1 to {high}")
        return _INVALID

    def _policy(self, cells: _Cells, kind: KindSpec | None, protocol: str | None) -> None:
        name = cells.policy or "default"
        policy = self.settings.policies.get(name)
        if policy is None:
            self.problem("policy", f"unknown policy {_show(name)} (known: {self.known_policies})")
        elif kind is not None and protocol is not None:
            limit = kind.max_password(protocol)
            if why := validate_policy_for(protocol, policy, limit):
                self.problem("policy", why)

    def _vault_path(
        self,
        cells: _Cells,
        kind: KindSpec | None,
        protocol: str | None,
        port: int | _Invalid | None,
        target_ok: bool,
    ) -> str | None:
        """The row's vault path (given or default), checked, and its duplicates."""
        if kind is not None and protocol is not None and port is not _INVALID and target_ok:
            key = (cells.endpoint, kind.name, cells.target, protocol, port)
            first = self.keys.setdefault(key, self.line)
            if first != self.line:
                self.problem(
                    "target",
                    f"duplicate of line {first} (same endpoint, kind, target, protocol and port)",
                )
                return None  # its vault path would only repeat the news
            if cells.vault_path:
                path = cells.vault_path
            elif cells.account:
                path = account_vault_path(self.settings, cells.account)
            else:
                path = default_vault_path(
                    self.settings, cells.endpoint, kind, cells.target, protocol, port
                )
        elif cells.vault_path:
            path = cells.vault_path
        else:
            return None
        # a default path can go wrong only through the endpoint's name (from the config)
        column = "vault_path" if cells.vault_path else "account" if cells.account else "endpoint"
        if why := _path_problem(path):
            self.problem(column, f"vault path {_show(path)} {why}")
            return None
        for area, root in (
            ("pending area", self.pending),
            ("lease area", self.lease),
            ("stale-usage area", self.stale),
        ):
            if path == root or path.startswith(root + "/"):
                # journal records of candidates live under <pending_root> and leases under
                # <lease_root>: a secret in there would be mistaken for, or overwritten by,
                # a journal record or a lease
                self.problem(
                    column,
                    f"vault path {_show(path)} lies in the {area} {root!r}; "
                    "rename the endpoint or give the row another vault_path",
                )
                return None
        return path
