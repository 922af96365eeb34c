"""Experiment 1, fill: how full can a placement policy pack the pool before it fragments?

The protocol of Weng et al., "Beware of Fragmentation" (USENIX ATC 2023), section 6:

1. The pool starts empty. The trace's tasks are shuffled with the seed.
2. Workload tuning: seeded random copies of trace tasks are appended until the requested GPU
   total would pass `target_ratio` (130%) of the pool's GPU capacity; the first copy that would
   pass it is not added. (A trace that already asks for more, like `multigpu50` at 183%, loses
   seeded random tasks until it asks for at most the target, as the paper's simulator does.)
3. Tasks arrive one at a time and are placed at once or fail: no queue, no departures.
4. After each task: GPU allocation ratio = allocated milli-GPU / capacity milli-GPU. It is
   recorded when arrived demand (requested GPUs of all tasks so far, placed or not) first reaches
   each whole percent of capacity, and at the end.

Placement is the core's own `Placer` on one persistent `Capacity`: each task is one `place` call
followed by `Capacity.take`, exactly what an allocate action does for a single-worker workload.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from corral.core.fit import Shape
from corral.core.placement import Placer, Scoring
from corral.core.snapshot import Capacity, NodeTable
from corral.sim.trace import Trace, TraceTask

TARGET_RATIO = 1.3

Progress = Callable[[int, int], None]  # (tasks done, tasks in all)


@dataclass(frozen=True)
class FillResult:
    trace: str
    policy: str
    seed: int
    capacity_gpus: float
    tasks: int  # arrived, copies included
    placed: int
    failed: int
    requested_pct: float  # arrived demand at the end, % of capacity
    final_allocation_pct: float
    #: (arrived demand %, allocation %) at each whole percent of arrived demand
    curve: tuple[tuple[int, float], ...]
    wall_seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "experiment": "fill",
            "trace": self.trace,
            "policy": self.policy,
            "seed": self.seed,
            "capacity_gpus": self.capacity_gpus,
            "tasks": self.tasks,
            "placed": self.placed,
            "failed": self.failed,
            "requested_pct": round(self.requested_pct, 4),
            "final_allocation_pct": round(self.final_allocation_pct, 4),
            "curve": [{"arrived_pct": a, "allocation_pct": round(v, 4)} for a, v in self.curve],
            "wall_seconds": round(self.wall_seconds, 4),
        }


def arrivals(trace: Trace, seed: int, target_ratio: float = TARGET_RATIO) -> list[TraceTask]:
    """The fill experiment's arrival sequence: shuffled trace, then tuned to the target demand."""
    rng = np.random.default_rng(seed)
    tasks = [trace.tasks[i] for i in rng.permutation(len(trace.tasks))]
    target = target_ratio * trace.gpu_capacity_milli
    total = sum(t.total_milli for t in tasks)
    while total > target and tasks:
        total -= tasks.pop(int(rng.integers(len(tasks)))).total_milli
    if not trace.tasks:
        return tasks
    originals = trace.tasks
    while True:
        task = originals[int(rng.integers(len(originals)))]
        if total + task.total_milli > target:
            return tasks
        tasks.append(task)
        total += task.total_milli
        if task.total_milli == 0 and len(tasks) > 100 * len(originals):
            return tasks  # a trace of CPU-only tasks never reaches any GPU target


def run_fill(
    trace: Trace,
    scoring: Scoring,
    seed: int,
    policy: str = "",
    target_ratio: float = TARGET_RATIO,
    progress: Progress | None = None,
) -> FillResult:
    started = time.perf_counter()
    sequence = arrivals(trace, seed, target_ratio)
    cap = Capacity(NodeTable.build(trace.nodes))
    placer = Placer(cap)
    capacity = trace.gpu_capacity_milli
    shapes: dict[tuple[int, int, int, int, int, tuple[str, ...]], Shape] = {}
    allocated = arrived = placed = 0
    curve: list[tuple[int, float]] = []
    step = 1
    for i, task in enumerate(sequence):
        shape = _shape(task, shapes)
        assignments = placer.place(shape, scoring, task.name)
        if assignments is not None:
            r = shape.resources
            for a in assignments:
                cap.take(cap.table.index[a.node_id], a, r.cpu_milli, r.memory_mib)
                allocated += a.milli_per_device * len(a.devices)
            placed += 1
        arrived += task.total_milli
        while capacity and arrived * 100 >= step * capacity:
            curve.append((step, 100.0 * allocated / capacity))
            step += 1
        if progress is not None and (i % 256 == 0 or i == len(sequence) - 1):
            progress(i + 1, len(sequence))
    return FillResult(
        trace=trace.name,
        policy=policy or scoring.key,
        seed=seed,
        capacity_gpus=capacity / 1000,
        tasks=len(sequence),
        placed=placed,
        failed=len(sequence) - placed,
        requested_pct=100.0 * arrived / capacity if capacity else 0.0,
        final_allocation_pct=100.0 * allocated / capacity if capacity else 0.0,
        curve=tuple(curve),
        wall_seconds=time.perf_counter() - started,
    )


def _shape(
    task: TraceTask, cache: dict[tuple[int, int, int, int, int, tuple[str, ...]], Shape]
) -> Shape:
    key = (task.cpu_milli, task.memory_mib, task.gpus, task.gpu_milli, task.workers, task.gpu_models)
    shape = cache.get(key)
    if shape is None:
        shape = cache[key] = Shape(task.resources(), task.workers, task.gpu_models)
    return shape


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
