"""Invariants of the scheduling core, as Hypothesis properties on random pools and workloads.

A random cluster is built in two rounds: a first cycle places some work (which then runs, with a
random age), more work arrives, and a second cycle decides. Its plan, applied, must never:
over-allocate a GPU share, GPU memory, CPU or RAM; split a gang; reclaim from a queue at or below
quota; evict non-preemptible or too-young work; break a queue limit; or evict again when the
cycle is rerun on its own result (at the same `now`, or later while no minimum runtime ends).
The same input must give the same plan, whatever order it lists nodes, queues and workloads in.

The `check_*` functions are the invariants themselves, shared with `test_contention.py`, whose
clusters are built so that reclaim, preempt and consolidate actually fire (these random ones
rarely evict anything).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.core import (
    ClusterState,
    Node,
    Plan,
    Queue,
    SchedulerConfig,
    TopologyLevel,
    WorkerResources,
    Workload,
    WorkloadState,
    schedule,
)
from corral.core import reasons as R
from corral.core.actions.allocate import reservation_window
from corral.core.queues import effective_quotas

pytestmark = pytest.mark.slow  # 6 tests, 18 s (-n 2 whole run, 2026-12-05, load 8-32)

NOW = 100_000.0


@st.composite
def nodes(draw: st.DrawFn) -> tuple[Node, ...]:
    count = draw(st.integers(1, 6))
    out = []
    for i in range(count):
        out.append(Node(
            id=f"n{i}", provider=draw(st.sampled_from(["aws", "gcp"])),
            gpu_model=draw(st.sampled_from(["H100", "A100"])), gpu_count=draw(st.sampled_from([1, 2, 4, 8])),
            gpu_memory_mib=draw(st.sampled_from([24_000, 80_000])), cpu_milli=draw(st.sampled_from([8_000, 64_000])),
            memory_mib=draw(st.sampled_from([64_000, 512_000])), price_per_gpu_hour=draw(st.sampled_from([0.5, 1, 3])),
            region=draw(st.sampled_from(["eu", "us"])), rack=f"r{draw(st.integers(0, 2))}",
            nvlink_domain=draw(st.sampled_from(["", "x"])), cordoned=draw(st.booleans()) and i > 0))
    return tuple(out)


@st.composite
def queues(draw: st.DrawFn) -> tuple[Queue, ...]:
    out = [Queue("root", quota_gpus=0, limit_gpus=draw(st.sampled_from([None, 12.0])))]
    for name in ("a", "b", "c"):
        quota = float(draw(st.integers(0, 6)))
        limit = draw(st.sampled_from([None, quota + 2, quota + 8]))
        by_model = draw(st.sampled_from([(), (), (("H100", min(quota, 2.0)),)]))
        out.append(Queue(name, parent=draw(st.sampled_from([None, "root"])), quota_gpus=quota,
                         limit_gpus=limit, weight=draw(st.sampled_from([0.5, 1, 3])),
                         quota_by_model=by_model))
    return tuple(out)


@st.composite
def workloads(draw: st.DrawFn, prefix: str, n: int) -> list[Workload]:
    out = []
    for i in range(draw(st.integers(0, n))):
        kind = draw(st.sampled_from(["whole", "whole", "share", "mem", "gang"]))
        if kind == "share":
            res = WorkerResources(gpu_milli=draw(st.sampled_from([100, 250, 500, 700])), cpu_milli=1000, memory_mib=1000)
        elif kind == "mem":
            res = WorkerResources(gpu_memory_mib=draw(st.sampled_from([5_000, 20_000, 40_000])), cpu_milli=1000)
        else:
            res = WorkerResources(gpus=draw(st.sampled_from([1, 2, 4, 8])), cpu_milli=draw(st.sampled_from([0, 4000])),
                                  memory_mib=draw(st.sampled_from([0, 32_000])))
        out.append(Workload(
            id=f"{prefix}{i}", queue=draw(st.sampled_from(["a", "b", "c"])), resources=res,
            workers=draw(st.integers(2, 3)) if kind == "gang" else 1,
            priority=draw(st.sampled_from([0, 5, 10])), preemptible=draw(st.booleans()) or kind == "gang",
            min_runtime_s=draw(st.sampled_from([0.0, 0.0, 600.0])),
            gpu_models=draw(st.sampled_from([(), (), ("H100",), ("A100", "H100")])),
            topology=draw(st.sampled_from([TopologyLevel.ANY, TopologyLevel.ANY, TopologyLevel.RACK])),
            max_price_per_gpu_hour=draw(st.sampled_from([None, None, 1.0])), submitted_at=float(i)))
    return out


def apply(state: ClusterState, plan: Plan, now: float) -> ClusterState:
    placed = {p.workload_id: p for p in plan.placements}
    evicted = {e.workload_id for e in plan.evictions}
    out = []
    for w in state.workloads:
        if w.id in placed:
            w = replace(w, state=WorkloadState.RUNNING, started_at=now, assignments=placed[w.id].assignments)
        elif w.id in evicted:
            w = replace(w, state=WorkloadState.PENDING, started_at=None, assignments=())
        out.append(w)
    return replace(state, workloads=tuple(out))


@st.composite
def clusters(draw: st.DrawFn) -> ClusterState:
    first = ClusterState(draw(nodes()), draw(queues()), tuple(draw(workloads("old", 8))))
    running = apply(first, schedule(first, 0.0), 0.0)
    aged = tuple(replace(w, started_at=draw(st.sampled_from([NOW - 60, NOW - 3600])))
                 if w.running else w for w in running.workloads)
    return replace(running, workloads=aged + tuple(draw(workloads("new", 6))))


def usage(state: ClusterState) -> dict[str, int]:
    parents = {q.name: q.parent for q in state.queues}
    out: dict[str, int] = defaultdict(int)
    for w in state.workloads:
        if w.running:
            q: str | None = w.queue
            while q is not None:
                out[q] += w.total_milli()
                q = parents.get(q)
    return out


def usage_by_model(state: ClusterState) -> dict[tuple[str, str], int]:
    """Milli-GPU each queue subtree holds on each GPU model."""
    parents = {q.name: q.parent for q in state.queues}
    models = {n.id: n.gpu_model for n in state.nodes}
    out: dict[tuple[str, str], int] = defaultdict(int)
    for w in state.workloads:
        for a in w.assignments if w.running else ():
            q: str | None = w.queue
            while q is not None:
                out[(q, models[a.node_id])] += a.milli_per_device * len(a.devices)
                q = parents.get(q)
    return out


def assert_capacity(state: ClusterState) -> None:
    by_id = {n.id: n for n in state.nodes}
    milli: dict[tuple[str, int], int] = defaultdict(int)
    mem: dict[tuple[str, int], int] = defaultdict(int)
    holders: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    cpu: dict[str, int] = defaultdict(int)
    ram: dict[str, int] = defaultdict(int)
    for w in state.workloads:
        if not w.running:
            continue
        assert len(w.assignments) == w.workers, f"gang {w.id} split"
        for a in w.assignments:
            n = by_id[a.node_id]
            cpu[n.id] += w.resources.cpu_milli
            ram[n.id] += w.resources.memory_mib
            if w.resources.gpus:
                assert len(a.devices) == w.resources.gpus and a.milli_per_device == 1000
            for d in a.devices:
                assert 0 <= d < n.gpu_count
                milli[(n.id, d)] += a.milli_per_device
                mem[(n.id, d)] += a.gpu_memory_mib_per_device
                holders[(n.id, d)].append((w.id, a.milli_per_device))
    for key, m in milli.items():
        assert m <= 1000, f"device {key} over-allocated: {holders[key]}"
        assert mem[key] <= by_id[key[0]].gpu_memory_mib, f"device {key} memory over-allocated"
        if any(share == 1000 for _, share in holders[key]):
            assert len(holders[key]) == 1, f"whole GPU {key} shared: {holders[key]}"
    for n in state.nodes:
        assert cpu[n.id] <= n.cpu_milli and ram[n.id] <= n.memory_mib


def chain(cluster: ClusterState, queue: str) -> list[str]:
    """`queue` and its ancestors, nearest first."""
    parents = {q.name: q.parent for q in cluster.queues}
    out: list[str] = []
    q: str | None = queue
    while q is not None and q in parents and q not in out:
        out.append(q)
        q = parents[q]
    return out


# --- checks, shared by every family of generated clusters (see also test_contention.py) --------

def check_placements(cluster: ClusterState, plan: Plan, now: float) -> None:
    """Applied, the plan over-allocates nothing and splits no gang; every placement obeys its
    workload's constraints."""
    assert_capacity(apply(cluster, plan, now))
    nodes_by_id = {n.id: n for n in cluster.nodes}
    work = {w.id: w for w in cluster.workloads}
    for p in plan.placements:
        w = work[p.workload_id]
        assert len(p.assignments) == w.workers, f"gang {w.id} placed in part"
        for a in p.assignments:
            n = nodes_by_id[a.node_id]
            assert n.schedulable, f"{w.id} placed on unschedulable {n.id}"
            if w.gpu_models:
                assert n.gpu_model in w.gpu_models
            if w.max_price_per_gpu_hour is not None:
                assert n.price_per_gpu_hour <= w.max_price_per_gpu_hour
        if w.workers > 1 and not w.allow_cross_region:
            assert len({nodes_by_id[a.node_id].region for a in p.assignments}) == 1


