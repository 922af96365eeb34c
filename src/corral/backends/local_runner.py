"""The per-worker supervisor of the local backend, and the records it shares with it.

    python -I .../local_runner.py --record-dir DIR --deadline-file FILE [--cwd DIR] -- PROGRAM ...

(`python -m corral.backends.local_runner ...` works too.) The local backend starts one runner per
worker, in a new session. The runner starts the worker in a session of its own, waits for it and
records how it ended, so that a control plane that was down when the worker ended still learns
its exit code. It uses the standard library only: the backend runs it with `python -I` so that
nothing in the user's environment (PYTHONPATH, a different virtualenv) can break it, while the
worker itself gets that environment untouched.

Records in DIR, each written atomically (temp file, fsync, rename), each JSON:

- ``runner.json``: the runner's identity {pid, start_ticks, boot_id}, written first, once its
  SIGTERM handler is in place (``spawn.json``, the same identity written by the backend just
  after it started the runner, covers the instant before).
- ``child.json``: the worker's identity; its pid is also its process group id.
- ``exit.json``: {exit_code, finished_at, stopped, reason, message}; exit_code is minus the
  signal number when a signal ended the worker.

Stop protocol (why in this order): the backend writes the deadline file, then signals the runner.
The runner writes runner.json, then looks for the deadline file, then starts the worker. Whatever
the interleaving, either the runner sees the deadline before it starts the worker, or the backend
sees runner.json and signals it. The runner also re-reads the deadline file every tick, so a
lost signal costs at most one tick, and a deadline brought forward is honoured.
On a stop the runner sends SIGTERM to the worker's process group, SIGKILL at the deadline. When the
worker ends, whatever is left of its process group is killed: a stray daemon would otherwise keep
GPUs that the scheduler believes free.

Lease (``--lease-file F --lease-seconds S``, used by `corral agent`): the runner kills the worker
(SIGKILL, reason ``LeaseExpired``) once F has not been touched for S seconds: the agent that
touches it is dead or frozen, its node will be declared lost and the gang restarted elsewhere,
and this copy must not run on beside the new one. A control plane that is down does not stop
the agent from touching it: the lease says "my supervisor lives", not "the server is reachable".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SPAWN_RECORD = "spawn.json"  # written by the backend right after it started the runner
RUNNER_RECORD = "runner.json"
CHILD_RECORD = "child.json"
EXIT_RECORD = "exit.json"

# The runner sleeps in select() on a pidfd (the worker ended) and a signal wakeup pipe (SIGTERM
# came), so it reacts at once and costs nothing while idle. The tick is only a safety net: it
# re-reads the deadline file now and then. Without pidfds (not Linux >= 5.3) it polls instead.
TICK_SECONDS = 1.0
FALLBACK_TICK_SECONDS = 0.1
COMMAND_NOT_FOUND = "CommandNotFound"  # same codes as corral.backends.base (stdlib-only here)
STOPPED_BEFORE_START = "StoppedBeforeStart"
KILLED_AFTER_GRACE = "KilledAfterGrace"
LEASE_EXPIRED = "LeaseExpired"  # the agent stopped renewing the lease: killed, see above


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A pid plus what tells it apart from a later process that reuses the pid.

    start_ticks: field 22 of /proc/<pid>/stat (start time in clock ticks since boot); boot_id:
    /proc/sys/kernel/random/boot_id. Both are None where there is no /proc (then only the pid is
    compared, and pid reuse cannot be detected).
    """

    pid: int
    start_ticks: int | None
    boot_id: str | None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of a live process, None if there is none (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _identify_without_proc(pid)
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return ProcessIdentity(pid, int(fields[19]), boot_id())


def _identify_without_proc(pid: int) -> ProcessIdentity | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ProcessIdentity(pid, None, None)


def is_alive(recorded: ProcessIdentity) -> bool:
    """Whether the process recorded earlier still runs (and is not a newcomer with its pid)."""
    now = identify(recorded.pid)
    if now is None:
        return False
    if recorded.boot_id and now.boot_id and recorded.boot_id != now.boot_id:
        return False
    return recorded.start_ticks is None or now.start_ticks in (None, recorded.start_ticks)


def write_json_atomic(path: Path, data: dict[str, Any], mode: int | None = None) -> None:
    """Replace `path` with `data` so that a reader sees the old file or the new one, never half.
    mode: the file's permissions from the start (else as the umask makes them)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _create(tmp, mode) as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _create(tmp, mode) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _create(path: Path, mode: int | None) -> Any:
    if mode is None:
        return open(path, "w", encoding="utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # the umask may have taken bits the file needs (0644: readable)
    return os.fdopen(fd, "w", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_identity(path: Path) -> ProcessIdentity | None:
    data = read_json(path)
    if data is None:
        return None
    return ProcessIdentity(int(data["pid"]), data.get("start_ticks"), data.get("boot_id"))


def write_identity(path: Path, pid: int) -> None:
    identity = identify(pid) or ProcessIdentity(pid, None, boot_id())
    write_json_atomic(path, asdict(identity))


def read_deadline(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when `pid` exits (Linux >= 5.3), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def say(message: str) -> None:
    """A line in the worker's log, so that `corral logs` shows what the runner did and why."""
    print(f"[corral] {message}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, record_dir: Path, deadline_file: Path, argv: list[str],
                 cwd: str | None = None, user: tuple[int, int] | None = None,
                 lease: tuple[Path, float] | None = None) -> None:
        self.record_dir = record_dir
        self.lease = lease  # (file, seconds): see the module docstring
        self.user = user  # (uid, gid) the worker runs as; None: the runner's own
        self.deadline_file = deadline_file
        self.argv = argv
        self.cwd = cwd
        self.signalled = False
        self.stopping = False
        self.killed = False
        self.lease_expired = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        write_identity(self.record_dir / RUNNER_RECORD, os.getpid())
        if self.deadline_file.exists():
            return self._finish(None, stopped=True, reason=STOPPED_BEFORE_START,
                                message="stop requested before the worker started")
        try:
            child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, cwd=self.cwd,
                                     start_new_session=True, **self._identity())
        except OSError as e:
            # 127 and 126 as a shell reports them: not found, found but not runnable.
            code = 127 if isinstance(e, FileNotFoundError) else 126
            where = f" in {self.cwd}" if self.cwd else ""
            say(f"cannot start {self.argv[0]!r}{where}: {e}")
            return self._finish(code, stopped=False, reason=COMMAND_NOT_FOUND,
                                message=f"cannot start {self.argv[0]!r}{where}: {e}")
        write_identity(self.record_dir / CHILD_RECORD, child.pid)
        code = self._supervise(child)
        kill_group(child.pid, signal.SIGKILL)  # leftovers of the worker's process group
        if self.lease_expired:
            return self._finish(code, stopped=False, reason=LEASE_EXPIRED,
                                message="the agent supervising this worker stopped renewing its "
                                "lease (dead or frozen): killed so it cannot run twice")
        killed = self.killed and code == -signal.SIGKILL  # not if SIGTERM got there first
        return self._finish(code, stopped=self.stopping,
                            reason=KILLED_AFTER_GRACE if killed else "", message="")

    def _identity(self) -> dict[str, Any]:
        """Popen arguments that switch the worker to its own user (no supplementary groups,
        files private to it); the runner stays corral's, to record and signal."""
        if self.user is None:
            return {}
        uid, gid = self.user
        return {"user": uid, "group": gid, "extra_groups": [], "umask": 0o077}

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.signalled = True  # acted upon in the supervise loop, not in the handler

    def _supervise(self, child: subprocess.Popen[bytes]) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        pidfd = _pidfd(child.pid)
        fds = [wake_read] if pidfd is None else [wake_read, pidfd]
        while True:
            code = child.poll()
            if code is not None:
                return code
            deadline = self._act_on_stop(child)
            timeout = TICK_SECONDS if pidfd is not None else FALLBACK_TICK_SECONDS
            if deadline is not None and not self.killed:
                timeout = max(0.0, min(timeout, deadline - time.time()))
            readable, _, _ = select.select(fds, [], [], timeout)
            if wake_read in readable:
                os.read(wake_read, 512)

    def _check_lease(self, child: subprocess.Popen[bytes]) -> None:
        if self.lease is None or self.lease_expired:
            return
        path, seconds = self.lease
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            age = float("inf")
        if age > seconds:
            self.lease_expired = True
            say(f"the agent's lease {path} is {age:.0f} s old (limit {seconds:g} s): SIGKILL sent")
            kill_group(child.pid, signal.SIGKILL)

    def _act_on_stop(self, child: subprocess.Popen[bytes]) -> float | None:
        """SIGTERM once a stop is seen, SIGKILL at the deadline. Returns the deadline, if any."""
        self._check_lease(child)
        if not (self.signalled or self.stopping or self.deadline_file.exists()):
            return None
        deadline = read_deadline(self.deadline_file)
        if deadline is None:
            return None
        if not self.stopping:
            self.stopping = True
            say(f"stop requested: SIGTERM sent, deadline in {deadline - time.time():.1f} s")
            kill_group(child.pid, signal.SIGTERM)
        if not self.killed and time.time() >= deadline:
            self.killed = True
            say("still running at the deadline: SIGKILL sent")
            kill_group(child.pid, signal.SIGKILL)
        return deadline

    def _finish(self, code: int | None, *, stopped: bool, reason: str, message: str) -> int:
        write_json_atomic(self.record_dir / EXIT_RECORD, {
            "exit_code": code, "finished_at": time.time(), "stopped": stopped,
            "reason": reason, "message": message,
        })
        if code is None:
            return 0
        return 128 - code if code < 0 else code


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_runner", description=__doc__.split("\n")[0])
    parser.add_argument("--record-dir", type=Path, required=True)
    parser.add_argument("--deadline-file", type=Path, required=True)
    parser.add_argument("--cwd", default=None, help="the worker's working directory")
    parser.add_argument("--uid", type=int, default=None, help="run the worker as this user")
    parser.add_argument("--gid", type=int, default=None, help="... and this group")
    parser.add_argument("--lease-file", type=Path, default=None,
                        help="kill the worker once this file is older than --lease-seconds")
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        parser.error("give the worker's command after --")
    ns.record_dir.mkdir(parents=True, exist_ok=True)
    user = None if ns.uid is None else (ns.uid, ns.gid if ns.gid is not None else ns.uid)
    lease = None if ns.lease_file is None else (ns.lease_file, ns.lease_seconds)
    return Runner(ns.record_dir, ns.deadline_file, argv, ns.cwd or None, user, lease).run()


if __name__ == "__main__":
    sys.exit(main())
