"""The worker supervisor on its own (`corral.backends.local_runner`), started the way every
backend starts it (`runner_argv`): what it imports, what the worker inherits from it, its
records, its command line.

The supervisor's behaviour under the backends (deadline signal, exit records, logs, lease) is
tested with them (test_local.py, test_slurm.py, test_ray.py, tests/agent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends import local_runner

REPORT = """
import json, os, sys
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
json.dump({"cwd": os.getcwd(), "fds": fds, "pgid": os.getpgid(0), "pid": os.getpid(),
           "sid": os.getsid(0),
           "stdin": sys.stdin.read(), "env": os.environ.get("RUNNER_TEST_VAR")},
          open(os.environ["REPORT"], "w"))
"""


def run(tmp_path: Path, *argv: str, flags: tuple[str, ...] = (), **kwargs: object
        ) -> subprocess.CompletedProcess[str]:
    python, *runner = local_runner.runner_argv(sys.executable)
    return subprocess.run([python, *flags, *runner, "--record-dir", str(tmp_path / "rec"),
                           "--deadline-file", str(tmp_path / "deadline"), *argv],
                          capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def test_the_runner_starts_on_builtins_and_os_only(tmp_path: Path) -> None:
    """Every worker pays for the runner's start: modules that cost milliseconds each must not
    creep back (an import of any of them fails this test)."""
    done = run(tmp_path, "--", "true", flags=("-X", "importtime"))
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "local_runner" in imported
    heavy = {"argparse", "subprocess", "json", "typing", "dataclasses", "pathlib", "enum", "re",
             "contextlib", "site", "corral"}
    assert imported & heavy == set()


def test_the_worker_inherits_only_what_a_popen_worker_did(tmp_path: Path) -> None:
    """Own session (pid = process group = session), stdin from /dev/null, no descriptor of the
    runner's parent beyond 0-2, in --cwd, the environment as given."""
    report, workdir = tmp_path / "report.json", tmp_path / "wd"
    workdir.mkdir()
    leaked = os.open(os.devnull, os.O_RDONLY)  # inheritable in the runner, as a parent's fd is
    os.set_inheritable(leaked, True)
    try:
        done = run(tmp_path, "--cwd", str(workdir), "--", sys.executable, "-c", REPORT,
                   env={**os.environ, "REPORT": str(report), "RUNNER_TEST_VAR": "kept"},
                   input="not for the worker", pass_fds=(leaked,))
    finally:
        os.close(leaked)
    assert done.returncode == 0, done.stderr
    seen = json.loads(report.read_text())
    assert seen["pid"] == seen["pgid"] == seen["sid"]
    assert seen["stdin"] == ""
    assert seen["cwd"] == str(workdir)
    assert seen["env"] == "kept"
    assert leaked not in seen["fds"]
    assert len([fd for fd in seen["fds"] if fd > 2]) <= 1  # the listing's own
    child = local_runner.read_identity(tmp_path / "rec" / local_runner.CHILD_RECORD)
    assert child is not None and child.pid == seen["pid"]


def test_the_worker_gets_the_signals_python_ignores_back(tmp_path: Path) -> None:
    """SIGPIPE and SIGXFSZ at their defaults (Python ignores both, and exec keeps an ignored
    signal ignored): a shell pipeline in the worker ends as it does outside corral."""
    status = tmp_path / "status"
    done = run(tmp_path, "--", "/bin/sh", "-c", f"grep SigIgn /proc/self/status > {status}")
    assert done.returncode == 0, done.stderr
    ignored = int(status.read_text().split()[1], 16)
    for signum in (13, 25):  # SIGPIPE, SIGXFSZ
        assert not ignored & (1 << (signum - 1))


def test_a_missing_working_directory_is_a_command_that_cannot_run(tmp_path: Path) -> None:
    run(tmp_path, "--cwd", str(tmp_path / "nowhere"), "--", "true")
    record = local_runner.read_json(tmp_path / "rec" / local_runner.EXIT_RECORD)
    assert record is not None
    assert (record["exit_code"], record["reason"]) == (127, local_runner.COMMAND_NOT_FOUND)
    assert "nowhere" in record["message"]


def test_relative_record_paths_survive_the_change_to_the_workers_directory(tmp_path: Path
                                                                          ) -> None:
    (tmp_path / "wd").mkdir()
    python, *runner = local_runner.runner_argv(sys.executable)
    done = subprocess.run([python, *runner, "--record-dir", "rec", "--deadline-file", "dl",
                           "--cwd", "wd", "--", "true"], cwd=tmp_path, check=False,
                          capture_output=True)
    assert done.returncode == 0, done.stderr
    assert local_runner.read_json(tmp_path / "rec" / local_runner.EXIT_RECORD) is not None


@pytest.mark.parametrize(("argv", "says"), [
    (["--deadline-file", "d", "--", "true"], "--record-dir is required"),
    (["--record-dir", "r", "--deadline-file", "d"], "give the worker's command after --"),
    (["--record-dir", "r", "--deadline-file", "d", "--colour", "x", "--", "true"],
     "unknown option --colour"),
    (["--record-dir", "r", "--deadline-file", "d", "--uid=me", "--", "true"],
     "--uid: 'me' is not a int"),
    (["--record-dir"], "--record-dir needs a value"),
])
def test_a_wrong_command_line_says_what_is_wrong(argv: list[str], says: str) -> None:
    with pytest.raises(local_runner.UsageError, match=says):
        local_runner.parse_args(argv)


def test_the_command_line_takes_both_option_forms_and_keeps_the_workers_own() -> None:
    options, argv = local_runner.parse_args(
        ["--record-dir=r", "--deadline-file", "d", "--lease-seconds", "4", "--cwd", "",
         "--", "prog", "--record-dir", "x"])
    assert (options["--record-dir"], options["--deadline-file"]) == ("r", "d")
    assert (options["--lease-seconds"], options["--cwd"]) == (4.0, "")
    assert argv == ["prog", "--record-dir", "x"]
    assert local_runner.parse_args(["--record-dir", "r", "--deadline-file", "d", "prog"])[1] == [
        "prog"]


scalars = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.floats(allow_nan=False, allow_infinity=False), st.text())


@given(st.dictionaries(st.text(), st.one_of(scalars, st.lists(scalars, max_size=2))))
def test_records_are_written_as_json_writes_them(data: dict[str, object]) -> None:
    assert local_runner.dumps(data) == json.dumps(data, sort_keys=True)


def test_a_process_identity_is_a_value() -> None:
    a = local_runner.ProcessIdentity(7, 12, "boot")
    assert a == local_runner.ProcessIdentity(7, 12, "boot") != local_runner.ProcessIdentity(
        7, 13, "boot")
    assert len({a, local_runner.ProcessIdentity(7, 12, "boot")}) == 1
    with pytest.raises(AttributeError):
        a.pid = 8  # type: ignore[misc]