def check_evictions(cluster: ClusterState, plan: Plan, now: float) -> None:
    """Each eviction takes only eligible work and follows its rule: running, preemptible, past
    its minimum runtime; consolidate moves only single-worker work; reclaim only between queues
    that are not each other's ancestors, for a requester within its guarantee; preempt only
    strictly lower priority in the same queue."""
    before, work = usage(cluster), {w.id: w for w in cluster.workloads}
    quotas = {q: round(g * 1000) for q, g in effective_quotas(cluster.queues).items()}
    placed_milli = {p.workload_id: sum(a.milli_per_device * len(a.devices) for a in p.assignments)
                    for p in plan.placements}
    evicted_state = replace(cluster, workloads=tuple(work[e.workload_id] for e in plan.evictions))
    evicted, before_by_model = usage(evicted_state), usage_by_model(cluster)
    evicted_by_model = usage_by_model(evicted_state)
    assert len({e.workload_id for e in plan.evictions}) == len(plan.evictions), "evicted twice"
    for e in plan.evictions:
        victim, beneficiary = work[e.workload_id], work[e.for_workload]
        assert victim.running and e.queue == victim.queue, f"{victim.id} was not running"
        assert victim.preemptible, f"non-preemptible {victim.id} evicted"
        assert victim.started_at is not None and now - victim.started_at >= victim.min_runtime_s, (
            f"{victim.id} evicted inside its minimum runtime")
        if e.rule == R.RULE_CONSOLIDATE:
            assert victim.workers == 1, f"gang {victim.id} moved"
        elif e.rule == R.RULE_RECLAIM:
            assert beneficiary.queue not in chain(cluster, victim.queue)
            assert victim.queue not in chain(cluster, beneficiary.queue)
            # At the reclaim, the requester's queue held at least what it held before minus
            # everything evicted from it in this plan (later placements only add); with the
            # request it had to stay within its quota (or, pinned to models that all have a
            # per-model quota, within those). Its usage at the end may be higher: free room
            # and moves may start more of its work after the reclaim.
            q, milli = beneficiary.queue, placed_milli.get(beneficiary.id, beneficiary.total_milli())
            by_model = dict(next(x for x in cluster.queues if x.name == q).quota_by_model)
            models = beneficiary.gpu_models
            within_model = bool(models) and all(m in by_model for m in models) and (
                sum(before_by_model[(q, m)] - evicted_by_model[(q, m)] for m in models) + milli
                <= sum(round(by_model[m] * 1000) for m in models))
            assert before[q] - evicted[q] + milli <= quotas[q] or within_model, (
                f"{q} reclaimed beyond its quota")
        else:
            assert e.rule == R.RULE_PREEMPT, f"unknown rule {e.rule}"
            assert victim.queue == beneficiary.queue and victim.priority < beneficiary.priority


