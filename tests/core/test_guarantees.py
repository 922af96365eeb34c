"""Guarantees the README promises, each pinned by the minimal case that once broke it.

Findings of issue 10, one test each: siblings reclaim from each other, reclaim frees a whole
node when one node's worth is owed, a big single-worker job is not starved by a stream of small
ones, a reservation is only taken where it can succeed and is bounded in time, and spot
capacity is kept for work that may be interrupted.
"""

from __future__ import annotations

from builders import job, node, queue, state
from corral.core import SchedulerConfig, schedule
from corral.core import reasons as R
from corral.core.model import CapacityKind, WorkloadKind

NOW = 100_000.0
OLD = NOW - 3600


def test_a_child_below_quota_reclaims_from_its_sibling_above_quota() -> None:
    # parent quota 32 = children 16 + 16; one child runs 32 one-GPU jobs, the other asks for 8
    nodes = [node(f"n{i}") for i in range(4)]
    queues = [queue("parent", quota=32), queue("a", quota=16, parent="parent"),
              queue("b", quota=16, parent="parent")]
    running = [job(f"a{i}").queue("a").running((f"n{i // 8}", (i % 8,)), since=OLD)
               for i in range(32)]
    pending = [job("b-big").queue("b").gpus(8).submitted(NOW - 10)]
    plan = schedule(state(nodes, queues, running + pending), NOW)
    assert plan.placement_of("b-big") is not None, plan.pending.get("b-big")
    evicted = {e.workload_id for e in plan.evictions}
    assert len(evicted) == 8 and all(e.rule == R.RULE_RECLAIM for e in plan.evictions)
    # the sibling keeps its own quota
    assert 32 - len(evicted) >= 16


def test_the_shipped_pool_vision_team_gets_its_guarantee_back_from_nlp() -> None:
    nodes = [node(f"n{i}") for i in range(5)]  # 40 GPUs
    queues = [queue("research", quota=40, limit=80, weight=2),
              queue("research-nlp", quota=24, parent="research"),
              queue("research-vision", quota=16, parent="research")]
    running = [job(f"nlp{i}").queue("research-nlp").running((f"n{i // 8}", (i % 8,)), since=OLD)
               for i in range(32)]
    pending = [job(f"v{i}").queue("research-vision").gpus(1).submitted(NOW - 5)
               for i in range(16)]
    plan = schedule(state([*nodes, node("n5")], queues, running + pending), NOW)
    # with 16 GPUs free, vision gets them without reclaim
    assert sum(p.workload_id.startswith("v") for p in plan.placements) == 16
    assert plan.evictions == ()
    more = [job(f"w{i}").queue("research-vision").gpus(1).submitted(NOW - 5) for i in range(8)]
    full = [job(f"x{i}").queue("research-vision").running((f"n{4 + i // 8}", (i % 8,)), since=OLD)
            for i in range(8)]
    plan = schedule(state(nodes, queues, running + full + more), NOW)
    # the pool is full; vision holds 8 of its 16, nlp 32 of its 24: 8 come back from nlp
    assert sum(p.workload_id.startswith("w") for p in plan.placements) == 8, plan.pending
    assert len(plan.evictions) == 8
    assert {e.queue for e in plan.evictions} == {"research-nlp"}


