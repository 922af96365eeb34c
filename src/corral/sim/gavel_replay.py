"""Replaying Gavel's traces through the core: JCT of heterogeneity-blind and -aware policies.

    jobs (gavel.py) ─> event clock (arrive, finish) ─> CoreSession cycle (the core's actions)
                   ─> start: run time = steps left / throughput of the type it landed on
                   ─> [aware] market per cycle (plugins.throughput.market), migration rule
                   ─> report: average and p95 JCT, the lower bound, migrations

Policies (`POLICIES`), all in one shared queue (the traces have no teams):

| name | order | placement | moves |
|---|---|---|---|
| fifo | strict arrival order (no backfill) | corral's default scoring, blind to throughput | none |
| corral | corral's defaults (backfill, reservations, consolidation) | default scoring, blind | the core's own |
| fifo-aware | strict arrival order | + `throughput` at weight 4, the cycle's market | migration |
| aware | corral's defaults | + `throughput` at weight 4, the cycle's market | the core's own + migration |
| aware-las | aware, priority = least attained service (below), refreshed every 360 s | as aware | + the core's preemption by priority |

**aware-las** time-shares the pool as Gavel's rounds do, with the core's own preemption: every
360 s (Gavel's round) each job's priority becomes -floor(log2(1 + GPU-hours it has had)), so a
job that has had less service outranks one that has had more (discretised least attained
service, as Tiresias does; the buckets double, so a long job is not stopped every round), and
the core's preempt action stops lower-priority work for higher-priority waiting work. Each stop
costs the restart (`restart_s`).

**Migration rule** (`corral.core.migration.migration_gain`, shared with the control plane): a
running, preemptible, checkpointing job on type a moves to type b when b has enough free GPUs
after the cycle (waiting work had them first and could not use them) and the time it saves,
steps left x (1/T(a) - 1/T(b)), exceeds twice the restart cost: once to pay for the restart,
once as a margin against a wrong throughput estimate. Largest saving first. A restart (a move
or an eviction) costs `restart_s` seconds without progress (default 60 s: load a checkpoint
and warm up); the job keeps every step done (it checkpoints).

Deterministic: no random draw beyond the core's seeded ones (same trace, policy and seed, same
report).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from corral.core.config import DEFAULT_SCORING, SchedulerConfig
from corral.core.migration import migration_gain
from corral.core.model import MILLI_PER_GPU, Queue, WorkerResources, Workload
from corral.core.placement import Placer
from corral.core.plugins.throughput import THROUGHPUT, market
from corral.sim.gavel import DEFAULT_CLUSTER, GavelJob, Throughputs, cluster_nodes, percentile
from corral.sim.session import CoreSession

_FINISH, _ARRIVE, _ROUND = 0, 1, 2
THROUGHPUT_WEIGHT = 4.0  # above gpu-model (2): a stated throughput outranks fragmentation


@dataclass(frozen=True)
class HeteroPolicy:
    name: str
    config: SchedulerConfig
    aware: bool
    migrate: bool
    #: least attained service, discretised (Tiresias-like): priority = -floor(log2(1 + GPU-hours
    #: a job has had)), refreshed every `round_s`; the core's preemption (higher priority stops
    #: lower in the same queue) then time-shares the pool
    las: bool = False
    round_s: float = 360.0


_STRICT = SchedulerConfig(backfill=False, max_reservations=0, consolidate=False, reclaim=False,
                          preempt=False)
_AWARE_SCORING = {**DEFAULT_SCORING, THROUGHPUT: THROUGHPUT_WEIGHT}
POLICIES: Mapping[str, HeteroPolicy] = {
    "fifo": HeteroPolicy("fifo", _STRICT, aware=False, migrate=False),
    "corral": HeteroPolicy("corral", SchedulerConfig(), aware=False, migrate=False),
    "fifo-aware": HeteroPolicy("fifo-aware", replace(_STRICT, scoring=_AWARE_SCORING),
                               aware=True, migrate=True),
    "aware": HeteroPolicy("aware", SchedulerConfig(scoring=_AWARE_SCORING), aware=True,
                          migrate=True),
    "aware-las": HeteroPolicy("aware-las", SchedulerConfig(scoring=_AWARE_SCORING), aware=True,
                              migrate=True, las=True),
}


@dataclass
class _Job:
    job: GavelJob
    workload: Workload
    rates: dict[str, float]
    steps_done: float = 0.0
    started: float | None = None
    model: str = ""
    overhead: float = 0.0  # seconds of the current run spent restarting
    runs: int = 0
    attained: float = 0.0  # GPU-seconds held in runs that ended
    finish: float | None = None
    epoch: int = 0  # bumps on every start and stop: stale finish events are ignored

    def steps_left(self) -> float:
        return max(self.job.total_steps - self.steps_done, 0.0)


class GavelReplay:
    def __init__(self, jobs: Sequence[GavelJob], throughputs: Throughputs, policy: HeteroPolicy,
                 seed: int = 0, cluster: Mapping[str, int] = DEFAULT_CLUSTER,
                 restart_s: float = 60.0,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.policy, self.seed, self.restart_s, self.progress = policy, seed, restart_s, progress
        self.nodes = cluster_nodes(cluster)
        self.model_of = {n.id: n.gpu_model for n in self.nodes}
        self.session = CoreSession(self.nodes, (Queue("shared"),), policy.config, seed)
        self.jobs = {j.name: self._job(j, throughputs) for j in jobs}
        self.pending: dict[str, Workload] = {}
        self.events: list[tuple[float, int, int, str, int]] = []
        self.seq = 0
        self.demand = 0
        self.market_key: tuple[object, ...] = ()
        self.migrations = 0
        self.evictions = 0
        self.cycles = 0
        self.gpu_s_by_model: dict[str, float] = dict.fromkeys(cluster, 0.0)
        self.next_round: float | None = None

    def _job(self, j: GavelJob, throughputs: Throughputs) -> _Job:
        rates = throughputs.rates(j)
        stated = tuple(sorted(rates.items())) if self.policy.aware else ()
        # A type measured at 0 steps/s cannot run the job at all (ResNet-50 at batch 128 on
        # 2-8 K80s: out of memory): a feasibility rule every policy obeys, not a preference.
        runs_on = tuple(m for m in sorted(rates) if rates[m] > 0)
        w = Workload(j.name, "shared", WorkerResources(gpus=1, cpu_milli=1000, memory_mib=1024),
                     workers=j.scale, submitted_at=j.arrival, throughput=stated,
                     gpu_models=runs_on if len(runs_on) < len(rates) else ())
        return _Job(j, w, rates)

    def _push(self, at: float, kind: int, key: str, epoch: int = 0) -> None:
        heapq.heappush(self.events, (at, kind, self.seq, key, epoch))
        self.seq += 1

    # -- the clock --------------------------------------------------------------------------
    def run(self) -> dict[str, object]:
        wall = time.perf_counter()
        for j in self.jobs.values():
            self._push(j.job.arrival, _ARRIVE, j.job.name)
        while self.events:
            now = self.events[0][0]
            while self.events and self.events[0][0] <= now:
                _, kind, _, key, epoch = heapq.heappop(self.events)
                job = self.jobs.get(key)
                if kind == _ROUND:
                    self.next_round = None
                elif kind == _ARRIVE and job is not None:
                    self.pending[key] = job.workload
                    self.demand += job.workload.total_milli()
                elif job is not None and epoch == job.epoch and job.started is not None:
                    self._stop(now, job, finished=True)
            if self.pending:
                if self.policy.las:
                    self._reprioritise(now)
                self._cycle(now)
            if self.policy.migrate:
                self._migrate(now)
            if self.policy.las and self.pending and self.next_round is None:
                self.next_round = now + self.policy.round_s
                self._push(self.next_round, _ROUND, "")
        return self._report(time.perf_counter() - wall)

    def _level(self, job: _Job, now: float) -> int:
        held = job.attained + ((now - job.started) * job.job.scale if job.started is not None
                               else 0.0)
        return -int(math.log2(1.0 + held / 3600.0))

    def _reprioritise(self, now: float) -> None:
        """Least attained service first (`HeteroPolicy.las`): every job's priority from the
        GPU-hours it has had, waiting and running alike."""
        for name, w in list(self.pending.items()):
            job = self.jobs[name]
            job.workload = replace(w, priority=self._level(job, now))
            self.pending[name] = job.workload
        live = self.session.live
        for name, w in list(live.items()):
            level = self._level(self.jobs[name], now)
            if w.priority != level:
                live[name] = replace(w, priority=level)
                self.jobs[name].workload = replace(self.jobs[name].workload, priority=level)

    def _cycle(self, now: float, pending: list[Workload] | None = None) -> None:
        if self.policy.aware:
            self._update_market()
        work = list(self.pending.values()) if pending is None else pending
        outcome = self.session.cycle(now, work, {"shared": self.demand})
        self.cycles += 1
        for wid, _rule in outcome.evicted:
            self.evictions += 1
            self._stop(now, self.jobs[wid], finished=False, release=False)
        for wid, assignments in outcome.placed.items():
            self._start(now, self.jobs[wid], self.model_of[assignments[0].node_id])

    def _update_market(self) -> None:
        """The throughput plugin's reference rates and contention for this cycle's waiting work
        (`plugins.throughput.market`), rounded so that the placer's per-shape caches survive
        cycles whose market barely moved."""
        free = float((self.session.cap.free_milli[:, 0] == MILLI_PER_GPU).sum())
        ref, contention = market(self.pending.values(), free, self.model_of.values())
        key = (tuple((m, round(r, 2)) for m, r in sorted(ref.items())), round(contention, 1))
        if key == self.market_key:
            return
        self.market_key = key
        params = {THROUGHPUT: {"reference": dict(key[0]), "contention": key[1]}}
        self.session.config = replace(self.policy.config, plugin_params=params)
        self.session.scorings.clear()
        self.session.placer = Placer(self.session.cap)

    # -- starting and stopping ---------------------------------------------------------------
    def _start(self, now: float, job: _Job, model: str) -> None:
        self.pending.pop(job.job.name, None)
        job.started, job.model = now, model
        job.overhead = self.restart_s if job.runs else 0.0
        job.runs += 1
        job.epoch += 1
        self._push(now + job.overhead + job.steps_left() / job.rates[model], _FINISH,
                   job.job.name, job.epoch)

    def _stop(self, now: float, job: _Job, finished: bool, release: bool = True) -> None:
        assert job.started is not None
        if release:
            self.session.finish(job.job.name)
        ran = now - job.started
        self.gpu_s_by_model[job.model] += ran * job.job.scale
        job.attained += ran * job.job.scale
        job.steps_done += max(ran - job.overhead, 0.0) * job.rates[job.model]
        job.started = None
        job.epoch += 1
        if finished:
            job.steps_done = float(job.job.total_steps)
            job.finish = now
            self.demand -= job.workload.total_milli()
            done = sum(1 for j in self.jobs.values() if j.finish is not None)
            if self.progress is not None and done % 256 == 0:
                self.progress(done, len(self.jobs))
        else:
            self.pending[job.job.name] = job.workload

    # -- migration ---------------------------------------------------------------------------
    def _free_by_model(self) -> dict[str, int]:
        cap, table = self.session.cap, self.session.table
        held = {i for nodes in cap.reservations.values() for i in nodes}
        free: dict[str, int] = {}
        for i, node in enumerate(table.nodes):
            if cap.free_milli[i, 0] == MILLI_PER_GPU and i not in held:
                free[node.gpu_model] = free.get(node.gpu_model, 0) + 1
        return free

    def _migrate(self, now: float) -> None:
        """The migration rule (module docstring), applied until no move is worth it."""
        while True:
            free = self._free_by_model()
            best: tuple[float, str, str] | None = None
            for name in sorted(self.session.live):
                job = self.jobs[name]
                if job.started is None or job.started >= now or not job.workload.preemptible:
                    continue
                left = job.steps_left() - max(now - job.started - job.overhead, 0.0) * \
                    job.rates[job.model]
                for model, n in free.items():
                    if n < job.job.scale:
                        continue
                    gain = migration_gain(left, job.rates[job.model], job.rates[model],
                                          self.restart_s)
                    if gain > 0 and (best is None or gain > best[0]):
                        best = (gain, name, model)
            if best is None:
                return
            _, name, model = best
            job = self.jobs[name]
            self._stop(now, job, finished=False)
            pinned = replace(job.workload, gpu_models=(model,))
            self._cycle(now, [pinned])
            self.migrations += 1
            if self.pending:  # the devices it left may start waiting work now
                self._cycle(now)

    # -- the report --------------------------------------------------------------------------
    def _report(self, wall_s: float) -> dict[str, object]:
        ended = [j for j in self.jobs.values() if j.finish is not None]
        jct = [j.finish - j.job.arrival for j in ended if j.finish is not None]
        bound = [j.job.total_steps / max(j.rates.values()) for j in self.jobs.values()]
        hours = 3600.0
        return {
            "policy": self.policy.name,
            "seed": self.seed,
            "jobs": len(self.jobs),
            "completed": len(ended),
            "avg_jct_h": round(sum(jct) / len(jct) / hours, 4) if jct else None,
            "p95_jct_h": round(percentile(jct, 95) / hours, 4) if jct else None,
            "bound_avg_jct_h": round(sum(bound) / len(bound) / hours, 4) if bound else None,
            "bound_p95_jct_h": round(percentile(bound, 95) / hours, 4) if bound else None,
            "migrations": self.migrations,
            "evictions": self.evictions,
            "gpu_hours_by_model": {m: round(s / hours, 2)
                                   for m, s in sorted(self.gpu_s_by_model.items())},
            "cycles": self.cycles,
            "wall_seconds": round(wall_s, 3),
        }


def replay(jobs: Sequence[GavelJob], throughputs: Throughputs, policy: str, seed: int = 0,
           restart_s: float = 60.0) -> dict[str, object]:
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    return GavelReplay(jobs, throughputs, POLICIES[policy], seed, restart_s=restart_s).run()
