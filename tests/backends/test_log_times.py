"""Each line of a worker's log gets the time its supervisor saw it written (issue 14, `corral
logs --timestamps`): the runner samples (size, time) of its log, `log_times` dates lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from corral.backends import LocalBackend, local_runner
from corral.backends.log_times import line_times, read_samples

from .conftest import eventually, make_spec

SAMPLES = [(0, 100.0), (4, 101.0), (10, 102.5)]


@pytest.mark.parametrize(("data", "offset", "times"), [
    (b"abc\n", 0, [101.0]),
    (b"abc\nde\nf", 0, [101.0, 102.5, 102.5]),  # "f" ends at byte 9: the 10-byte sample
    (b"de\n", 4, [102.5]),  # read from the middle: offsets are the log's own
    (b"more\n", 10, [None]),  # written after the last look: not dated yet
    (b"", 0, []),
], ids=["one-line", "lines-and-a-partial-one", "from-an-offset", "not-seen-yet", "empty"])
def test_a_line_takes_the_time_of_the_first_sample_covering_its_last_byte(
        data: bytes, offset: int, times: list[float | None]) -> None:
    assert line_times(data, offset, SAMPLES) == times


def test_a_torn_or_garbled_sample_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / local_runner.LOG_TIMES
    path.write_bytes(b"0 100.000\nx y\n4 101.500\n12")
    assert read_samples(path) == [(0, 100.0), (4, 101.5)]
    assert read_samples(tmp_path / "missing") == []


def test_the_runner_samples_its_log_as_the_worker_writes(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    python, *runner = local_runner.runner_argv(sys.executable)
    with open(log, "ab") as out:
        done = subprocess.run(
            [python, *runner, "--record-dir", str(tmp_path / "rec"), "--deadline-file",
             str(tmp_path / "deadline"), "--", "sh", "-c", "echo first; sleep 0.6; echo second"],
            stdout=out, stderr=subprocess.STDOUT, check=False, timeout=60)
    assert done.returncode == 0
    samples = read_samples(tmp_path / "rec" / local_runner.LOG_TIMES)
    sizes = [size for size, _ in samples]
    assert sizes == sorted(set(sizes)) and sizes[-1] == log.stat().st_size  # grew, then all
    times = line_times(log.read_bytes(), 0, samples)
    finished = local_runner.read_json(tmp_path / "rec" / local_runner.EXIT_RECORD)
    assert finished is not None
    assert None not in times and times == sorted(times)  # type: ignore[type-var]
    assert times[-1] <= finished["finished_at"]  # type: ignore[operator]


def test_a_runner_whose_output_is_not_a_file_notes_nothing(tmp_path: Path) -> None:
    python, *runner = local_runner.runner_argv(sys.executable)
    done = subprocess.run(
        [python, *runner, "--record-dir", str(tmp_path / "rec"), "--deadline-file",
         str(tmp_path / "deadline"), "--", "echo", "to a pipe"],
        capture_output=True, check=False, timeout=60)
    assert done.returncode == 0 and b"to a pipe" in done.stdout
    assert not (tmp_path / "rec" / local_runner.LOG_TIMES).exists()


def test_the_local_backend_dates_its_workers_lines(local: LocalBackend) -> None:
    local.launch(make_spec("a").shell("echo one; echo two").build())
    eventually(lambda: all(s.state.ended for s in local.poll(0.0)) or None, "the worker ended")
    data, _ = local.read_logs("a", 0)
    assert data == b"one\ntwo\n"
    times = local.log_line_times("a", 0, 0, data)
    assert len(times) == 2 and None not in times and times == sorted(times)  # type: ignore[type-var]
    assert local.log_line_times("a", 0, 4, data[4:]) == times[1:]  # from an offset
