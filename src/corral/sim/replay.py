"""Experiment 2, replay: the trace on a simulated clock, with waiting, departures and failures.

    trace ─> queue map ─> events (arrive, finish, node down/up) ─> clock
          ─> at each instant with news: one core cycle (CoreSession: the core's own actions)
          ─> apply the outcome: start, stop (preempted: back in line), schedule finishes
          ─> metrics (JCT, wait, makespan, allocation, shares, preemptions, cost, goodput)

Rules:
- A task arrives at its submission time and runs for its `duration` (see `trace.run_time` for
  the rule when a trace lacks a time). It waits while it does not fit.
- Events at one instant are handled finishes first, then node changes, then arrivals; then one
  cycle decides. With `interval_s` > 0, decisions happen only at multiples of the interval (a
  control loop period) and events wait for the next one.
- A preempted or interrupted task returns to its queue with its original submission time, so it
  keeps its place in line; what it keeps of its progress follows the failure model.
- With a policy whose `usage_weight` > 0 (time-decayed fair share), each cycle gets every
  queue's decayed GPU-seconds of the runs so far, by the core's own integral (`DecayedUsage`),
  as the control plane's snapshot gives it from its metering.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from corral.core.fairshare import QueueNode, decay, decayed_gpu_seconds, hierarchical_shares
from corral.core.model import (
    MILLI_PER_GPU,
    CapacityKind,
    Node,
    Queue,
    WorkerAssignment,
    Workload,
)
from corral.sim.device_faults import DeviceFaults
from corral.sim.failures import NO_FAILURES, FailureModel
from corral.sim.metrics import TimeWeighted, share_report, summary
from corral.sim.policies import ReplayPolicy
from corral.sim.session import CoreSession
from corral.sim.teams import map_queues
from corral.sim.trace import Trace, TraceFormatError, TraceTask

_FINISH, _DOWN, _UP, _ARRIVE = 0, 1, 2, 3  # order of events at one instant
_GPU_FAULT, _GPU_CLEAR, _GPU_BACK = 4, 5, 6  # a GPU's fault, healthy again, back in service
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplayOptions:
    queues: str = "teams"  # qos | teams | trace, see corral.sim.teams
    teams: int = 4
    quota_fraction: float = 0.8
    failures: FailureModel = NO_FAILURES
    prices: Mapping[str, float] = field(default_factory=dict)  # GPU model -> per GPU-hour
    interval_s: float = 0.0
    load: float | None = None  # squeeze arrivals to this offered load (see Trace.at_load)
    pool_fraction: float = 1.0  # keep this share of the nodes (see Trace.with_pool_fraction)
    #: show each cycle only the first N waiting workloads of each queue (in the core's order),
    #: as a control plane with a huge backlog would; None: all (what `schedule` sees)
    max_waiting_per_queue: int | None = None
    series_points: int = 400  # points of the time series kept for the report and plots
    #: open each cycle from the opening kept since the last (`WarmStart`, as the control
    #: plane does); False: sorted and shaped afresh each cycle (the same results, tests/sim)
    warm_start: bool = True


class DecayedUsage:
    """Each queue's decayed GPU-seconds (`fairshare.decayed_gpu_seconds` summed over every run
    it has had), kept in O(1) per start or stop instead of summing all runs at every cycle.

    Between two changes a queue holds a constant number of GPUs, and a run's weight only scales
    by 2^(-elapsed/h) as time passes. So advancing a queue from its last change to `now` is
    `decay` of its total plus the integral of the GPUs it held over the gap: exactly the sum of
    the runs' integrals, with no horizon to cut. Times must not go backwards (the replay's
    clock does not); GPUs are kept in milli, so a queue that holds nothing holds exactly 0."""

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.total: dict[str, float] = {}
        self.milli: dict[str, int] = {}
        self.since: dict[str, float] = {}

    def change(self, queue: str, now: float, milli: int) -> None:
        """`queue` starts (`milli` > 0) or stops (< 0) holding `milli` at `now`."""
        self._advance(queue, now)
        self.milli[queue] = self.milli.get(queue, 0) + milli

    def at(self, now: float) -> dict[str, float]:
        """Every queue's decayed GPU-seconds at `now`."""
        for queue in self.total:
            self._advance(queue, now)
        return dict(self.total)

    def _advance(self, queue: str, now: float) -> None:
        last = self.since.setdefault(queue, now)
        if now <= last:
            self.total.setdefault(queue, 0.0)
            return
        h = self.half_life_s
        held = decayed_gpu_seconds(self.milli.get(queue, 0) / MILLI_PER_GPU, last, now, now, h)
        self.total[queue] = decay(self.total.get(queue, 0.0), held, now - last, h)
        self.since[queue] = now


