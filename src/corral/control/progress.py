"""Workers' progress (the CORRAL_PROGRESS_FILE contract, `corral.backends.progress`), kept.

The local backend's poll (through the control loop) and the agents' syncs (through the API)
hand over what each worker last wrote. A worker's progress becomes an ``info`` event on its
workload (reason ``Progress``) when its step count changed and `every_s` passed since the last
one it got (and always the first time), so `corral describe` shows how far a run is and how fast
it goes on which accelerator, without an event per poll. Each event's data holds the job's kind
(the workload's name: the jobs of one name are the same training, as an array's tasks are), the
node's accelerator model and the steps/s: `throughput_estimates` folds them, in order, into the
per (kind, model) estimates the simulator and the `throughput` plugin take. A new job that states
no `throughput` of its own is submitted with its kind's estimates when they cover two models or
more (`LearnedThroughput.apply`, called by `corral.control.submission`), so the core's
`throughput` plugin places it by what its kind measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, select

from corral.backends.base import WorkerState, WorkerStatus
from corral.backends.progress import Progress, ThroughputEstimates
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import workloads as W
from corral.store.schema import Event, NodeRow, WorkloadRow

__all__ = [
    "PROGRESS",
    "PROGRESS_REPORTED",
    "LearnedThroughput",
    "ProgressCollector",
    "ProgressRecorder",
    "throughput_estimates",
]

PROGRESS_REPORTED: Final = "Progress"
Key = tuple[str, int, int]  # workload, attempt, worker


@dataclass
class ProgressRecorder:
    """Turns reported progress into events, at most one per worker per `every_s`."""

    every_s: float = 30.0
    last: dict[Key, tuple[float, int]] = field(default_factory=dict)  # key -> (at, steps)

    def record(self, conn: Connection, now: float, progress: Mapping[Key, Progress], *,
               node_id: str | None = None, nodes: Mapping[Key, str] | None = None) -> int:
        """Events for the workers whose progress is news; returns how many. node_id: every
        worker's node (an agent's host), else `nodes` per worker."""
        due = {k: p for k, p in progress.items() if self._due(k, p, now)}
        if not due:
            return 0
        where = {k: node_id or (nodes or {}).get(k, "") for k in due}
        models = {r.id: r.gpu_model for r in conn.execute(select(
            NodeRow.id, NodeRow.gpu_model).where(NodeRow.id.in_(set(where.values()))))}
        names = {r.id: r.name for r in conn.execute(select(WorkloadRow.id, WorkloadRow.name)
                                                    .where(WorkloadRow.id.in_({k[0] for k in due})))}
        for key, p in sorted(due.items()):
            model = models.get(where[key], "unknown")
            W.append_event(conn, at=now, kind="info", reason=PROGRESS_REPORTED,
                           workload_id=key[0], attempt=key[1], subject=where[key],
                           message=_message(key[2], p, model),
                           data={"worker": key[2], "kind": names.get(key[0], key[0]),
                                 "model": model, **p.as_record()})
            self.last[key] = (now, p.steps)
        return len(due)

    def _due(self, key: Key, p: Progress, now: float) -> bool:
        seen = self.last.get(key)
        return seen is None or (seen[1] != p.steps and now - seen[0] >= self.every_s)


#: one per process: the API's agent syncs share it (the loop keeps its own, `corral.control.loop`)
PROGRESS = ProgressRecorder()


@dataclass
class ProgressCollector:
    """The control loop's side: every `every_s`, asks a backend that reads its workers'
    progress files (`progress(workload, attempt)`: the local backend) about the running ones."""

    every_s: float = 10.0
    recorder: ProgressRecorder = field(default_factory=ProgressRecorder)
    last_run: float | None = None

    def step(self, store: Store, backend: object, statuses: Sequence[WorkerStatus],
             now: float) -> int:
        read = getattr(backend, "progress", None)
        if read is None or (self.last_run is not None and now - self.last_run < self.every_s):
            return 0
        self.last_run = now
        running = {(s.workload_id, s.attempt, s.worker): s.node_id for s in statuses
                   if s.state == WorkerState.RUNNING}
        found: dict[Key, Progress] = {}
        for wid, attempt in sorted({k[:2] for k in running}):
            for worker, p in read(wid, attempt).items():
                if (wid, attempt, worker) in running:
                    found[(wid, attempt, worker)] = p
        if not found:
            return 0
        with store.write() as conn:
            return self.recorder.record(conn, now, found, nodes=running)


def _message(worker: int, p: Progress, model: str) -> str:
    """"worker 0: step 1200 of 50000 (2.4%), 3.1 steps/s on H100"."""
    done = f"step {p.steps}"
    if p.total_steps:
        done += f" of {p.total_steps} ({100 * p.steps / p.total_steps:.1f}%)"
    return f"worker {worker}: {done}, {p.steps_per_s:.3g} steps/s on {model}"


def throughput_estimates(conn: Connection, *, alpha: float = 0.3) -> ThroughputEstimates:
    """Every recorded progress folded, in order, into per (kind, model) estimates."""
    learned = LearnedThroughput(ThroughputEstimates(alpha=alpha))
    learned.refresh(conn)
    return learned.estimates


@dataclass
class LearnedThroughput:
    """The estimates, kept current by reading only the Progress events since the last read;
    and the rule that gives them to new work (`apply`)."""

    estimates: ThroughputEstimates = field(default_factory=ThroughputEstimates)
    last_id: int = 0

    def refresh(self, conn: Connection) -> None:
        rows = conn.execute(select(Event.id, Event.data).where(
            Event.id > self.last_id, Event.kind == "info",
            Event.reason == PROGRESS_REPORTED).order_by(Event.id))
        for event_id, data in rows:
            self.last_id = event_id
            try:
                self.estimates.report(str(data["kind"]), str(data["model"]),
                                      float(data["steps_per_s"]))
            except (KeyError, TypeError, ValueError):
                continue  # a record this version does not read

    def apply(self, spec: WorkloadSpec) -> WorkloadSpec:
        """A job that states no throughput gets what earlier jobs of its kind (its name)
        measured, when they ran on two models or more (one model says nothing relative); a
        stated throughput is never replaced. Example: `train` ran at 3.1 steps/s on H100 and
        0.9 on L4 -> a new `train` without `throughput` is submitted with {H100: 3.1, L4: 0.9}."""
        if spec.throughput or not spec.gpus:
            return spec
        rates = self.estimates.throughput_of(spec.name)
        if len(rates) < 2:
            return spec
        return spec.model_copy(update={"throughput": {m: round(r, 6) for m, r in rates}})
