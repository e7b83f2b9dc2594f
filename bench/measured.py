"""`python bench/measured.py HWM_FILE ARGS...`: run `python -m rotate ARGS...`, then write
this process's peak resident set (VmHWM, KiB) to HWM_FILE.

Why not `ru_maxrss` from `wait4`: Linux carries a process's high-water mark across `exec`,
so a child forked from the bench starts with the bench's own resident set as its peak (a
100,000-row bench holds hundreds of MB). VmHWM belongs to the memory map `exec` created:
the measured program's own peak, nothing else.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def high_water_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    out = Path(sys.argv[1])
    sys.argv = ["rotate", *sys.argv[2:]]
    try:
        runpy.run_module("rotate", run_name="__main__", alter_sys=True)
    finally:
        out.write_text(f"{high_water_kib()}\n")


if __name__ == "__main__":
    main()
