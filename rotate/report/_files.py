"""Atomic file writes and report file names."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def report_stem(mode: str, run_id: str) -> str:
    """`<mode>-<run_id>`: the shared stem of a run's report files."""
    stem = f"{mode}-{run_id}"
    # The stem lands in a path: a separator or a dot-only name would write outside out_dir.
    if not mode or not run_id or "\0" in stem or Path(stem).name != stem or "\\" in stem:
        raise ValueError(f"mode and run id must make a plain file name, not {stem!r}")
    return stem


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half.

    The temporary file sits in the same directory, since `os.replace` is atomic only within
    one file system. It is created with O_EXCL (no following a planted symlink) and mode
    0o666 so the umask, not this function, decides who may read the report.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            # A rename can reach the disk before the data does; fsync first, or a crash could
            # leave a complete-looking but empty report.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable where the platform allows opening a directory."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - e.g. a directory we may write but not read
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)
