"""The per-worker supervisor of the local backend, and the records it shares with it.

    python -I -S .../local_runner.py --record-dir DIR --deadline-file FILE [--cwd DIR] -- ARGV

The local backend starts one runner per worker, in a new session. The runner starts the worker in a session of its own, waits for it and
records how it ended, so that a control plane that was down when the worker ended still learns
its exit code. It uses the standard library only: the backend runs it with `python -I` so that
nothing in the user's environment (PYTHONPATH, a different virtualenv) can break it, while the
worker itself gets that environment untouched.

Start cost: every worker pays for this interpreter's start, and on a busy node (Slurm running
hundreds of short jobs on a few cores) that CPU is the worker supervisor's whole cost. So the
module imports only builtins and os/select/signal/time (no argparse, subprocess, pathlib,
dataclasses, typing or json, each 2-15 ms of CPU per start; measured with ``-X importtime``),
starts the worker with ``os.posix_spawnp`` (what `subprocess` itself uses where it can), writes
its flat records with a small encoder equal to ``json.dumps(..., sort_keys=True)``, and is run
with ``-S`` as well (`RUNNER_FLAGS`: no site-packages scan). Everything the backends call on the
module (reading records, identities) keeps its interface and imports `json` when first used.

Records in DIR, each written atomically (temp file, fsync, rename), each JSON:

- ``runner.json``: the runner's identity {pid, start_ticks, boot_id}, written first, once its
  SIGTERM handler is in place (``spawn.json``, the same identity written by the backend just
  after it started the runner, covers the instant before).
- ``child.json``: the worker's identity; its pid is also its process group id.
- ``exit.json``: {exit_code, finished_at, stopped, reason, message}; exit_code is minus the
  signal number when a signal ended the worker.
- ``log-times`` (appended, not atomic): lines ``SIZE TIME``: at wall-clock TIME the log (this
  runner's stdout, the worker's too) had SIZE bytes. Written when the size grew since the last
  look: at start, at every wake of the supervise loop (every `LOG_TICK_SECONDS` while the log
  grows, every tick otherwise) and at the end. A line's time (`corral logs --timestamps`) is
  the first TIME whose SIZE covers the line's last byte: when the line was seen written, late
  by at most one look. No pipe between the worker and its log: the worker keeps writing its
  file directly (nothing to copy, nothing lost if the runner dies), and a look is one fstat.

Stop protocol (why in this order): the backend writes the deadline file, then signals the runner.
The runner writes runner.json, then looks for the deadline file, then starts the worker. Whatever
the interleaving, either the runner sees the deadline before it starts the worker, or the backend
sees runner.json and signals it. The runner also re-reads the deadline file every tick, so a
lost signal costs at most one tick, and a deadline brought forward is honoured.
On a stop the runner sends SIGTERM to the worker's process group, SIGKILL at the deadline. When the
worker ends, whatever is left of its process group is killed: a stray daemon would otherwise keep
GPUs that the scheduler believes free. With ``--container NAME`` (an `image:`), every SIGKILL
is followed by ``<argv[0]> rm --force --time 0 NAME``: the container is not in the group.

Lease (``--lease-file F --lease-seconds S``, used by `corral agent`): the runner kills the worker
(SIGKILL, reason ``LeaseExpired``) once F has not been touched for S seconds: the agent that
touches it is dead or frozen, its node will be declared lost and the gang restarted elsewhere,
and this copy must not run on beside the new one. A control plane that is down does not stop
the agent from touching it: the lease says "my supervisor lives", not "the server is reachable".
"""

from __future__ import annotations

import os
import select
import sys
import time

# Names for the type checker only (`typing` alone costs ~15 ms of CPU per start); mypy and ruff
# read any constant named TYPE_CHECKING as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any

    StrPath = str | os.PathLike[str]
else:
    try:  # the C module behind `signal`, whose wrapper imports `enum` (~7 ms per start) for
        import _signal as signal  # the names of signals; the same functions and numbers
    except ImportError:  # not CPython
        import signal

SPAWN_RECORD = "spawn.json"  # written by the backend right after it started the runner
RUNNER_RECORD = "runner.json"
CHILD_RECORD = "child.json"
EXIT_RECORD = "exit.json"
LOG_TIMES = "log-times"
#: the interpreter flags every backend runs this file with: isolated (-I) and no site (-S),
#: see the module docstring
RUNNER_FLAGS = ("-I", "-S")

