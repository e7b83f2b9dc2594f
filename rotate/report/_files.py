"""Atomic file writes and report file names."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

#: the write buffer of a streamed report: few system calls, little memory
BUFFER_BYTES = 1 << 20


def report_stem(mode: str, run_id: str) -> str:
    """`<mode>-<run_id>`: the shared stem of a run's report files."""
    stem = f"{mode}-{run_id}"
    # The stem lands in a path: a separator or a dot-only name would write outside out_dir.
    if not mode or not run_id or "\0" in stem or Path(stem).name != stem or "\\" in stem:
        raise ValueError(f"mode and run id must make a plain file name, not {stem!r}")
    return stem


@contextlib.contextmanager
def open_atomic(path: Path) -> Iterator[BinaryIO]:
    """A buffered file whose content replaces `path` when the block ends without an error.

    A reader sees the old file or the new one, never half: the data goes to a temporary
    file in the same directory (`os.replace` is atomic only within one file system), is
    synced, then renamed over `path`. Should the block raise, the temporary file is removed
    and `path` left as it was. The temporary file is created with O_EXCL (no following a
    planted symlink) and mode 0o666 so the umask, not this function, decides who may read
    the report.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb", buffering=BUFFER_BYTES) as f:
            yield f
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


@contextlib.contextmanager
def open_atomic_text(path: Path) -> Iterator[TextIO]:
    """`open_atomic` as UTF-8 text, every newline written as given (CSV needs its CRLF)."""
    with open_atomic(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            yield text
            text.flush()
        finally:
            text.detach()  # `open_atomic` closes the file itself, after syncing it


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half."""
    with open_atomic(path) as f:
        f.write(data)


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
