"""The exception tree of rotate and the exit codes it maps to.

    RotateError                      exit_code
    ├── UsageError                   2  bad usage, config or inventory: nothing was touched
    │   ├── ConfigError              2
    │   └── InventoryError           2  carries every Problem found, by row and column
    ├── RefusedError                 3  the run was refused or aborted before or while running
    │   ├── StoreUnavailable         3  Vault unreachable, sealed, or the token is refused
    │   ├── LeaseHeld                3  another run holds the lease on these credentials
    │   ├── PlanChanged              3  `run --plan-hash`: the approved plan no longer holds
    │   └── AdminRefused             3  an authority refused rotate's own admin credential
    ├── StoreError                   -  a Vault call failed for one item (recorded, not raised)
    │   ├── PendingConflict          -  another run's candidate sits on the pending path
    │   └── CasConflict              -  a bookkeeping record changed under us (check-and-set)
    └── RemoteError                  -  a call to a vendor endpoint or an authority failed
        ├── EndpointUnavailable      -  the probe failed: the endpoint gets no writes
        ├── AuthorityUnavailable     -  an authority cannot be reached: its accounts wait
        ├── Rejected                 -  a definite "no": the value was not taken
        │   └── Missing              -  the object is not there (a 404): the usage is skipped
        └── OutcomeUnknown           -  after the retries, the value may or may not be there

A RemoteError that is none of its subclasses means "not reached, nothing applied" (a
connection refused before the request was sent), or "no verdict" for a read.

Anything else that escapes (a bug) exits 70: one line on the console, the full trace in a
crash file scrubbed of secrets (rotate/crash.py).

Item-level errors never escape the pipeline: they become the item's recorded outcome. A run
that stops starting items (failure threshold, failed canary, lost lease) is not an exception
either: its record says why (`RunRecord.aborted`) and it exits 3.
Messages never carry a password, a token, a gateway password (or its MD5) or a URL query.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_ITEMS_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_CRASH = 70  # an unexpected exception (a bug): sysexits' EX_SOFTWARE
EXIT_INTERRUPTED = 130


class RotateError(Exception):
    """Base of every error rotate raises on purpose."""

    exit_code = EXIT_REFUSED


class UsageError(RotateError):
    """Bad command line, config or inventory; detected before any change."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The config file or the environment is wrong."""


@dataclass(frozen=True)
class Problem:
    """One problem in an input file: where it is and what is wrong."""

    row: int | None  # line number in the file (header = 1), None for the file as a whole
    column: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class InventoryError(UsageError):
    """The inventory is rejected as a whole; `problems` lists every problem found."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"inventory {path} rejected, {len(problems)} problem(s):\n{lines}")


class RefusedError(RotateError):
    """The run was refused or aborted (lock held, threshold crossed, Vault unusable)."""

    exit_code = EXIT_REFUSED


class StoreUnavailable(RefusedError):
    """Vault/OpenBao cannot be used at all: unreachable, sealed, or the token is refused."""


class LeaseHeld(RefusedError):
    """Another live run holds the lease on these credentials."""


class PlanChanged(RefusedError):
    """`rotate run --plan-hash H`: the inventory, config or due set changed since the plan."""


class AdminRefused(RefusedError):
    """An authority refused rotate's own admin login: nothing can be changed there."""


class StoreError(RotateError):
    """A Vault call failed for one item."""


class PendingConflict(StoreError):
    """A pending candidate already exists and was not expected (another run staged it)."""


class CasConflict(StoreError):
    """A check-and-set write found another version than expected."""


class RemoteError(RotateError):
    """A call to a vendor endpoint or an authority failed (not reached, or no verdict)."""


class EndpointUnavailable(RemoteError):
    """The endpoint failed its probe; none of its rows are attempted."""


class AuthorityUnavailable(RemoteError):
    """An authority cannot be reached; none of its accounts is changed in this run."""


class Rejected(RemoteError):
    """A definite "no": the target or authority did not accept the value (a 4xx, a refused
    password: complexity, history, an unknown account)."""


class OutcomeUnknown(RemoteError):
    """After the retries the target or authority may or may not hold the new value."""


class Missing(Rejected):
    """The target object is not at its endpoint (Remotix: a 404 for the computer or
    connection; Spark View: "not found" for the server id): nothing there holds the password."""
