"""Replay on rented capacity: providers with offer catalogs, driven by the pool autoscaler.

    trace ─> events (arrive, finish, join, spot interruption, autoscaler tick) ─> clock
          ─> each instant with news: one core cycle (CoreSession), as in replay.py
          ─> each tick (every `interval_s`): corral.autoscale.pool.decide on the waiting work,
             the offers, the instances and the nodes' use ─> launch (a slot of the offer; it
             joins `provisioning_s` later), drain, terminate
          ─> report: rented cost, JCT, GPU-hours rented/used/idle, interruptions, launches

How rented capacity is simulated: every instance any offer could give is a node of the core's
table from the start (up to `max_nodes` per offer), held *down* (the session's out-of-service
reservation) until an instance of it joins, and down again once it is returned. So the core,
its caches and its reasons are the replay's own; the autoscaler decides which slots come up.

Rules: an instance costs its offer's hourly price from launch to termination (provisioning is
paid, as on the clouds); an instance still up when the last task ends is paid until its idle
timeout and the next tick would have returned it. A spot node is interrupted after an
exponential time (mean `spot_mtbi_s`), with `spot_notice_s` of warning to its work. Waiting work
is shown to the autoscaler as `InsufficientCapacity`: in these runs every task is in one shared
queue with no quota or limit (policy fifo-backfill or sjf), so lack of capacity is the only
reason work waits; the core's own reason is not computed per cycle (it would cost a diagnosis
per shape per tick). An interrupted task stays on spot while spot, with what this replay
charges for an interruption (lost work re-run, the restart's wait and provisioning paid),
costs less than on-demand (`corral.autoscale.spot`); else it gets on-demand only.
`static=True` is baseline (a): a fixed pool (`static_pool`, offer key -> count) up the whole
time, no autoscaler.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np

from corral.autoscale import consolidate as CN
from corral.autoscale.packing import offer_key
from corral.autoscale.pool import (
    AutoscalerConfig,
    NodeUse,
    PoolView,
    ProviderLimits,
    Waiting,
    decide,
)
from corral.autoscale.spot import Checkpointing, SpotRisk
from corral.autoscale.state import AutoscalerState
from corral.core import reasons as R
from corral.core.model import (
    STABLE_CAPACITY,
    CapacityKind,
    Node,
    WorkerAssignment,
    WorkerResources,
    Workload,
)
from corral.providers.base import CapacityState, Instance, Offer
from corral.sim.clouds import SimProvider
from corral.sim.failures import FailureModel
from corral.sim.metrics import summary
from corral.sim.policies import ReplayPolicy
from corral.sim.replay import ReplayOptions, ReplayResult, _Job, _Replay
from corral.sim.trace import Trace, TraceTask

__all__ = ["AutoscaleOptions", "run_autoscaled"]

_JOIN, _SPOT, _TICK = 4, 5, 6


@dataclass(frozen=True)
class AutoscaleOptions:
    providers: tuple[SimProvider, ...]
    config: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    interval_s: float = 60.0
    static: bool = False
    static_pool: Mapping[str, int] = field(default_factory=dict)  # offer key -> instances
    #: QoS classes whose tasks may not be stopped (non-preemptible: on-demand capacity only,
    #: as the core's `allowed_capacity` says); () = every task preemptible, the replay's default
    stable_qos: tuple[str, ...] = ()
    #: weigh what an interruption costs (corral.autoscale.spot) with what this replay charges:
    #: each provider's interruption rate, notice and restart (a tick's wait + provisioning), and
    #: the failure model's checkpoints; False: the plain `spot_fallback_after` count
    weigh_interruptions: bool = True


def run_autoscaled(trace: Trace, policy: ReplayPolicy, options: AutoscaleOptions, seed: int = 0,
                   replay: ReplayOptions | None = None) -> ReplayResult:
    replay = replay or ReplayOptions()
    if replay.load is not None:
        trace = trace.at_load(replay.load)
    return _Autoscaled(trace, policy, seed, replay, options).run()


def _spot_rules(scale: AutoscaleOptions, failures: FailureModel
                ) -> tuple[AutoscalerConfig, Checkpointing]:
    """The autoscaler's config with what this replay charges for a spot interruption: each
    provider's rate and notice, a restart of half a tick plus provisioning; and how every task
    checkpoints (the failure model's: all it ran is saved when the notice gives it time to
    write a checkpoint, else what its periodic checkpoints kept, `FailureModel.saved`)."""
    ck = Checkpointing(failures.checkpoint_interval_s, failures.checkpoint_write_s)
    if not scale.weigh_interruptions or scale.config.spot_risk:
        return scale.config, ck
    risks = {p.name: SpotRisk(p.spot_mtbi_s, p.spot_notice_s,
                              scale.interval_s / 2 + p.provisioning_s)
             for p in scale.providers if p.spot_mtbi_s is not None}
    return replace(scale.config, spot_risk=risks), ck


@dataclass
class _Slot:
    node: str
    offer: Offer
    provider: SimProvider
    instance: str | None = None


class _Autoscaled(_Replay):
    def __init__(self, trace: Trace, policy: ReplayPolicy, seed: int, options: ReplayOptions,
                 scale: AutoscaleOptions) -> None:
        self.scale = scale
        self.slots: dict[str, _Slot] = {}
        self.by_offer: dict[str, list[str]] = {}
        for p in scale.providers:
            for o in p.offers:
                key = offer_key(o)
                count = scale.static_pool.get(key, 0) if scale.static else p.max_nodes
                for i in range(count):
                    node = f"{key}/{i}"
                    self.slots[node] = _Slot(node, o, p)
                    self.by_offer.setdefault(key, []).append(node)
        super().__init__(trace, policy, seed, replace(options, prices={}), None)
        self.state = AutoscalerState()
        self.instances: dict[str, Instance] = {}
        #: the ids of instances not terminated: each tick reads these, not every instance ever
        #: launched (thousands once long work stays on spot through its interruptions)
        self.alive: dict[str, None] = {}
        self.ended_at: dict[str, float] = {}
        self.use: dict[str, list[int]] = {}  # node -> [running, non-preemptible]
        self.alone: dict[str, dict[str, Workload]] = {}  # node -> work running only there
        #: node -> task -> (its assignments, per-worker resources): the node's taken room
        self.on_node: dict[str, dict[str, tuple[tuple[WorkerAssignment, ...],
                                                WorkerResources]]] = {}
        self.idle_since: dict[str, float] = {}
        self.acct: Counter[str] = Counter()
        self.launch_rng = np.random.default_rng(seed + 7919)
        for node in self.slots:
            self.session.node_down(node)
        self.seq_instance = 0
        self.slot_of: dict[str, str] = {}  # instance -> its slot's node
        self.config, ck = _spot_rules(scale, self.opt.failures)
        #: every task checkpoints alike (running work too: consolidation asks of it)
        self.checkpoints = dict.fromkeys(self.jobs, ck) if scale.weigh_interruptions else {}

    def _nodes(self) -> tuple[Node, ...]:
        return tuple(Node(s.node, s.offer.provider, s.offer.gpu_model, s.offer.gpus,
                          s.offer.gpu_memory_mib, s.offer.cpu_milli, s.offer.memory_mib,
                          float(s.offer.price_per_gpu_hour), s.offer.capacity_kind,
                          s.offer.region, s.offer.zone, rack=s.node)
                     for s in sorted(self.slots.values(), key=lambda s: s.node))

    def _schedule_failures(self) -> None:  # interruptions come with each rented spot node
        return

    def _job(self, t: TraceTask) -> _Job:
        job = super()._job(t)
        if t.qos in self.scale.stable_qos:
            job.workload = replace(job.workload, preemptible=False)
        return job

    # -- the clock --------------------------------------------------------------------------
    def run(self) -> ReplayResult:
        for t in self.trace.tasks:
            self._push(t.submitted, 3, t.name)
        if self.scale.static:
            for _, slot in sorted(self.slots.items()):
                self._launch_into(self.t0, slot)
                self._join(self.t0, slot.instance or "")
        else:
            self._push(self.t0, _TICK, "tick")
        patience = 4 * (self.scale.config.join_timeout_s + self.scale.config.backoff_max_s)
        while self.events and (self.open_work or self.pending):
            at = self.events[0][0]
            if not self.open_work and at - self.last_progress > patience:
                break  # what waits can never start on anything the providers offer
            while self.events and self.events[0][0] <= at:
                at, kind, _, key, run = heapq.heappop(self.events)
                if kind == _JOIN:
                    self._join(at, key)
                elif kind == _SPOT:
                    self._interrupt(at, key, run)
                elif kind == _TICK:
                    self._tick(at)
                else:
                    self._handle(at, kind, key, run)
            if self.pending:
                self._cycle(at)
        self._close_books()
        return self._result_with_rent()

    # -- the autoscaler ---------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        view = PoolView(
            [Waiting(w, R.INSUFFICIENT_CAPACITY) for w in self.pending.values()],
            [o for p in self.scale.providers for o in p.offers],
            [self.instances[k] for k in self.alive],
            self._node_use(), {p.name: ProviderLimits(max_nodes=p.max_nodes * len(p.offers))
                               for p in self.scale.providers},
            checkpoints=self.checkpoints)
        d = decide(view, self.state, self.config, now)
        self.state = d.state
        for wid in d.on_demand_only:
            self._on_demand_only(wid)
        for t in d.terminations:
            flying = self.instances[t.instance_id].state == CapacityState.PROVISIONING
            self._terminate(now, t.instance_id)
            self.acct["terminated_not_joined" if t.failed_offer else
                      "cancelled_on_the_way" if flying else "scale_down"] += 1
        for dr in d.drains:
            i = self.instances[dr.instance_id]
            self.instances[i.id] = replace(i, state=CapacityState.DRAINING)
            displaced = self.session.node_down(dr.node_id)
            if dr.stop_reason is not None:  # replaced or emptied: its work stops with notice
                self.acct["consolidated" if dr.stop_reason == CN.NODE_CONSOLIDATED
                          else "replaced"] += 1
                for wid in displaced:
                    self._stop(now, self.jobs[wid], notice=self.opt.failures.preempt_notice_s)
        for x in d.launches:
            for _ in range(x.count):
                iid = self._launch(now, x.offer)
                if x.replaces is not None and iid is not None:
                    self.state = self.state.replacement_launched(iid)
        if self.open_work or self.pending or self.alive:
            self._push(now + self.scale.interval_s, _TICK, "tick")

    def _node_use(self) -> dict[str, NodeUse]:
        out = {}
        for i in (self.instances[k] for k in self.alive):
            if i.node_id is None:
                continue
            running, stable = self.use.get(i.node_id, [0, 0])
            alone = self.alone.get(i.node_id, {})
            o = i.offer
            free = CN.free_room(o.gpus, o.cpu_milli, o.memory_mib, i.node_id,
                                self.on_node.get(i.node_id, {}).values())
            out[i.node_id] = NodeUse(running, stable, self.idle_since.get(i.node_id),
                                     tuple(alone[k] for k in sorted(alone)), free)
        return out

    def _on_demand_only(self, wid: str) -> None:
        job = self.jobs[wid]
        if job.workload.capacity_kinds == STABLE_CAPACITY:
            return
        job.workload = replace(job.workload, capacity_kinds=STABLE_CAPACITY)
        if wid in self.pending:
            self.pending[wid] = job.workload
        self.acct["fell_back_to_on_demand"] += 1

    def _launch(self, now: float, offer: Offer) -> str | None:
        key = offer_key(offer)
        free = next((n for n in self.by_offer.get(key, ()) if self.slots[n].instance is None), None)
        provider = next(p for p in self.scale.providers if p.name == offer.provider)
        if free is None or self.launch_rng.random() < provider.launch_failure_rate:
            self.acct["launch_failures"] += 1
            self.state = self.state.launch_failed(
                offer, "NoCapacity", now, base_s=self.scale.config.backoff_base_s,
                max_s=self.scale.config.backoff_max_s)
            return None
        self.state = self.state.launch_succeeded(offer)
        slot = self.slots[free]
        self._launch_into(now, slot)
        self._push(now + provider.provisioning_s, _JOIN, slot.instance or "")
        return slot.instance

    def _launch_into(self, now: float, slot: _Slot) -> None:
        self.seq_instance += 1
        iid = f"sim-{self.seq_instance:06d}"
        slot.instance = iid
        self.slot_of[iid] = slot.node
        self.alive[iid] = None
        self.instances[iid] = Instance(iid, slot.offer.provider, slot.offer,
                                       CapacityState.PROVISIONING, "", now, None)
        self.acct["launched"] += 1

    def _slot_of(self, iid: str) -> _Slot:
        return self.slots[self.slot_of[iid]]

    def _join(self, now: float, iid: str) -> None:
        i = self.instances.get(iid)
        if i is None or i.state != CapacityState.PROVISIONING:
            return  # returned before it joined
        slot = self._slot_of(iid)
        self.instances[iid] = replace(i, state=CapacityState.READY, node_id=slot.node)
        self.session.node_up(slot.node)
        self.idle_since[slot.node] = now
        self.freed = True
        self.acct["joined"] += 1
        mtbi = slot.provider.spot_mtbi_s
        if slot.offer.capacity_kind == CapacityKind.SPOT and mtbi is not None:
            self._push(now + float(self.rng.exponential(mtbi)), _SPOT, iid)

    def _terminate(self, now: float, iid: str) -> None:
        i = self.instances[iid]
        if i.state == CapacityState.TERMINATED:
            return
        slot = self._slot_of(iid)
        if i.state == CapacityState.READY:
            self.session.node_down(slot.node)
        slot.instance = None
        self.instances[iid] = replace(i, state=CapacityState.TERMINATED, node_id=None)
        self.alive.pop(iid, None)
        self.ended_at[iid] = now
        self.idle_since.pop(slot.node, None)
        self.acct["terminated"] += 1

    def _interrupt(self, now: float, iid: str, _run: int) -> None:
        i = self.instances.get(iid)
        if i is None or i.state not in (CapacityState.READY, CapacityState.DRAINING):
            return
        slot = self._slot_of(iid)
        self.counts["spot_interruptions"] += 1
        for wid in self.session.node_down(slot.node):
            self.state = self.state.interrupted(wid, slot.offer.provider, slot.offer.zone)
            self._stop(now, self.jobs[wid], notice=slot.provider.spot_notice_s)
        slot.instance = None
        self.instances[iid] = replace(i, state=CapacityState.TERMINATED, node_id=None)
        self.alive.pop(iid, None)
        self.ended_at[iid] = now
        self.idle_since.pop(slot.node, None)
        self.acct["terminated"] += 1

    # -- who runs where -----------------------------------------------------------------------
    def _start(self, now: float, job: _Job, assignments: tuple[WorkerAssignment, ...]) -> None:
        super()._start(now, job, assignments)
        nodes = {a.node_id for a in assignments}
        if len(nodes) == 1:  # started_at: consolidation respects min_runtime_s
            self.alone.setdefault(next(iter(nodes)), {})[job.task.name] = replace(
                job.workload, started_at=now)
        for node in nodes:
            self.on_node.setdefault(node, {})[job.task.name] = (assignments,
                                                                job.workload.resources)
            use = self.use.setdefault(node, [0, 0])
            use[0] += 1
            use[1] += 0 if job.workload.preemptible else 1
            self.idle_since.pop(node, None)  # busy until its last work ends

    def _stop(self, now: float, job: _Job, finished: bool = False, notice: float | None = None,
              release: bool = True) -> None:
        nodes = {a.node_id for a in job.assignments}
        stable = not job.workload.preemptible
        super()._stop(now, job, finished, notice, release)
        for node in nodes:
            self.alone.get(node, {}).pop(job.task.name, None)
            self.on_node.get(node, {}).pop(job.task.name, None)
            use = self.use.setdefault(node, [1, 0])
            use[0] -= 1
            use[1] -= 1 if stable else 0
            if use[0] <= 0:
                self.idle_since[node] = now
        if finished:
            self.state = self.state.forget([job.task.name])

    # -- the bill -------------------------------------------------------------------------------
    def _close_books(self) -> None:
        """Instances up when the last task ends: paid until the tick that would return them."""
        ended = [j.finish for j in self.jobs.values() if j.finish is not None]
        end = max(ended, default=self.t0)
        grace = 0.0 if self.scale.static else (self.scale.config.idle_timeout_s
                                               + 2 * self.scale.interval_s)
        for iid, i in self.instances.items():
            if i.state != CapacityState.TERMINATED:
                idle = self.idle_since.get(i.node_id or "", end)
                self.ended_at[iid] = max(end, idle + grace) if grace else end
                self.acct["terminated"] += 1

    def _result_with_rent(self) -> ReplayResult:
        result = self._result()
        rented_cost, rented_gpu_s = Decimal(0), 0.0
        per_provider: dict[str, float] = {}
        for iid, i in self.instances.items():
            hours = (self.ended_at[iid] - i.launched_at) / 3600.0
            cost = i.offer.price_per_hour * Decimal(str(round(hours, 9)))
            rented_cost += cost
            rented_gpu_s += i.offer.gpus * hours * 3600.0
            per_provider[i.provider] = per_provider.get(i.provider, 0.0) + float(cost)
        used_gpu_h = self.alloc.integral / 3600.0
        jobs = list(self.jobs.values())
        report = dict(result.report)
        report.update({
            "experiment": "replay-static-pool" if self.scale.static else "replay-autoscaled",
            "providers": [p.name for p in self.scale.providers],
            "cost": round(float(rented_cost), 2),
            "cost_by_provider": {k: round(v, 2) for k, v in sorted(per_provider.items())},
            "gpu_hours_rented": round(rented_gpu_s / 3600.0, 2),
            "gpu_hours_used": round(used_gpu_h, 2),
            "gpu_hours_idle": round(rented_gpu_s / 3600.0 - used_gpu_h, 2),
            # of the GPU-hours rented, not of every slot the providers could give
            "gpu_allocation_pct": round(100.0 * used_gpu_h * 3600.0 / rented_gpu_s, 4)
            if rented_gpu_s else 0.0,
            "jct_s": summary([j.finish - j.task.submitted for j in jobs if j.finish is not None]),
            "instances": {k: v for k, v in sorted(self.acct.items())},
            "peak_instances": self._peak(),
        })
        return ReplayResult(report, result.series)

    def _peak(self) -> dict[str, int]:
        """The most instances of each offer up at once (sizes baseline (a) from run (b))."""
        peaks: dict[str, int] = {}
        by_offer: dict[str, list[tuple[float, int]]] = {}
        for iid, i in self.instances.items():
            marks = by_offer.setdefault(offer_key(i.offer), [])
            marks += [(i.launched_at, 1), (self.ended_at[iid], -1)]
        for key, marks in by_offer.items():
            level = peak = 0
            for _, step in sorted(marks, key=lambda m: (m[0], m[1])):
                level += step
                peak = max(peak, level)
            peaks[key] = peak
        return dict(sorted(peaks.items()))


def cheapest_single(runs: Sequence[dict[str, object]]) -> dict[str, object]:
    """The single-provider run with the least cost (baseline (b))."""
    return min(runs, key=lambda r: float(r["cost"]))  # type: ignore[arg-type]
