"""glibc's mmap threshold kept at its start value (`corral.control.freed_tables`): once a large
mapping has been freed, tables of 512 KiB still get their own mappings (and so leave the process
when freed) instead of coming from the heap. Each case runs in a fresh interpreter: the
setting is the whole process's and glibc's dynamic rule depends on what was freed before."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from corral.control import freed_tables

_GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallinfo2")
pytestmark = pytest.mark.skipif(not _GLIBC, reason="glibc >= 2.33 (mallinfo2) only")

PROBE = """
import ctypes, sys
from corral.control import freed_tables
if sys.argv[1] == "kept":
    assert freed_tables.keep_mmap_threshold()
    assert freed_tables.keep_mmap_threshold()  # a second call is a no-op that says so
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
big = bytearray(8 * 2**20)  # mapped, then freed: glibc's dynamic rule raises the threshold
del big
before = libc.mallinfo2().hblkhd
tables = [bytearray(512 * 1024) for _ in range(32)]
print(libc.mallinfo2().hblkhd - before)
"""


def _mapped_bytes(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         env=env, check=True, timeout=120)
    return int(out.stdout.split()[-1])


def test_tables_are_mapped_after_a_large_free_when_kept() -> None:
    """A table that fits a free chunk already in the heap still goes there (glibc maps only
    what the heap cannot serve): most of the 32, not all, must be mapped."""
    assert _mapped_bytes("kept") >= 24 * 512 * 1024


def test_without_it_glibc_serves_them_from_the_heap() -> None:
    """The behaviour the setting exists for: without it, the same tables take no mapping."""
    assert _mapped_bytes("default") < 512 * 1024


def test_an_operators_threshold_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert freed_tables._apply() is False