# The runner sleeps in select() on a pidfd (the worker ended) and a signal wakeup pipe (SIGTERM
# came), so it reacts at once and costs nothing while idle. The tick is only a safety net: it
# re-reads the deadline file now and then. Without pidfds (not Linux >= 5.3) it polls instead.
TICK_SECONDS = 1.0
FALLBACK_TICK_SECONDS = 0.1
LOG_TICK_SECONDS = 0.25  # how often the log's size is looked at while it grows (log-times)
COMMAND_NOT_FOUND = "CommandNotFound"  # same codes as corral.backends.base (stdlib-only here)
STOPPED_BEFORE_START = "StoppedBeforeStart"
KILLED_AFTER_GRACE = "KilledAfterGrace"
LEASE_EXPIRED = "LeaseExpired"  # the agent stopped renewing the lease: killed, see above
SETUP_FAILED = "SetupFailed"  # the spec's setup exited non-zero: the command never started
SETUP_SHELL = "/bin/sh"


def runner_argv(python: str) -> list[str]:
    """The start of a runner's command line: the interpreter, `RUNNER_FLAGS` and the entry
    script `local_runner_main.py`, which runs this module from its cached bytecode (running
    this file itself, as ``python local_runner.py``, compiles it on every start: ~8 ms)."""
    return [python, *RUNNER_FLAGS, os.path.join(os.path.dirname(__file__), "local_runner_main.py")]


class ProcessIdentity:
    """A pid plus what tells it apart from a later process that reuses the pid.

    start_ticks: field 22 of /proc/<pid>/stat (start time in clock ticks since boot); boot_id:
    /proc/sys/kernel/random/boot_id. Both are None where there is no /proc (then only the pid is
    compared, and pid reuse cannot be detected). Immutable, compared by value (a frozen
    dataclass, written out: `dataclasses` imports `inspect`, ~20 ms per runner start).
    """

    __slots__ = ("boot_id", "pid", "start_ticks")
    pid: int
    start_ticks: int | None
    boot_id: str | None

    def __init__(self, pid: int, start_ticks: int | None, boot_id: str | None) -> None:
        object.__setattr__(self, "pid", pid)
        object.__setattr__(self, "start_ticks", start_ticks)
        object.__setattr__(self, "boot_id", boot_id)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ProcessIdentity is immutable: cannot set {name}")

    def _key(self) -> tuple[int, int | None, str | None]:
        return self.pid, self.start_ticks, self.boot_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProcessIdentity) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"ProcessIdentity(pid={self.pid!r}, start_ticks={self.start_ticks!r}, "
                f"boot_id={self.boot_id!r})")

    def as_record(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "boot_id": self.boot_id}


def _read_text(path: StrPath) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def boot_id() -> str | None:
    try:
        return _read_text("/proc/sys/kernel/random/boot_id").strip()
    except OSError:
        return None


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of a live process, None if there is none (zombies count as gone)."""
    try:
        stat = _read_text(f"/proc/{pid}/stat")
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


def dumps(data: dict[str, Any]) -> str:
    """``json.dumps(data, sort_keys=True)``. A flat record of str, int, float, bool and None
    (all the runner writes) is encoded here, so the runner never imports `json` (which compiles
    `re` patterns at import); anything else goes to `json`. Tests hold the two equal."""
    parts = []
    for key in sorted(data):
        text = _scalar(data[key]) if isinstance(key, str) else None
        if text is None:
            import json  # only for records the runner never writes

            return json.dumps(data, sort_keys=True)
        parts.append(f"{_string(key)}: {text}")
    return "{" + ", ".join(parts) + "}"


def _scalar(value: object) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and value - value == 0.0:  # finite (json writes NaN, Infinity)
        return float.__repr__(value)
    if type(value) is str:
        return _string(value)
    return None


def _string(text: str) -> str:
    try:
        from _json import encode_basestring_ascii  # json's own C escaper, without json
    except ImportError:  # an interpreter without the accelerator
        from json.encoder import py_encode_basestring_ascii as encode_basestring_ascii
    return str(encode_basestring_ascii(text))


def write_json_atomic(path: StrPath, data: dict[str, Any], mode: int | None = None, *,
                      durable: bool = True) -> None:
    """Replace `path` with `data` so that a reader sees the old file or the new one, never half.
    mode: the file's permissions from the start (else as the umask makes them). durable: on
    disk before this returns (fsync); False for what a machine crash makes moot anyway."""
    write_text_atomic(path, dumps(data), mode, durable=durable)


def write_text_atomic(path: StrPath, text: str, mode: int | None = None, *,
                      durable: bool = True) -> None:
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # the umask may have taken bits the file needs (0644: readable)
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_json(path: StrPath) -> dict[str, Any] | None:
    import json  # the backends' side; the runner itself never reads JSON

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_identity(path: StrPath) -> ProcessIdentity | None:
    data = read_json(path)
    if data is None:
        return None
    return ProcessIdentity(int(data["pid"]), data.get("start_ticks"), data.get("boot_id"))


def write_identity(path: StrPath, pid: int) -> None:
    """A live process's identity, atomically but not fsynced: it only means something while the
    machine stays up (a reboot ends the process and changes the boot id), so an identity lost
    in a crash loses nothing, and two fsyncs per worker start were most of its I/O."""
    identity = identify(pid) or ProcessIdentity(pid, None, boot_id())
    write_json_atomic(path, identity.as_record(), durable=False)


def read_deadline(path: StrPath) -> float | None:
    try:
        return float(_read_text(path).strip())
    except (FileNotFoundError, ValueError):
        return None


def stat_is_file(mode: int) -> bool:
    return mode & 0o170000 == 0o100000  # stat.S_ISREG without importing stat


def kill_group(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105 - contextlib costs the runner's start ~3 ms (it imports functools...)
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when `pid` exits (Linux >= 5.3), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def say(message: str) -> None:
    """A line in the worker's log, so that `corral logs` shows what the runner did and why."""
    print(f"[corral] {message}", file=sys.stderr, flush=True)


