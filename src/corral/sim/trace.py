"""A cluster trace: the nodes of a pool and the tasks that were submitted to it.

Every loader (Alibaba openb CSVs, the generic CSV/Parquet format, the synthetic generator)
produces a `Trace`; the experiments only ever read this form.

Times are seconds from the start of the trace. A task's `duration` is how long it runs once
started; a loader that reads creation, scheduled and deletion times derives it by the rule in
`run_time` (documented there, and in docs/simulator.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

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

    @cached_property  # read every replay cycle; a Trace never changes
    def gpu_capacity_milli(self) -> int:
        return sum(n.gpu_count for n in self.nodes if n.schedulable) * MILLI_PER_GPU

    @property
    def has_times(self) -> bool:
        return bool(self.tasks) and all(t.duration is not None for t in self.tasks)

    def with_tasks(self, tasks: tuple[TraceTask, ...]) -> Trace:
        return Trace(self.name, self.nodes, tasks, self.notes)

    def with_pool_fraction(self, fraction: float, seed: int) -> Trace:
        """A seeded random `fraction` of the nodes, the same share of every GPU model (at least
        one node each): a smaller pool for the same tasks, to make a light trace contend."""
        if not 0 < fraction <= 1:
            raise ValueError(f"pool fraction must be in (0, 1], got {fraction}")
        rng = np.random.default_rng(seed)
        by_model: dict[str, list[Node]] = {}
        for n in self.nodes:
            by_model.setdefault(n.gpu_model, []).append(n)
        kept: list[Node] = []
        for model in sorted(by_model):
            group = by_model[model]
            k = max(1, round(fraction * len(group)))
            kept.extend(group[i] for i in sorted(rng.choice(len(group), size=k, replace=False)))
        note = f"pool: {len(kept)} of {len(self.nodes)} nodes ({fraction:g} of each GPU model)"
        return Trace(self.name, tuple(kept), self.tasks, (*self.notes, note))

    def offered_load(self, factor: float = 1.0) -> float:
        """GPUs requested on average while most tasks arrive, as a share of capacity, if every
        task started on arrival (arrival times scaled by `factor` about the first one).

        The window is the middle 90% of arrivals (5th to 95th percentile), so that a few early
        or late stragglers do not stretch it; each task counts its GPUs for the part of its run
        inside the window. 1.0: the pool would be exactly full on average while work comes.
        """
        if not self.has_times or len(self.tasks) < 2 or not self.gpu_capacity_milli:
            return 0.0
        submitted = np.array([t.submitted for t in self.tasks], dtype=np.float64)
        start = submitted.min() + (submitted - submitted.min()) * factor
        lo, hi = np.percentile(start, [5, 95])
        if hi <= lo:
            return float("inf")
        end = start + np.array([t.duration or 0.0 for t in self.tasks], dtype=np.float64)
        inside = np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0.0, None)
        milli = np.array([t.total_milli for t in self.tasks], dtype=np.float64)
        return float((milli * inside).sum() / (self.gpu_capacity_milli * (hi - lo)))

    def at_load(self, load: float) -> Trace:
        """The same tasks with arrival times squeezed (or stretched) about the first arrival so
        that `offered_load()` becomes `load`; durations are unchanged.

        The Alibaba openb traces spread 8,000 tasks over 149 days on 6,212 GPUs (at most 65
        GPUs in use at once): replayed as recorded nothing ever waits, so comparing policies
        needs the arrivals compressed. The load falls as arrivals spread out, so the factor is
        found by bisection (on its logarithm, to a relative error below 1e-6).
        """
        if load <= 0:
            raise ValueError(f"load must be positive, got {load}")
        now = self.offered_load()
        if now <= 0 or now == float("inf"):
            return self
        lo, hi = -40.0, 40.0  # log2 of the factor
        for _ in range(200):
            mid = (lo + hi) / 2
            if self.offered_load(2.0**mid) > load:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-7:
                break
        factor = 2.0 ** ((lo + hi) / 2)
        if self.offered_load(factor) < load * 0.99:
            raise ValueError(
                f"trace {self.name!r} cannot reach an offered load of {load:g}: with arrivals "
                f"squeezed as far as they go it is {self.offered_load(2.0**-40):.3g}; use a "
                "smaller pool (pool fraction) or a lower load")
        first = min(t.submitted for t in self.tasks)
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
