"""Each service's traffic over time, from the gateway's own counters: what the dashboard's
Services page charts (requests/s, errors/s, p50 and p99 latency, in flight).

    sample(now, keys)   every few seconds, on the gateway's event loop: per service id, the
                        cumulative counters of its route-table keys (its id, and its name where
                        unique), summed; kept for `keep_s`
    series(sid, since)  one point per interval between two samples: the rates of the counters
                        over it and the latency percentiles of the requests that ended in it
    summary(sid, w)     the same over the last `w` seconds (the numbers in the list)

Percentiles come from the request-seconds histogram (`corral_gateway_request_seconds`), read the
way Prometheus' `histogram_quantile` reads it: the bucket the rank falls in, linear inside it
(`quantile`). They are as precise as the buckets (5 ms .. 10 min). An error is a response of
status 5xx (the gateway's own 502/503/504 included); a stream cut after its headers went out
counts under its status (see `corral_gateway_errors_total` for those). Counters that go down (a
service key removed and added again) count from zero.
The history is in memory and per process, like the dashboard's utilization samples; Prometheus
(`/serve`'s `/metrics`) is the durable history.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from prometheus_client import CollectorRegistry

__all__ = ["TrafficHistory", "TrafficPoint", "quantile"]

#: one sample per this many seconds at most (the feed asks after each control-loop step)
EVERY_S = 2.0
#: how long samples are kept
KEEP_S = 3600.0


@dataclass(frozen=True)
class _Sample:
    at: float
    requests: float
    errors: float
    in_flight: float
    #: cumulative counts per bucket bound, as the histogram's `le` series
    buckets: tuple[float, ...]


@dataclass(frozen=True)
class TrafficPoint:
    """One interval (`since` .. `at`]: rates per second and percentiles in seconds (None: no
    request ended in it)."""

    at: float
    since: float
    requests_per_s: float
    errors_per_s: float
    requests: int
    errors: int
    p50_s: float | None
    p99_s: float | None
    in_flight: float


def quantile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """The `q` quantile of requests counted in histogram buckets (`counts`: per bucket, not
    cumulative; `bounds`: their upper bounds, the last may be +Inf). Linear inside the bucket
    the rank falls in, from the previous bound (0 for the first); a rank in the +Inf bucket is
    the last finite bound. None for no request.

    Worked example: bounds (0.1, 0.5, 1), counts (50, 40, 10), q 0.5: rank 50 is the last of
    the first bucket: 0.1. q 0.99: rank 99 falls 9 into the third bucket's 10: 0.5 + 0.5 x 0.9
    = 0.95."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0.0
    lower = 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count > 0 and below + count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / count
        below += count
        lower = bound if not math.isinf(bound) else lower
    return lower


class TrafficHistory:
    def __init__(self, registry: CollectorRegistry, keep_s: float = KEEP_S,
                 every_s: float = EVERY_S) -> None:
        self.registry, self.keep_s, self.every_s = registry, keep_s, every_s
        self._samples: dict[str, deque[_Sample]] = {}
        self.bounds: tuple[float, ...] = ()
        self.last_at: float | None = None
        #: services sampled at least once (a service new to the sampler starts from zero)
        self._seen: set[str] = set()

    def due(self, now: float) -> bool:
        return self.last_at is None or now - self.last_at >= self.every_s

    def sample(self, now: float, keys: Mapping[str, Sequence[str]]) -> None:
        """Read the counters of every service in `keys` (service id -> its table keys); a
        service no longer in `keys` keeps its history until it ages out."""
        found = self._counters({k for ks in keys.values() for k in ks})
        for sid, ks in keys.items():
            parts = [found[k] for k in ks if k in found]
            width = max((len(p[3]) for p in parts), default=0)
            buckets = tuple(sum(p[3][i] for p in parts if len(p[3]) == width)
                            for i in range(width))
            point = _Sample(now, sum(p[0] for p in parts), sum(p[1] for p in parts),
                            sum(p[2] for p in parts), buckets)
            history = self._samples.setdefault(sid, deque())
            if sid not in self._seen:
                self._seen.add(sid)
                if self.last_at is not None:
                    # Routes and keys come from one tick, so a service new here was routed
                    # after the last sample: all it counted came since then. Without this zero
                    # point, requests served before its first sample never show as traffic.
                    history.append(_Sample(self.last_at, 0.0, 0.0, 0.0, (0.0,) * width))
            history.append(point)
        for sid in list(self._samples):
            kept = self._samples[sid]
            while kept and kept[0].at < now - self.keep_s:
                kept.popleft()
            if not kept:
                del self._samples[sid]
        self.last_at = now

    def services(self) -> list[str]:
        return sorted(self._samples)

    def series(self, sid: str, since: float = -math.inf) -> list[TrafficPoint]:
        samples = [s for s in self._samples.get(sid, ()) if s.at >= since]
        return [self._point(a, b) for a, b in pairwise(samples)]

    def summary(self, sid: str, window_s: float) -> TrafficPoint | None:
        """The last `window_s` seconds as one interval; None before two samples."""
        samples = self._samples.get(sid)
        if not samples or len(samples) < 2:
            return None
        last = samples[-1]
        first = next((s for s in samples if s.at >= last.at - window_s), samples[0])
        if first is last:
            first = samples[-2]
        return self._point(first, last)

    def _point(self, a: _Sample, b: _Sample) -> TrafficPoint:
        span = max(b.at - a.at, 1e-9)
        requests = _delta(b.requests, a.requests)
        errors = _delta(b.errors, a.errors)
        counts = _bucket_counts(a.buckets, b.buckets)
        bounds = self.bounds if len(self.bounds) == len(counts) else ()
        p50 = quantile(bounds, counts, 0.5) if bounds else None
        p99 = quantile(bounds, counts, 0.99) if bounds else None
        return TrafficPoint(b.at, a.at, requests / span, errors / span, int(requests),
                            int(errors), p50, p99, b.in_flight)

    def _counters(self, keys: set[str]
                  ) -> dict[str, tuple[float, float, float, tuple[float, ...]]]:
        """Per table key: (responses, errors, in flight, cumulative bucket counts)."""
        requests: dict[str, float] = {}
        errors: dict[str, float] = {}
        flight: dict[str, float] = {}
        buckets: dict[str, list[tuple[float, float]]] = {}
        for family in self.registry.collect():
            for s in family.samples:
                key = s.labels.get("service", "")
                if key not in keys:
                    continue
                if s.name == "corral_gateway_requests_total":
                    requests[key] = requests.get(key, 0.0) + s.value
                    if s.labels.get("code", "").startswith("5"):
                        errors[key] = errors.get(key, 0.0) + s.value
                elif s.name == "corral_gateway_in_flight":
                    flight[key] = s.value
                elif s.name == "corral_gateway_request_seconds_bucket":
                    buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
        for found in buckets.values():
            found.sort()
            self.bounds = tuple(b for b, _ in found)
        return {k: (requests.get(k, 0.0), errors.get(k, 0.0), flight.get(k, 0.0),
                    tuple(v for _, v in buckets.get(k, ()))) for k in keys}


def _delta(now: float, was: float) -> float:
    return now - was if now >= was else now  # a counter that restarted counts from zero


def _bucket_counts(was: tuple[float, ...], now: tuple[float, ...]) -> list[float]:
    """Per bucket (not cumulative) requests that ended between the two samples."""
    if len(was) != len(now):
        was = (0.0,) * len(now)
    cumulative = [_delta(n, w) for n, w in zip(now, was, strict=True)]
    return [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]
