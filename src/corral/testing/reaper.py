"""Nothing a test session started outlives it, even when the session is killed.

Each harness stops its own servers in its fixture's teardown, but a teardown never runs when its
pytest process dies first: an xdist worker killed by its controller (``--max-worker-restart``,
a timeout, Ctrl-C twice) or by the OOM killer, or a CI job cancelled. The servers were started
in sessions of their own (``Daemon`` uses ``start_new_session``, so that one Ctrl-C reaches
pytest first), so nothing else stops them: a `corral up`, a slurmctld or a postmaster would run
on, holding ports and memory, and the next run on the machine would meet them.

``start_reaper`` (called by the root conftest in every pytest process that runs tests: the
serial one, or each xdist worker) gives the session a marker, ``CORRALTESTS_RUN=<pid>-<random>``,
in ``os.environ``, which every process the session starts inherits (harnesses that build a
clean environment add it with ``run_env``), and starts a small watcher process. The watcher
holds the read end of a pipe whose write end only the session holds; when the session exits,
however it exits (SIGKILL included), the pipe closes and the watcher ends every process that
still carries the marker: SIGTERM, then SIGKILL after a grace period. After a clean session it
finds nothing, or what a test leaked.

The name has no ``CORRAL_`` prefix on purpose: corral drops ``CORRAL_*`` variables from the
environments it gives its workers, and a worker of a `corral up` must carry the marker too.
The idea is the parent-death watch of Ray's raylet (it exits when its parent's pipe closes) and
of Kubernetes' pause container, here over /proc environments (``pids_with_env``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import subprocess
import sys
import uuid

from corral.testing.daemons import RUN_ENV, kill_pids, pids_with_env, process_dead, run_env

__all__ = ["RUN_ENV", "reap", "run_env", "start_reaper"]

#: how long a marked process has to exit on SIGTERM before it gets SIGKILL
GRACE_S = 5.0
#: how often the watcher also checks that its parent is still the session (a fork of the session
#: could hold the pipe open after the session died)
PARENT_CHECK_S = 2.0

_watcher: subprocess.Popen[bytes] | None = None  # held so that its pipe stays open


def start_reaper() -> str:
    """Mark this process's future children and start the watcher that ends them after this
    process exits; returns the marker. Idempotent within a process."""
    global _watcher
    if _watcher is not None and _watcher.poll() is None:
        return os.environ[RUN_ENV]
    marker = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if k != RUN_ENV}  # the watcher must not match
    _watcher = subprocess.Popen(
        [sys.executable, "-m", "corral.testing.reaper", str(os.getpid()), marker],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True,  # a Ctrl-C to the session's group must not reach it
    )
    os.environ[RUN_ENV] = marker
    atexit.register(_stop_watcher, _watcher)
    return marker


def _stop_watcher(watcher: subprocess.Popen[bytes]) -> None:
    """On a clean exit, let the watcher reap now and wait for it (it finds nothing unless a test
    leaked), so no process object is left running at shutdown (Popen's ResourceWarning) and the
    next run on the machine meets nothing of this one."""
    if watcher.poll() is not None or watcher.stdin is None:
        return
    watcher.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):  # it goes on reaping on its own
        watcher.wait(timeout=GRACE_S + 5.0)


def reap(marker: str, grace: float = GRACE_S) -> list[int]:
    """End every process whose environment carries ``marker``: SIGTERM, then SIGKILL for those
    still running after ``grace`` seconds. Returns the PIDs found."""
    pids = pids_with_env(RUN_ENV, marker)
    if pids:
        kill_pids(pids, signal.SIGTERM, wait_s=grace)
        kill_pids([p for p in pids if not process_dead(p)], signal.SIGKILL)
    return pids


def _watch(parent: int) -> None:
    """Return once ``parent`` has exited: its end of our stdin closed, or we were reparented."""
    while True:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], PARENT_CHECK_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            return
        if os.getppid() != parent:
            return


def main(argv: list[str]) -> int:
    parent, marker = int(argv[0]), argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch(parent)
    reap(marker)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
