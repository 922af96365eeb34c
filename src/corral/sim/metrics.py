"""The figures a replay reports, as pure functions of what happened.

- `summary`: average, median, p95 and p99 of a sample (linear interpolation between ranks, the
  numpy default), with its size.
- `TimeWeighted`: the integral of a piecewise-constant quantity (allocated GPUs, queue length,
  a queue's share) over time, for time averages.
- `share_report`: each queue's time-averaged GPUs against its time-averaged deserved share, and
  Jain's fairness index of the ratios (`corral.core.fairshare.jain_index`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from corral.core.fairshare import jain_index


def summary(values: Sequence[float]) -> dict[str, float]:
    """avg, median, p95, p99 and count of `values` (NaN when empty).

    >>> summary([1, 2, 3, 4])
    {'avg': 2.5, 'median': 2.5, 'p95': 3.85, 'p99': 3.97, 'count': 4}
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        nan = float("nan")
        return {"avg": nan, "median": nan, "p95": nan, "p99": nan, "count": 0}
    p50, p95, p99 = (float(x) for x in np.percentile(arr, [50, 95, 99]))
    return {"avg": round(float(arr.mean()), 6), "median": round(p50, 6), "p95": round(p95, 6),
            "p99": round(p99, 6), "count": int(arr.size)}


@dataclass
class TimeWeighted:
    """Integral over time of values that change at discrete instants.

    >>> tw = TimeWeighted(start=0.0)
    >>> tw.set(10.0, 4.0); tw.set(20.0, 0.0); tw.advance(30.0)
    >>> tw.integral, tw.average(0.0, 30.0)
    (40.0, 1.3333333333333333)
    """

    start: float
    value: float = 0.0
    integral: float = 0.0
    last: float = field(init=False)

    def __post_init__(self) -> None:
        self.last = self.start

    def advance(self, now: float) -> None:
        if now > self.last:
            self.integral += self.value * (now - self.last)
            self.last = now

    def set(self, now: float, value: float) -> None:
        self.advance(now)
        self.value = value

    def average(self, begin: float, end: float) -> float:
        return self.integral / (end - begin) if end > begin else 0.0


def share_report(
    used: Mapping[str, float], deserved: Mapping[str, float]
) -> tuple[dict[str, dict[str, float]], float]:
    """Per queue: average GPUs used, average GPUs deserved, and their ratio; plus Jain's index of
    the ratios over queues that deserved anything (1 = every queue got the same fraction of what
    it deserved).

    >>> per, jain = share_report({"a": 2.0, "b": 1.0}, {"a": 2.0, "b": 2.0})
    >>> per["b"]["ratio"], round(jain, 3)
    (0.5, 0.9)
    """
    per: dict[str, dict[str, float]] = {}
    ratios: list[float] = []
    for q in sorted(set(used) | set(deserved)):
        u, d = used.get(q, 0.0), deserved.get(q, 0.0)
        ratio = u / d if d > 0 else float("nan")
        per[q] = {"used_gpus": round(u, 6), "deserved_gpus": round(d, 6), "ratio": round(ratio, 6)}
        if d > 0:
            ratios.append(ratio)
    return per, jain_index(ratios)
