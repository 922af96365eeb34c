"""Which lines `corral logs --timestamps / --since` prints, and the time in front of each.

A chunk's lines carry the times the server gave (`LogChunk.times`: when each line was seen
written, from the local runner's samples). A chunk may end mid-line: that piece waits for the
rest of its line, and the whole line takes the time of its last piece (when it was complete).
Times are RFC 3339 in UTC with milliseconds, as `kubectl logs --timestamps` prints them; a line
not dated yet (written after the runner's last look at a running worker) shows `-` in their
place. With --since, lines older than the bound are left out; undated lines are recent, so kept.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.sdk import models as M

__all__ = ["TimedLines", "rfc3339"]

_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")
_WIDTH = len("2026-12-03T15:20:01.234Z")


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TimedLines:
    """Feed chunks in order; get back the text to print (complete lines only until `end`)."""

    def __init__(self, *, stamp: bool, since: float | None = None) -> None:
        self.stamp = stamp
        self.since = since
        self._piece = ""  # a line's start without its newline yet
        self._piece_time: float | None = None

    def feed(self, chunk: M.LogChunk) -> str:
        pieces = _LINE.findall(chunk.data)
        times = chunk.times if chunk.times is not None and len(chunk.times) == len(pieces) \
            else [None] * len(pieces)
        out = []
        for piece, t in zip(pieces, times, strict=True):
            line = self._piece + piece
            if not piece.endswith("\n"):
                self._piece, self._piece_time = line, t
                continue
            self._piece, self._piece_time = "", None
            out.append(self._show(line, t))
        return "".join(out)

    def end(self) -> str:
        """The last line, if it has no newline (the worker's final words)."""
        line, t = self._piece, self._piece_time
        self._piece, self._piece_time = "", None
        return self._show(line, t) if line else ""

    def _show(self, line: str, t: float | None) -> str:
        if self.since is not None and t is not None and t < self.since:
            return ""
        if not self.stamp:
            return line
        return f"{rfc3339(t) if t is not None else '-'.ljust(_WIDTH)} {line}"
