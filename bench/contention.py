"""Many cycles under contention: teams with quotas share a full pool for simulated days.

    python bench/contention.py                              # 10,000 jobs on 200 nodes
    python bench/contention.py --jobs 2000 --nodes 40       # a small run, about a minute
    python bench/contention.py --jobs 50000 --nodes 1000    # the size issue 10 names
    python bench/contention.py --policies corral --json OUT

The default is the issue's 50,000 jobs on 1,000 nodes scaled down 5x (the same jobs per node,
so the same load and simulated days): at full size one policy alone takes far longer than the
~10 minutes a default may take on 2 cores (bench/README.md has the figures).

Scenario (deterministic for a seed):
- Pool and jobs from the simulator's seeded generator (`corral.sim.synthetic`): H100 and A100
  nodes of 8 GPUs and L40S nodes of 4, `--spot` of them spot capacity; jobs of 1, 2, 4 or 8
  GPUs on one worker (8:3:2:1), GPU shares (0.25/0.5), gangs of 2-4 workers x 8 GPUs, 10%
  pinned to a model; durations log-normal (median `--median-duration`, sigma 1.2, clipped at
  2 days: a heavy right tail); Poisson arrivals at offered load `--load` over simulated days.
- Teams: 2 organisations x 4 teams, quotas summing to the pool (an organisation's quota is its
  teams' sum). Each job goes to a team drawn with weights that swing over a day, a different
  phase per team, so a team that was idle comes back to find its quota lent out.
- Each job: priority by QoS class (LS 50, Burstable 10, BE 0); a third of LS work is not
  preemptible (so never on spot); 20% have a minimum runtime (10, 30 or 60 min).

Run through the simulator's `CoreSession` (the core's own actions), one cycle every
`--interval` simulated seconds while work waits. Plans are applied the way the control plane
applies them (`corral.control.apply`): an evicted workload stops and waits again; a move
(evicted and placed in one plan) is applied as its eviction only and is placed by a later
cycle; the plan nominates it to the room it was placed in, and that nomination is kept for
`--nomination-cycles` cycles (`corral.core.nominations`: the room is held for it, and it is
placed there first). A stopped job keeps what its last checkpoint saved (every 30 min, no
notice).

Figures, per policy:
- cycle CPU time (time.process_time around the session's cycle only): p50, p99, max;
- the longest wait (arrival to first start) of work that was *within its guarantee* when it
  arrived: its team and its organisation below quota, with the job fitting in what each is
  owed (quota minus the GPUs it runs then); also p99 and how many such jobs;
- the longest wait *while owed*: per job, the longest run of cycles in a row it waited while
  its team and organisation would stay within quota with it (checked at every cycle, so work
  that its own team's later starts took past its quota stops counting): what the core's
  guarantee promises; also p99 and how many jobs were ever owed while waiting;
- idle reserved GPU-minutes: free GPUs on nodes reserved for waiting work, integrated over time;
- evictions by rule, and moves among them;
- rerun evictions: every `--rerun-every` cycles, `corral.core.schedule` is run from scratch on
  the state the applied plan left (same `now`), and the evictions it would make are counted
  (the promise: none);
- with `--check-session`: the cycles where the session decided otherwise than
  `corral.core.schedule` from scratch on the same state (placements, devices included, and
  evictions), and the first such instant (the promise: none; issue 10 found a failure memo the
  session carried between cycles this way);
- each team's GPUs against its deserved share (the core's hierarchical fair share of the pool
  for the teams' demand, pending and running): Jain's index of used/deserved at each cycle,
  time-averaged, and Jain's index of the time-averaged shares;
- the same for `fifo` (the simulator's preset: one shared queue in arrival order, no backfill,
  no reservations, nothing evicted) and `corral-no-reservations` (`max_reservations=0`).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import pickle
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from corral.core import ClusterState, Queue, Workload, schedule
from corral.core.fairshare import QueueNode, hierarchical_shares, jain_index
from corral.core.model import MILLI_PER_GPU, Node, Nomination
from corral.sim.failures import FailureModel
from corral.sim.metrics import TimeWeighted, share_report, summary
from corral.sim.policies import ReplayPolicy, replay_policy
from corral.sim.session import DOWN_PREFIX, CoreSession, Outcome
from corral.sim.synthetic import SyntheticSpec, synthetic_trace
from corral.sim.trace import Trace

POLICIES = ("corral", "fifo", "corral-no-reservations")
#: (organisation, team, share of the pool as quota, base arrival weight)
TEAMS = (
    ("research", "vision", 0.15, 1.6), ("research", "nlp", 0.15, 0.6),
    ("research", "speech", 0.10, 1.0), ("research", "rl", 0.10, 0.8),
    ("product", "search", 0.20, 1.2), ("product", "ads", 0.15, 1.4),
    ("product", "recsys", 0.10, 0.6), ("product", "infra", 0.05, 0.8),
)
PRIORITY = {"LS": 50, "Burstable": 10, "BE": 0}
DAY = 86_400.0
CHECKPOINTS = FailureModel(checkpoint_interval_s=1800.0)


# ================================================================================================
# the scenario
# ================================================================================================
@dataclass(frozen=True)
class Scenario:
    trace: Trace
    queues: tuple[Queue, ...]  # the team tree
    workloads: tuple[Workload, ...]  # in arrival order, each in its team's queue
    durations: dict[str, float]


def team_tree(pool_gpus: float) -> tuple[Queue, ...]:
    queues: list[Queue] = []
    for org in dict.fromkeys(o for o, *_ in TEAMS):
        mine = [(t, share) for o, t, share, _ in TEAMS if o == org]
        queues.append(Queue(org, quota_gpus=sum(s for _, s in mine) * pool_gpus))
        queues += [Queue(f"{org}-{t}", parent=org, quota_gpus=s * pool_gpus) for t, s in mine]
    return tuple(queues)


def build(jobs: int, nodes: int, load: float, median_duration: float, spot: float,
          seed: int) -> Scenario:
    trace = synthetic_trace(SyntheticSpec(
        tasks=jobs, nodes=nodes, load=load, seed=seed, cpu_only_fraction=0.0,
        share_fraction=0.2, gang_fraction=0.04, median_duration_s=median_duration,
        spot_fraction=spot))
    queues = team_tree(trace.gpu_capacity_milli / MILLI_PER_GPU)
    rng = np.random.default_rng(seed + 1)
    names = [f"{o}-{t}" for o, t, *_ in TEAMS]
    base = np.array([w for *_, w in TEAMS])
    phase = np.arange(len(TEAMS)) / len(TEAMS)
    out, durations = [], {}
    for task in trace.tasks:
        swing = 1 + 0.8 * np.sin(2 * math.pi * (task.submitted / DAY + phase))
        p = base * swing
        team = names[int(rng.choice(len(names), p=p / p.sum()))]
        preemptible = task.qos != "LS" or rng.random() >= 1 / 3
        min_runtime = float(rng.choice((600.0, 1800.0, 3600.0))) if rng.random() < 0.2 else 0.0
        out.append(Workload(
            task.name, team, task.resources(), workers=task.workers,
            priority=PRIORITY.get(task.qos, 0), preemptible=preemptible,
            min_runtime_s=min_runtime, gpu_models=task.gpu_models,
            submitted_at=task.submitted))
        durations[task.name] = float(task.duration or 0.0)
    return Scenario(trace, queues, tuple(out), durations)


def policy_of(name: str, trace: Trace) -> ReplayPolicy:
    if name == "corral-no-reservations":
        corral = replay_policy("corral", "corral", trace)
        return ReplayPolicy(name, replace(corral.config, max_reservations=0), False)
    return replay_policy(name, "corral", trace)


# ================================================================================================
# one policy, many cycles
# ================================================================================================
@dataclass
class Job:
    workload: Workload  # as it waits (in the policy's queue)
    team: str
    milli: int
    work: float
    done: float = 0.0
    started: float | None = None
    first_start: float | None = None
    finish: float | None = None
    run: int = 0  # bumps on every start and stop: stale finish events are ignored
    guaranteed: bool = False  # within its guarantee when it arrived
    owed_cycles: int = 0  # cycles in a row it has waited while owed (`_owed_streaks`)
    longest_owed: int = 0  # the longest such streak


@dataclass
class Figures:
    cycle_cpu: list[float] = field(default_factory=list)
    evictions: Counter[str] = field(default_factory=Counter)
    moves: int = 0
    lost_gpu_s: float = 0.0
    reruns: int = 0
    reruns_evicting: int = 0
    rerun_evictions: int = 0
    rerun_cpu: float = 0.0
    session_checked: int = 0  # cycles compared with `schedule` (`--check-session`)
    session_diverged: int = 0
    first_divergence: float | None = None


class Simulation:
    def __init__(self, sc: Scenario, policy: ReplayPolicy, seed: int, interval: float,
                 rerun_every: int, dump: Path | None = None, progress: bool = False,
                 nomination_cycles: int = 2, check_session: bool = False) -> None:
        self.sc, self.policy, self.seed, self.dump = sc, policy, seed, dump
        self.check_session = check_session
        self._before: ClusterState | None = None  # the last cycle's input, with `dump` only
        self.progress = progress
        self.interval, self.rerun_every = interval, rerun_every
        self.nodes: tuple[Node, ...] = sc.trace.nodes
        self.queues = (Queue("shared"),) if policy.shared_queue else sc.queues
        self.session = CoreSession(self.nodes, self.queues, policy.config, seed)
        self.pool_gpus = sc.trace.gpu_capacity_milli / MILLI_PER_GPU
        self.jobs = {w.id: self._job(w) for w in sc.workloads}
        self.chain = {q.name: tuple(x for x in (q.name, q.parent) if x) for q in sc.queues}
        self.quota = {q.name: round(q.quota_gpus * MILLI_PER_GPU) for q in sc.queues}
        self.pending: dict[str, Workload] = {}
        #: the plans' nominations, kept as the control plane keeps them (for a bounded time)
        self.nominations: tuple[Nomination, ...] = ()
        self.nomination_s = nomination_cycles * interval
        #: who held a reservation after the last plan, passed back as the control plane does
        self.reserved_for: tuple[str, ...] = ()
        self.finishes: list[tuple[float, int, str, int]] = []
        self.seq = 0
        self.demand: Counter[str] = Counter()  # by scheduling queue (pending + running)
        self.team_demand: Counter[str] = Counter()
        self.team_used: Counter[str] = Counter()  # running milli per team and organisation
        t0 = sc.workloads[0].submitted_at
        self.t0 = t0
        self.used = {q.name: TimeWeighted(t0) for q in sc.queues if q.parent}
        self.deserved = {q: TimeWeighted(t0) for q in self.used}
        self.jain = TimeWeighted(t0)
        self.reserved_idle = TimeWeighted(t0)  # GPUs free on reserved nodes
        self.alloc = TimeWeighted(t0)
        self.allocated = 0
        self.fig = Figures()

    def _job(self, w: Workload) -> Job:
        team = w.queue
        if self.policy.shared_queue:
            w = replace(w, queue="shared", priority=0)  # strict arrival order
        return Job(w, team, w.total_milli(), self.sc.durations[w.id])

    # -- the clock ------------------------------------------------------------------------------
    def run(self) -> dict[str, object]:
        wall, cpu0 = time.perf_counter(), time.process_time()
        arrivals = list(self.sc.workloads)
        k, now, cycles = 0, self.t0, 0
        cpu, next_day = time.process_time(), self.t0 + DAY
        while k < len(arrivals) or self.pending or self.finishes:
            if not self.pending:  # nothing waits: jump to the next event's tick
                nxt = min(arrivals[k].submitted_at if k < len(arrivals) else math.inf,
                          self.finishes[0][0] if self.finishes else math.inf)
                now = max(now, math.ceil(nxt / self.interval) * self.interval)
            # events up to the tick, in time order (finishes first at one instant)
            while True:
                fin = self.finishes[0][0] if self.finishes else math.inf
                arr = arrivals[k].submitted_at if k < len(arrivals) else math.inf
                if min(fin, arr) > now:
                    break
                if fin <= arr:
                    at, _, wid, run = heapq.heappop(self.finishes)
                    if run == self.jobs[wid].run:
                        self._stop(at, self.jobs[wid], finished=True)
                else:
                    self._arrive(arr, self.jobs[arrivals[k].id])
                    k += 1
            if self.pending:
                self._cycle(now)
                cycles += 1
                if self.rerun_every and cycles % self.rerun_every == 0:
                    self._rerun(now)
            if self.progress and now >= next_day:
                print(f"  {self.policy.name}: day {(now - self.t0) / DAY:.0f}, {k} arrived, "
                      f"{len(self.pending)} waiting, {cycles} cycles, "
                      f"{time.process_time() - cpu:.0f} s CPU", file=sys.stderr, flush=True)
                next_day = now - (now - self.t0) % DAY + DAY
            now += self.interval
        return self._report(cycles, time.perf_counter() - wall, time.process_time() - cpu0)

    def _arrive(self, at: float, job: Job) -> None:
        self.pending[job.workload.id] = job.workload
        self.demand[job.workload.queue] += job.milli
        self.team_demand[job.team] += job.milli
        job.guaranteed = all(self.team_used[q] + job.milli <= self.quota[q]
                             for q in self.chain[job.team])

    def _cycle(self, now: float) -> None:
        self._deserved(now)
        self._owed_streaks()
        if self.dump is not None or self.check_session:  # the state this cycle plans from
            self._before = ClusterState(self.nodes, self.queues,
                                        (*self.session.live.values(), *self.pending.values()),
                                        nominations=self._nominated(now),
                                        reserved_for=self.reserved_for)
        c = time.process_time()
        out = self.session.cycle(now, list(self.pending.values()), self.demand,
                                 nominations=self._nominated(now),
                                 reserved_for=self.reserved_for)
        self.fig.cycle_cpu.append(time.process_time() - c)
        self.reserved_for = out.reserved_for
        if self.check_session:
            self._check_session(now, out)
        self.nominations = tuple(n if n.until is not None else replace(n, until=now + self.nomination_s)
                                 for n in out.nominations)
        for wid, rule in out.evicted:
            self.fig.evictions[rule] += 1
            if wid in out.placed:  # a move: the control plane applies its eviction only
                self.fig.moves += 1
                self.session.finish(wid)
            self._stop(now, self.jobs[wid], finished=False)
        moved = {wid for wid, _ in out.evicted}
        for wid in out.placed:
            if wid not in moved:
                self._start(now, self.jobs[wid])
        self._after_cycle(now)

    def _owed_streaks(self) -> None:
        """Count, per waiting job, the cycles in a row it waits while owed: its team and
        organisation would stay within quota with it (what the core's guarantee promises, at
        every cycle, not only on arrival)."""
        for wid in self.pending:
            job = self.jobs[wid]
            if all(self.team_used[q] + job.milli <= self.quota[q] for q in self.chain[job.team]):
                job.owed_cycles += 1
                job.longest_owed = max(job.longest_owed, job.owed_cycles)
            else:
                job.owed_cycles = 0

    def _check_session(self, now: float, out: Outcome) -> None:
        """Did the session decide what `schedule` decides from scratch on the same state?"""
        assert self._before is not None
        plan = schedule(self._before, now=now, config=self.policy.config, seed=self.seed)
        same = (out.placed == {p.workload_id: p.assignments for p in plan.placements}
                and sorted(out.evicted) == sorted((e.workload_id, e.rule) for e in plan.evictions))
        self.fig.session_checked += 1
        if not same:
            self.fig.session_diverged += 1
            if self.fig.first_divergence is None:
                self.fig.first_divergence = now

    def _nominated(self, now: float) -> tuple[Nomination, ...]:
        """The nominations a cycle at `now` is given: those not expired."""
        return tuple(n for n in self.nominations if n.until is None or n.until > now)

    def _after_cycle(self, now: float) -> None:
        ratios = [self.used[q].value / self.deserved[q].value for q in self.used
                  if self.deserved[q].value > 0]
        self.jain.set(now, jain_index(ratios) if ratios else 1.0)
        self.reserved_idle.set(now, self._reserved_free())

    def _reserved_free(self) -> float:
        cap = self.session.cap
        nodes = [i for owner, held in cap.reservations.items()
                 if not owner.startswith(DOWN_PREFIX) for i in held]
        if not nodes:
            return 0.0
        return float(np.clip(cap.free_milli[nodes], 0, None).sum()) / MILLI_PER_GPU

    def _deserved(self, now: float) -> None:
        tree = [QueueNode(q.name, q.parent, self.team_demand[q.name] / MILLI_PER_GPU,
                          q.quota_gpus, q.limit_gpus, q.weight) for q in self.sc.queues]
        shares = hierarchical_shares(self.pool_gpus, tree)
        for q, tw in self.deserved.items():
            tw.set(now, shares.get(q, 0.0))

    def _rerun(self, now: float) -> None:
        """The applied result, planned again from scratch at the same instant."""
        state = ClusterState(self.nodes, self.queues,
                             (*self.session.live.values(), *self.pending.values()),
                             nominations=self._nominated(now), reserved_for=self.reserved_for)
        c = time.process_time()
        plan = schedule(state, now=now, config=self.policy.config, seed=self.seed)
        self.fig.rerun_cpu += time.process_time() - c
        self.fig.reruns += 1
        self.fig.rerun_evictions += len(plan.evictions)
        self.fig.reruns_evicting += bool(plan.evictions)
        if plan.evictions and self.dump is not None:  # a reproducer for `schedule` alone
            self.dump.mkdir(parents=True, exist_ok=True)
            path = self.dump / f"rerun-{self.policy.name}-s{self.seed}-t{now:.0f}.pickle"
            path.write_bytes(pickle.dumps((state, now, self.policy.config, self.seed)))
            # and the cycle before it: `schedule` on it, applied like the control plane
            # (a move as its eviction only), gives the state above, whose rerun evicts
            before = path.with_name(path.stem + "-before.pickle")
            before.write_bytes(pickle.dumps((self._before, now, self.policy.config, self.seed)))

    # -- starting and stopping ------------------------------------------------------------------
    def _start(self, now: float, job: Job) -> None:
        del self.pending[job.workload.id]
        job.started = now
        job.run += 1
        if job.first_start is None:
            job.first_start = now
        heapq.heappush(self.finishes, (now + max(job.work - job.done, 0.0), self.seq,
                                       job.workload.id, job.run))
        self.seq += 1
        self._account(now, job, +1)

    def _stop(self, now: float, job: Job, finished: bool) -> None:
        """End the current run: finished (capacity freed here) or evicted (the cycle's
        statement freed it) and back in line with what its checkpoints saved."""
        assert job.started is not None
        if finished:
            self.session.finish(job.workload.id)
        ran = now - job.started
        self._account(now, job, -1)
        job.started = None
        job.run += 1
        if finished:
            job.finish = now
            self.demand[job.workload.queue] -= job.milli
            self.team_demand[job.team] -= job.milli
            self.reserved_idle.set(now, self._reserved_free())
            return
        kept = CHECKPOINTS.saved(ran, None)
        job.done += kept
        self.fig.lost_gpu_s += (ran - kept) * job.milli / MILLI_PER_GPU
        self.pending[job.workload.id] = job.workload

    def _account(self, now: float, job: Job, sign: int) -> None:
        for q in self.chain[job.team]:
            self.team_used[q] += sign * job.milli
        tw = self.used[job.team]
        tw.set(now, self.team_used[job.team] / MILLI_PER_GPU)
        self.allocated += sign * job.milli
        self.alloc.set(now, self.allocated / MILLI_PER_GPU)

    # -- the report -----------------------------------------------------------------------------
    def _report(self, cycles: int, wall: float, cpu_s: float) -> dict[str, object]:
        jobs = list(self.jobs.values())
        end = max((j.finish for j in jobs if j.finish is not None), default=self.t0)
        for tw in (*self.used.values(), *self.deserved.values(), self.jain,
                   self.reserved_idle, self.alloc):
            tw.advance(end)
        per_team, jain_of_averages = share_report(
            {q: tw.average(self.t0, end) for q, tw in self.used.items()},
            {q: tw.average(self.t0, end) for q, tw in self.deserved.items()})
        waited = {j.workload.id: (j.first_start if j.first_start is not None else end)
                  - j.workload.submitted_at for j in jobs if j.guaranteed}
        owed = list(waited.values())
        longest = self.jobs[max(waited, key=lambda i: (waited[i], i))] if waited else None
        # waiting while owed: the cycles of the longest streak but the one that started it
        owed_wait = {j.workload.id: (j.longest_owed - 1) * self.interval for j in jobs
                     if j.longest_owed > 0}
        owed_longest = (self.jobs[max(owed_wait, key=lambda i: (owed_wait[i], i))]
                        if owed_wait else None)
        cpu = np.array(self.fig.cycle_cpu) * 1000
        waits = [j.first_start - j.workload.submitted_at for j in jobs
                 if j.first_start is not None]
        return {
            "policy": self.policy.name, "seed": self.seed,
            "jobs": len(jobs), "nodes": len(self.nodes), "gpus": self.pool_gpus,
            "simulated_days": round((end - self.t0) / DAY, 3),
            "completed": sum(j.finish is not None for j in jobs),
            "cycles": cycles,
            "cycle_cpu_ms": {"p50": _pct(cpu, 50), "p99": _pct(cpu, 99),
                             "max": round(float(cpu.max()), 3) if cpu.size else 0.0,
                             "total_s": round(float(cpu.sum()) / 1000, 1)},
            "guaranteed_jobs": len(owed),
            "guaranteed_wait_s": {"max": round(max(owed), 1) if owed else 0.0,
                                  "p99": _pct(np.array(owed), 99)},
            "guaranteed_longest": None if longest is None else {
                "job": longest.workload.id, "team": longest.team,
                "gpus": longest.milli / MILLI_PER_GPU, "workers": longest.workload.workers,
                "priority": longest.workload.priority},
            "owed_wait_s": {"max": round(max(owed_wait.values()), 1) if owed_wait else 0.0,
                            "p99": _pct(np.array(list(owed_wait.values())), 99),
                            "jobs": len(owed_wait)},
            "owed_longest": None if owed_longest is None else {
                "job": owed_longest.workload.id, "team": owed_longest.team,
                "gpus": owed_longest.milli / MILLI_PER_GPU,
                "workers": owed_longest.workload.workers,
                "priority": owed_longest.workload.priority},
            "wait_s": {k: round(v, 1) for k, v in summary(waits).items()},
            "idle_reserved_gpu_minutes": round(self.reserved_idle.integral / 60, 1),
            "evictions": {rule: self.fig.evictions.get(rule, 0)
                          for rule in ("Reclaim", "Preempt", "Consolidate")},
            "moves": self.fig.moves,
            "lost_gpu_hours": round(self.fig.lost_gpu_s / 3600, 1),
            "reruns": self.fig.reruns, "reruns_evicting": self.fig.reruns_evicting,
            "rerun_evictions": self.fig.rerun_evictions,
            "jain_time_averaged": round(self.jain.average(self.t0, end), 4),
            "jain_of_average_shares": round(jain_of_averages, 4),
            "teams": {q: {"used_gpus": round(v["used_gpus"], 1),
                          "deserved_gpus": round(v["deserved_gpus"], 1)}
                      for q, v in per_team.items()},
            "allocation_pct": round(100 * self.alloc.average(self.t0, end) / self.pool_gpus, 2),
            "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu_s, 1),
            "rerun_cpu_seconds": round(self.fig.rerun_cpu, 1),
            "session_checked": self.fig.session_checked,
            "session_diverged": self.fig.session_diverged,
            "first_divergence_at": self.fig.first_divergence,
        }


def _pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values.size else 0.0


# ================================================================================================
# the command
# ================================================================================================
def _who(job: object) -> str:
    if not isinstance(job, dict):
        return ""
    return (f" ({job['job']} of {job['team']}: {job['gpus']:g} GPU(s) on {job['workers']} "
            f"worker(s), priority {job['priority']})")


def lines(r: dict[str, object]) -> list[str]:
    c, g, w, o = r["cycle_cpu_ms"], r["guaranteed_wait_s"], r["wait_s"], r["owed_wait_s"]
    ev, teams = r["evictions"], r["teams"]
    assert isinstance(c, dict) and isinstance(g, dict) and isinstance(w, dict)
    assert isinstance(o, dict)
    assert isinstance(ev, dict) and isinstance(teams, dict)
    return [
        f"{r['policy']}: {r['cycles']} cycles over {r['simulated_days']} simulated days, "
        f"{r['completed']} of {r['jobs']} jobs completed, {r['allocation_pct']}% of GPUs "
        f"allocated on average; {r['cpu_seconds']} s CPU, {r['wall_seconds']} s wall",
        f"  cycle CPU ms: p50 {c['p50']} p99 {c['p99']} max {c['max']} "
        f"({c['total_s']} s in all cycles)",
        f"  within guarantee on arrival: {r['guaranteed_jobs']} jobs, longest wait "
        f"{g['max']} s{_who(r['guaranteed_longest'])}, p99 {g['p99']} s "
        f"(all jobs: wait p50 {w['median']} s, p99 {w['p99']} s)",
        f"  waiting while owed (team and organisation within quota with it, cycles in a row): "
        f"{o['jobs']} jobs, longest {o['max']} s{_who(r['owed_longest'])}, p99 {o['p99']} s",
        f"  idle reserved GPU-minutes: {r['idle_reserved_gpu_minutes']}",
        "  evictions: " + ", ".join(f"{rule} {n}" for rule, n in ev.items())
        + f" (moves {r['moves']}, applied as evictions); lost {r['lost_gpu_hours']} GPU-hours",
        f"  rerun evictions: {r['rerun_evictions']} in {r['reruns']} reruns "
        f"({r['reruns_evicting']} reruns evicted anything; {r['rerun_cpu_seconds']} s CPU)",
        f"  fairness (Jain's index of used/deserved): time-averaged "
        f"{r['jain_time_averaged']}, of the time-averaged shares {r['jain_of_average_shares']}",
        "  teams used/deserved GPUs (time-averaged): " + ", ".join(
            f"{q} {v['used_gpus']}/{v['deserved_gpus']}" for q, v in teams.items()),
    ] + ([f"  session vs schedule from scratch: {r['session_diverged']} of "
          f"{r['session_checked']} cycles differ (first at {r['first_divergence_at']})"]
         if r["session_checked"] else [])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--load", type=float, default=1.0, help="offered load (default %(default)s)")
    ap.add_argument("--median-duration", type=float, default=7200.0,
                    help="median job duration in seconds (default %(default)s)")
    ap.add_argument("--spot", type=float, default=0.2, help="share of spot nodes")
    ap.add_argument("--interval", type=float, default=60.0,
                    help="simulated seconds between cycles (default %(default)s)")
    ap.add_argument("--rerun-every", type=int, default=50,
                    help="rerun the cycle on its applied result every N cycles (0: never)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nomination-cycles", type=int, default=2,
                    help="cycles a plan's nomination is kept (0: none kept, as before)")
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help="comma-separated, of " + ", ".join(POLICIES))
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    ap.add_argument("--dump-reruns", type=Path, default=None, metavar="DIR",
                    help="pickle (state, now, config, seed) of every rerun that evicts into DIR: "
                    "`corral.core.schedule(*pickle.load(f))` reproduces it; NAME-before.pickle "
                    "holds the cycle that led there")
    ap.add_argument("--check-session", action="store_true",
                    help="compare every cycle of the session with `corral.core.schedule` from "
                    "scratch on the same state, and count the cycles they differ (slower)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines (on stderr)")
    args = ap.parse_args()
    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = sorted(set(names) - set(POLICIES))
    if unknown:
        ap.error(f"--policies: unknown {', '.join(unknown)}; use {', '.join(POLICIES)}")
    c0 = time.process_time()
    sc = build(args.jobs, args.nodes, args.load, args.median_duration, args.spot, args.seed)
    spot = sum(n.capacity_kind == "spot" for n in sc.trace.nodes)
    print(f"python {platform.python_version()} on {platform.machine()}; {args.jobs} jobs on "
          f"{args.nodes} nodes ({sc.trace.gpu_capacity_milli // MILLI_PER_GPU} GPUs, {spot} "
          f"spot), load {args.load}, seed {args.seed}, a cycle every {args.interval:g} s; "
          f"scenario built in {time.process_time() - c0:.1f} s CPU", flush=True)
    print("teams (quota GPUs): " + ", ".join(
        f"{q.name} {q.quota_gpus:g}" for q in sc.queues), flush=True)
    results = []
    for name in names:
        sim = Simulation(sc, policy_of(name, sc.trace), args.seed, args.interval,
                         args.rerun_every, args.dump_reruns, not args.quiet,
                         args.nomination_cycles, args.check_session)
        result = sim.run()
        results.append(result)
        print("\n".join(lines(result)), flush=True)
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
