"""The one interface through which corral runs work: launch, stop, poll, release.

The control loop turns each Placement of a Plan into a `LaunchSpec` and calls `Backend.launch`;
each Eviction into `Backend.stop`; and every cycle it calls `Backend.poll` to learn what ran, ended
or vanished. The interface is transport-style (after httpx's transports): four verbs, value types
in and out, no callbacks, no threads required of the caller. It is engine-neutral: the same types
serve local processes, Ray actors, Slurm steps and Kubernetes pods, so nothing here names a pid,
a host or a signal number. Two optional capabilities sit beside it as mixins (after SkyPilot's
capability classes): `InventorySource` (the backend also says which nodes it offers) and
`LogSource` (it can hand back a worker's output incrementally).

Identity: a launch is named by (workload_id, attempt). `attempt` is 0 for the first launch of a
workload and grows by one with every relaunch (after a failure, a preemption or a move), so a
restarted workload never collides with the remains of its previous attempt.

Time: `poll(now)` takes the caller's clock (unix seconds in the control plane, simulated seconds
in tests). Everything a status carries is on that scale: `observed_at` is `now`; `finished_at` is
the moment the backend knows the worker ended, never later than `now`. A preemption deadline, by
contrast, is on the wall clock of the machine that runs the worker, because the worker reads it
(see `corral.backends.environment`).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from corral.backends.environment import RESERVED
from corral.backends.errors import InvalidLaunchSpec
from corral.core.model import Node, WorkerAssignment

__all__ = [
    "SHELL",
    "Backend",
    "InventorySource",
    "LaunchSpec",
    "LogSource",
    "WorkerState",
    "WorkerStatus",
]

SHELL: Final = ("/bin/sh", "-c")  # what `shell: true` runs the command string with


class WorkerState(enum.StrEnum):
    """Where one worker of one attempt stands.

    STOPPED is kept apart from FAILED and SUCCEEDED because a preempted worker's exit code says
    nothing about the job: exit 0 after SIGTERM means "checkpointed in time", not "done".
    """

    STARTING = "starting"  # launched; the engine has not started the process yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # exited 0, no stop requested
    FAILED = "failed"  # exited non-zero or by a signal, no stop requested
    STOPPED = "stopped"  # ended after stop() was requested, whatever the exit code
    LOST = "lost"  # the process or its node vanished and its exit code is unknown

    @property
    def ended(self) -> bool:
        return self not in (WorkerState.STARTING, WorkerState.RUNNING)


# Reason codes of a WorkerStatus. Stable: the control plane and users match on them.
STARTING: Final = "Starting"
RUNNING: Final = "Running"
EXITED: Final = "Exited"  # SUCCEEDED or FAILED with an exit status
KILLED_BY_SIGNAL: Final = "KilledBySignal"  # FAILED: a signal nobody in corral sent (OOM killer?)
COMMAND_NOT_FOUND: Final = "CommandNotFound"  # FAILED: the program could not be executed
STOPPED_IN_TIME: Final = "StoppedInTime"  # STOPPED: ended before its deadline
KILLED_AFTER_GRACE: Final = "KilledAfterGrace"  # STOPPED: still alive at the deadline: SIGKILL
STOPPED_BEFORE_START: Final = "StoppedBeforeStart"  # STOPPED: stop came before the process ran
PROCESS_GONE: Final = "ProcessGone"  # LOST: gone without recording an exit code
NODE_LOST: Final = "NodeLost"  # LOST: its node is gone
MACHINE_REBOOTED: Final = "MachineRebooted"  # LOST: the machine restarted under it
LAUNCH_INTERRUPTED: Final = "LaunchInterrupted"  # LOST: the control plane died mid-launch
SETUP_FAILED: Final = "SetupFailed"  # FAILED: the spec's setup exited non-zero (its code)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """What `poll` knows about one worker of one attempt.

    exit_code: the process exit status when it ended by exiting, minus the signal number when a
    signal ended it (Python's subprocess convention: -9 for SIGKILL), None when unknown.
    """

    workload_id: str
    attempt: int
    worker: int
    node_id: str
    state: WorkerState
    reason: str
    observed_at: float
    exit_code: int | None = None
    finished_at: float | None = None
    message: str = ""


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a backend needs to start the workers of one attempt of one workload.

    command: an argument vector (run as is, no shell), or, only when `shell` is true, one command
    string run by /bin/sh -c. env: the user's variables; names corral sets itself are refused
    (see `corral.backends.environment.RESERVED`). restart_count: relaunches after failures (what a
    retry limit counts); attempt also counts relaunches after preemptions and moves. resume_from:
    the checkpoint to resume from, None on a fresh start. log_dir: where worker logs go; None lets
    the backend choose.

    secret_env: the values of the spec's secret references (`corral.spec.packaging`), resolved
    at launch; kept apart from env so that nothing prints them (it is left out of repr) and a
    store that keeps launch records can seal them (`corral.store.agents`). setup: shell lines
    run before the command on every worker (non-zero: the worker FAILED with reason
    SetupFailed, the command never started). workdir: a directory copied into the attempt's
    directory (`corral.backends.workdir`), the command's cwd unless working_dir is set. image:
    the container image; a backend that cannot run one refuses the launch (InvalidLaunchSpec
    naming image), it never runs the command without it. volumes: the spec's volumes as
    mappings ({name, mount, host_path, claim, read_only}); shm_mib: Kubernetes' /dev/shm size.
    """

    workload_id: str
    attempt: int
    queue: str
    assignments: tuple[WorkerAssignment, ...]
    command: tuple[str, ...] | str
    shell: bool = False
    user: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    checkpoint_dir: str | None = None
    resume_from: str | None = None
    log_dir: str | None = None
    restart_count: int = 0
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    setup: str | None = None
    workdir: str | None = None
    image: str | None = None
    volumes: tuple[Mapping[str, Any], ...] = ()
    shm_mib: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.command, str):
            object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "assignments", tuple(self.assignments))
        object.__setattr__(self, "env", dict(self.env))
        _check_identity(self)
        _check_command(self)
        _check_assignments(self.assignments)
        _check_env(self.env)
        object.__setattr__(self, "secret_env", dict(self.secret_env))
        object.__setattr__(self, "volumes", tuple(dict(v) for v in self.volumes))
        _check_env(self.secret_env)
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise InvalidLaunchSpec("env", f"{both} are given both as values and as secrets")

    @property
    def workers(self) -> int:
        return len(self.assignments)

    def argv(self) -> tuple[str, ...]:
        """The argument vector to execute."""
        if isinstance(self.command, str):
            return (*SHELL, self.command)
        return self.command

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready form, stable across versions; `from_record` reads it back."""
        return {
            "workload_id": self.workload_id,
            "attempt": self.attempt,
            "queue": self.queue,
            "assignments": [
                {"worker": a.worker, "node_id": a.node_id, "devices": list(a.devices),
                 "milli_per_device": a.milli_per_device,
                 "gpu_memory_mib_per_device": a.gpu_memory_mib_per_device}
                for a in self.assignments
            ],
            "command": self.command if isinstance(self.command, str) else list(self.command),
            "shell": self.shell,
            "user": self.user,
            "env": dict(sorted(self.env.items())),
            "working_dir": self.working_dir,
            "checkpoint_dir": self.checkpoint_dir,
            "resume_from": self.resume_from,
            "log_dir": self.log_dir,
            "restart_count": self.restart_count,
            "secret_env": dict(sorted(self.secret_env.items())),
            "setup": self.setup,
            "workdir": self.workdir,
            "image": self.image,
            "volumes": [dict(v) for v in self.volumes],
            "shm_mib": self.shm_mib,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LaunchSpec:
        fields = dict(record)
        fields["assignments"] = tuple(
            WorkerAssignment(**{**a, "devices": tuple(a["devices"])}) for a in record["assignments"]
        )
        return cls(**fields)


def _check_identity(spec: LaunchSpec) -> None:
    if not spec.workload_id or not isinstance(spec.workload_id, str):
        raise InvalidLaunchSpec("workload_id", "must be a non-empty string")
    if not isinstance(spec.attempt, int) or spec.attempt < 0:
        raise InvalidLaunchSpec("attempt", f"must be an integer >= 0, got {spec.attempt!r}")
    if not isinstance(spec.restart_count, int) or not 0 <= spec.restart_count <= spec.attempt:
        raise InvalidLaunchSpec(
            "restart_count", f"must be between 0 and attempt ({spec.attempt}), "
            f"got {spec.restart_count!r}")


def _check_command(spec: LaunchSpec) -> None:
    if spec.shell:
        if not isinstance(spec.command, str) or not spec.command.strip():
            raise InvalidLaunchSpec(
                "command", "with shell: true the command must be one non-empty string")
        return
    if isinstance(spec.command, str):
        raise InvalidLaunchSpec(
            "command", f"is a string ({spec.command!r}) but shell is false: pass a list of "
            "arguments, or set shell: true to run it through /bin/sh")
    if not spec.command or not all(isinstance(a, str) for a in spec.command):
        raise InvalidLaunchSpec("command", "must be a non-empty list of strings")
    if not spec.command[0]:
        raise InvalidLaunchSpec("command", "the program (first argument) is empty")


def _check_assignments(assignments: tuple[WorkerAssignment, ...]) -> None:
    if not assignments:
        raise InvalidLaunchSpec("assignments", "a launch needs at least one worker")
    indices = sorted(a.worker for a in assignments)
    if indices != list(range(len(assignments))):
        raise InvalidLaunchSpec(
            "assignments", f"worker indices must be 0..{len(assignments) - 1}, each once; "
            f"got {indices}")
    for a in assignments:
        if len(set(a.devices)) != len(a.devices) or any(d < 0 for d in a.devices):
            raise InvalidLaunchSpec(
                "assignments", f"worker {a.worker}: devices must be distinct indices >= 0, "
                f"got {list(a.devices)}")


def _check_env(env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise InvalidLaunchSpec("env", f"{name!r} is not a valid variable name")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidLaunchSpec("env", f"{name}: value must be a string without NUL bytes")
        if name in RESERVED:
            raise InvalidLaunchSpec(
                "env", f"{name} is set by corral itself (see the environment contract): "
                "remove it from env")


class Backend(abc.ABC):
    """Runs the workers of workload attempts on nodes the core chose.

    One instance serves one control plane (the scheduler leader). Calls come from one thread,
    except where `concurrent_launch` says otherwise. A new instance over the same persistent
    state (after a control-plane restart) must see what the old one started: `poll` re-adopts
    it.
    """

    name: str = "backend"
    #: True when `launch`/`launch_many` may run on other threads while `poll`, `stop` and
    #: `release` run on the loop's (`corral.control.act.LaunchPool`). Such a backend reports
    #: an attempt whose launch is still under way as STARTING, and never judges it ended
    #: before its launch returned.
    concurrent_launch: bool = False

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> None:
        """Start every worker of the attempt (a gang) where `spec.assignments` say.

        Returns once the launch is handed to the engine; it does not wait for the workers to
        run (`poll` reports STARTING, then RUNNING). Idempotent per (workload_id, attempt): a
        second call with an equal spec does nothing, even after a restart and even if the
        workers have since ended; with a different spec it raises LaunchConflict. Gang
        semantics: on LaunchError no worker of the attempt is left running. Raises
        InvalidLaunchSpec when the spec cannot run here (unknown node, missing directory).
        The caller stops older attempts of the workload first; the backend does not.
        """

    @abc.abstractmethod
    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        """Ask every worker of the attempt to stop within `grace_seconds`: the preemption contract.

        In order: the deadline (unix seconds on the worker's machine) becomes readable at
        CORRAL_PREEMPT_DEADLINE_FILE, then each worker gets SIGTERM, then whatever still runs at
        the deadline gets SIGKILL. Returns without waiting; `poll` reports STOPPED (with
        `reason` in the message) once each worker has ended. Idempotent: a repeated call never
        signals twice and never extends the deadline, though a shorter grace brings it forward.
        A no-op for attempts that already ended or were never launched here.
        """

    @abc.abstractmethod
    def poll(self, now: float) -> list[WorkerStatus]:
        """Report every worker of every attempt launched and not yet released.

        `now` is the caller's clock. Ended workers keep being reported (with the same state)
        until `release`, so a control plane that missed an end learns it on its next poll,
        including ends that happened while no control plane was running.
        """

    @abc.abstractmethod
    def release(self, workload_id: str, attempt: int) -> None:
        """Forget an attempt whose workers have all ended: `poll` stops reporting it.

        The caller releases after it has recorded the final states. Logs stay readable.
        Raises AttemptStillRunning if a worker has not ended. Idempotent; a no-op for an
        attempt this backend never launched.
        """


class InventorySource(abc.ABC):
    """Capability: the backend also defines (part of) the pool."""

    @abc.abstractmethod
    def inventory(self) -> list[Node]:
        """The nodes this backend can run work on, as it sees them now (health included)."""


class LogSource(abc.ABC):
    """Capability: the backend can return a worker's output incrementally (for `logs -f`)."""

    @abc.abstractmethod
    def read_logs(
        self, workload_id: str, worker: int, offset: int = 0, *,
        attempt: int | None = None, max_bytes: int = 65536,
    ) -> tuple[bytes, int]:
        """Return up to `max_bytes` of the worker's log from byte `offset`, and the next offset.

        attempt None means the latest attempt launched here. Returns (b"", offset) when nothing
        new was written. Raises UnknownAttempt for an unknown workload, attempt or worker.
        """
