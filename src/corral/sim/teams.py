"""Which queue (team) each task of a trace belongs to, and how much each queue deserves.

Traces rarely say who submitted a task, so the replay assigns queues by one of three rules:

- `qos`: one queue per QoS class (LS, Burstable, BE, ...); each queue's quota is its class's
  share of the trace's requested GPU-time, times `quota_fraction` of the pool.
- `teams`: N teams; each task goes to a team drawn with the seed; equal quotas of
  `quota_fraction` x pool / N.
- `trace`: the trace's own `queue` column (generic format); equal quotas.

Quotas are guarantees (corral's `Queue.quota_gpus`); what is left over is shared by weight.
Priorities follow the QoS class: latency-sensitive work outranks best-effort work inside a team.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from corral.core.model import MILLI_PER_GPU, Queue
from corral.sim.trace import Trace

QOS_PRIORITY = {"LS": 2, "Guaranteed": 2, "Burstable": 1, "BE": 0}
MODES = ("teams", "qos", "trace")


@dataclass(frozen=True)
class QueueMap:
    queues: tuple[Queue, ...]
    of_task: dict[str, str]  # task name -> queue name

    def priority(self, qos: str, explicit: int = 0) -> int:
        return explicit or QOS_PRIORITY.get(qos, 1)


def map_queues(
    trace: Trace, mode: str = "teams", teams: int = 4, seed: int = 0, quota_fraction: float = 0.8
) -> QueueMap:
    if mode not in MODES:
        raise ValueError(f"queue mapping {mode!r} is unknown; use one of {', '.join(MODES)}")
    if not 0 <= quota_fraction <= 1:
        raise ValueError(f"quota fraction must be between 0 and 1, got {quota_fraction}")
    capacity = trace.gpu_capacity_milli / MILLI_PER_GPU * quota_fraction
    if mode == "teams":
        if teams < 1:
            raise ValueError(f"teams must be at least 1, got {teams}")
        names = [f"team-{i + 1}" for i in range(teams)]
        draw = np.random.default_rng(seed).integers(teams, size=len(trace.tasks))
        of_task = {t.name: names[int(k)] for t, k in zip(trace.tasks, draw, strict=True)}
        return QueueMap(_equal(names, capacity), of_task)
    if mode == "trace":
        of_task = {t.name: t.queue or "default" for t in trace.tasks}
        return QueueMap(_equal(sorted(set(of_task.values())), capacity), of_task)
    of_task = {t.name: t.qos or "unknown" for t in trace.tasks}
    gpu_time: dict[str, float] = defaultdict(float)
    for t in trace.tasks:
        gpu_time[of_task[t.name]] += t.total_milli * (t.duration or 1.0)
    total = sum(gpu_time.values()) or 1.0
    queues = tuple(Queue(q, quota_gpus=capacity * gpu_time[q] / total) for q in sorted(gpu_time))
    return QueueMap(queues, of_task)


def _equal(names: list[str], capacity: float) -> tuple[Queue, ...]:
    return tuple(Queue(n, quota_gpus=capacity / len(names)) for n in names)