def test_reclaim_frees_one_whole_node_rather_than_one_gpu_on_each() -> None:
    nodes = [node("n0"), node("n1")]
    queues = [queue("a", quota=8), queue("b", quota=8)]
    # a's 16 jobs alternate between the two nodes: the most recent are spread over both
    running = [job(f"a{i:02d}").queue("a").running((f"n{i % 2}", (i // 2,)), since=OLD + i)
               for i in range(16)]
    plan = schedule(state(nodes, queues, [*running, job("b8").queue("b").gpus(8)]), NOW)
    placed = plan.placement_of("b8")
    assert placed is not None, plan.pending.get("b8")
    target = placed.assignments[0].node_id
    assert len(plan.evictions) == 8
    victims = {e.workload_id for e in plan.evictions}
    assert all(f"n{int(v[1:]) % 2}" == target for v in victims)


def test_a_big_single_worker_job_is_not_starved_by_a_stream_of_small_ones() -> None:
    # one 8-GPU node with 1-GPU jobs ending and arriving; the 8-GPU job waits past
    # reserve_after: the node is reserved for it and drains, so it starts
    cfg = SchedulerConfig(reserve_after_s=60)
    nodes = [node("n0")]
    queues = [queue("q")]
    running = [job(f"r{i}").queue("q").running(("n0", (i,)), since=OLD) for i in range(7)]
    big = job("big").queue("q").gpus(8).submitted(NOW - 600)
    small = [job(f"s{i}").queue("q").gpus(1).submitted(NOW - 10) for i in range(3)]
    plan = schedule(state(nodes, queues, [*running, big, *small]), NOW, cfg)
    assert [r.workload_id for r in plan.reservations] == ["big"]
    assert all(plan.placement_of(s.build().id) is None for s in small)
    assert plan.pending["s0"].code == R.RESERVED_FOR_GANG
    assert "big" in plan.pending["s0"].message


def test_non_preemptible_work_stays_off_spot_and_preemptible_work_prefers_it() -> None:
    nodes = [node("spot").kind(CapacityKind.SPOT), node("od").kind(CapacityKind.ON_DEMAND)]
    work = [job("svc").queue("q").gpus(8).not_preemptible().build(),
            job("batch").queue("q").gpus(8).build()]
    plan = schedule(state(nodes, [queue("q")], work), NOW)
    svc, batch = plan.placement_of("svc"), plan.placement_of("batch")
    assert svc is not None and svc.assignments[0].node_id == "od"
    assert batch is not None and batch.assignments[0].node_id == "spot"
    # alone, a non-preemptible job waits rather than take spot
    plan = schedule(state([node("spot").kind(CapacityKind.SPOT)], [queue("q")], work[:1]), NOW)
    assert plan.placement_of("svc") is None
    assert work[0].kind == WorkloadKind.JOB


def test_consolidation_never_moves_work_from_on_demand_to_spot() -> None:
    # a non-preemptible 2-GPU job needs a whole on-demand node; each on-demand node runs one
    # preemptible 1-GPU job. Moving one to the spot node's free GPU (which the capacity score
    # prefers for preemptible work) would add a risk of interruption it did not have: it
    # moves to the other on-demand node instead
    nodes = [node("od1").gpus(2), node("od2").gpus(2), node("sp").gpus(2).kind(CapacityKind.SPOT)]
    work = [job("a").queue("q").running(("od1", (0,)), since=OLD),
            job("b").queue("q").running(("od2", (0,)), since=OLD),
            job("s").queue("q").not_preemptible().running(("sp", (0,)), since=OLD),
            job("big").queue("q").gpus(2).not_preemptible()]
    plan = schedule(state(nodes, [queue("q")], work), NOW)
    assert plan.placement_of("big") is not None, plan.pending
    for moved in plan.moves:
        home = plan.placement_of(moved)
        assert home is not None and home.assignments[0].node_id != "sp"


def test_a_queue_whose_quota_is_the_whole_pool_waits_for_capacity_not_for_quota() -> None:
    # corral up's single default queue has the pool as its quota: a full pool is full
    nodes = [node("n0").gpus(2)]
    work = [job("a").queue("q").gpus(2).running(("n0", (0, 1)), since=OLD),
            job("b").queue("q").gpus(1)]
    plan = schedule(state(nodes, [queue("q", quota=2)], work), NOW)
    assert plan.pending["b"].code == R.INSUFFICIENT_CAPACITY
    # with a second queue owning half the pool, the same wait is a matter of quota
    plan = schedule(state(nodes, [queue("q", quota=1), queue("other", quota=1)], work), NOW)
    assert plan.pending["b"].code == R.OVER_QUOTA
    assert "queue q would be above its quota of 1 GPUs" in plan.pending["b"].message
    assert dict(plan.pending["b"].details)["used_gpus"] == 2  # the use: in the details only


def test_a_constraint_no_node_meets_is_named_in_the_plan() -> None:
    spot_only = [node("s").kind(CapacityKind.SPOT)]
    plan = schedule(state(spot_only, [queue("q")], [job("svc").queue("q").not_preemptible()]), NOW)
    reason = plan.pending["svc"]
    assert reason.code == R.CAPACITY_UNAVAILABLE and reason.unresolvable
    assert "spot" in reason.message and "capacity" in reason.message


def test_a_team_under_its_quota_waits_on_its_sibling_not_on_borrowing() -> None:
    # org p (8) = a (4) + b (4); org q (8) = c (8). b runs 12 non-preemptible GPUs, c runs 4:
    # a is owed 4 by its own quota; only b could give and b's work may not be evicted
    nodes = [node("n0"), node("n1")]
    queues = [queue("p", quota=8), queue("a", quota=4, parent="p"), queue("b", quota=4, parent="p"),
              queue("q", quota=8), queue("c", quota=8, parent="q")]
    work = [job(f"b{i}").queue("b").not_preemptible().running((f"n{i // 8}", (i % 8,)), since=OLD)
            for i in range(12)]
    work += [job(f"c{i}").queue("c").running(("n1", (4 + i,)), since=OLD) for i in range(4)]
    work.append(job("a4").queue("a").gpus(4))
    plan = schedule(state(nodes, queues, work), NOW)
    reason = plan.pending["a4"]
    assert reason.code == R.RECLAIM_BLOCKED, reason
    assert "queue a is owed it" in reason.message and "its parent p is above" in reason.message
