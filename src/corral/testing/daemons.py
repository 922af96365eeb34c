"""Starting, watching and stopping the server processes a harness owns.

Every harness follows the same rules, gathered here so they hold everywhere:

* ports come from the kernel (bind port 0 on loopback), never from a fixed list;
* readiness is polled with a bounded timeout, and a timeout (or an early exit) raises
  ``HarnessStartFailed`` carrying the tail of the server's log, so a CI failure explains itself;
* a process is stopped by its own PID (SIGTERM, then SIGKILL after a grace period), never by
  name, so a developer's own servers are never touched;
* processes a daemon forks off and lets go of (Slurm's slurmstepd, for one) are found by a marker
  variable the harness put in the daemon's environment, which the children inherit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from corral.testing.errors import HarnessStartFailed, HarnessUnavailable

__all__ = [
    "Daemon",
    "find_binary",
    "format_logs",
    "free_tcp_ports",
    "kill_pids",
    "log_tail",
    "pids_with_cmdline",
    "pids_with_env",
    "process_dead",
    "run_env",
    "wait_until",
]

POLL_S = 0.2
#: the test session's marker variable, which corral.testing.reaper sets and looks for
RUN_ENV = "CORRALTESTS_RUN"


def run_env() -> dict[str, str]:
    """The test session's marker as an environment entry (empty outside a reaped session), for
    processes started with a clean environment: corral.testing.reaper ends what carries it once
    the session has exited, a killed session too."""
    value = os.environ.get(RUN_ENV)
    return {RUN_ENV: value} if value else {}


def free_tcp_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that were free on ``host`` a moment ago.

    All sockets are held open together so the kernel cannot hand out the same port twice; the
    usual race (someone else binds it before the server does) remains and is reported by the
    server's own start-up failure.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def find_binary(name: str, extra_dirs: Sequence[str] = (), hint: str = "") -> str:
    """Absolute path of executable ``name`` (PATH first, then ``extra_dirs``).

    Raises HarnessUnavailable naming the binary and how to install it.
    """
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    fix = hint or "run scripts/install-system-deps as root"
    raise HarnessUnavailable(f"{name} not found on PATH or in {list(extra_dirs)}; {fix}")


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note saying why there are none."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc.strerror}>"
    return "\n".join(text.splitlines()[-lines:]) or f"<{path} is empty>"


def format_logs(logs: Sequence[Path], lines: int = 40) -> str:
    """The tails of several logs, each under a header naming its file."""
    return "\n".join(f"--- tail of {p} ---\n{log_tail(p, lines)}" for p in logs)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    logs: Sequence[Path] = (),
    watch: Sequence[Daemon] = (),
) -> None:
    """Poll ``check`` until it returns True; raise HarnessStartFailed after ``timeout`` seconds.

    If a daemon in ``watch`` exits meanwhile, fail at once instead of waiting out the timeout.
    ``check`` may raise OSError/subprocess errors while the server is still coming up; those
    count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if check():
                return
        for d in watch:
            if not d.alive():
                raise HarnessStartFailed(
                    f"{d.name} exited with code {d.returncode()} while waiting for {what}\n"
                    + format_logs([d.log, *logs])
                )
        if time.monotonic() >= deadline:
            raise HarnessStartFailed(
                f"timed out after {timeout:.0f}s waiting for {what}\n"
                + format_logs([*(d.log for d in watch), *logs])
            )
        time.sleep(POLL_S)


@dataclass
class Daemon:
    """A server process started (in the foreground) by a harness, with its output in ``log``."""

    name: str
    argv: list[str]
    log: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Daemon:
        with open(self.log, "ab") as out:
            # A new session: Ctrl-C in the terminal running pytest reaches pytest, which then
            # tears down in order, rather than killing servers under a half-finished test.
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **run_env()} if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean-up by the daemon itself."""
        if self.alive():
            assert self._proc is not None
            self._proc.kill()
            self._proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``grace`` seconds. Idempotent."""
        if self._proc is None or not self.alive():
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def pids_with_env(key: str, value: str) -> list[int]:
    """PIDs of processes whose environment holds ``key=value`` (Linux /proc; others: none).

    Used to find what a harness's daemons forked and abandoned; the harness sets a marker
    variable unique to its temp dir, so no one else's process can match.
    """
    needle = f"{key}={value}".encode()
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def pids_with_cmdline(fragment: str) -> list[int]:
    """PIDs of processes whose command line contains ``fragment`` (Linux /proc; others: none).

    For servers that put a harness's unique temp dir on their command lines (Ray does: every
    raylet, agent and worker gets ``--session-dir``/socket paths under it).
    """
    needle = fragment.encode()
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


def kill_pids(pids: Sequence[int], sig: int = signal.SIGKILL, wait_s: float = 5.0) -> None:
    """Send ``sig`` to each PID (ignoring ones already gone), then wait up to ``wait_s`` for them
    to be dead (gone, or a zombie awaiting its parent's reaping): signals are asynchronous."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline = time.monotonic() + wait_s
    while not all(process_dead(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_dead(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to be dead (`process_dead`); whether it is."""
    deadline = time.monotonic() + timeout_s
    while not process_dead(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def process_dead(pid: int) -> bool:
    """True when ``pid`` no longer runs: absent from /proc, or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}
