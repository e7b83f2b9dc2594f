"""One writer at a time: a run lease in Vault, taken with check-and-set, renewed, released.

The lease is a small record at `<mount>/<prefix>/_lease/<name>`: who holds it (run id, host,
process id and start time, user) and until when. A run takes it when there is none, when it
has expired, or at once when its holder provably died (same host, and that process is gone).
Check-and-set makes the taking atomic: of two runs racing for a free lease, one wins.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rotate.errors import CasConflict, LeaseHeld, StoreError
from rotate.stores.base import LeaseRecords

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _process_start(pid: int) -> str:
    """The start time of a process in clock ticks since boot (Linux), or "" when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_gone(pid: int, start: str, boot_id: str) -> bool:
    """True only when the process provably no longer runs on this host."""
    if boot_id and boot_id != _boot_id():
        return True  # the host rebooted since
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        state = ""
    if state in ("Z", "X"):
        return True  # killed, waiting to be reaped
    # The same number may belong to a newer process: compare start times when known.
    return bool(start) and _process_start(pid) not in ("", start)


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as recorded in Vault (no secret in it)."""

    run_id: str
    host: str
    pid: int
    user: str
    mode: str
    acquired_at: datetime
    expires_at: datetime
    process_start: str = ""
    boot_id: str = ""

    def to_record(self) -> dict[str, str]:
        return {
            "run_id": self.run_id,
            "host": self.host,
            "pid": str(self.pid),
            "user": self.user,
            "mode": self.mode,
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "process_start": self.process_start,
            "boot_id": self.boot_id,
        }

    @classmethod
    def from_record(cls, data: dict[str, str]) -> Holder:
        def when(key: str) -> datetime:
            try:
                moment = datetime.fromisoformat(data.get(key, ""))
            except ValueError:
                return datetime.min.replace(tzinfo=UTC)  # unreadable: treat as long expired
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

        pid = data.get("pid", "")
        return cls(
            run_id=data.get("run_id", "?"),
            host=data.get("host", "?"),
            pid=int(pid) if pid.isdigit() else 0,
            user=data.get("user", "?"),
            mode=data.get("mode", "?"),
            acquired_at=when("acquired_at"),
            expires_at=when("expires_at"),
            process_start=data.get("process_start", ""),
            boot_id=data.get("boot_id", ""),
        )

    def describe(self) -> str:
        return (
            f"run {self.run_id} ({self.mode}) by {self.user} on host {self.host}, pid {self.pid}, "
            f"since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"until {self.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )


class Lease:
    """The lease of one run: acquire, renew while running, release at the end."""

    def __init__(
        self,
        store: LeaseRecords,
        path: str,
        run_id: str,
        mode: str,
        ttl_s: float,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.path = path
        self.run_id = run_id
        self.mode = mode
        self.ttl = timedelta(seconds=ttl_s)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.version: int | None = None
        self.holder: Holder | None = None

    def _me(self, acquired_at: datetime | None = None) -> Holder:
        now = self.clock()
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return Holder(
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            user=user,
            mode=self.mode,
            acquired_at=acquired_at or now,
            expires_at=now + self.ttl,
            process_start=_process_start(os.getpid()),
            boot_id=_boot_id(),
        )

    def acquire(self) -> str:
        """Take the lease or raise LeaseHeld naming its holder; say what was taken over."""
        found = self.store.read_record(self.path)
        note = "lease taken"
        cas = 0
        if found is not None:
            data, version = found
            other = Holder.from_record(data)
            same_host = other.host == socket.gethostname()
            if (
                same_host
                and other.pid
                and process_gone(other.pid, other.process_start, other.boot_id)
            ):
                note = f"took over the lease of run {other.run_id}, whose process is gone"
            elif other.expires_at <= self.clock():
                note = f"took over the expired lease of run {other.run_id}"
            else:
                raise LeaseHeld(f"another run holds the lease {self.path}: {other.describe()}")
            cas = version
        me = self._me()
        try:
            self.version = self.store.write_record(self.path, me.to_record(), cas)
        except CasConflict:
            now_found = self.store.read_record(self.path)
            who = Holder.from_record(now_found[0]).describe() if now_found else "another run"
            raise LeaseHeld(f"another run took the lease {self.path} first: {who}") from None
        self.holder = me
        log.info("%s (%s)", note, self.path)
        return note

    def renew(self) -> None:
        """Push the expiry forward; CasConflict when someone else holds it now."""
        if self.holder is None or self.version is None:
            raise CasConflict(f"the lease {self.path} is not held by this run")
        me = self._me(acquired_at=self.holder.acquired_at)
        self.version = self.store.write_record(self.path, me.to_record(), self.version)
        self.holder = me

    def expired(self) -> bool:
        return self.holder is None or self.holder.expires_at <= self.clock()

    def release(self) -> None:
        """Give the lease back if it is still ours; never fails the run."""
        if self.version is None:
            return
        try:
            found = self.store.read_record(self.path)
            if found is not None and found[1] == self.version:
                self.store.delete_record(self.path)
        except StoreError as exc:
            log.warning("could not release the lease %s (%s); it expires by itself", self.path, exc)
        self.version = None
