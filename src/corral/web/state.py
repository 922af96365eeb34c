"""What the dashboard and the metrics share: one reading of the whole pool, briefly cached.

Every open dashboard polls every two seconds and Prometheus scrapes every few seconds; one
reading (nodes, queues, placements, active workloads and their demand) serves them all for
`cache_ttl_s`, then each caller filters it by what it may see. The cache's age is measured on
the monotonic clock; `at`, used for ages of pending work, comes from the control plane's clock.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from corral.api.context import ApiContext
from corral.control.live_state import LiveState
from corral.core.model import Node, Queue
from corral.store.workloads import HOLDING_STATES, Held, WorkloadRecord
from corral.web.grid import gpu_totals
from corral.web.history import Sample, Sampler, UsageHistory, take_sample
from corral.web.models import GpuTotals
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
    #: per queue: (pending, holding GPUs) workloads; and the pool's GPU totals (per reading,
    #: not per request: every open page asks for them every 2 s)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    totals: GpuTotals | None = None

    @property
    def capacity_gpus(self) -> float:
        return float(sum(n.gpu_count for n in self.nodes if n.schedulable))


class PoolReader:
    def __init__(self, ctx: ApiContext, ttl_s: float) -> None:
        self.ctx, self.ttl_s = ctx, ttl_s
        self._live = LiveState()
        self._lock = threading.Lock()
        self._cached: tuple[float, PoolState] | None = None
        #: the last reading's (LiveState generation, next moment a pending row becomes eligible,
        #: state): a reading whose copy of the cluster did not change reuses it
        self._derived: tuple[int, float, PoolState] | None = None

    def read(self) -> PoolState:
        with self._lock:  # one reader at a time; the others then get its result
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl_s:
                return self._cached[1]
            state = self._read()
            self._cached = (time.monotonic(), state)
            return state

    def _read(self) -> PoolState:
        """The pool from the reader's own copy of the cluster, brought up to date from the
        store's change feed (`corral.control.live_state`): a read after the cache expires
        costs what changed since the last one, not a decode of every active workload."""
        now = self.ctx.clock.now()
        live = self._live
        with self.ctx.store.read() as conn:
            live.refresh(conn)
        kept = self._derived
        # unchanged cluster: the sums over 100,000 rows are those of the last reading, unless a
        # pending row's backoff ran out since (it joins the demand)
        if kept is not None and kept[0] == live.generation and now < kept[1]:
            return dataclasses.replace(kept[2], at=now)
        state = self._derive(live, now)
        wake = min((r.not_before for r in live.records.values()
                    if r.state == "pending" and r.not_before > now), default=math.inf)
        self._derived = (live.generation, wake, state)
        return state

    @staticmethod
    def _derive(live: LiveState, now: float) -> PoolState:
        held = [Held(wid, live.records[wid].queue, a.node_id, a.devices, a.milli_per_device,
                     live.records[wid].started_at)
                for wid, placed in live.assignments.items() for a in placed]
        # what the core would see (LiveState.snapshot), without building its 100,000 forms:
        # eligible pending work at its nominal share, placed work at what it was given
        demand: dict[str, int] = defaultdict(int)
        for r in live.records.values():
            if r.state == "pending":
                if r.not_before <= now:
                    demand[r.queue] += live.core_pending(r).total_milli()
            elif r.stop_reason is None:
                placed = live.assignments.get(r.id, ())
                demand[r.queue] += (sum(a.milli_per_device * len(a.devices) for a in placed)
                                    if placed else live.core_pending(r).total_milli())
        counts: dict[str, tuple[int, int]] = {}
        for r in live.records.values():
            pending, holding = counts.get(r.queue, (0, 0))
            counts[r.queue] = (pending + (r.state == "pending"),
                               holding + (r.state in HOLDING_STATES))
        nodes = list(live.active_nodes.values())
        return PoolState(now, nodes, list(live.queues), held, list(live.records.values()),
                         dict(demand), counts, gpu_totals(nodes, held))


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