def check_reclaim_victims_keep_quota(cluster: ClusterState, plan: Plan, now: float) -> None:
    """A queue (or ancestor) is reclaimed from only when it holds more than its quota (work
    this plan starts counted), and it ends the plan at or above its quota. Ancestors the victim
    shares with the beneficiary lose nothing (GPUs move inside them) and are not checked.
    What a queue's own higher-priority work preempted of it (and the plan does not place
    again) counts as kept: a queue may choose to run fewer, more important jobs (the decided
    interaction pinned in test_contention)."""
    before, after = usage(cluster), usage(apply(cluster, plan, now))
    quotas = {q: round(g * 1000) for q, g in effective_quotas(cluster.queues).items()}
    work = {w.id: w for w in cluster.workloads}
    placed = {p.workload_id for p in plan.placements}
    own = replace(cluster, workloads=tuple(
        work[e.workload_id] for e in plan.evictions
        if e.rule == R.RULE_PREEMPT and e.workload_id not in placed))
    for q, milli in usage(own).items():
        after[q] += milli
    placed_by = usage(replace(cluster, workloads=tuple(
        replace(work[p.workload_id], state=WorkloadState.RUNNING, assignments=p.assignments)
        for p in plan.placements if not work[p.workload_id].running)))
    for e in plan.evictions:
        if e.rule == R.RULE_RECLAIM and e.workload_id not in placed:  # else a move
            shared = set(chain(cluster, work[e.for_workload].queue))
            for q in (q for q in chain(cluster, e.queue) if q not in shared):
                assert before[q] + placed_by[q] > quotas[q], (
                    f"{q} reclaimed from at or below its quota ({e})")
                assert after[q] >= quotas[q], f"{q} reclaimed below its quota ({e})"