@dataclass
class _Job:
    task: TraceTask
    workload: Workload  # as it waits: pending, no assignments
    milli: int
    work: float
    done: float = 0.0  # saved progress, seconds
    started: float | None = None  # start of the current run
    assignments: tuple[WorkerAssignment, ...] = ()
    first_start: float | None = None
    finish: float | None = None
    run: int = 0  # bumps on every start and stop, so stale finish events are ignored
    stops: int = 0
    lost: float = 0.0  # GPU-seconds of progress lost


@dataclass(frozen=True)
class ReplayResult:
    report: dict[str, object]
    series: dict[str, list[float]]  # time, pending, running, allocated GPUs


def run_replay(
    trace: Trace,
    policy: ReplayPolicy,
    seed: int = 0,
    options: ReplayOptions | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    if not trace.has_times:
        raise TraceFormatError(
            f"trace {trace.name!r} has no submission times or durations: replay needs them "
            "(the fill experiment does not)"
        )
    options = options or ReplayOptions()
    if options.pool_fraction < 1.0:
        trace = trace.with_pool_fraction(options.pool_fraction, seed)
    if options.load is not None:
        trace = trace.at_load(options.load)
    return _Replay(trace, policy, seed, options, progress).run()


class _Replay:
    def __init__(self, trace: Trace, policy: ReplayPolicy, seed: int, options: ReplayOptions,
                 progress: Progress | None) -> None:
        self.started_wall = time.perf_counter()
        self.trace, self.policy, self.seed, self.opt = trace, policy, seed, options
        self.progress = progress
        self.rng = np.random.default_rng(seed)
        self.queue_map = map_queues(trace, options.queues, options.teams, seed,
                                    options.quota_fraction)
        self.nodes = self._nodes()
        self.price = {n.id: options.prices.get(n.gpu_model, n.price_per_gpu_hour) for n in self.nodes}
        queues = (Queue("shared"),) if policy.shared_queue else self.queue_map.queues
        self.session = CoreSession(self.nodes, queues, policy.config, seed, options.warm_start)
        self.jobs = {t.name: self._job(t) for t in trace.tasks}
        self.events: list[tuple[float, int, int, str, int]] = []
        self.seq = 0
        self.pending: dict[str, Workload] = {}
        self.demand: dict[str, int] = defaultdict(int)  # by scheduling queue, for the core
        self.team_demand: dict[str, int] = defaultdict(int)  # by team, for the fairness report
        self.open_work = 0  # arrive and finish events not yet handled
        self.down: set[str] = set()
        self.t0 = min(t.submitted for t in trace.tasks)
        #: GPU faults and their cordons, per GPU or per node (corral.sim.device_faults)
        self.faults = DeviceFaults(options.failures, self.nodes, seed)
        # The middle 90% of arrivals, as in Trace.offered_load: allocation "while arriving".
        lo, hi = np.percentile([t.submitted for t in trace.tasks], [5, 95])
        self.window = (float(lo), float(hi))
        self.alloc = TimeWeighted(self.t0)
        self.alloc_marks: list[float] = []  # allocation integral at the window's ends
        self.used = {q.name: TimeWeighted(self.t0) for q in self.queue_map.queues}
        self.deserved = {q.name: TimeWeighted(self.t0) for q in self.queue_map.queues}
        self.allocated = 0
        self.cost = 0.0
        self.counts: Counter[str] = Counter()
        self.series: list[tuple[float, int, int, float]] = []
        self.done = 0
        self.last_progress = self.t0
        # What changed since the last cycle (see `_candidates`).
        self.fresh: list[str] = []
        self.freed = True
        config = policy.config
        self.disruptive = config.consolidate or config.reclaim or config.preempt
        #: decayed past use per scheduling queue, for time-decayed fair share (None: off)
        self.usage = DecayedUsage(config.usage_half_life_s) if config.usage_weight > 0 else None

    # -- setup ------------------------------------------------------------------------------
    def _nodes(self) -> tuple[Node, ...]:
        f = self.opt.failures
        if f.spot_fraction <= 0:
            return self.trace.nodes
        spot = self.rng.random(len(self.trace.nodes)) < f.spot_fraction
        return tuple(replace(n, capacity_kind=CapacityKind.SPOT) if s else n
                     for n, s in zip(self.trace.nodes, spot, strict=True))

    def _job(self, t: TraceTask) -> _Job:
        team = self.queue_map.of_task[t.name]
        if self.policy.shortest_first:
            priority = -round(t.duration or 0.0)  # the oracle: shortest first
        elif self.policy.shared_queue:
            priority = 0
        else:
            priority = self.queue_map.priority(t.qos, t.priority)
        w = Workload(t.name, "shared" if self.policy.shared_queue else team, t.resources(),
                     workers=t.workers, priority=priority, gpu_models=t.gpu_models,
                     submitted_at=t.submitted)
        return _Job(t, w, t.total_milli, float(t.duration or 0.0))

    def _push(self, at: float, kind: int, key: str, run: int = 0) -> None:
        heapq.heappush(self.events, (at, kind, self.seq, key, run))
        self.seq += 1
        if kind in (_ARRIVE, _FINISH):
            self.open_work += 1

    # -- the clock --------------------------------------------------------------------------
    def run(self) -> ReplayResult:
        for t in self.trace.tasks:
            self._push(t.submitted, _ARRIVE, t.name)
        self._schedule_failures()
        interval = self.opt.interval_s
        f = self.opt.failures
        # With nothing left to arrive or finish, waiting work can only start on capacity that
        # comes back: wait for repairs for a while, then stop (a failure chain never ends).
        patience = 2 * max(f.node_repair_s, f.spot_return_s,
                           f.gpu_fault_s + f.gpu_recover_after_s)
        while self.events and (self.open_work or (self._capacity_out() and self.pending)):
            first = self.events[0][0]
            if not self.open_work and first - self.last_progress > patience:
                break
            now = math.ceil(first / interval) * interval if interval > 0 else first
            while self.events and self.events[0][0] <= now:
                at, kind, _, key, run = heapq.heappop(self.events)
                self._handle(at, kind, key, run)
            if self.pending:
                self._cycle(now)
        self._check_books()
        return self._result()

    def _check_books(self) -> None:
        """Everything that ran has ended: all capacity must be back. A bug guard (a workload
        released twice or never would show here), cheap enough to run every time."""
        if self.session.live or self.open_work:
            return  # ended early (work that can never start): nothing to compare against
        cap = self.session.cap
        valid = cap.free_milli >= 0
        if not (cap.consistent() and (cap.free_milli[valid] == MILLI_PER_GPU).all()
                and (cap.free_cpu == cap.table.cpu).all()):
            raise RuntimeError("replay accounting error: capacity did not all come back")

    def _handle(self, at: float, kind: int, key: str, run: int) -> None:
        while len(self.alloc_marks) < 2 and at >= self.window[len(self.alloc_marks)]:
            self.alloc.advance(self.window[len(self.alloc_marks)])
            self.alloc_marks.append(self.alloc.integral)
        if kind in (_ARRIVE, _FINISH):
            self.open_work -= 1
        if kind == _ARRIVE:
            self.last_progress = at
            job = self.jobs[key]
            self.pending[key] = job.workload
            self.fresh.append(key)
            self.demand[job.workload.queue] += job.milli
            self.team_demand[self.queue_map.of_task[key]] += job.milli
        elif kind == _FINISH and run == self.jobs[key].run:
            self._stop(at, self.jobs[key], finished=True)
        elif kind == _DOWN:
            self._node_down(at, key, run)
        elif kind == _UP:
            self.freed = True
            if key not in self.faults.whole:  # still out for a GPU fault: it stays out
                self.session.node_up(key)
            self.down.discard(key)
            self._next_failure(at, key, spot=run == 1)
        elif kind in (_GPU_FAULT, _GPU_CLEAR, _GPU_BACK):
            self._gpu_event(at, kind, key, run)

    def _candidates(self) -> list[Workload]:
        """The pending work a cycle must see to decide what the core would decide on all of it.

        All of it, unless nothing returned capacity since the last cycle (no finish, eviction or
        repair), no action may free any (no consolidation, reclaim or preemption) and no gang
        waits (its reservation is remade every cycle). Then everything that waited at the last
        cycle fails again now (the core's placer itself remembers such failures and skips them),
        so only the new arrivals can start, in the same order. With backfill off, nothing may
        start behind older waiting work of its queue.
        """
        fresh, self.fresh = self.fresh, []
        everything = list(self.pending.values())
        if self.freed or self.disruptive or any(w.workers > 1 for w in everything):
            return everything
        new = [self.pending[i] for i in fresh if i in self.pending]
        if not self.policy.config.backfill:
            blocked = {w.queue for w in everything} - {w.queue for w in new}
            blocked |= {w.queue for w in everything if w.id not in set(fresh)}
            new = [w for w in new if w.queue not in blocked]
        return new

    def _deserved(self, now: float) -> None:
        """Each team's deserved share now, by the core's own fair-share math on the teams'
        quotas and demand, whatever the policy (a shared-queue policy still owes teams their
        share: that is what its fairness is measured against)."""
        teams = [QueueNode(q.name, q.parent, self.team_demand[q.name] / MILLI_PER_GPU,
                           q.quota_gpus, q.limit_gpus, q.weight) for q in self.queue_map.queues]
        shares = hierarchical_shares(self.trace.gpu_capacity_milli / MILLI_PER_GPU, teams)
        for q, tw in self.deserved.items():
            tw.set(now, shares.get(q, 0.0))

    def _cycle(self, now: float) -> None:
        self._deserved(now)
        candidates = self._candidates()
        limit = self.opt.max_waiting_per_queue
        if limit is not None:
            shown: dict[str, int] = defaultdict(int)
            kept = []
            for w in sorted(candidates, key=lambda w: (-w.priority, w.submitted_at, w.id)):
                if shown[w.queue] < limit:
                    shown[w.queue] += 1
                    kept.append(w)
            candidates = kept
        self.freed = False
        if not candidates:
            return
        usage = self.usage.at(now) if self.usage is not None else None
        # cordoned GPUs' room: only the work on nodes with a GPU out counts
        held = self.faults.holds(self.session.running_on(self.faults.out_nodes()))
        outcome = self.session.cycle(now, candidates, self.demand, usage, nominations=held)
        self.counts["cycles"] += 1
        for wid, rule in outcome.evicted:
            self.counts[f"evicted:{rule}"] += 1
            self._stop(now, self.jobs[wid], notice=self.opt.failures.preempt_notice_s,
                       release=False)
        for wid, assignments in outcome.placed.items():
            self._start(now, self.jobs[wid], assignments)
        self._sample(now)

    # -- starting and stopping work ---------------------------------------------------------
    def _start(self, now: float, job: _Job, assignments: tuple[WorkerAssignment, ...]) -> None:
        del self.pending[job.task.name]
        job.started, job.assignments = now, assignments
        job.run += 1
        self.last_progress = now
        if job.first_start is None:
            job.first_start = now
        self._push(now + max(job.work - job.done, 0.0), _FINISH, job.task.name, job.run)
        self._account(now, job, +1)

    def _stop(self, now: float, job: _Job, finished: bool = False,
              notice: float | None = None, release: bool = True) -> None:
        """End the current run of `job`: finished, or stopped (with `notice` seconds of warning,
        None for none) and back in line with what its checkpoints saved. `release`: free its
        capacity in the session (False for evictions: the cycle's statement already did, and a
        moved workload holds its new place)."""
        if release:
            self.session.finish(job.task.name)
        assert job.started is not None
        ran = now - job.started
        self._account(now, job, -1)
        self.cost += sum(a.milli_per_device * len(a.devices) * self.price[a.node_id]
                         for a in job.assignments) / MILLI_PER_GPU * ran / 3600.0
        job.started, job.assignments = None, ()
        job.run += 1
        self.freed = True
        if finished:
            # a finish is progress too: waiting work is not given up on while work still ends
            # (the patience of `run` counts from the last start, arrival or finish)
            self.last_progress = now
            job.finish = now
            self.demand[job.workload.queue] -= job.milli
            self.team_demand[self.queue_map.of_task[job.task.name]] -= job.milli
            self.done += 1
            if self.progress is not None and (self.done % 512 == 0 or self.done == len(self.jobs)):
                self.progress(self.done, len(self.jobs))
            return
        kept = self.opt.failures.saved(ran, notice)
        job.done += kept
        job.lost += (ran - kept) * job.milli / MILLI_PER_GPU
        job.stops += 1
        self.pending[job.task.name] = job.workload

    def _account(self, now: float, job: _Job, sign: int) -> None:
        if self.usage is not None:
            self.usage.change(job.workload.queue, now, sign * job.milli)
        self.allocated += sign * job.milli
        self.alloc.set(now, self.allocated / MILLI_PER_GPU)
        tw = self.used.get(self.queue_map.of_task[job.task.name])
        if tw is not None:
            tw.set(now, tw.value + sign * job.milli / MILLI_PER_GPU)

    def _sample(self, now: float) -> None:
        self.series.append((now, len(self.pending), len(self.session.live),
                            self.allocated / MILLI_PER_GPU))

    # -- failures ---------------------------------------------------------------------------
    def _schedule_failures(self) -> None:
        for n in self.nodes:
            self._next_failure(self.t0, n.id, spot=False)
            if n.capacity_kind == CapacityKind.SPOT:
                self._next_failure(self.t0, n.id, spot=True)
            if self.faults.on and n.gpu_count:
                self._next_gpu_fault(self.t0, n.id)

    def _capacity_out(self) -> bool:
        return bool(self.down or self.faults.whole or any(self.faults.out.values()))

    def _next_gpu_fault(self, now: float, node: str) -> None:
        gap, device = self.faults.next_fault(node)
        self._push(now + gap, _GPU_FAULT, node, device)

    def _gpu_event(self, now: float, kind: int, node: str, device: int) -> None:
        """A GPU fault (cordon and stop the work there), its end (healthy from now), or the
        check whether what it took out comes back (`DeviceFaults.recover`, the live rule)."""
        f = self.opt.failures
        if kind == _GPU_CLEAR:
            self.faults.clear(now, node, device)
            self._push(now + f.gpu_recover_after_s, _GPU_BACK, node)
            return
        if kind == _GPU_BACK:
            back = self.faults.recover(now, node)
            if back is not None:
                self.freed = True
                if back.whole and node not in self.down:
                    self.session.node_up(node)
            return
        self._next_gpu_fault(now, node)  # the node's chain goes on whatever this one does
        cordon = self.faults.fault(now, node, device)
        if cordon is None:
            return
        self.counts["gpu_faults"] += 1
        self._push(now + f.gpu_fault_s, _GPU_CLEAR, node, device)
        on_node = sorted(self.session.on_node.get(node, ()))
        if cordon.whole and node not in self.down:
            self.session.node_down(node)
        for wid in on_node:
            hit = any(a.node_id == node and device in a.devices
                      for a in self.session.where[wid])
            if hit:  # the faulty GPU's work: the fault's own warning, if any
                self._stop(now, self.jobs[wid], notice=f.gpu_fault_notice_s)
            elif cordon.whole:  # the node's other work is drained with the preemption contract
                self._stop(now, self.jobs[wid], notice=f.preempt_notice_s)

    def _next_failure(self, now: float, node: str, spot: bool) -> None:
        f = self.opt.failures
        mean = f.spot_mtbi_s if spot else f.node_mtbf_s
        if mean is not None:
            self._push(now + float(self.rng.exponential(mean)), _DOWN, node, int(spot))

    def _node_down(self, now: float, node: str, spot: int) -> None:
        if node in self.down:  # already down: this failure chain resumes when it is back
            return
        f = self.opt.failures
        self.counts["spot_interruptions" if spot else "node_failures"] += 1
        self.down.add(node)
        notice = f.spot_notice_s if spot else None
        for wid in self.session.node_down(node):
            self._stop(now, self.jobs[wid], notice=notice)
        self._push(now + (f.spot_return_s if spot else f.node_repair_s), _UP, node, spot)

    # -- the report -------------------------------------------------------------------------
    def _result(self) -> ReplayResult:
        jobs = list(self.jobs.values())
        ended = [j for j in jobs if j.finish is not None]
        end = max((j.finish for j in ended if j.finish is not None), default=self.t0)
        for tw in (self.alloc, *self.used.values(), *self.deserved.values()):
            tw.advance(end)
        span = end - self.t0
        capacity = self.trace.gpu_capacity_milli / MILLI_PER_GPU
        per_queue, jain = share_report(
            {q: tw.average(self.t0, end) for q, tw in self.used.items()},
            {q: tw.average(self.t0, end) for q, tw in self.deserved.items()},
        )
        useful = sum(j.milli / MILLI_PER_GPU * j.work for j in ended)
        held = self.alloc.integral
        report: dict[str, object] = {
            "experiment": "replay",
            "trace": self.trace.name,
            "policy": self.policy.name,
            "seed": self.seed,
            "queues": self.opt.queues,
            "tasks": len(jobs),
            "completed": len(ended),
            "never_started": sum(1 for j in jobs if j.first_start is None),
            "jct_s": summary([j.finish - j.task.submitted for j in ended if j.finish is not None]),
            "wait_s": summary([j.first_start - j.task.submitted for j in jobs
                               if j.first_start is not None]),
            "makespan_s": round(span, 3),
            "gpu_allocation_pct": round(100.0 * self.alloc.average(self.t0, end) / capacity, 4)
            if capacity else 0.0,
            "gpu_allocation_pct_while_arriving": self._arriving_pct(capacity),
            "queue_shares": per_queue,
            "jain_index": round(jain, 6),
            "preemptions": sum(v for k, v in self.counts.items() if k.startswith("evicted:")),
            "evictions_by_rule": {k.split(":", 1)[1]: v for k, v in sorted(self.counts.items())
                                  if k.startswith("evicted:")},
            "cost": round(self.cost, 4),
            "pool_cost": round(sum(n.gpu_count * self.price[n.id] for n in self.nodes)
                               * span / 3600.0, 4),
            "node_failures": self.counts["node_failures"],
            "spot_interruptions": self.counts["spot_interruptions"],
            "gpu_hours_lost": round(sum(j.lost for j in jobs) / 3600.0, 4),
            "gpu_faults": self.counts["gpu_faults"],
            "gpu_hours_cordoned": round(self.faults.cordoned_gpu_s(end) / 3600.0, 4),
            "goodput_pct": round(100.0 * useful / held, 4) if held else 100.0,
            "cycles": self.counts["cycles"],
            "notes": list(self.trace.notes),
            "wall_seconds": round(time.perf_counter() - self.started_wall, 4),
        }
        return ReplayResult(report, self._series())

    def _arriving_pct(self, capacity: float) -> float:
        """Time-averaged allocation over the middle 90% of arrivals: the steady state, not
        diluted by stragglers or by the tail of long tasks after the last arrival."""
        lo, hi = self.window
        if len(self.alloc_marks) < 2 or hi <= lo or not capacity:
            return 0.0
        return round(100.0 * (self.alloc_marks[1] - self.alloc_marks[0]) / (hi - lo) / capacity, 4)

    def _series(self) -> dict[str, list[float]]:
        rows = self.series
        step = max(1, len(rows) // max(self.opt.series_points, 1))
        kept = rows[::step]
        return {"time_s": [r[0] - self.t0 for r in kept], "pending": [float(r[1]) for r in kept],
                "running": [float(r[2]) for r in kept], "allocated_gpus": [r[3] for r in kept]}