def _keep_descriptors_private() -> None:
    """Nothing but stdin/stdout/stderr reaches the worker (`subprocess`'s close_fds): whatever
    this runner inherited above 2 is marked close-on-exec. The runner's own are already."""
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 256))
    for fd in fds:
        if fd > 2:
            try:  # noqa: SIM105 - as in kill_group
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed by now


class Runner:
    def __init__(self, record_dir: StrPath, deadline_file: StrPath, argv: list[str],
                 cwd: str | None = None, user: tuple[int, int] | None = None,
                 lease: tuple[StrPath, float] | None = None,
                 setup_file: StrPath | None = None, container: str | None = None) -> None:
        # absolute: the runner changes to the worker's directory before it starts it
        self.record_dir = os.path.abspath(record_dir)
        self.lease = None if lease is None else (os.path.abspath(lease[0]), lease[1])
        self.user = user  # (uid, gid) the worker runs as; None: the runner's own
        self.deadline_file = os.path.abspath(deadline_file)
        self.argv = argv
        self.cwd = cwd
        self.signalled = False
        self.stopping = False
        self.killed = False
        self.lease_expired = False
        self._popen: object = None  # the Popen of a worker started as another user, kept alive
        #: the spec's `setup` lines, run with /bin/sh before the command (same cwd, user, env,
        #: log, stop and lease rules); read at start so the file may live with the records
        self.setup_file = None if setup_file is None else os.path.abspath(setup_file)
        self._log_size = -1  # the log's size at the last look (log-times); -1: not looked yet
        self.container = container  # the worker is `<runtime> run --name <container> ...`

    def _record(self, name: str) -> str:
        return os.path.join(self.record_dir, name)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        write_identity(self._record(RUNNER_RECORD), os.getpid())
        self._note_log_size()
        if os.path.exists(self.deadline_file):
            return self._finish(None, stopped=True, reason=STOPPED_BEFORE_START,
                                message="stop requested before the worker started")
        if self.setup_file is not None:
            ended = self._setup()
            if ended is not None:
                return ended
        try:
            pid = self._start()
        except OSError as e:
            # 127 and 126 as a shell reports them: not found, found but not runnable.
            code = 127 if isinstance(e, FileNotFoundError) else 126
            where = f" in {self.cwd}" if self.cwd else ""
            say(f"cannot start {self.argv[0]!r}{where}: {e}")
            return self._finish(code, stopped=False, reason=COMMAND_NOT_FOUND,
                                message=f"cannot start {self.argv[0]!r}{where}: {e}")
        write_identity(self._record(CHILD_RECORD), pid)
        code = self._supervise(pid)
        self._kill(pid, container=code < 0 and not (self.killed or self.lease_expired))  # leftovers
        if self.lease_expired:
            return self._finish(code, stopped=False, reason=LEASE_EXPIRED,
                                message="the agent supervising this worker stopped renewing its "
                                "lease (dead or frozen): killed so it cannot run twice")
        killed = self.killed and code == -signal.SIGKILL  # not if SIGTERM got there first
        return self._finish(code, stopped=self.stopping,
                            reason=KILLED_AFTER_GRACE if killed else "", message="")

    def _setup(self) -> int | None:
        """Run the setup lines as the worker would run (its own process group, supervised):
        None when they succeeded, else what `run` returns (SetupFailed with their exit code, or
        stopped when a stop came meanwhile)."""
        fd = os.open(self.setup_file, os.O_RDONLY)  # type: ignore[arg-type]
        try:
            script = os.read(fd, 1 << 20).decode()
        finally:
            os.close(fd)
        command, self.argv = self.argv, [SETUP_SHELL, "-c", script]
        try:
            pid = self._start()
        except OSError as e:
            say(f"cannot start {SETUP_SHELL} for setup: {e}")
            return self._finish(127, stopped=False, reason=SETUP_FAILED,
                                message=f"cannot start {SETUP_SHELL} for setup: {e}")
        finally:
            self.argv = command
        write_identity(self._record(CHILD_RECORD), pid)
        code = self._supervise(pid)
        kill_group(pid, signal.SIGKILL)
        if self.stopping or self.lease_expired:
            return self._finish(code, stopped=self.stopping, reason=LEASE_EXPIRED
                                if self.lease_expired else "", message="stopped during setup")
        if code != 0:
            say(f"setup exited {code}: the command was not started")
            return self._finish(code, stopped=False, reason=SETUP_FAILED,
                                message=f"setup exited {code}; the command was not started")
        return None

    def _start(self) -> int:
        """Start the worker in a session of its own (its pid is its process group), stdin from
        /dev/null, in `cwd`; its pid. Raises OSError as `subprocess.Popen` would."""
        if self.user is not None:
            return self._start_as_user(*self.user)
        _keep_descriptors_private()
        if self.cwd:
            os.chdir(self.cwd)  # the worker's directory: posix_spawn has no cwd of its own
        # SIGPIPE and SIGXFSZ back to their defaults (Python ignores them; `subprocess`'s
        # restore_signals), the rest as exec leaves them.
        return os.posix_spawnp(
            self.argv[0], self.argv, os.environ, setsid=True,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))

    def _start_as_user(self, uid: int, gid: int) -> int:
        """The worker as its own user (no supplementary groups, files private to it); the
        runner stays corral's, to record and signal. Only when corral runs as root: `subprocess`
        switches identity between fork and exec, which posix_spawn cannot."""
        import subprocess  # only the root local backend pays for it

        child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, cwd=self.cwd,
                                 start_new_session=True, user=uid, group=gid, extra_groups=[],
                                 umask=0o077)
        self._popen = child  # reaped by `_supervise` (waitpid), not by Popen
        return child.pid

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.signalled = True  # acted upon in the supervise loop, not in the handler

    def _supervise(self, pid: int) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        pidfd = _pidfd(pid)
        fds = [wake_read] if pidfd is None else [wake_read, pidfd]
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)  # minus the signal, as Popen says it
            deadline = self._act_on_stop(pid)
            timeout = TICK_SECONDS if pidfd is not None else FALLBACK_TICK_SECONDS
            if self._note_log_size():  # output flows: look again soon, for its lines' times
                timeout = min(timeout, LOG_TICK_SECONDS)
            if deadline is not None and not self.killed:
                timeout = max(0.0, min(timeout, deadline - time.time()))
            readable, _, _ = select.select(fds, [], [], timeout)
            if wake_read in readable:
                os.read(wake_read, 512)

    def _check_lease(self, pid: int) -> None:
        if self.lease is None or self.lease_expired:
            return
        path, seconds = self.lease
        try:
            age = time.time() - os.stat(path).st_mtime
        except FileNotFoundError:
            age = float("inf")
        if age > seconds:
            self.lease_expired = True
            say(f"the agent's lease {path} is {age:.0f} s old (limit {seconds:g} s): SIGKILL sent")
            self._kill(pid)

    def _act_on_stop(self, pid: int) -> float | None:
        """SIGTERM once a stop is seen, SIGKILL at the deadline. Returns the deadline, if any."""
        self._check_lease(pid)
        if not (self.signalled or self.stopping or os.path.exists(self.deadline_file)):
            return None
        deadline = read_deadline(self.deadline_file)
        if deadline is None:
            return None
        if not self.stopping:
            self.stopping = True
            say(f"stop requested: SIGTERM sent, deadline in {deadline - time.time():.1f} s")
            kill_group(pid, signal.SIGTERM)
        if not self.killed and time.time() >= deadline:
            self.killed = True
            say("still running at the deadline: SIGKILL sent")
            self._kill(pid)
        return deadline

    def _kill(self, pid: int, container: bool = True) -> None:
        """SIGKILL to the worker's group, then `<runtime> rm --force --time 0 NAME`."""
        kill_group(pid, signal.SIGKILL)
        if container and self.container:
            argv = [self.argv[0], "rm", "--force", "--ignore", "--time", "0", self.container]
            try:
                os.waitpid(os.posix_spawnp(argv[0], argv, os.environ), 0)
            except OSError:
                say(f"cannot run {argv[0]} rm: {self.container} may still run")

    def _note_log_size(self) -> bool:
        """Append (size, now) to log-times when the log grew since the last look; whether it
        grew. A stdout that is not a file (a pipe, a terminal) has no size: nothing noted."""
        try:
            info = os.fstat(1)
        except OSError:
            return False
        if not stat_is_file(info.st_mode) or info.st_size <= self._log_size:
            return False
        self._log_size = info.st_size
        try:
            fd = os.open(self._record(LOG_TIMES), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, f"{info.st_size} {time.time():.6f}\n".encode())
            finally:
                os.close(fd)
        except OSError:  # a full disk loses times, never the worker
            pass
        return True

    def _finish(self, code: int | None, *, stopped: bool, reason: str, message: str) -> int:
        self._note_log_size()
        write_json_atomic(self._record(EXIT_RECORD), {
            "exit_code": code, "finished_at": time.time(), "stopped": stopped,
            "reason": reason, "message": message,
        })
        if code is None:
            return 0
        return 128 - code if code < 0 else code


