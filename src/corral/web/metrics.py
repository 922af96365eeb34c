"""Prometheus metrics at /metrics: the pool, the queues, pending work, the scheduler, the API.

Each app has its own CollectorRegistry (never prometheus_client's global one), so several apps
in one process (tests, replicas) never share or clash. /metrics needs an admin token: it names
every queue (Prometheus: `authorization: {credentials_file: ...}` in the scrape config).

Three sources, by how they change:

- the pool's *present* (GPUs, queues, pending work) is read from the store at scrape time
  (`PoolCollector`, through the shared, briefly cached `PoolReader`);
- each GPU's *measured* use (utilisation, memory in use: what the hosts' vendor libraries
  sampled, `corral.control.device_use`) from the control plane's memory; labelled with the
  workload(s) holding the device ("" for none), so "held but idle" is one query:
  `corral_gpu_utilization_ratio{workload!=""} < scalar(corral_gpu_idle_below_ratio)` (the
  server's cut-off, `corral up --gpu-idle-below`, 0.1 by default). A sample older than the
  server's `--gpu-use-stale` (`USE_STALE_S` by default) is left out (its host stopped sending:
  a gauge would go on saying what is no longer true);
- *counters of what happened* (evictions, restarts, failures, finished work) come from the
  store's append-only event log, read incrementally from the last event seen
  (`EventCounters`): they count every event since the database began, so they agree across
  API replicas and survive restarts;
- the scheduler's *cycles* are observed in-process (`observe_cycle`, a `ControlLoop` observer:
  see `corral.web.observe_loop`) and API latency by an ASGI middleware (`RequestTimer`).

    family                               labels                   kind
    corral_gpus                          provider, model          gauge (GPUs in the pool)
    corral_gpus_allocated                provider, model, queue   gauge (fractional shares)
    corral_gpus_idle                     provider, model          gauge (free, schedulable)
    corral_gpus_unavailable              provider, model          gauge (free, cordoned/unhealthy)
    corral_nodes                         provider, model, status  gauge
    corral_gpu_utilization_ratio         node, device, workload   gauge (measured, 0..1)
    corral_gpu_memory_{used,total}_bytes node, device, workload   gauge (measured)
    corral_queue_{quota,limit,used,borrowed,fair_share,demand}_gpus   queue   gauge
    corral_workloads                     queue, state             gauge (active states)
    corral_pending_workloads             queue, reason            gauge
    corral_pending_age_{max,sum}_seconds queue, reason            gauge
    corral_{evictions,restarts,worker_failures,workloads_finished,workloads_submitted}_total
    corral_schedule_cycles_total         outcome                  counter
    corral_schedule_cycle_duration_seconds, corral_schedule_cycle_placements  histogram
    corral_api_request_duration_seconds  method, route, status    histogram
    corral_credits_{granted,spent}_total, corral_credits_{held,available,debt}   queue
                                         (the ledger's statements: corral.web.credits)
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, ClassVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response

from corral.control.clock import Clock
from corral.control.device_use import UseCutoffs, board_for, judges
from corral.control.lifecycle import RESTARTING, RESTARTS_EXHAUSTED, SUBMITTED, TERMINAL
from corral.control.loop import StepReport
from corral.control.retry import NOT_RETRIED
from corral.core.model import MILLI_PER_GPU
from corral.store import Store
from corral.store import workloads as W
from corral.web.credits import CreditCollector
from corral.web.queue_board import queue_board
from corral.web.state import PoolReader

# The client's `*_created` series are gauges with a reserved suffix to promtool, and say
# only when the process started: off (a process-wide setting of prometheus_client).
disable_created_metrics()

__all__ = [
    "CorralMetrics",
    "EventCounters",
    "PoolCollector",
    "RequestTimer",
    "metrics_response",
]


#: a use sample older than this is not exported (the health probe samples every 10 s): the
#: default of the server's setting (`corral up --gpu-use-stale`, the board's `cutoffs.stale_s`)
USE_STALE_S = UseCutoffs().stale_s
_MAX_HOLDERS = 4


def _holders(workloads: set[str]) -> str:
    """The workload label: who holds the device, sorted; shares of one device (fractional
    GPUs) are joined, at most `_MAX_HOLDERS` named, to keep the label set bounded."""
    names = sorted(workloads)
    if len(names) > _MAX_HOLDERS:
        names = [*names[:_MAX_HOLDERS], f"+{len(names) - _MAX_HOLDERS}"]
    return ",".join(names)


def _node_status(cordoned: bool, health: str) -> str:
    return "cordoned" if cordoned else ("ready" if health == "healthy" else health)


class PoolCollector(Collector):
    """GPUs, nodes, queues and pending work, from one reading of the store per scrape."""

    def __init__(self, reader: PoolReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        s = self.reader.read()
        yield from self._gpus(s)
        yield from self._device_use(s)
        yield from self._queues(s)
        yield from self._workloads(s)

    def _gpus(self, s: Any) -> Iterator[Metric]:
        node = {n.id: n for n in s.nodes}
        total = GaugeMetricFamily("corral_gpus", "GPUs in the pool",
                                  labels=["provider", "model"])
        alloc = GaugeMetricFamily("corral_gpus_allocated", "GPUs held by placed work "
                                  "(fractional shares add up)", labels=["provider", "model", "queue"])
        idle = GaugeMetricFamily("corral_gpus_idle", "free GPUs on schedulable nodes",
                                 labels=["provider", "model"])
        unavailable = GaugeMetricFamily("corral_gpus_unavailable", "free GPUs on cordoned, "
                                        "degraded or unhealthy nodes", labels=["provider", "model"])
        nodes = GaugeMetricFamily("corral_nodes", "nodes by status",
                                  labels=["provider", "model", "status"])
        used: dict[str, int] = defaultdict(int)
        by_queue: dict[tuple[str, str, str], int] = defaultdict(int)
        for h in s.held:
            n = node.get(h.node_id)
            milli = h.milli_per_device * len(h.devices)
            used[h.node_id] += milli
            if n is not None:
                by_queue[(n.provider, n.gpu_model, h.queue)] += milli
        sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        statuses: dict[tuple[str, str, str], int] = defaultdict(int)
        for n in s.nodes:
            t = sums[(n.provider, n.gpu_model)]
            free = max(n.gpu_count * MILLI_PER_GPU - used[n.id], 0)
            t[0] += n.gpu_count * MILLI_PER_GPU
            t[1 if n.schedulable else 2] += free
            statuses[(n.provider, n.gpu_model, _node_status(n.cordoned, str(n.health)))] += 1
        for (p, m), (tot, fr, un) in sorted(sums.items()):
            total.add_metric([p, m], tot / MILLI_PER_GPU)
            idle.add_metric([p, m], fr / MILLI_PER_GPU)
            unavailable.add_metric([p, m], un / MILLI_PER_GPU)
        for key, milli in sorted(by_queue.items()):
            alloc.add_metric(list(key), milli / MILLI_PER_GPU)
        for key, count in sorted(statuses.items()):
            nodes.add_metric(list(key), count)
        yield from (total, alloc, idle, unavailable, nodes)

    def _device_use(self, s: Any) -> Iterator[Metric]:
        labels = ["node", "device", "workload"]
        util = GaugeMetricFamily("corral_gpu_utilization_ratio", "measured GPU compute "
                                 "utilisation, 0..1 (NVML, amdsmi)", labels=labels)
        used = GaugeMetricFamily("corral_gpu_memory_used_bytes", "measured GPU memory in use",
                                 labels=labels)
        total = GaugeMetricFamily("corral_gpu_memory_total_bytes", "GPU memory as its driver "
                                  "reports it", labels=labels)
        holders: dict[tuple[str, int], list[tuple[str, float | None]]] = defaultdict(list)
        for h in s.held:
            for d in h.devices:
                holders[(h.node_id, d)].append((h.workload_id, h.began))
        board = board_for(self.reader.ctx.store)
        samples, cutoffs = board.all(), board.cutoffs
        for n in s.nodes:  # a node gone from the pool is gone from the gauges
            for d, u in sorted(samples.get(n.id, {}).items()):
                if not cutoffs.fresh(u, s.at):
                    continue
                # a holder whose hold began after the sample is not named on it (device_use)
                key = [n.id, str(d), _holders({w for w, began in holders.get((n.id, d), ())
                                               if judges(u, began)})]
                util.add_metric(key, u.utilization)
                used.add_metric(key, u.memory_used_bytes)
                total.add_metric(key, u.memory_total_bytes)
        below = GaugeMetricFamily("corral_gpu_idle_below_ratio", "the server's cut-off: a "
                                  "held GPU measured under this busy is 'held, barely used' "
                                  "(corral up --gpu-idle-below)", value=cutoffs.idle_below)
        yield from (util, used, total, below)

    def _queues(self, s: Any) -> Iterator[Metric]:
        board = queue_board(s.queues, s.held, s.demand_milli, s.records, s.capacity_gpus,
                            lambda _q: True)
        fields = {"quota": "guaranteed GPUs", "limit": "most GPUs the queue may use",
                  "used": "GPUs held by the queue and its children",
                  "borrowed": "GPUs used beyond the quota", "fair_share":
                  "deserved GPUs for current demand (fair share)",
                  "demand": "GPUs used plus wanted by pending work"}
        for key, doc in fields.items():
            g = GaugeMetricFamily(f"corral_queue_{key}_gpus", doc, labels=["queue"])
            for row in board.queues:
                value = getattr(row, f"{key}_gpus")
                if value is not None:
                    g.add_metric([row.name], value)
            yield g

    def _workloads(self, s: Any) -> Iterator[Metric]:
        states: dict[tuple[str, str], int] = defaultdict(int)
        ages: dict[tuple[str, str], list[float]] = defaultdict(list)
        for r in s.records:
            states[(r.queue, r.state)] += 1
            if r.state == "pending":
                ages[(r.queue, r.reason_code or "Waiting")].append(max(s.at - r.submitted_at, 0.0))
        active = GaugeMetricFamily("corral_workloads", "active workloads by state",
                                   labels=["queue", "state"])
        for key, n in sorted(states.items()):
            active.add_metric(list(key), n)
        pending = GaugeMetricFamily("corral_pending_workloads", "pending workloads by the "
                                    "scheduler's reason", labels=["queue", "reason"])
        oldest = GaugeMetricFamily("corral_pending_age_max_seconds", "age of the oldest pending "
                                   "workload", labels=["queue", "reason"])
        total = GaugeMetricFamily("corral_pending_age_sum_seconds", "summed ages of pending "
                                  "workloads (divide by corral_pending_workloads for the mean)",
                                  labels=["queue", "reason"])
        for key, xs in sorted(ages.items()):
            pending.add_metric(list(key), len(xs))
            oldest.add_metric(list(key), max(xs))
            total.add_metric(list(key), sum(xs))
        yield from (active, pending, oldest, total)


class EventCounters(Collector):
    """Counters over the event log, advanced from the last event id seen at each scrape."""

    _DOCS: ClassVar[dict[str, tuple[str, list[str]]]] = {
        "evictions": ("workloads evicted (preempt, reclaim, consolidate)", ["queue", "rule"]),
        "restarts": ("relaunches after a failure", ["queue"]),
        "worker_failures": ("attempts ended by a failed, lost or unlaunchable worker (each "
                            "attempt once: a restart, or the last failure)", ["queue"]),
        "workloads_finished": ("workloads that ended, by final state", ["queue", "state"]),
        "workloads_submitted": ("workloads submitted", ["queue"]),
    }

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._after = 0
        self._counts: dict[str, dict[tuple[str, ...], int]] = {k: defaultdict(int)
                                                                 for k in self._DOCS}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._advance()
            snapshot = {k: dict(v) for k, v in self._counts.items()}
        for key, (doc, labels) in self._DOCS.items():
            c = CounterMetricFamily(f"corral_{key}", doc, labels=labels)
            for values, n in sorted(snapshot[key].items()):
                c.add_metric(list(values), n)
            yield c

    def _advance(self) -> None:
        """Count the events written since the last scrape, aggregated in SQL: a first scrape
        of a store with a million events is one GROUP BY, not a million rows read back."""
        with self.store.read() as conn:
            upto = W.last_event_id(conn)
            if upto <= self._after:
                return
            for kind, reason, to_state, queue, n in W.count_events(conn, self._after, upto):
                self._count(kind, reason, to_state, queue, n)
        self._after = upto

    def _count(self, kind: str, reason: str, to_state: str, queue: str, n: int) -> None:
        c = self._counts
        if kind == "eviction":
            c["evictions"][(queue, reason)] += n
        elif kind == "transition":
            # every failed attempt ends in restart_or_fail: a restart, or failed for good; the
            # gang's WorkerFailed info event is not counted too (one attempt, one failure)
            if reason == RESTARTING:
                c["restarts"][(queue,)] += n
                c["worker_failures"][(queue,)] += n
            if reason in (RESTARTS_EXHAUSTED, NOT_RETRIED) and to_state == "failed":
                c["worker_failures"][(queue,)] += n
            if reason == SUBMITTED:
                c["workloads_submitted"][(queue,)] += n
            if to_state in TERMINAL:
                c["workloads_finished"][(queue, to_state)] += n


class CorralMetrics:
    """The registry of one app and the instruments that are fed from inside the process."""

    def __init__(self, reader: PoolReader, store: Store, clock: Clock) -> None:
        self.registry = CollectorRegistry()  # no auto-describe: it would read the store at startup
        r = self.registry
        self.request_seconds = Histogram(
            "corral_api_request_duration_seconds", "API request latency",
            ["method", "route", "status"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.cycles = Counter("corral_schedule_cycles", "control loop steps by outcome "
                              "(applied, stale plan, standby: not the leader)", ["outcome"],
                              registry=r)
        self.cycle_seconds = Histogram(
            "corral_schedule_cycle_duration_seconds", "duration of a leader's scheduling step",
            registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.cycle_placements = Histogram(
            "corral_schedule_cycle_placements", "workloads placed per scheduling step",
            registry=r, buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000))
        self.placements = Counter("corral_placements", "workloads placed by the scheduler",
                                  registry=r)
        self.stops = Counter("corral_schedule_stops", "running workloads the scheduler asked to "
                             "stop (evictions)", registry=r)
        r.register(PoolCollector(reader))
        r.register(EventCounters(store))
        r.register(CreditCollector(store, clock))

    def observe_cycle(self, report: StepReport) -> None:
        """A `ControlLoop` observer: feed it every step's report."""
        if not report.leader:
            self.cycles.labels("standby").inc()
            return
        self.cycles.labels("stale" if report.stale else "applied").inc()
        self.cycle_seconds.observe(report.duration_s)
        self.cycle_placements.observe(report.scheduled)
        self.placements.inc(report.scheduled)
        self.stops.inc(report.stopping)


class RequestTimer:
    """ASGI middleware: request latency by method, route template and status.

    The route is the template (`/v1/workloads/{workload_id}`), never the raw path, so that ids
    do not explode the label set; unmatched paths share one label."""

    def __init__(self, app: Any, histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram
        # each label set's child, found once: `labels()` validates, locks and looks it up on
        # every call (issue 14: a few percent of a submission's CPU in the API)
        self._children: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is None:
                route = "/ui" if scope.get("path", "").startswith("/ui") else "(unmatched)"
            key = (scope["method"], route, str(status))
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.histogram.labels(*key)
            child.observe(time.perf_counter() - started)


def metrics_response(metrics: CorralMetrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
