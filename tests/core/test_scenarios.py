"""Declarative scenarios: a pool, queues, workloads, and what the plan must say.

Each case reads as a sentence about policy; its id says which rule it pins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from builders import job, node, queue, state
from corral.core import ClusterState, Plan, Queue, SchedulerConfig, TopologyLevel, schedule
from corral.core import reasons as R

NOW = 10_000.0


@dataclass
class Case:
    id: str
    cluster: ClusterState
    placed: set[str] = field(default_factory=set)
    pending: dict[str, str] = field(default_factory=dict)  # workload -> reason code
    evicted: dict[str, str] = field(default_factory=dict)  # workload -> rule
    message_has: dict[str, str] = field(default_factory=dict)
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    reserved: dict[str, set[str]] | None = None  # gang -> its reserved nodes; None: not checked


def two_nodes(gpus: int = 8, **at: str) -> list:
    return [node("a").gpus(gpus).at(**at), node("b").gpus(gpus).at(**at)]


def _reserving_pool(gang_submitted: float) -> ClusterState:
    """Three 2-GPU nodes, a and b each half taken by work that cannot move: only c holds 2 GPUs.
    A 2 x 2-GPU gang is blocked; a 2-GPU job behind it fits nowhere but c."""
    return state([node("a").gpus(2), node("b").gpus(2), node("c").gpus(2)], [queue("q")],
                 [job("r1").queue("q").running(("a", (0,))).not_preemptible(),
                  job("r2").queue("q").running(("b", (0,))).not_preemptible(),
                  job("gang").queue("q").gpus(2).gang(2).priority(5).submitted(gang_submitted),
                  job("pair").queue("q").gpus(2).submitted(1)])


def _blocked_head() -> ClusterState:
    """q's first workload (4 GPUs) cannot start on the 2 free GPUs; two 1-GPU jobs wait behind
    it, and another queue has one of its own."""
    return state([node("a").gpus(4)], [queue("q"), queue("other")],
                 [job("r").queue("q").gpus(2).running(("a", (0, 1))).not_preemptible(),
                  job("big").queue("q").gpus(4).submitted(0), job("small").queue("q").submitted(1),
                  job("later").queue("q").submitted(2), job("o").queue("other").submitted(3)])


CASES = [
    Case("gang-whole-or-nothing",
         state([*two_nodes(), node("c").at()], [queue("q")],
               [job("busy").queue("q").gpus(1).not_preemptible().running(("c", (0,))),
                job("g").queue("q").gpus(8).gang(3)]),
         pending={"g": R.INSUFFICIENT_CAPACITY}),
    Case("gang-larger-than-pool-is-unresolvable",
         state(two_nodes(), [queue("q")], [job("g").queue("q").gpus(8).gang(3)]),
         pending={"g": R.GANG_TOO_LARGE}),
    Case("gang-spans-nodes-in-one-region",
         state(two_nodes(), [queue("q")], [job("g").queue("q").gpus(8).gang(2)]),
         placed={"g"}),
    Case("gang-never-crosses-regions",
         state([node("a").at(region="eu"), node("b").at(region="us")], [queue("q")],
               [job("g").queue("q").gpus(8).gang(2)]),
         pending={"g": R.GANG_TOO_LARGE}),
    Case("nvlink-gang-fragmented-explained",
         state([node("a").at(nvlink="x"), node("b").at(nvlink="x"), node("c").at(nvlink="y"),
                node("d").at(nvlink="y")], [queue("q")],
               [job("r1").queue("q").gpus(1).running(("a", (0,))),
                job("r2").queue("q").gpus(1).running(("c", (0,))).not_preemptible(),
                job("g").queue("q").gpus(8).gang(2).topology(TopologyLevel.NVLINK).models("H100")]),
         pending={"g": R.TOPOLOGY_FRAGMENTED},
         message_has={"g": "needs 2 workers x 8 H100 GPUs in one NVLink domain; the free capacity "
                           "it may use would hold them all, but no one NVLink domain has room"},
         config=SchedulerConfig(consolidate=False)),
    Case("shares-pack-onto-one-device",
         state([node("a").gpus(2)], [queue("q")],
               [job(f"f{i}").queue("q").share(milli=250).submitted(i) for i in range(4)]),
         placed={"f0", "f1", "f2", "f3"}),
    Case("whole-gpu-never-shares-a-used-device",
         state([node("a").gpus(1)], [queue("q")],
               [job("f").queue("q").share(milli=100).submitted(0), job("w").queue("q").gpus(1).submitted(1)]),
         placed={"f"}, pending={"w": R.INSUFFICIENT_CAPACITY}),
    Case("gpu-memory-share-bounded-by-device-memory",
         state([node("a").gpus(1).mem(80_000)], [queue("q")],
               [job(f"m{i}").queue("q").share(mem=30_000).submitted(i) for i in range(3)]),
         placed={"m0", "m1"}, pending={"m2": R.INSUFFICIENT_CAPACITY}),
    Case("price-cap-below-every-offer",
         state(two_nodes(), [queue("q")], [job("c").queue("q").max_price(0.5)]),
         pending={"c": R.PRICE_CAP_TOO_LOW}),
    Case("model-nobody-offers",
         state(two_nodes(), [queue("q")], [job("m").queue("q").models("B200")]),
         pending={"m": R.GPU_MODEL_UNAVAILABLE}, message_has={"m": "B200"}),
    Case("larger-than-any-node",
         state(two_nodes(), [queue("q")], [job("big").queue("q").gpus(16)]),
         pending={"big": R.NO_NODE_LARGE_ENOUGH}),
    Case("queue-limit",
         state(two_nodes(), [queue("q", limit=4)],
               [job("a").queue("q").gpus(4).submitted(0), job("b").queue("q").gpus(1).submitted(1)]),
         placed={"a"}, pending={"b": R.QUEUE_LIMIT}, message_has={"b": "limit of 4 GPUs"}),
    Case("parent-limit-caps-children",
         state(two_nodes(), [queue("p", limit=2), queue("c1", parent="p"), queue("c2", parent="p")],
               [job("x").queue("c1").gpus(2).submitted(0), job("y").queue("c2").gpus(1).submitted(1)]),
         placed={"x"}, pending={"y": R.QUEUE_LIMIT}, message_has={"y": "parent of c2"}),
    Case("unknown-queue",
         state(two_nodes(), [queue("q")], [job("x").queue("nope")]),
         pending={"x": R.UNKNOWN_QUEUE}),
    Case("cordoned-node-not-used",
         state([node("a").cordoned()], [queue("q")], [job("x").queue("q")]),
         pending={"x": R.NO_NODE_LARGE_ENOUGH}),
    Case("reclaim-from-borrower",
         state([node("a").gpus(4)], [queue("owner", quota=2), queue("borrower", quota=0)],
               [job("b1").queue("borrower").gpus(2).running(("a", (0, 1)), since=0),
                job("b2").queue("borrower").gpus(2).running(("a", (2, 3)), since=100),
                job("o").queue("owner").gpus(2)]),
         placed={"o"}, evicted={"b2": R.RULE_RECLAIM}),
    Case("no-reclaim-from-queue-at-quota",
         state([node("a").gpus(4)], [queue("owner", quota=2), queue("other", quota=4)],
               [job("x").queue("other").gpus(4).running(("a", (0, 1, 2, 3))),
                job("o").queue("owner").gpus(2)]),
         pending={"o": R.RECLAIM_BLOCKED},
         message_has={"o": "queue owner is owed it (within its quota of 2 GPUs with it)"}),
    Case("no-reclaim-beyond-own-quota",
         state([node("a").gpus(4)], [queue("owner", quota=1), queue("borrower")],
               [job("b").queue("borrower").gpus(4).running(("a", (0, 1, 2, 3))),
                job("o").queue("owner").gpus(2)]),
         pending={"o": R.OVER_QUOTA},
         message_has={"o": "queue owner would be above its quota of 1 GPUs with it, so this would borrow"}),
    Case("preempt-lower-priority-in-queue",
         state([node("a").gpus(2)], [queue("q")],
               [job("low").queue("q").gpus(2).priority(1).running(("a", (0, 1))),
                job("high").queue("q").gpus(2).priority(10)]),
         placed={"high"}, evicted={"low": R.RULE_PREEMPT}),
    Case("never-evict-non-preemptible",
         state([node("a").gpus(2)], [queue("q")],
               [job("low").queue("q").gpus(2).priority(1).not_preemptible().running(("a", (0, 1))),
                job("high").queue("q").gpus(2).priority(10)]),
         pending={"high": R.INSUFFICIENT_CAPACITY}),
    Case("min-runtime-protects-and-is-explained",
         state([node("a").gpus(2)], [queue("q")],
               [job("low").queue("q").gpus(2).priority(1).min_runtime(3600).running(("a", (0, 1)), since=NOW - 60),
                job("high").queue("q").gpus(2).priority(10)]),
         pending={"high": R.PROTECTED_BY_MIN_RUNTIME},
         message_has={"high": "fits only by evicting low, inside its minimum runtime for another"}),
    Case("equal-priority-does-not-preempt",
         state([node("a").gpus(2)], [queue("q")],
               [job("old").queue("q").gpus(2).running(("a", (0, 1))), job("new").queue("q").gpus(2)]),
         pending={"new": R.INSUFFICIENT_CAPACITY}),
    Case("consolidate-to-start-whole-node-job",
         state([node("a").gpus(4), node("b").gpus(4)], [queue("q")],
               [job("s1").queue("q").running(("a", (0,))), job("s2").queue("q").running(("b", (0,))),
                job("big").queue("q").gpus(4)]),
         placed={"big", "s1"}, evicted={"s1": R.RULE_CONSOLIDATE}),
    Case("reservation-blocks-backfill-on-reserved-nodes",
         state([node("a").gpus(2), node("b").gpus(2), node("c").gpus(2)], [queue("q")],
               [job("r1").queue("q").gpus(1).running(("a", (0,))).not_preemptible(),
                job("r2").queue("q").gpus(1).running(("b", (0,))).not_preemptible(),
                job("gang").queue("q").gpus(2).gang(2).submitted(0).priority(5),
                job("small").queue("q").gpus(1).submitted(1)]),
         placed={"small"}, pending={"gang": R.INSUFFICIENT_CAPACITY},
         config=SchedulerConfig(reserve_after_s=0, consolidate=False)),
    Case("gang-waiting-past-reserve-after-holds-room-from-smaller-work",
         _reserving_pool(gang_submitted=0.0), pending={"gang": R.INSUFFICIENT_CAPACITY, "pair": R.RESERVED_FOR_GANG},
         message_has={"pair": "reserved for gang", "gang": "nodes a, c are reserved for it"}, reserved={"gang": {"a", "c"}},
         config=SchedulerConfig(reserve_after_s=60)),
    Case("gang-not-yet-past-reserve-after-reserves-nothing",
         _reserving_pool(gang_submitted=NOW - 30), placed={"pair"}, pending={"gang": R.INSUFFICIENT_CAPACITY},
         reserved={}, config=SchedulerConfig(reserve_after_s=60)),
    Case("backfill-off-work-behind-blocked-head-not-considered",
         _blocked_head(), placed={"o"},
         pending={"big": R.INSUFFICIENT_CAPACITY, "small": R.NOT_CONSIDERED, "later": R.NOT_CONSIDERED},
         message_has={"small": "waiting behind big", "later": "waiting behind big"},
         config=SchedulerConfig(backfill=False)),
    Case("backfill-on-work-behind-blocked-head-starts",
         _blocked_head(), placed={"o", "small"},
         pending={"big": R.INSUFFICIENT_CAPACITY, "later": R.INSUFFICIENT_CAPACITY},
         config=SchedulerConfig(reserve_after_s=1e9)),
    Case("a-big-single-worker-that-waited-reserves-its-node",
         _blocked_head(), placed={"o"},
         pending={"big": R.INSUFFICIENT_CAPACITY, "small": R.RESERVED_FOR_GANG,
                  "later": R.RESERVED_FOR_GANG},
         message_has={"small": "reserved for big"}),
    Case("request-larger-than-queue-limit",
         state(two_nodes(), [queue("q", limit=2)], [job("x").queue("q").gpus(4)]),
         pending={"x": R.QUEUE_LIMIT_TOO_LOW}, message_has={"x": "needs 4 GPUs, more than the limit of 2 of queue q"}),
    Case("gang-larger-than-parent-limit",
         state(two_nodes(), [queue("p", limit=3), queue("c", parent="p")], [job("g").queue("c").gpus(2).gang(2)]),
         pending={"g": R.QUEUE_LIMIT_TOO_LOW}, message_has={"g": "limit of 3 of queue p (parent of c)"}),
]


def _check(case: Case, plan: Plan) -> None:
    placed = {p.workload_id for p in plan.placements}
    assert placed == case.placed
    assert {k: r.code for k, r in plan.pending.items()} == case.pending
    assert {e.workload_id: e.rule for e in plan.evictions} == case.evicted
    for wid, text in case.message_has.items():
        assert text in plan.pending[wid].message
    if case.reserved is not None:
        assert {r.workload_id: set(r.node_ids) for r in plan.reservations} == case.reserved


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_scenario(case: Case) -> None:
    _check(case, schedule(case.cluster, NOW, case.config))


def test_reservation_keeps_small_work_off_reserved_node() -> None:
    case = next(c for c in CASES if c.id == "reservation-blocks-backfill-on-reserved-nodes")
    plan = schedule(case.cluster, NOW, case.config)
    assert [(r.workload_id, set(r.node_ids)) for r in plan.reservations] == [("gang", {"a", "c"})]
    small = plan.placement_of("small")
    assert small is not None and small.backfilled
    assert small.assignments[0].node_id == "b"


def test_fair_share_weights_split_free_gpus() -> None:
    work = [job(f"{q}{i}").queue(q).submitted(i) for q in ("a", "b") for i in range(8)]
    plan = schedule(state([node("n").gpus(8)], [queue("a", weight=3), queue("b", weight=1)], work), NOW)
    per_queue = {"a": 0, "b": 0}
    for p in plan.placements:
        per_queue[p.queue] += 1
    assert per_queue == {"a": 6, "b": 2}


def test_quota_first_then_share() -> None:
    work = [job(f"{q}{i}").queue(q).submitted(i) for q in ("a", "b") for i in range(8)]
    plan = schedule(state([node("n").gpus(8)], [queue("a", quota=6), queue("b", quota=0)], work), NOW)
    per_queue = {"a": 0, "b": 0}
    for p in plan.placements:
        per_queue[p.queue] += 1
    assert per_queue["a"] >= 6 and sum(per_queue.values()) == 8


def test_priority_then_submission_order_inside_queue() -> None:
    work = [job("late-high").queue("q").priority(5).submitted(9), job("early").queue("q").submitted(1),
            job("late").queue("q").submitted(5)]
    plan = schedule(state([node("n").gpus(2)], [queue("q")], work), NOW)
    assert {p.workload_id for p in plan.placements} == {"late-high", "early"}


def test_cheapest_node_among_equals() -> None:
    nodes = [node("dear").price(4.0), node("cheap").price(1.0), node("mid").price(2.0)]
    plan = schedule(state(nodes, [queue("q")], [job("x").queue("q")]), NOW)
    assert plan.placements[0].assignments[0].node_id == "cheap"


def test_preferred_model_first() -> None:
    nodes = [node("a100").model("A100").price(1.0), node("h100").model("H100").price(3.0)]
    plan = schedule(state(nodes, [queue("q")], [job("x").queue("q").models("H100", "A100")]), NOW)
    assert plan.placements[0].assignments[0].node_id == "h100"


def test_binpack_fills_partly_used_node_first() -> None:
    nodes = [node("a"), node("b")]
    work = [job("r").queue("q").running(("b", (0,))), job("x").queue("q")]
    plan = schedule(state(nodes, [queue("q")], work), NOW)
    assert plan.placements[0].assignments[0].node_id == "b"


def test_spread_policy_per_queue() -> None:
    nodes = [node("a"), node("b")]
    work = [job("r").queue("q").running(("b", (0,))), job("x").queue("q")]
    cfg = SchedulerConfig(queue_scoring={"q": {"spread": 1.0}})
    plan = schedule(state(nodes, [queue("q")], work), NOW, cfg)
    assert plan.placements[0].assignments[0].node_id == "a"


def test_eviction_names_beneficiary_and_rule() -> None:
    case = next(c for c in CASES if c.id == "reclaim-from-borrower")
    plan = schedule(case.cluster, NOW)
    (ev,) = plan.evictions
    assert ev.for_workload == "o" and "reclaimed" in ev.message and "o" in ev.message


def test_gang_prefers_tightest_domain() -> None:
    nodes = [node("a").at(rack="r1"), node("b").at(rack="r2"), node("c").at(rack="r2")]
    work = [job("r").queue("q").gpus(4).running(("a", (0, 1, 2, 3))).not_preemptible(),
            job("g").queue("q").gpus(4).gang(4)]
    plan = schedule(state(nodes, [queue("q")], work), NOW)
    p = plan.placement_of("g")
    assert p is not None and {a.node_id for a in p.assignments} == {"b", "c"}


def _model_queue(name: str, quota: float, by_model: dict[str, float]) -> Queue:
    return Queue(name, quota_gpus=quota, quota_by_model=tuple(sorted(by_model.items())))


def test_per_model_quota_lets_a_queue_reclaim_its_guaranteed_model() -> None:
    """owner uses its whole quota on A100s, but 4 H100s are guaranteed to it: it may take H100s
    back from a borrower even though its total is at quota."""
    nodes = [node("h").model("H100").gpus(4), node("a").model("A100").gpus(4)]
    work = [job("own-a").queue("owner").gpus(4).models("A100").running(("a", (0, 1, 2, 3))),
            job("borrow-h").queue("borrower").gpus(4).running(("h", (0, 1, 2, 3))),
            job("want-h").queue("owner").gpus(2).models("H100")]
    queues = [_model_queue("owner", 4, {"H100": 4}), queue("borrower")]
    plan = schedule(state(nodes, queues, work), NOW)
    assert {e.workload_id: e.rule for e in plan.evictions} == {"borrow-h": R.RULE_RECLAIM}
    assert plan.placement_of("want-h") is not None


def test_per_model_quota_protects_the_victim_queue() -> None:
    """borrower is above its total quota, but only on A100s: its guaranteed H100s stay."""
    nodes = [node("h").model("H100").gpus(2), node("a").model("A100").gpus(2)]
    work = [job("b-h").queue("borrower").gpus(2).running(("h", (0, 1))),
            job("b-a").queue("borrower").gpus(2).running(("a", (0, 1))),
            job("want-h").queue("owner").gpus(2).models("H100")]
    queues = [queue("owner", quota=2), _model_queue("borrower", 2, {"H100": 2})]
    plan = schedule(state(nodes, queues, work), NOW)
    assert plan.evictions == ()
    assert plan.pending["want-h"].code == R.RECLAIM_BLOCKED
