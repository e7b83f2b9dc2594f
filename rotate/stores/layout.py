"""The KV v2 interface the data plane is written over, and rotate's layout in it as pure rules.

What lives where (current versions, journal records, stale-usage records) and why is told in
rotate/stores/kv.py; this module holds the pieces every part of the data plane shares: the
`KV` protocol and its records, the custom_metadata keys, how a credential is written and
read back, and how a rotation time is derived from a version.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar

from rotate.errors import StoreError
from rotate.models import Credential, Secret

#: custom_metadata keys rotate writes (user keys are left alone)
META_ROTATED_AT = "rotated_at"  # an imported rotation time ...
META_ROTATED_VERSION = "rotated_version"  # ... and the version it applies to
META_ADOPTED_AT = "adopted_at"
META_ADOPTED_VERSION = "adopted_version"  # this version's age is unknown
META_LAST_FAILURE_AT = "last_failure_at"
META_LAST_FAILURE_RUN = "last_failure_run"

#: requests in flight while reading journal records or listing folders
_FAN_OUT = 16
#: rewrites of one record in a row that may lose a check-and-set race before giving up
CAS_ATTEMPTS = 5

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class VersionTime:
    """`promote`'s default: the rotation time is the new version's created_time."""

    def __repr__(self) -> str:
        return "VERSION_TIME"


VERSION_TIME: Final = VersionTime()
RotationTime = datetime | None | VersionTime


@dataclass(frozen=True)
class Metadata:
    """What a metadata read tells about one path."""

    current_version: int  # 0: no version yet
    created_time: str | None  # of the current version
    custom: Mapping[str, str]


@dataclass(frozen=True)
class Version:
    """The latest readable version of one path."""

    data: Mapping[str, Any]
    version: int
    created_time: str | None = None


class KV(Protocol):
    """The KV v2 calls the data plane makes; errors are StoreError, naming the path."""

    requests: int  # round trips so far

    def where(self, path: str) -> str:
        """The path as messages name it (with the mount)."""
        ...

    async def metadata(self, path: str) -> Metadata | None:
        """Versions and custom_metadata, or None when the path has none."""
        ...

    async def read(self, path: str) -> Version | None:
        """The latest version, or None when there is none (or it was deleted)."""
        ...

    async def write(
        self, path: str, data: Mapping[str, Any], cas: int, secrets: tuple[str, ...] = ()
    ) -> int:
        """A new version with check-and-set `cas` (0: create only); CasConflict if it moved.
        `secrets` are masked in any error text."""
        ...

    async def patch_metadata(self, path: str, custom: Mapping[str, str | None]) -> None:
        """Merge keys into custom_metadata (None removes a key); creates it if needed."""
        ...

    async def delete(self, path: str) -> None:
        """Delete metadata and every version; a no-op when there is none."""
        ...

    async def list(self, folder: str) -> list[str]:
        """Keys under `folder` (folders end in "/"); empty when there is none."""
        ...


# --- paths and credentials --------------------------------------------------------------------


#: an empty, `.` or `..` segment anywhere (a `/` at an end makes an empty one)
_BAD_SEGMENT = re.compile(r"(?:^|/)\.{0,2}(?:/|$)")


def check_path(path: str, pending_root: str) -> None:
    """Refuse a malformed path, or one inside the pending area (it would mix the two)."""
    if not path or _BAD_SEGMENT.search(path):
        raise StoreError(f"invalid secret path {path!r}: empty, '/' at an end, '//', '.' or '..'")
    if path == pending_root or path.startswith(pending_root + "/"):
        raise StoreError(f"secret path {path!r} lies inside the pending area {pending_root!r}")


def credential_data(credential: Credential) -> dict[str, str]:
    """The fields a secret holds: username, password and, when there is one, domain."""
    data = {"username": credential.username, "password": credential.password.reveal()}
    if credential.domain:
        data["domain"] = credential.domain
    return data


def credential_from(data: Mapping[str, Any], where: str) -> Credential:
    """Read a credential back from secret data; StoreError when it is not one."""
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise StoreError(f"secret {where} lacks a string 'username' or 'password'")
    domain = data.get("domain")
    return Credential(
        username, Secret(password), domain if isinstance(domain, str) and domain else None
    )


def cas_mismatch_message(where: str, expected_version: int | None) -> str:
    """The message of a promotion whose check-and-set failed."""
    expected = expected_version if expected_version else "no current version"
    return f"current version of {where} changed during the rotation (expected {expected})"


# --- times and custom_metadata ----------------------------------------------------------------


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC; a naive datetime is taken as UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def parse_time(value: object) -> datetime | None:
    """An aware datetime from Vault's (nanosecond) timestamps or our ISO strings, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def last_rotation(custom: Mapping[str, Any], created: object, version: int) -> datetime | None:
    """When the current password was set: the version's creation time, unless custom_metadata
    says otherwise for this very version (adopted: unknown, so None; or an imported time)."""
    if str(custom.get(META_ADOPTED_VERSION, "")) == str(version):
        return None
    if str(custom.get(META_ROTATED_VERSION, "")) == str(version):
        recorded = parse_time(custom.get(META_ROTATED_AT))
        if recorded is not None:
            return recorded
    return parse_time(created)


def rotation_override(version: int, rotated_at: datetime | None) -> dict[str, str | None]:
    """custom_metadata for a version whose rotation time is not its created_time."""
    if rotated_at is None:
        return {
            META_ADOPTED_VERSION: str(version),
            META_ADOPTED_AT: utc_iso(datetime.now(UTC)),
            META_ROTATED_VERSION: None,
            META_ROTATED_AT: None,
        }
    return {
        META_ROTATED_VERSION: str(version),
        META_ROTATED_AT: utc_iso(rotated_at),
        META_ADOPTED_VERSION: None,
    }


def failure_metadata(run_id: str, at: datetime) -> dict[str, str | None]:
    """The custom_metadata a failed or in-doubt attempt leaves (no error text: no secret)."""
    return {META_LAST_FAILURE_AT: utc_iso(at), META_LAST_FAILURE_RUN: run_id}


# --- concurrency ------------------------------------------------------------------------------


async def fan_out(
    call: Callable[[_In], Awaitable[_Out]], items: Sequence[_In], limit: int = _FAN_OUT
) -> list[_Out]:
    """`call` on every item, at most `limit` in flight, results in order. A fixed set of
    workers, not a task per item: 100,000 items cost no more memory than their results."""
    results: list[Any] = [None] * len(items)
    todo = iter(range(len(items)))

    async def worker() -> None:
        for i in todo:
            results[i] = await call(items[i])

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
    return results


async def list_records(kv: KV, root: str) -> list[str]:
    """The paths of the records directly under `root` (its sub-folders left out)."""
    return [f"{root}/{n}" for n in await kv.list(root) if not n.endswith("/")]
