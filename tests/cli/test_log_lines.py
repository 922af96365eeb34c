"""`corral logs --timestamps / --since` (issue 14): lines across chunks keep their time, in
RFC 3339 UTC; --since leaves out older lines; an undated line is shown with `-`."""

from __future__ import annotations

import datetime as dt

from corral.cli.log_lines import TimedLines, rfc3339
from corral.sdk import models as M

T0 = dt.datetime(2026, 12, 3, 15, 20, 1, 234000, tzinfo=dt.UTC).timestamp()


def _chunk(data: str, times: list[float | None] | None) -> M.LogChunk:
    return M.LogChunk(workload_id="w", worker=0, offset=0, next_offset=len(data), data=data,
                      times=times)


def test_times_are_rfc3339_utc_with_milliseconds() -> None:
    assert rfc3339(T0) == "2026-12-03T15:20:01.234Z"


def test_a_line_cut_between_chunks_takes_the_time_it_was_complete() -> None:
    lines = TimedLines(stamp=True)
    first = lines.feed(_chunk("one\ntw", [T0, T0 + 1]))
    second = lines.feed(_chunk("o\nthree", [T0 + 2, None]))
    assert first == "2026-12-03T15:20:01.234Z one\n"
    assert second == "2026-12-03T15:20:03.234Z two\n"
    assert lines.end() == "-                        three"


def test_since_leaves_out_older_lines_and_keeps_undated_ones() -> None:
    lines = TimedLines(stamp=False, since=T0 + 1)
    shown = lines.feed(_chunk("old\nnew\nnewest\n", [T0, T0 + 1, None]))
    assert shown == "new\nnewest\n"


def test_without_times_lines_pass_unchanged() -> None:
    assert TimedLines(stamp=False).feed(_chunk("a\nb\n", None)) == "a\nb\n"
