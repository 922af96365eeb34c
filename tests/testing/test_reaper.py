"""A test session's servers do not outlive it, even a session killed with SIGKILL (an xdist
worker its controller killed): corral.testing.reaper."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing.daemons import RUN_ENV, kill_pids, process_dead, wait_until

# A stand-in for a pytest session: it starts the reaper as the root conftest does, then a server
# the way the harnesses do (a Daemon with a clean environment, in a session of its own), a child
# that inherits the environment, and one with no marker; prints their PIDs and waits.
SESSION = textwrap.dedent("""
    import json, subprocess, sys, time
    from pathlib import Path
    from corral.testing.daemons import Daemon
    from corral.testing.reaper import start_reaper

    start_reaper()
    tmp = Path(sys.argv[1])
    daemon = Daemon("server", ["sleep", "300"], tmp / "server.log", env={"PATH": "/usr/bin:/bin"})
    daemon.start()
    inherited = subprocess.Popen(["sleep", "300"], start_new_session=True)
    unmarked = subprocess.Popen(["sleep", "300"], env={"PATH": "/usr/bin:/bin"},
                                start_new_session=True)
    print(json.dumps({"marked": [daemon.pid, inherited.pid], "unmarked": unmarked.pid}),
          flush=True)
    if sys.argv[2] == "wait":
        time.sleep(300)
""")


@pytest.fixture
def session(tmp_path: Path,
            request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], dict]]:
    mode = getattr(request, "param", "wait")
    proc = subprocess.Popen([sys.executable, "-c", SESSION, str(tmp_path), mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = json.loads(proc.stdout.readline())
    try:
        yield proc, pids
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        kill_pids([*pids["marked"], pids["unmarked"]])


def test_a_killed_session_leaves_no_marked_process(
        session: tuple[subprocess.Popen[str], dict]) -> None:
    proc, pids = session
    assert not any(process_dead(p) for p in pids["marked"])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until(lambda: all(process_dead(p) for p in pids["marked"]), timeout=30,
               what="the reaper to end the killed session's servers")
    assert not process_dead(pids["unmarked"])  # only what carries the session's marker


@pytest.mark.parametrize("session", ["exit"], indirect=True)
def test_a_session_that_exits_leaves_no_marked_process(
        session: tuple[subprocess.Popen[str], dict]) -> None:
    proc, pids = session
    assert proc.wait(timeout=30) == 0
    wait_until(lambda: all(process_dead(p) for p in pids["marked"]), timeout=30,
               what="the reaper to end what the session left")
    assert not process_dead(pids["unmarked"])


def test_the_marker_reaches_clean_environments_and_not_the_watcher() -> None:
    marker = os.environ.get(RUN_ENV)
    assert marker, "the root conftest starts a reaper in every process that runs tests"
    from corral.testing.daemons import run_env

    assert run_env() == {RUN_ENV: marker}
    from corral.testing import reaper

    assert reaper._watcher is not None and reaper._watcher.poll() is None
    watcher_env = Path(f"/proc/{reaper._watcher.pid}/environ").read_bytes().split(b"\0")
    assert f"{RUN_ENV}={marker}".encode() not in watcher_env
