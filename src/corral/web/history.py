"""Allocated and idle GPUs over time: samples of the pool kept in memory by the API process.

Why in memory: the store holds the present (placements) and an event log, not a time series;
Prometheus (`/metrics`, the Grafana board in deploy/grafana) is the durable history. The
dashboard's chart shows the last hours that this process has seen, sampled every
`interval_s` by a daemon thread that the app's lifespan starts and stops, plus a point taken
at the moment of the request so the chart always ends at "now".

A sample keeps every queue; what a caller may see is filtered when it is read (`visible_point`).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from corral.core.model import MILLI_PER_GPU, Node
from corral.store.workloads import Held
from corral.web.models import UsagePoint

__all__ = ["Sample", "Sampler", "UsageHistory", "take_sample", "visible_point"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    by_queue: dict[str, float]
    allocated_by_provider: dict[str, float]
    idle_by_provider: dict[str, float]
    unavailable_by_provider: dict[str, float]


def take_sample(nodes: Sequence[Node], held: Sequence[Held], at: float) -> Sample:
    """Pure: the pool's use at `at` (GPUs; fractional shares count as fractions)."""
    by_queue: dict[str, int] = defaultdict(int)
    used: dict[str, int] = defaultdict(int)
    for h in held:
        milli = h.milli_per_device * len(h.devices)
        by_queue[h.queue] += milli
        used[h.node_id] += milli
    alloc: dict[str, int] = defaultdict(int)
    idle: dict[str, int] = defaultdict(int)
    unavailable: dict[str, int] = defaultdict(int)
    for n in nodes:
        u = used[n.id]
        alloc[n.provider] += u
        free = max(n.gpu_count * MILLI_PER_GPU - u, 0)
        (idle if n.schedulable else unavailable)[n.provider] += free
        idle.setdefault(n.provider, 0)
        unavailable.setdefault(n.provider, 0)

    def gpus(d: dict[str, int]) -> dict[str, float]:
        return {k: v / MILLI_PER_GPU for k, v in sorted(d.items())}

    return Sample(at, gpus(by_queue), gpus(alloc), gpus(idle), gpus(unavailable))


def visible_point(s: Sample, visible: Callable[[str], bool]) -> UsagePoint:
    """The sample as a caller sees it: other queues' use summed under the empty name."""
    mine = {q: g for q, g in s.by_queue.items() if visible(q)}
    others = sum(g for q, g in s.by_queue.items() if not visible(q))
    if others:
        mine[""] = round(others, 3)
    return UsagePoint(at=s.at, by_queue=mine, allocated_by_provider=s.allocated_by_provider,
                      idle_by_provider=s.idle_by_provider,
                      unavailable_by_provider=s.unavailable_by_provider)


class UsageHistory:
    """A bounded ring of samples, oldest first. Thread-safe."""

    def __init__(self, keep: int) -> None:
        self._samples: deque[Sample] = deque(maxlen=max(keep, 1))
        self._lock = threading.Lock()

    def add(self, sample: Sample) -> None:
        with self._lock:
            if self._samples and sample.at < self._samples[-1].at:
                return  # a clock step back: keep the series ordered
            self._samples.append(sample)

    def since(self, at: float, max_points: int) -> list[Sample]:
        """Samples at or after `at`, thinned evenly to at most `max_points` (the newest kept)."""
        with self._lock:
            found = [s for s in self._samples if s.at >= at]
        if len(found) <= max_points:
            return found
        stride = -(-len(found) // max_points)
        return found[::-1][::stride][::-1]


class Sampler:
    """Calls `sample()` every `interval_s` on a daemon thread and keeps the result."""

    def __init__(self, sample: Callable[[], Sample], history: UsageHistory,
                 interval_s: float) -> None:
        self._sample, self.history, self.interval_s = sample, history, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="corral-usage-sampler",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.history.add(self._sample())
            except Exception:  # a database hiccup costs one point, not the chart
                log.exception("usage sample failed")
            self._stop.wait(self.interval_s)
