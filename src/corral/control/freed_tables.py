"""Freed large tables go back to the system: glibc's mmap threshold kept at its start value.

Why: the loop builds and drops tables of 100,000 entries every large step (a full read's rows,
a snapshot's copy of the records, the bulk writes' parameter lists, the ledger's maps). Each is
one allocation of megabytes. glibc serves an allocation over `M_MMAP_THRESHOLD` (128 KiB at
start) with its own mapping, returned to the system when freed; but the first time such a
mapping is freed, glibc raises the threshold to its size (up to 32 MiB, the "dynamic
threshold"), so from then on the step's large tables come from the heap, and a freed table in
the middle of the heap stays resident for as long as anything above it lives. At 10,000 nodes
x 100,000 workloads the heap held 44 MiB of such free space after the place step, all of it
counted in the process's RSS (bench/README.md, "Live loop", seventeenth pass).

Setting the threshold once (`mallopt`) turns the dynamic rule off: every large table is its
own mapping, and its memory leaves the process when it is freed. Small objects are Python's
own allocator's and are not concerned. Elsewhere than glibc, or when the operator chose the
threshold (`MALLOC_MMAP_THRESHOLD_` in the environment), nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

__all__ = ["MMAP_THRESHOLD", "keep_mmap_threshold"]

#: glibc's M_MMAP_THRESHOLD parameter number (malloc.h)
_M_MMAP_THRESHOLD = -3
#: glibc's own starting value: allocations from 128 KiB up get their own mapping
MMAP_THRESHOLD = 128 * 1024
_ENV = "MALLOC_MMAP_THRESHOLD_"
_done: list[bool] = []
_lock = threading.Lock()


def keep_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD` for this process, once. Returns whether
    it is set (now or by an earlier call); False off glibc or when the environment sets it.
    Idempotent and safe to call from any thread."""
    with _lock:
        if not _done:
            _done.append(_apply())
        return _done[0]


def _apply() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get(_ENV):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has `mallopt` and `gnu_get_libc_version`), else None."""
    try:  # the process's own symbols: the C library it runs on, found without a search
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc
