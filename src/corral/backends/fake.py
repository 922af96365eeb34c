"""An in-memory backend for tests and demos: deterministic, no threads, no sleeps, no clock.

`FakeWorld` plays the machines: it holds the "processes" and the nodes. `FakeBackend` is the view
a control plane has of it; two backends over one world behave like a control plane before and
after a restart (the second re-adopts what the first launched). Tests drive the world through the
backend's hooks: `start`, `finish`, `fail`, `ignore_stop`, `lose_node`, `fail_next_launch`,
`write_log`.

`poll_changes(now)` reports only the attempts that changed since this backend's last call (the
first call reports every attempt): the world logs every attempt its hooks and polls change
(`FakeWorld.changes`), so a control loop over 50,000 running workers pays for what moved, not for
all of them. Code that edits a `FakeWorker` directly must `FakeWorld.touch` its attempt.

Time only moves when `poll(now)` is called. Stop semantics, by default: a worker honours SIGTERM
and is STOPPED (exit 0, StoppedInTime) at the first poll after `stop`. A worker marked with
`ignore_stop` keeps running; the first poll after the stop starts its grace, and the first poll at
or after grace seconds later reports it STOPPED with exit -9 (KilledAfterGrace).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from corral.backends import base
from corral.backends.base import (
    Backend,
    InventorySource,
    LaunchSpec,
    LogSource,
    WorkerState,
    WorkerStatus,
)
from corral.backends.errors import (
    AttemptStillRunning,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchConflict,
    LaunchError,
    UnknownAttempt,
)
from corral.core.model import MILLI_PER_GPU, Health, Node, WorkerAssignment

__all__ = ["FakeBackend", "FakeWorker", "FakeWorld", "StopCall"]

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class StopCall:
    workload_id: str
    attempt: int
    grace_seconds: float
    reason: str


@dataclass
class FakeWorker:
    """One fake process. Mutable: it is the world's state, not a value handed out."""

    assignment: WorkerAssignment
    state: WorkerState = WorkerState.STARTING
    reason: str = base.STARTING
    exit_code: int | None = None
    finished_at: float | None = None
    message: str = ""
    honours_stop: bool = True
    stop_grace: float | None = None
    stop_reason: str = ""
    grace_started_at: float | None = None
    log: bytearray = field(default_factory=bytearray)


