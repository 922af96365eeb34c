"""A cluster trace: the nodes of a pool and the tasks that were submitted to it.

Every loader (Alibaba openb CSVs, the generic CSV/Parquet format, the synthetic generator)
produces a `Trace`; the experiments only ever read this form.

Times are seconds from the start of the trace. A task's `duration` is how long it runs once
started; a loader that reads creation, scheduled and deletion times derives it by the rule in
`run_time` (documented there, and in docs/simulator.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from corral.core.model import MILLI_PER_GPU, Node, WorkerResources


class TraceFormatError(ValueError):
    """A trace file that cannot be read. The message names the file, the line, the column and
    what a valid value looks like."""


@dataclass(frozen=True, slots=True)
class TraceTask:
    """One task (a pod, or a gang of `workers` pods) of a trace.

    GPU request: `gpus` devices of `gpu_milli` each. `gpus` = 1 with `gpu_milli` < 1000 shares
    one device with other tasks; otherwise the task takes `gpus` whole devices on one node (per
    worker). `gpus` = 0 is a CPU-only task.
    """

    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int = 0
    gpu_milli: int = 0
    gpu_models: tuple[str, ...] = ()
    qos: str = ""
    workers: int = 1
    submitted: float = 0.0
    duration: float | None = None  # None: unknown (the fill experiment does not need it)
    queue: str = ""  # empty: the experiment maps it (by QoS class or to seeded teams)
    priority: int = 0

    @property
    def shares_gpu(self) -> bool:
        return self.gpus == 1 and 0 < self.gpu_milli < MILLI_PER_GPU

    @property
    def milli_per_worker(self) -> int:
        if self.shares_gpu:
            return self.gpu_milli
        return self.gpus * MILLI_PER_GPU

    @property
    def total_milli(self) -> int:
        """GPU share the whole task requests, in milli-GPU."""
        return self.milli_per_worker * self.workers

    def resources(self) -> WorkerResources:
        if self.shares_gpu:
            return WorkerResources(
                gpu_milli=self.gpu_milli, cpu_milli=self.cpu_milli, memory_mib=self.memory_mib
            )
        return WorkerResources(
            gpus=self.gpus, cpu_milli=self.cpu_milli, memory_mib=self.memory_mib
        )


@dataclass(frozen=True)
class Trace:
    name: str
    nodes: tuple[Node, ...]
    tasks: tuple[TraceTask, ...]
    notes: tuple[str, ...] = field(default=())  # what the loader assumed (missing times, ...)

    @property
    def gpu_capacity_milli(self) -> int:
        return sum(n.gpu_count for n in self.nodes if n.schedulable) * MILLI_PER_GPU

    @property
    def has_times(self) -> bool:
        return bool(self.tasks) and all(t.duration is not None for t in self.tasks)

    def with_tasks(self, tasks: tuple[TraceTask, ...]) -> Trace:
        return Trace(self.name, self.nodes, tasks, self.notes)

    def offered_load(self) -> float:
        """Requested GPU-seconds over capacity x arrival span (1.0 = exactly enough GPUs on
        average while tasks arrive)."""
        if not self.has_times or len(self.tasks) < 2 or not self.gpu_capacity_milli:
            return 0.0
        first = min(t.submitted for t in self.tasks)
        span = max(t.submitted for t in self.tasks) - first
        work = sum(t.total_milli * (t.duration or 0.0) for t in self.tasks)
        return work / (self.gpu_capacity_milli * span) if span > 0 else float("inf")

    def at_load(self, load: float) -> Trace:
        """The same tasks with arrival times squeezed (or stretched) about the first arrival so
        that `offered_load()` becomes `load`; durations are unchanged.

        The Alibaba openb traces spread 8,000 tasks over 149 days on 6,212 GPUs (offered load
        about 0.002): replayed as recorded nothing ever waits, so comparing queueing policies
        needs the arrivals compressed."""
        if load <= 0:
            raise ValueError(f"load must be positive, got {load}")
        now = self.offered_load()
        if now <= 0 or now == float("inf"):
            return self
        first = min(t.submitted for t in self.tasks)
        factor = now / load
        tasks = tuple(replace(t, submitted=first + (t.submitted - first) * factor)
                      for t in self.tasks)
        note = f"arrivals scaled by {factor:.6g} to an offered load of {load:g} (was {now:.4g})"
        return Trace(self.name, self.nodes, tasks, (*self.notes, note))


def run_time(
    created: float, scheduled: float | None, deleted: float | None, trace_end: float
) -> float:
    """How long a task runs once started, from the times a trace records.

    - scheduled and deleted known: deleted - scheduled (the time it held its resources);
    - never scheduled (it waited until it was deleted): deleted - created, the longest it could
      have run had it started at once, so that its demand is not lost from the replay;
    - never deleted (still running when the trace ended): until the trace's end;
    - and never less than 1 second, so that every task occupies the pool for a moment.

    >>> run_time(10, 12, 100, 500), run_time(10, None, 100, 500), run_time(10, 12, None, 500)
    (88.0, 90.0, 488.0)
    """
    start = created if scheduled is None else scheduled
    end = trace_end if deleted is None else deleted
    return float(max(end - start, 1.0))
