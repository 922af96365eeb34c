"""Sliding windows over what the gateway observed: in-flight averages, arrival rates, latency
percentiles, and when the service was last busy.

The control loop (or the simulator) calls `observe` once per tick with the time, the requests in
flight at that moment (queued at the gateway plus running on replicas), the arrivals since the
last tick and the latencies of the requests that finished since then. Averages are over the
samples inside the window, as Knative's autoscaler averages its per-second buckets: with a tick
of 2 s, a 60 s window holds 30 samples and a 6 s panic window 3.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MetricWindows"]


@dataclass
class MetricWindows:
    """Samples of the last `keep_s` seconds; older ones are dropped on each observation."""

    keep_s: float
    _samples: deque[tuple[float, float, int]] = field(default_factory=deque)  # t, in flight, arrivals
    _latencies: deque[tuple[float, float]] = field(default_factory=deque)
    first_t: float | None = None
    last_busy_t: float | None = None

    def observe(self, now: float, in_flight: float, arrivals: int,
                latencies: Iterable[float] = ()) -> None:
        if self._samples and now < self._samples[-1][0]:
            raise ValueError(f"now: observations must not go back in time "
                             f"({now:g} < {self._samples[-1][0]:g})")
        if in_flight < 0 or arrivals < 0:
            raise ValueError(f"in_flight and arrivals must be >= 0, got {in_flight}, {arrivals}")
        if self.first_t is None:
            self.first_t = now
        self._samples.append((now, float(in_flight), int(arrivals)))
        self._latencies.extend((now, float(x)) for x in latencies)
        if in_flight > 0 or arrivals > 0:
            self.last_busy_t = now
        horizon = now - self.keep_s
        while self._samples and self._samples[0][0] <= horizon:
            self._samples.popleft()
        while self._latencies and self._latencies[0][0] <= horizon:
            self._latencies.popleft()

    def mean_in_flight(self, now: float, window_s: float) -> float:
        inside = [f for t, f, _ in self._samples if t > now - window_s]
        return sum(inside) / len(inside) if inside else 0.0

    def arrival_rate(self, now: float, window_s: float) -> float:
        """Arrivals per second over the window, or over the history when it is shorter."""
        count = sum(a for t, _, a in self._samples if t > now - window_s)
        span = window_s if self.first_t is None else min(window_s, now - self.first_t)
        return count / span if span > 0 else float(count)

    def latency_percentile(self, now: float, window_s: float, q: float) -> tuple[float, int] | None:
        """The q-th percentile of latencies finished inside the window, and how many there were."""
        inside = [x for t, x in self._latencies if t > now - window_s]
        if not inside:
            return None
        return float(np.percentile(inside, q, method="higher")), len(inside)

    def idle_for(self, now: float) -> float:
        """Seconds since the last tick with a request in flight or arriving (since start if none)."""
        since = self.last_busy_t if self.last_busy_t is not None else self.first_t
        return 0.0 if since is None else now - since
