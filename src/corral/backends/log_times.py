"""When each line of a worker's log was written, from the runner's `log-times` samples.

The runner (`local_runner`) appends ``SIZE TIME`` to ``log-times`` whenever it sees the log
grown: at TIME the log held SIZE bytes. A line written in between two looks is dated by the
second: the first sample whose SIZE covers the line's last byte. So a time is when the line was
seen, late by at most one look (0.25 s while output flows, 1 s after a quiet spell), never
early. Bytes written after the last look have no time yet (None).
"""

from __future__ import annotations

import bisect
import re
from pathlib import Path

__all__ = ["line_times", "read_samples"]

_LINE = re.compile(rb"[^\n]*\n|[^\n]+\Z")


def read_samples(path: Path) -> list[tuple[int, float]]:
    """(size, time) pairs in the order written; a torn last line (the runner was writing it)
    and anything unreadable are skipped; a missing file is no samples."""
    try:
        text = path.read_bytes().decode("ascii", errors="replace")
    except FileNotFoundError:
        return []
    samples = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            samples.append((int(parts[0]), float(parts[1])))
        except ValueError:
            continue
    return samples


def line_times(data: bytes, offset: int, samples: list[tuple[int, float]]) -> list[float | None]:
    """The time of each line of `data` (read from byte `offset` of the log; a last line without
    its newline counts), in order: of the first sample that covers its last byte.

    >>> line_times(b"a\\nbb\\nccc", 10, [(10, 1.0), (12, 2.0), (16, 3.0)])
    [2.0, 3.0, None]
    """
    sizes = [size for size, _ in samples]
    out: list[float | None] = []
    for match in _LINE.finditer(data):
        end = offset + match.end()  # the line's bytes are [.., end): covered once size >= end
        i = bisect.bisect_left(sizes, end)
        out.append(samples[i][1] if i < len(samples) else None)
    return out


def lines(data: bytes) -> list[bytes]:
    """`data` cut as `line_times` cuts it."""
    return [m.group() for m in _LINE.finditer(data)]