def check_moves(plan: Plan) -> None:
    """A consolidation eviction is a move: the plan places the workload again."""
    placed = {p.workload_id for p in plan.placements}
    for e in plan.evictions:
        if e.rule == R.RULE_CONSOLIDATE:
            assert e.workload_id in placed, f"{e.workload_id} 'moved' but the plan places it nowhere ({e})"


def check_limits(cluster: ClusterState, plan: Plan, now: float) -> None:
    before = usage(cluster)
    after = usage(apply(cluster, plan, now))
    for q in cluster.queues:
        if q.limit_gpus is not None and before[q.name] <= q.limit_gpus * 1000:
            assert after[q.name] <= q.limit_gpus * 1000, f"queue {q.name} over its limit"


CODES = {v for k, v in vars(R).items() if k.isupper() and isinstance(v, str) and not k.startswith("RULE_")}


def check_reasons(cluster: ClusterState, plan: Plan) -> None:
    placed = {p.workload_id for p in plan.placements}
    for w in cluster.workloads:
        if not w.running and w.id not in placed:
            assert w.id in plan.pending and plan.pending[w.id].message
            assert plan.pending[w.id].code in CODES, plan.pending[w.id]
    for e in plan.evictions:
        if e.workload_id not in placed:
            assert e.message and e.for_workload


def quiet_window(state: ClusterState, now: float, config: SchedulerConfig | None = None
                 ) -> float:
    """Seconds from `now` until the first running workload leaves its minimum runtime or a
    waiting workload's reservation window opens or closes: until then time passing changes
    nothing the cycle reads, so a rerun must decide the same."""
    cfg = config or SchedulerConfig()
    ends = [w.started_at + w.min_runtime_s for w in state.workloads
            if w.running and w.started_at is not None and w.started_at + w.min_runtime_s > now]
    ends += [reservation_window(cfg, w.submitted_at, now)[1] for w in state.workloads
             if not w.running]
    return min([t for t in ends if t > now], default=now + 3600.0) - now


def check_stable(cluster: ClusterState, plan: Plan, now: float, later: float,
                 config: SchedulerConfig | None = None) -> None:
    """Apply the plan and rerun the cycle with nothing changed: at `now`, and `later` (a
    fraction of the quiet window) after it: no new evictions, i.e. no preemption loop."""
    after = apply(cluster, plan, now)
    for t in (now, now + later * quiet_window(after, now, config)):
        again = schedule(after, t, config)
        assert again.evictions == (), f"preemption loop at now+{t - now:g}: {again.evictions}"


def check_reservations(plan: Plan) -> None:
    """Nodes are held only for a gang that still waits when the cycle ends."""
    placed = {p.workload_id for p in plan.placements}
    for r in plan.reservations:
        assert r.workload_id not in placed, f"reservation kept for {r.workload_id}, which the plan places"


def check_deterministic(cluster: ClusterState, now: float, config: SchedulerConfig, seed: int) -> None:
    """The same input gives the same plan, also with nodes, queues and workloads listed in
    another order (ties break by id, never by position)."""
    plan = schedule(cluster, now, config, seed)
    assert schedule(cluster, now, config, seed) == plan
    shuffled = replace(cluster, nodes=cluster.nodes[::-1], queues=cluster.queues[::-1],
                       workloads=cluster.workloads[::-1])
    assert schedule(shuffled, now, config, seed) == plan


@given(clusters())
def test_plan_respects_capacity_gangs_and_constraints(cluster: ClusterState) -> None:
    check_placements(cluster, schedule(cluster, NOW), NOW)


@given(clusters())
def test_evictions_follow_their_rules(cluster: ClusterState) -> None:
    plan = schedule(cluster, NOW)
    check_evictions(cluster, plan, NOW)
    check_reclaim_victims_keep_quota(cluster, plan, NOW)
    check_moves(plan)


@given(clusters())
def test_queue_limits_hold(cluster: ClusterState) -> None:
    check_limits(cluster, schedule(cluster, NOW), NOW)


@given(clusters(), st.sampled_from([0.0, 0.5, 0.99]))
def test_rerun_on_result_evicts_nothing(cluster: ClusterState, later: float) -> None:
    check_stable(cluster, schedule(cluster, NOW), NOW, later)


@given(clusters(), st.integers(0, 3), st.sampled_from([{}, {"random": 1.0}]))
def test_same_input_same_plan(cluster: ClusterState, seed: int, scoring: dict[str, float]) -> None:
    config = SchedulerConfig(scoring=scoring, reserve_after_s=0) if scoring else SchedulerConfig(reserve_after_s=0)
    check_deterministic(cluster, NOW, config, seed)


@given(clusters())
def test_every_pending_workload_has_a_reason(cluster: ClusterState) -> None:
    check_reasons(cluster, schedule(cluster, NOW))