@dataclass
class FakeWorld:
    """The fake machines: nodes, and the workers of every attempt ever launched (by key)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    attempts: dict[Key, LaunchSpec] = field(default_factory=dict)
    workers: dict[Key, list[FakeWorker]] = field(default_factory=dict)
    released: set[Key] = field(default_factory=set)
    launch_failures: list[str] = field(default_factory=list)
    #: attempts in the order they changed (append-only; `poll_changes` keeps a place in it)
    changes: list[Key] = field(default_factory=list)
    #: attempts asked to stop that have live workers: a poll may end them as time passes
    stopping: set[Key] = field(default_factory=set)

    def touch(self, key: Key) -> None:
        """Log that the workers of `key` changed (the hooks do it; direct edits must)."""
        self.changes.append(key)


class FakeBackend(Backend, InventorySource, LogSource):
    """The fake. `launches` and `stops` record every call that changed something, in order.

    auto_start: launched workers are RUNNING at once (else STARTING until `start`).
    check_capacity: refuse (LaunchError) a launch that would put more than one GPU's worth of
    milli on a device among workers that have not ended, or name an unknown node or device; a
    test harness for the control plane turns it on to catch double-booking.
    """

    name = "fake"

    def __init__(
        self, nodes: list[Node] | tuple[Node, ...] = (), *, world: FakeWorld | None = None,
        auto_start: bool = True, check_capacity: bool = False,
    ) -> None:
        self.world = world if world is not None else FakeWorld()
        for node in nodes:
            self.world.nodes[node.id] = node
        self.auto_start = auto_start
        self.check_capacity = check_capacity
        self.launches: list[LaunchSpec] = []
        self.stops: list[StopCall] = []
        self._cursor: int | None = None  # place in `world.changes`; None: next call reports all

    # --- Backend -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        key = (spec.workload_id, spec.attempt)
        known = self.world.attempts.get(key)
        if known is not None:
            if known != spec:
                raise LaunchConflict(
                    f"{spec.workload_id} attempt {spec.attempt} was launched with another spec: "
                    "relaunch with a new attempt number")
            return
        if self.world.launch_failures:
            raise LaunchError(self.world.launch_failures.pop(0))
        if self.check_capacity:
            self._check_fits(spec)
        state = WorkerState.RUNNING if self.auto_start else WorkerState.STARTING
        reason = base.RUNNING if self.auto_start else base.STARTING
        self.world.attempts[key] = spec
        self.world.workers[key] = [
            FakeWorker(assignment=a, state=state, reason=reason)
            for a in sorted(spec.assignments, key=lambda a: a.worker)
        ]
        self.world.touch(key)
        self.launches.append(spec)

    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        if grace_seconds < 0:
            raise InvalidRequest("grace_seconds", f"must be >= 0, got {grace_seconds}")
        live = [w for w in self.world.workers.get((workload_id, attempt), []) if not w.state.ended]
        changed = False
        for w in live:
            if w.stop_grace is None or grace_seconds < w.stop_grace:
                changed = True
                w.stop_grace = grace_seconds
                w.stop_reason = w.stop_reason or reason
        if changed:
            self.world.stopping.add((workload_id, attempt))
            self.world.touch((workload_id, attempt))
            self.stops.append(StopCall(workload_id, attempt, grace_seconds, reason))

    def poll(self, now: float) -> list[WorkerStatus]:
        out: list[WorkerStatus] = []
        for key in sorted(self.world.workers):
            if key in self.world.released:
                continue
            self._advance_all(key, now)
            out.extend(_status(key, w, now) for w in self.world.workers[key])
        return out

    def poll_changes(self, now: float) -> tuple[list[WorkerStatus], list[Key], bool]:
        """What changed since this backend's last call: (the workers of every attempt that
        changed, the attempts released since, whether this is everything). The first call
        reports every attempt (`poll`) and says so; a caller keeps the last report of each
        attempt and replaces it with the new one."""
        if type(self).poll is not FakeBackend.poll:  # a test's own poll: report through it
            return self.poll(now), [], True
        world = self.world
        for key in sorted(world.stopping):  # time ends these: look at them every call
            self._advance_all(key, now)
        if self._cursor is None:
            everything = self.poll(now)
            self._cursor = len(world.changes)  # after the poll: what it advanced is reported
            return everything, [], True
        keys = sorted(set(world.changes[self._cursor:]))
        out: list[WorkerStatus] = []
        gone: list[Key] = []
        for key in keys:
            if key in world.released or key not in world.workers:
                gone.append(key)
                continue
            self._advance_all(key, now)
            out.extend(_status(key, w, now) for w in world.workers[key])
        self._cursor = len(world.changes)
        return out, gone, False

    def release(self, workload_id: str, attempt: int) -> None:
        key = (workload_id, attempt)
        workers = self.world.workers.get(key, [])
        running = [w.assignment.worker for w in workers if not w.state.ended]
        if running:
            raise AttemptStillRunning(
                f"{workload_id} attempt {attempt}: workers {running} have not ended; stop first")
        if key in self.world.workers:
            self.world.released.add(key)
            self.world.stopping.discard(key)
            self.world.touch(key)

    # --- capabilities --------------------------------------------------------------------------

    def inventory(self) -> list[Node]:
        return list(self.world.nodes.values())

    def read_logs(
        self, workload_id: str, worker: int, offset: int = 0, *,
        attempt: int | None = None, max_bytes: int = 65536,
    ) -> tuple[bytes, int]:
        log = self._worker(workload_id, attempt, worker).log
        chunk = bytes(log[offset:offset + max_bytes])
        return chunk, offset + len(chunk)

    # --- test hooks ----------------------------------------------------------------------------

    def start(self, workload_id: str, attempt: int | None = None) -> None:
        """Move STARTING workers of the attempt to RUNNING."""
        for w in self._workers(workload_id, attempt, None):
            if w.state == WorkerState.STARTING:
                w.state, w.reason = WorkerState.RUNNING, base.RUNNING
        self._touch(workload_id, attempt)

    def finish(
        self, workload_id: str, attempt: int | None = None, worker: int | None = None, *,
        exit_code: int = 0, at: float | None = None, message: str = "",
    ) -> None:
        """End workers (all by default) with `exit_code`; `at` None: the next poll's `now`."""
        for w in self._workers(workload_id, attempt, worker):
            if w.state.ended:
                continue
            w.exit_code, w.finished_at, w.message = exit_code, at, message
            if w.stop_grace is not None:
                w.state, w.reason = WorkerState.STOPPED, base.STOPPED_IN_TIME
                w.message = message or w.stop_reason
            elif exit_code == 0:
                w.state, w.reason = WorkerState.SUCCEEDED, base.EXITED
            else:
                w.state = WorkerState.FAILED
                w.reason = base.KILLED_BY_SIGNAL if exit_code < 0 else base.EXITED
        self._touch(workload_id, attempt)

    def fail(
        self, workload_id: str, attempt: int | None = None, worker: int | None = None, *,
        exit_code: int = 1, at: float | None = None, message: str = "",
    ) -> None:
        if exit_code == 0:
            raise ValueError("fail() needs a non-zero exit_code; use finish() for exit 0")
        self.finish(workload_id, attempt, worker, exit_code=exit_code, at=at, message=message)

    def ignore_stop(
        self, workload_id: str, attempt: int | None = None, worker: int | None = None,
    ) -> None:
        """These workers ignore SIGTERM and run until killed at their deadline."""
        for w in self._workers(workload_id, attempt, worker):
            w.honours_stop = False

    def lose_node(self, node_id: str, at: float | None = None) -> None:
        """The node vanishes: it leaves the inventory, its live workers become LOST."""
        self.world.nodes.pop(node_id, None)
        for key, workers in self.world.workers.items():
            for w in workers:
                if w.assignment.node_id == node_id and not w.state.ended:
                    w.state, w.reason, w.finished_at = WorkerState.LOST, base.NODE_LOST, at
                    w.message = f"node {node_id} is gone"
                    self.world.touch(key)

    def set_node_health(self, node_id: str, health: Health) -> None:
        self.world.nodes[node_id] = replace(self.world.nodes[node_id], health=health)

    def fail_next_launch(self, message: str = "injected launch failure") -> None:
        self.world.launch_failures.append(message)

    def write_log(
        self, workload_id: str, worker: int, data: bytes, attempt: int | None = None,
    ) -> None:
        self._worker(workload_id, attempt, worker).log.extend(data)

    def live_attempts(self) -> list[Key]:
        """(workload, attempt) pairs with at least one worker that has not ended."""
        return sorted(k for k, ws in self.world.workers.items()
                      if any(not w.state.ended for w in ws))

    # --- internals -----------------------------------------------------------------------------

    def _touch(self, workload_id: str, attempt: int | None) -> None:
        self.world.touch((workload_id, self._latest(workload_id) if attempt is None else attempt))

    def _advance_all(self, key: Key, now: float) -> None:
        """Advance the workers of `key` to `now`; log the attempt if any of them changed."""
        workers = self.world.workers.get(key, ())
        before = [(w.state, w.finished_at) for w in workers]
        for w in workers:
            self._advance(w, now)
        if any((w.state, w.finished_at) != b for w, b in zip(workers, before, strict=True)):
            self.world.touch(key)
        if all(w.state.ended for w in workers):
            self.world.stopping.discard(key)

    def _advance(self, w: FakeWorker, now: float) -> None:
        if w.state.ended:
            if w.finished_at is None or w.finished_at > now:
                w.finished_at = now
            return
        if w.stop_grace is None:
            return
        if w.state == WorkerState.STARTING:
            self._end_stopped(w, now, None, base.STOPPED_BEFORE_START)
        elif w.honours_stop:
            self._end_stopped(w, now, 0, base.STOPPED_IN_TIME)
        elif w.grace_started_at is None:
            w.grace_started_at = now
            if w.stop_grace <= 0:
                self._end_stopped(w, now, -9, base.KILLED_AFTER_GRACE)
        elif now >= w.grace_started_at + w.stop_grace:
            self._end_stopped(w, now, -9, base.KILLED_AFTER_GRACE)

    @staticmethod
    def _end_stopped(w: FakeWorker, now: float, exit_code: int | None, reason: str) -> None:
        w.state, w.reason, w.exit_code = WorkerState.STOPPED, reason, exit_code
        w.finished_at, w.message = now, w.stop_reason

    def _latest(self, workload_id: str) -> int:
        attempts = [a for (wl, a) in self.world.workers if wl == workload_id]
        if not attempts:
            raise UnknownAttempt(f"workload {workload_id!r} was never launched here")
        return max(attempts)

    def _workers(
        self, workload_id: str, attempt: int | None, worker: int | None,
    ) -> list[FakeWorker]:
        attempt = self._latest(workload_id) if attempt is None else attempt
        workers = self.world.workers.get((workload_id, attempt))
        if workers is None:
            raise UnknownAttempt(f"{workload_id} attempt {attempt} was never launched here")
        if worker is None:
            return workers
        if not 0 <= worker < len(workers):
            raise UnknownAttempt(f"{workload_id} attempt {attempt} has no worker {worker}")
        return [workers[worker]]

    def _worker(self, workload_id: str, attempt: int | None, worker: int) -> FakeWorker:
        return self._workers(workload_id, attempt, worker)[0]

    def _check_fits(self, spec: LaunchSpec) -> None:
        used: dict[tuple[str, int], int] = {}
        for workers in self.world.workers.values():
            for w in workers:
                if not w.state.ended:
                    _add_use(used, w.assignment)
        for a in spec.assignments:
            node = self.world.nodes.get(a.node_id)
            if node is None:
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: unknown node "
                                        f"{a.node_id!r}")
            if any(d >= node.gpu_count for d in a.devices):
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id} "
                                        f"has {node.gpu_count} GPUs, got {list(a.devices)}")
            _add_use(used, a)
        over = sorted(k for k, milli in used.items() if milli > MILLI_PER_GPU)
        if over:
            raise LaunchError(f"{spec.workload_id}: devices over-committed: {over}")


def _add_use(used: dict[tuple[str, int], int], a: WorkerAssignment) -> None:
    for d in a.devices:
        used[(a.node_id, d)] = used.get((a.node_id, d), 0) + a.milli_per_device


def _status(key: Key, w: FakeWorker, now: float) -> WorkerStatus:
    return WorkerStatus(
        workload_id=key[0], attempt=key[1], worker=w.assignment.worker,
        node_id=w.assignment.node_id, state=w.state, reason=w.reason, observed_at=now,
        exit_code=w.exit_code, finished_at=w.finished_at if w.state.ended else None,
        message=w.message,
    )
