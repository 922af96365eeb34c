"""Sliding windows over what the gateway observed: in-flight averages, arrival rates, latency
percentiles, how long a request holds a replica's slot, and when the service was last busy.

The control loop (or the simulator) calls `observe` once per tick with the time, the requests in
flight at that moment (queued at the gateway plus running on replicas), optionally how many of
them run on replicas, the arrivals since the last tick and the latencies of the requests that
finished since then. Averages are over the samples inside the window, as Knative's autoscaler
averages its per-second buckets: with a tick of 2 s, a 60 s window holds 30 samples and a 6 s
panic window 3.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["MetricWindows", "Sample"]


@dataclass(frozen=True)
class Sample:
    t: float
    in_flight: float
    arrivals: int
    running: float | None  # None: the caller does not tell queued from running
    finished: int


@dataclass
class MetricWindows:
    """Samples of the last `keep_s` seconds; older ones are dropped on each observation."""

    keep_s: float
    _samples: deque[Sample] = field(default_factory=deque)
    _latencies: deque[tuple[float, float]] = field(default_factory=deque)
    first_t: float | None = None
    last_busy_t: float | None = None

    def observe(self, now: float, in_flight: float, arrivals: int,
                latencies: Iterable[float] = (), running: float | None = None) -> None:
        if self._samples and now < self._samples[-1].t:
            raise ValueError(f"now: observations must not go back in time "
                             f"({now:g} < {self._samples[-1].t:g})")
        if in_flight < 0 or arrivals < 0:
            raise ValueError(f"in_flight and arrivals must be >= 0, got {in_flight}, {arrivals}")
        if running is not None and not 0 <= running <= in_flight:
            raise ValueError(f"running: must be within [0, in_flight ({in_flight:g})], "
                             f"got {running:g}")
        if self.first_t is None:
            self.first_t = now
        done = [(now, float(x)) for x in latencies]
        self._samples.append(Sample(now, float(in_flight), int(arrivals), running, len(done)))
        self._latencies.extend(done)
        if in_flight > 0 or arrivals > 0:
            self.last_busy_t = now
        horizon = now - self.keep_s
        while self._samples and self._samples[0].t <= horizon:
            self._samples.popleft()
        while self._latencies and self._latencies[0][0] <= horizon:
            self._latencies.popleft()

    def _inside(self, now: float, window_s: float) -> list[Sample]:
        return [s for s in self._samples if s.t > now - window_s]

    def _span(self, now: float, window_s: float) -> float:
        return window_s if self.first_t is None else min(window_s, now - self.first_t)

    def mean_in_flight(self, now: float, window_s: float) -> float:
        inside = self._inside(now, window_s)
        return sum(s.in_flight for s in inside) / len(inside) if inside else 0.0

    def arrival_rate(self, now: float, window_s: float) -> float:
        """Arrivals per second over the window, or over the history when it is shorter."""
        count = sum(s.arrivals for s in self._inside(now, window_s))
        span = self._span(now, window_s)
        return count / span if span > 0 else float(count)

    def mean_queued(self, now: float, window_s: float) -> float | None:
        """Mean requests waiting at the gateway (in flight, not running); None if unknown."""
        inside = [s for s in self._inside(now, window_s) if s.running is not None]
        if not inside:
            return None
        return sum(s.in_flight - (s.running or 0.0) for s in inside) / len(inside)

    def hold_s(self, now: float, window_s: float) -> float | None:
        """Seconds a request holds a replica's slot, by Little's law on the replicas: mean
        running / completions per second. None without `running` or without a completion.
        Example: 30 running on average and 150 finished in 60 s -> 30 / 2.5 = 12 s."""
        inside = [s for s in self._inside(now, window_s) if s.running is not None]
        finished = sum(s.finished for s in inside)
        span = self._span(now, window_s)
        if not inside or finished == 0 or span <= 0:
            return None
        return (sum(s.running or 0.0 for s in inside) / len(inside)) / (finished / span)

    def latency_percentile(self, now: float, window_s: float, q: float,
                           since: float | None = None) -> tuple[float, int] | None:
        """The q-th percentile of latencies finished inside the window (and after `since`), and
        how many there were."""
        start = now - window_s if since is None else max(now - window_s, since)
        inside = [x for t, x in self._latencies if t > start]
        if not inside:
            return None
        import numpy as np  # here: the workload file's model imports this package, clients too

        return float(np.percentile(inside, q, method="higher")), len(inside)

    def idle_for(self, now: float) -> float:
        """Seconds since the last tick with a request in flight or arriving (since start if none)."""
        since = self.last_busy_t if self.last_busy_t is not None else self.first_t
        return 0.0 if since is None else now - since
