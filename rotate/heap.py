"""Give the C heap's free pages back to the system after a large transient allocation.

Parsing a 100,000-row inventory with pandas allocates and frees tens of megabytes; glibc
keeps those pages mapped (the freed chunks sit between live ones), so a run's resident size
would carry them to its end. `malloc_trim(0)` returns every free page, not only the top of
the heap. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