USAGE = ("usage: local_runner --record-dir DIR --deadline-file FILE [--cwd DIR] [--uid UID] "
         "[--gid GID] [--lease-file FILE] [--lease-seconds S] [--setup-file FILE] "
         "[--container NAME] -- PROGRAM [ARG ...]")
_OPTIONS = {"--record-dir": str, "--deadline-file": str, "--cwd": str, "--uid": int, "--gid": int,
            "--lease-file": str, "--lease-seconds": float, "--setup-file": str, "--container": str}


class UsageError(Exception):
    pass


def parse_args(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The options and the worker's command. Written out rather than `argparse` (~10 ms per
    start) for this one fixed command line: ``--name value`` or ``--name=value``, then the
    command (after ``--``, or from the first word that is not an option)."""
    options: dict[str, Any] = {"--cwd": None, "--uid": None, "--gid": None,
                               "--lease-file": None, "--lease-seconds": 30.0,
                               "--setup-file": None, "--container": None}
    i = 0
    while i < len(args) and args[i].startswith("--"):
        word = args[i]
        if word == "--":
            i += 1
            break
        name, eq, value = word.partition("=")
        if name not in _OPTIONS:
            raise UsageError(f"unknown option {name} (options: {', '.join(_OPTIONS)})")
        if not eq:
            if i + 1 >= len(args):
                raise UsageError(f"{name} needs a value")
            i, value = i + 1, args[i + 1]
        try:
            options[name] = _OPTIONS[name](value)
        except ValueError:
            raise UsageError(f"{name}: {value!r} is not a {_OPTIONS[name].__name__}") from None
        i += 1
    for required in ("--record-dir", "--deadline-file"):
        if required not in options:
            raise UsageError(f"{required} is required")
    if i >= len(args):
        raise UsageError("give the worker's command after --")
    return options, args[i:]


def main(args: list[str] | None = None) -> int:
    try:
        options, argv = parse_args(sys.argv[1:] if args is None else args)
    except UsageError as e:
        print(f"{USAGE}\nlocal_runner: error: {e}", file=sys.stderr)
        return 2
    record_dir = options["--record-dir"]
    os.makedirs(record_dir, exist_ok=True)
    uid, gid = options["--uid"], options["--gid"]
    user = None if uid is None else (uid, gid if gid is not None else uid)
    lease_file = options["--lease-file"]
    lease = None if lease_file is None else (lease_file, options["--lease-seconds"])
    return Runner(record_dir, options["--deadline-file"], argv, options["--cwd"] or None, user,
                  lease, options["--setup-file"], options["--container"]).run()


if __name__ == "__main__":
    sys.exit(main())
