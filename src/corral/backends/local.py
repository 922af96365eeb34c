"""The local backend: every worker is a process on this machine.

All nodes of its inventory are this machine: the GPUs NVML reports (one node), or a declared
virtual inventory (say 2 nodes x 4 GPUs) on a machine without GPUs, where CUDA_VISIBLE_DEVICES then
names devices that do not exist, which is harmless for CPU-only test workloads. A node's devices
are handed out in its vendor's variables (`corral.backends.accelerators.node_vendor`: ROCm's on
an AMD node, and so on; never CUDA_VISIBLE_DEVICES there).

Layout of the work dir (one LocalBackend per work dir at a time)::

    <work>/<workload>/<attempt>/launch.json        the spec, master port (written before spawning)
    <work>/<workload>/<attempt>/stop.json          the stop request: reason, deadline
    <work>/<workload>/<attempt>/preempt-deadline   CORRAL_PREEMPT_DEADLINE_FILE (after a stop)
    <work>/<workload>/<attempt>/released           release() was called
    <work>/<workload>/<attempt>/worker-<i>/        the runner's records (see local_runner)
    <work>/<workload>/<attempt>/worker-<i>.log     stdout and stderr (unless the spec's log_dir)
    <work>/<workload>/<attempt>/setup.sh           the spec's setup lines, run by each runner first
    <work>/<workload>/<attempt>/workdir/           the spec's workdir, copied (the command's cwd)
    <work>/<workload>/<attempt>/progress-<i>/progress.json  CORRAL_PROGRESS_FILE (the worker's)

Each worker runs under `local_runner` in its own session, so the processes survive the control
plane; a new LocalBackend over the same work dir re-adopts them from these records. Deadlines are
on this machine's wall clock (`time.time()`), because the worker reads them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from corral.backends import base, local_runner
from corral.backends.accelerators import Vendor, vendors_by_node
from corral.backends.base import (
    Backend,
    InventorySource,
    LaunchSpec,
    LogSource,
    WorkerState,
    WorkerStatus,
)
from corral.backends.containers import ContainerRuntime, container_worker, detect_runtime, log_note
from corral.backends.environment import RESERVED, format_deadline, worker_environment
from corral.backends.errors import (
    AttemptStillRunning,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchConflict,
    LaunchError,
    UnknownAttempt,
)
from corral.backends.local_checks import SAFE_ID, check_spec
from corral.backends.local_nodes import detect_node, virtual_nodes
from corral.backends.local_runner import (
    CHILD_RECORD,
    EXIT_RECORD,
    RUNNER_RECORD,
    SPAWN_RECORD,
    ProcessIdentity,
    is_alive,
    kill_group,
    read_identity,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from corral.backends.log_times import line_times, read_samples
from corral.backends.progress import Progress, progress_path, read_progress_file
from corral.backends.workdir import WORKDIR_COPY, ArchiveSource, copy_workdir
from corral.backends.worker_users import WorkerUsers
from corral.core.model import Node, WorkerAssignment

__all__ = ["LocalBackend", "virtual_nodes"]

LAUNCH_RECORD: Final = "launch.json"
STOP_RECORD: Final = "stop.json"
DEADLINE_FILE: Final = "preempt-deadline"
SETUP_FILE: Final = "setup.sh"
RELEASED_MARK: Final = "released"
LOOPBACK: Final = "127.0.0.1"
RECORD_VERSION: Final = 1  # of launch.json; a record of another version is not adopted
_DIR_MODE: Final = 0o711  # with worker users: traversable by them, not listable

Key = tuple[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class _Attempt:
    spec: LaunchSpec
    dir: Path
    log_dir: Path
    master_port: int
    master_addr: str = LOOPBACK


class LocalBackend(Backend, InventorySource, LogSource):
    """Runs workers as processes of this machine. See the module docstring for the layout.

    nodes: a declared (virtual) inventory; None detects this machine's GPUs through NVML (one
    node named `node_id`, default the host name; with no NVML, a node with no GPUs).
    inherit_env: workers start from this process's environment minus corral's own variables
    (CORRAL_* and CUDA_VISIBLE_DEVICES), as Slurm's default --export=ALL does; False gives them
    only PATH, HOME, LANG and the like.
    kill_slack_seconds: if a worker still runs this long after its deadline (its runner is hung
    or gone), `poll` kills its process groups itself.
    worker_users: run each worker as its queue's OS user (`corral.backends.worker_users`; needs
    root); None runs workers as this process's user. Either way logs and launch records are
    0600, readable by corral only; with worker users the work dir's folders are 0711 (no
    listing) so that a worker reaches its deadline file, and the checkpoint dirs corral
    creates belong to the worker's user.

    For `corral agent` (one host of a gang that spans hosts): remote_workers lets a spec place
    workers on nodes this backend does not have; only the workers on its own nodes run (and are
    reported) here. rendezvous gives the gang's (CORRAL_MASTER_ADDR, CORRAL_MASTER_PORT) instead
    of the loopback and a free port. lease (file, seconds) goes to every runner: the worker is
    killed once the file is that old (`local_runner`, "Lease").
    """

    name = "local"
    #: where an uploaded workdir (`sha256:<hex>`) is found on this host; None: refused at
    #: launch (the agent sets one that fetches from the server: corral.agent.workdirs)
    workdir_archives: ArchiveSource | None = None

    def __init__(
        self, work_dir: str | os.PathLike[str], *, nodes: Sequence[Node] | None = None,
        node_id: str | None = None, inherit_env: bool = True, kill_slack_seconds: float = 5.0,
        python: str | None = None, worker_users: WorkerUsers | None = None,
        remote_workers: bool = False,
        rendezvous: Callable[[LaunchSpec], tuple[str, int]] | None = None,
        lease: tuple[Path, float] | None = None,
        containers: ContainerRuntime | Literal["detect"] | None = "detect",
    ) -> None:
        self.remote_workers, self.rendezvous, self.lease = remote_workers, rendezvous, lease
        #: what runs `image:` specs (`corral.backends.containers`); None: they are refused
        self.containers = detect_runtime() if containers == "detect" else containers
        self.work_dir = Path(work_dir).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.worker_users = worker_users
        os.chmod(self.work_dir, _DIR_MODE if worker_users is not None else 0o700)
        self._nodes = list(nodes) if nodes is not None else [detect_node(node_id)]
        self._vendors = vendors_by_node(self._nodes)
        self.inherit_env = inherit_env
        self.kill_slack_seconds = kill_slack_seconds
        self.python = python or sys.executable
        self.unreadable_records: list[Path] = []  # launch records found but not adopted
        self._attempts: dict[Key, _Attempt] = dict(self._scan())
        self._spawned: dict[tuple[str, int, int], int] = {}  # runner pids to reap
        self._ended: dict[tuple[str, int, int], WorkerStatus] = {}

    @property
    def packaging_fields(self) -> frozenset[str]:
        """What `corral.control.packaging` may accept: image only with a container runtime."""
        return frozenset({"setup", "workdir"} | ({"image"} if self.containers else set()))

    # --- Backend -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        self._check_spec(spec)
        key = (spec.workload_id, spec.attempt)
        adir = self.work_dir / spec.workload_id / str(spec.attempt)
        known = self._load(adir) if (adir / LAUNCH_RECORD).exists() else None
        if (adir / LAUNCH_RECORD).exists() and known is None:
            raise LaunchConflict(
                f"{adir / LAUNCH_RECORD} exists but cannot be read: relaunch with a new attempt "
                "number")
        if known is not None:
            if known.spec != spec:
                raise LaunchConflict(
                    f"{spec.workload_id} attempt {spec.attempt} was launched with another spec: "
                    "relaunch with a new attempt number")
            return
        attempt = self._record_launch(spec, adir)
        self._attempts[key] = attempt
        started: list[int] = []
        try:
            for a in self._here(spec):
                self._spawn(attempt, a.worker)
                started.append(a.worker)
        except OSError as e:
            self.stop(spec.workload_id, spec.attempt, 0.0, f"launch failed: {e}")
            raise LaunchError(
                f"{spec.workload_id} attempt {spec.attempt}: could not start worker "
                f"{len(started)}: {e}; the started workers were stopped; relaunch with a new "
                "attempt") from e

    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        if grace_seconds < 0:
            raise InvalidRequest("grace_seconds", f"must be >= 0, got {grace_seconds}")
        record = self._attempts.get((workload_id, attempt))
        if record is None or all((record.dir / f"worker-{a.worker}" / EXIT_RECORD).exists()
                                 for a in self._here(record.spec)):
            return
        deadline = time.time() + grace_seconds
        previous = read_json(record.dir / STOP_RECORD)
        if previous is not None and previous["deadline"] <= deadline:
            return
        write_json_atomic(record.dir / STOP_RECORD, {
            "reason": previous["reason"] if previous else reason,
            "deadline": deadline, "requested_at": time.time(),
        })
        # Deadline first, signal second: the order the contract promises the worker.
        write_text_atomic(record.dir / DEADLINE_FILE, format_deadline(deadline), mode=0o644)
        for a in self._here(record.spec):
            runner = read_identity(record.dir / f"worker-{a.worker}" / RUNNER_RECORD)
            if runner is not None and is_alive(runner):
                _signal(runner.pid, signal.SIGTERM)  # wakes the runner; it signals the worker

    def poll(self, now: float) -> list[WorkerStatus]:
        self._reap()
        return [s for key in sorted(self._attempts)
                for s in self._attempt_statuses(self._attempts[key], now)]

    def release(self, workload_id: str, attempt: int) -> None:
        record = self._attempts.get((workload_id, attempt))
        if record is None:
            return
        self._reap()
        statuses = self._attempt_statuses(record, time.time())
        running = [s.worker for s in statuses if not s.state.ended]
        if running:
            raise AttemptStillRunning(
                f"{workload_id} attempt {attempt}: workers {running} have not ended; stop first")
        (record.dir / RELEASED_MARK).touch()
        del self._attempts[(workload_id, attempt)]
        for s in statuses:
            self._ended.pop((workload_id, attempt, s.worker), None)

    def launched(self) -> list[tuple[str, int]]:
        """Every (workload, attempt) launched here and not released, in order."""
        return sorted(self._attempts)

    # --- capabilities --------------------------------------------------------------------------

    def inventory(self) -> list[Node]:
        return list(self._nodes)

    def read_logs(
        self, workload_id: str, worker: int, offset: int = 0, *,
        attempt: int | None = None, max_bytes: int = 65536,
    ) -> tuple[bytes, int]:
        if offset < 0 or max_bytes <= 0:
            raise InvalidRequest("offset", "offset must be >= 0 and max_bytes > 0")
        record = self._find_attempt(workload_id, attempt)
        if not any(a.worker == worker for a in record.spec.assignments):
            raise UnknownAttempt(
                f"{workload_id} attempt {record.spec.attempt} has no worker {worker}")
        try:
            with open(record.log_dir / f"worker-{worker}.log", "rb") as f:
                f.seek(offset)
                chunk = f.read(max_bytes)
        except FileNotFoundError:
            return b"", offset
        return chunk, offset + len(chunk)

    def log_line_times(self, workload_id: str, worker: int, offset: int, data: bytes, *,
                       attempt: int | None = None) -> list[float | None]:
        """When each line of `data` (read from `offset` of the worker's log) was written, from
        its runner's samples (`corral.backends.log_times`); None for a line not seen yet."""
        record = self._find_attempt(workload_id, attempt)
        samples = read_samples(record.dir / f"worker-{worker}" / local_runner.LOG_TIMES)
        return line_times(data, offset, samples)

    def log_path(self, workload_id: str, worker: int, attempt: int | None = None) -> Path:
        """Where a worker's log file is (it may not exist yet)."""
        return self._find_attempt(workload_id, attempt).log_dir / f"worker-{worker}.log"

    # --- launching -----------------------------------------------------------------------------

    def _check_spec(self, spec: LaunchSpec) -> None:
        """What launch would refuse, refused before anything is written
        (`corral.backends.local_checks`)."""
        check_spec(spec, self._nodes, remote_workers=self.remote_workers,
                   default_path=self._base_env().get("PATH", os.defpath),
                   containers=self.containers)

    def _record_launch(self, spec: LaunchSpec, adir: Path) -> _Attempt:
        log_dir = Path(spec.log_dir).resolve() if spec.log_dir else adir
        try:
            adir.mkdir(parents=True, exist_ok=True)
            if self.worker_users is not None:  # the worker reaches its deadline file in adir
                os.chmod(adir.parent, _DIR_MODE)
                os.chmod(adir, _DIR_MODE)
            log_dir.mkdir(parents=True, exist_ok=True)
            if spec.checkpoint_dir:
                self._make_checkpoint_dir(Path(spec.checkpoint_dir), spec.queue)
            self._package(spec, adir)
        except OSError as e:
            raise InvalidLaunchSpec(
                "log_dir" if spec.log_dir and not log_dir.is_dir() else "checkpoint_dir",
                f"cannot create {e.filename}: {e.strerror}") from e
        master_addr, master_port = (
            self.rendezvous(spec) if self.rendezvous is not None else (LOOPBACK, _free_port()))
        write_json_atomic(adir / LAUNCH_RECORD, {
            "version": RECORD_VERSION, "spec": spec.as_record(), "master_port": master_port, "log_dir": str(log_dir),
            "launched_at": time.time(), "master_addr": master_addr,
        }, mode=0o600)  # it holds the spec's env, secrets included
        return _Attempt(spec, adir, log_dir, master_port, master_addr)

    def _package(self, spec: LaunchSpec, adir: Path) -> None:
        """The attempt's setup lines (read by each runner) and its copy of the workdir."""
        if spec.setup is not None:
            write_text_atomic(adir / SETUP_FILE, spec.setup, mode=0o600)
        if spec.workdir is not None:
            who = None if self.worker_users is None else self.worker_users.for_queue(spec.queue)
            copy_workdir(spec.workdir, adir, None if who is None else (who.uid, who.gid),
                         self.workdir_archives)

    def _make_checkpoint_dir(self, path: Path, queue: str) -> None:
        """Create it if missing. With worker users, a folder corral creates belongs to the
        worker's user (0700) and the parents it creates are 0711; an existing folder is left as
        it is (chowning one named in a spec, say /etc, would hand it to the job)."""
        if self.worker_users is None:
            path.mkdir(parents=True, exist_ok=True)
            return
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(parents=True, exist_ok=True)
        for parent in missing[1:]:
            os.chmod(parent, _DIR_MODE)
        if missing and missing[0] == path:
            who = self.worker_users.for_queue(queue)
            os.chown(path, who.uid, who.gid)
            os.chmod(path, 0o700)

    def worker_process(self, spec: LaunchSpec, worker: int, attempt_dir: Path,
                       master_port: int, master_addr: str = LOOPBACK,
                       ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of worker `worker`'s runner, as `os.posix_spawn` gets them
        (pure but for the worker user lookup; tests check every accepted spec builds here)."""
        assignment = next(a for a in spec.assignments if a.worker == worker)
        contract = worker_environment(
            spec, assignment, master_addr=master_addr, master_port=master_port,
            deadline_file=str(attempt_dir / DEADLINE_FILE),
            vendor=self._vendors.get(assignment.node_id, Vendor.NVIDIA),
            progress_file=str(progress_path(attempt_dir, worker)))
        env = {**self._base_env(), **contract}
        identity: list[str] = []
        who = None if self.worker_users is None else self.worker_users.for_queue(spec.queue)
        if who is not None:
            env.update(who.env())
            identity = ["--uid", str(who.uid), "--gid", str(who.gid)]
        package, command = self._package_args(spec, attempt_dir), ["--", *spec.argv()]
        if spec.image is not None:  # podman runs as corral, the container as the worker's user
            assert self.containers is not None  # else _check_spec refused the spec
            box = container_worker(self.containers, spec, assignment, contract, self.work_dir,
                                   attempt_dir, package[1], who)
            env.update(box.env)  # setup runs in the container (its prologue), not the runner
            identity, package = [], package[:2]
            command = ["--container", box.name, "--", *box.argv]
        argv = [*local_runner.runner_argv(self.python),
                "--record-dir", str(attempt_dir / f"worker-{worker}"),
                "--deadline-file", str(attempt_dir / DEADLINE_FILE), *identity, *self._lease_args(),
                *package, *command]
        return argv, env

    @staticmethod
    def _package_args(spec: LaunchSpec, attempt_dir: Path) -> list[str]:
        """The runner's cwd (working_dir, else the workdir's copy) and setup file."""
        cwd = spec.working_dir or (str(attempt_dir / WORKDIR_COPY) if spec.workdir else "")
        setup = ["--setup-file", str(attempt_dir / SETUP_FILE)] if spec.setup is not None else []
        return ["--cwd", cwd, *setup]

    def _spawn(self, record: _Attempt, worker: int) -> None:
        spec = record.spec
        wdir = record.dir / f"worker-{worker}"
        wdir.mkdir(exist_ok=True)
        self._make_progress_dir(record, worker)
        argv, env = self.worker_process(spec, worker, record.dir, record.master_port,
                                        record.master_addr)
        log = str(record.log_dir / f"worker-{worker}.log")
        if spec.image is not None and self.containers is not None:  # which GPUs it gets, first
            log_note(log, self.containers, spec, worker, self.work_dir)
        # posix_spawn, not Popen: the runner is meant to outlive this object (and this process),
        # which Popen reports as a leak. setsid: its own session, away from our signals.
        pid = os.posix_spawn(self.python, argv, env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            # opened here, as corral, and handed down: the worker writes its log through this
            # descriptor but cannot open it, or any other log, by path
            (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ])
        self._spawned[(spec.workload_id, spec.attempt, worker)] = pid
        local_runner.write_identity(wdir / SPAWN_RECORD, pid)

    def _make_progress_dir(self, record: _Attempt, worker: int) -> None:
        """The folder of the worker's CORRAL_PROGRESS_FILE: the worker writes a temporary file
        there and renames it over the last (the contract), so the folder is the worker's."""
        folder = progress_path(record.dir, worker).parent
        folder.mkdir(exist_ok=True)
        if self.worker_users is not None:
            who = self.worker_users.for_queue(record.spec.queue)
            os.chown(folder, who.uid, who.gid)

    def progress(self, workload_id: str, attempt: int) -> dict[int, Progress]:
        """What the workers of an attempt here last wrote to their CORRAL_PROGRESS_FILE, by
        worker; a worker that wrote nothing (or nothing that parses) is left out."""
        record = self._attempts.get((workload_id, attempt))
        if record is None:
            return {}
        out = {}
        for a in self._here(record.spec):
            found = read_progress_file(progress_path(record.dir, a.worker))
            if found is not None:
                out[a.worker] = found
        return out

    def _lease_args(self) -> list[str]:
        if self.lease is None:
            return []
        return ["--lease-file", str(self.lease[0]), "--lease-seconds", str(self.lease[1])]

    def _here(self, spec: LaunchSpec) -> list[WorkerAssignment]:
        """The workers of `spec` placed on this backend's nodes, by index (all of them unless
        remote_workers: `_check_spec` refuses unknown nodes otherwise)."""
        mine = {n.id for n in self._nodes}
        return sorted((a for a in spec.assignments if a.node_id in mine), key=lambda a: a.worker)

    def _base_env(self) -> dict[str, str]:
        source: Mapping[str, str] = os.environ
        if not self.inherit_env:
            keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")
            source = {k: v for k, v in os.environ.items() if k in keep}
        env = {k: v for k, v in source.items()
               if not k.startswith("CORRAL_") and k not in RESERVED}
        # `python` in a worker's command means the environment corral itself runs in (which has
        # numpy and corral), not whatever a bare PATH finds first: its bin dir goes first.
        bin_dir = str(Path(self.python).parent)
        path = env.get("PATH", os.defpath)
        if bin_dir not in path.split(os.pathsep):
            env["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir
        return env

    # --- observing -----------------------------------------------------------------------------

    def _attempt_statuses(self, record: _Attempt, now: float) -> list[WorkerStatus]:
        return [self._worker_status(record, a.worker, a.node_id, now)
                for a in self._here(record.spec)]

    def _worker_status(self, record: _Attempt, worker: int, node_id: str, now: float
                       ) -> WorkerStatus:
        key = (record.spec.workload_id, record.spec.attempt, worker)
        ended = self._ended.get(key)
        if ended is not None:
            return dataclasses.replace(ended, observed_at=now)
        fields = self._observe(record, worker)
        status = WorkerStatus(
            workload_id=key[0], attempt=key[1], worker=worker, node_id=node_id,
            observed_at=now, **fields)
        if status.state.ended:
            finished = fields.get("finished_at")
            status = dataclasses.replace(
                status, finished_at=now if finished is None else min(finished, now))
            self._ended[key] = status
        return status

    def _observe(self, record: _Attempt, worker: int) -> dict[str, Any]:
        wdir = record.dir / f"worker-{worker}"
        runner = read_identity(wdir / RUNNER_RECORD) or read_identity(wdir / SPAWN_RECORD)
        # Liveness before the exit record: the runner writes exit.json and then exits, so a
        # dead runner without exit.json really died without recording.
        if runner is not None and is_alive(runner):
            self._enforce_deadline(record, wdir, runner)
            if read_json(wdir / EXIT_RECORD) is None:
                started = (wdir / CHILD_RECORD).exists()
                return {"state": WorkerState.RUNNING if started else WorkerState.STARTING,
                        "reason": base.RUNNING if started else base.STARTING}
        exit_record = read_json(wdir / EXIT_RECORD)
        if exit_record is not None:
            return self._ended_fields(record, exit_record)
        return self._lost_fields(wdir, runner)

    def _ended_fields(self, record: _Attempt, exit_record: dict[str, Any]) -> dict[str, Any]:
        code = exit_record.get("exit_code")
        reason = exit_record.get("reason") or ""
        fields: dict[str, Any] = {"exit_code": code, "finished_at": exit_record.get("finished_at"),
                                  "message": exit_record.get("message") or ""}
        if exit_record.get("stopped"):
            stop_reason = (read_json(record.dir / STOP_RECORD) or {}).get("reason", "")
            detail = fields["message"]
            message = f"{stop_reason} ({detail})" if stop_reason and detail else (
                stop_reason or detail)
            return {**fields, "state": WorkerState.STOPPED,
                    "reason": reason or base.STOPPED_IN_TIME, "message": message}
        if reason in (base.COMMAND_NOT_FOUND, base.SETUP_FAILED):
            return {**fields, "state": WorkerState.FAILED, "reason": reason}
        if code == 0:
            return {**fields, "state": WorkerState.SUCCEEDED, "reason": base.EXITED}
        signalled = code is not None and code < 0
        return {**fields, "state": WorkerState.FAILED,
                "reason": base.KILLED_BY_SIGNAL if signalled else base.EXITED}

    def _lost_fields(self, wdir: Path, runner: ProcessIdentity | None) -> dict[str, Any]:
        if runner is None:
            return {"state": WorkerState.LOST, "reason": base.LAUNCH_INTERRUPTED,
                    "message": "no record of the worker's process: the control plane stopped "
                    "while launching it"}
        self._kill_worker_group(wdir)  # an orphan would hold its GPUs unseen
        current_boot = local_runner.boot_id()
        if runner.boot_id and current_boot and runner.boot_id != current_boot:
            return {"state": WorkerState.LOST, "reason": base.MACHINE_REBOOTED,
                    "message": "the machine restarted while the worker ran"}
        return {"state": WorkerState.LOST, "reason": base.PROCESS_GONE,
                "message": "the worker's supervisor died without recording an exit code "
                "(killed by the OOM killer or by hand?)"}

    def _enforce_deadline(self, record: _Attempt, wdir: Path, runner: ProcessIdentity) -> None:
        """Backstop for a hung runner: kill past the deadline plus the slack, record it."""
        stop = read_json(record.dir / STOP_RECORD)
        if stop is None or time.time() < stop["deadline"] + self.kill_slack_seconds:
            return
        self._kill_worker_group(wdir)
        kill_group(runner.pid, signal.SIGKILL)
        if read_json(wdir / EXIT_RECORD) is None:
            write_json_atomic(wdir / EXIT_RECORD, {
                "exit_code": -signal.SIGKILL, "finished_at": time.time(), "stopped": True,
                "reason": base.KILLED_AFTER_GRACE,
                "message": "the runner did not end the worker by its deadline; corral killed it",
            })

    def _reap(self) -> None:
        """Collect the exit of runners this instance started, so none lingers as a zombie."""
        for key, pid in list(self._spawned.items()):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done == pid:
                del self._spawned[key]

    @staticmethod
    def _kill_worker_group(wdir: Path) -> None:
        child = read_identity(wdir / CHILD_RECORD)
        if child is not None and is_alive(child):
            kill_group(child.pid, signal.SIGKILL)

    # --- records -------------------------------------------------------------------------------

    def _scan(self) -> Iterator[tuple[Key, _Attempt]]:
        for launch in sorted(self.work_dir.glob(f"*/*/{LAUNCH_RECORD}")):
            adir = launch.parent
            if (adir / RELEASED_MARK).exists():
                continue
            loaded = self._load(adir)
            if loaded is None:
                self.unreadable_records.append(launch)
            else:
                yield (loaded.spec.workload_id, loaded.spec.attempt), loaded

    @staticmethod
    def _load(adir: Path) -> _Attempt | None:
        """The attempt recorded in adir; None if its record is missing, torn or of another
        version (one bad folder must not keep the control plane from starting)."""
        data = read_json(adir / LAUNCH_RECORD)
        if data is None or data.get("version") != RECORD_VERSION:
            return None
        try:
            spec = LaunchSpec.from_record(data["spec"])
            return _Attempt(spec, adir, Path(data["log_dir"]), int(data["master_port"]),
                            str(data.get("master_addr", LOOPBACK)))
        except (KeyError, TypeError, ValueError):
            return None

    def _find_attempt(self, workload_id: str, attempt: int | None) -> _Attempt:
        if attempt is not None and (workload_id, attempt) in self._attempts:
            return self._attempts[(workload_id, attempt)]
        wdir = self.work_dir / workload_id
        if not SAFE_ID.fullmatch(workload_id) or not wdir.is_dir():
            raise UnknownAttempt(f"workload {workload_id!r} was never launched here")
        numbers = sorted(int(p.name) for p in wdir.iterdir()
                         if p.name.isdigit() and (p / LAUNCH_RECORD).exists())
        chosen = numbers[-1] if attempt is None and numbers else attempt
        loaded = self._load(wdir / str(chosen)) if chosen is not None else None
        if loaded is None:
            raise UnknownAttempt(f"workload {workload_id!r} has no attempt {attempt} here")
        return loaded


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _free_port() -> int:
    """A TCP port free now on the loopback (the rendezvous binds it later; a race is possible,
    as with torchrun's own free-port choice, and shows up as a failed rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port
