"""Invariants of the scheduling core, as Hypothesis properties on random pools and workloads.

A random cluster is built in two rounds: a first cycle places some work (which then runs, with a
random age), more work arrives, and a second cycle decides. Its plan, applied, must never:
over-allocate a GPU share, GPU memory, CPU or RAM; split a gang; reclaim from a queue at or below
quota; evict non-preemptible or too-young work; break a queue limit; or evict again when the
cycle is rerun on its own result. The same input must give the same plan.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

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


@given(clusters())
def test_plan_respects_capacity_gangs_and_constraints(cluster: ClusterState) -> None:
    plan = schedule(cluster, NOW)
    after = apply(cluster, plan, NOW)
    assert_capacity(after)
    nodes_by_id = {n.id: n for n in cluster.nodes}
    work = {w.id: w for w in cluster.workloads}
    for p in plan.placements:
        w = work[p.workload_id]
        for a in p.assignments:
            n = nodes_by_id[a.node_id]
            assert n.schedulable, f"{w.id} placed on unschedulable {n.id}"
            if w.gpu_models:
                assert n.gpu_model in w.gpu_models
            if w.max_price_per_gpu_hour is not None:
                assert n.price_per_gpu_hour <= w.max_price_per_gpu_hour
        if w.workers > 1 and not w.allow_cross_region:
            assert len({nodes_by_id[a.node_id].region for a in p.assignments}) == 1


@given(clusters())
def test_evictions_follow_their_rules(cluster: ClusterState) -> None:
    plan = schedule(cluster, NOW)
    after = apply(cluster, plan, NOW)
    used = usage(after)
    quotas = {q.name: q.quota_gpus * 1000 for q in cluster.queues}
    work = {w.id: w for w in cluster.workloads}
    for e in plan.evictions:
        victim, beneficiary = work[e.workload_id], work[e.for_workload]
        assert victim.preemptible, f"non-preemptible {victim.id} evicted"
        assert victim.started_at is not None and NOW - victim.started_at >= victim.min_runtime_s
        if e.rule == R.RULE_RECLAIM:
            assert used[victim.queue] >= quotas[victim.queue], f"{victim.queue} reclaimed below quota"
            by_model = dict(next(q for q in cluster.queues if q.name == beneficiary.queue).quota_by_model)
            within_model = bool(beneficiary.gpu_models) and all(m in by_model for m in beneficiary.gpu_models)
            assert used[beneficiary.queue] <= quotas[beneficiary.queue] or within_model
        elif e.rule == R.RULE_PREEMPT:
            assert victim.queue == beneficiary.queue and victim.priority < beneficiary.priority


@given(clusters())
def test_queue_limits_hold(cluster: ClusterState) -> None:
    before = usage(cluster)
    after = usage(apply(cluster, schedule(cluster, NOW), NOW))
    for q in cluster.queues:
        if q.limit_gpus is not None and before[q.name] <= q.limit_gpus * 1000:
            assert after[q.name] <= q.limit_gpus * 1000, f"queue {q.name} over its limit"


@given(clusters())
def test_rerun_on_result_evicts_nothing(cluster: ClusterState) -> None:
    after = apply(cluster, schedule(cluster, NOW), NOW)
    again = schedule(after, NOW)
    assert again.evictions == (), f"preemption loop: {again.evictions}"


@given(clusters(), st.integers(0, 3))
def test_same_input_same_plan(cluster: ClusterState, seed: int) -> None:
    config = SchedulerConfig(reserve_after_s=0)
    assert schedule(cluster, NOW, config, seed) == schedule(cluster, NOW, config, seed)


@given(clusters())
def test_every_pending_workload_has_a_reason(cluster: ClusterState) -> None:
    plan = schedule(cluster, NOW)
    placed = {p.workload_id for p in plan.placements}
    for w in cluster.workloads:
        if not w.running and w.id not in placed:
            assert w.id in plan.pending and plan.pending[w.id].message
    for e in plan.evictions:
        if e.workload_id not in placed:
            assert e.message and e.for_workload
