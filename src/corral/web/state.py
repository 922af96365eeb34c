"""What the dashboard and the metrics share: one reading of the whole pool, briefly cached.

Every open dashboard polls every two seconds and Prometheus scrapes every few seconds; one
reading (nodes, queues, placements, active workloads and their demand) serves them all for
`cache_ttl_s`, then each caller filters it by what it may see. The cache's age is measured on
the monotonic clock; `at`, used for ages of pending work, comes from the control plane's clock.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from corral.api.context import ApiContext
from corral.control.snapshot import SpecCache, load_snapshot
from corral.core.model import Node, Queue
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.workloads import Held, WorkloadRecord
from corral.web.history import Sample, Sampler, UsageHistory, take_sample
from corral.web.settings import WebSettings

if TYPE_CHECKING:
    from corral.web.metrics import CorralMetrics

__all__ = ["PoolReader", "PoolState", "WebState", "web_state"]


@dataclass(frozen=True)
class PoolState:
    at: float
    nodes: list[Node]
    queues: list[Queue]
    held: list[Held]
    records: list[WorkloadRecord]  # active workloads, oldest first
    demand_milli: dict[str, int]  # per queue: own running + eligible pending, as the core sees it

    @property
    def capacity_gpus(self) -> float:
        return float(sum(n.gpu_count for n in self.nodes if n.schedulable))


class PoolReader:
    def __init__(self, ctx: ApiContext, ttl_s: float) -> None:
        self.ctx, self.ttl_s = ctx, ttl_s
        self._specs = SpecCache()
        self._lock = threading.Lock()
        self._cached: tuple[float, PoolState] | None = None

    def read(self) -> PoolState:
        with self._lock:  # one reader at a time; the others then get its result
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl_s:
                return self._cached[1]
            state = self._read()
            self._cached = (time.monotonic(), state)
            return state

    def _read(self) -> PoolState:
        now = self.ctx.clock.now()
        with self.ctx.store.read() as conn:
            nodes = P.list_nodes(conn)
            queues = P.list_queues(conn)
            held = W.holding_placements(conn)
            snap = load_snapshot(conn, now, self._specs)
        demand: dict[str, int] = defaultdict(int)
        for w in snap.state.workloads:
            demand[w.queue] += w.total_milli()
        records = sorted(snap.records.values(), key=lambda r: r.seq)
        return PoolState(now, nodes, queues, held, records, dict(demand))


@dataclass
class WebState:
    ctx: ApiContext
    settings: WebSettings
    reader: PoolReader
    history: UsageHistory
    sampler: Sampler = field(init=False)
    metrics: CorralMetrics = field(init=False)  # set by corral.web.mount.install

    def __post_init__(self) -> None:
        self.sampler = Sampler(self.sample, self.history, self.settings.usage_interval_s)

    @classmethod
    def build(cls, ctx: ApiContext, settings: WebSettings) -> WebState:
        return cls(ctx, settings, PoolReader(ctx, settings.cache_ttl_s),
                   UsageHistory(settings.usage_keep))

    def sample(self) -> Sample:
        s = self.reader.read()
        return take_sample(s.nodes, s.held, s.at)


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.corral_web
    return state

