"""The plan, applied the way the control plane applies it, leaves the next cycle nothing to
evict at the same instant (issue 10: bench/contention.py's promise of 0 rerun evictions).

Each test here is a small state that reproduces a path the eighth pass traced from dumped
bench states (`bench/contention.py --dump-reruns`): one cycle, its plan applied
(`test_churn.apply_like_control_plane`: placements start, evictions wait again, a move is its
eviction only), the plan's reservations passed back as `ClusterState.reserved_for`, and the
same cycle run again on that result. Fixed: the hand-over chain (`allocate._hand_over`, the
heir's own heirs first); moves made for work a preemption then unplaced are the preemptor's
(`consolidate.give_back`: the plan's consolidation evictions stay within `max_moves`); a slot
whose released nodes an heir started on is reserved afresh (`allocate._started_on`); a
gang's victims only on nodes that could hold a worker (`evict._candidates`); the free slot
judged again after each round's evictions (`cycle.decide`). The last two landed with the slot's
node choice by the ends it waits for (`actions/slot_nodes.py`; bench/README.md, contention,
twelfth pass), without which they lengthened owed waits.
"""

from __future__ import annotations

from dataclasses import replace

from tests.core.test_churn import apply_like_control_plane

from builders import job, node, queue, state
from corral.core import SchedulerConfig, schedule
from corral.core.model import ClusterState
from corral.core.plan import Plan

NOW = 1_000.0


def _rerun(s: ClusterState, cfg: SchedulerConfig) -> tuple[Plan, Plan]:
    plan = schedule(s, NOW, cfg)
    after = apply_like_control_plane(s, plan, NOW)
    after = replace(after, reserved_for=tuple(r.workload_id for r in plan.reservations))
    return plan, schedule(after, NOW, cfg)


def test_reclaim_for_a_gang_does_not_spend_the_donors_allowance_on_a_placement_it_cannot_keep(
) -> None:
    """Queue d (quota 1) borrows 8 GPUs on n1 and n2; queue own (quota 8) waits with a gang of
    2 x 4. Allocation places d's y (1 GPU, minimum runtime 10 min) on n0, beside 2 GPUs of
    non-preemptible work. Reclaim then emptied n0 first (least deficit): it unplaced y (that
    frees nothing the gang can use) and spent 1 of what d may give, so the second of d's
    4-GPU jobs was refused and the gang waited. The rerun cannot take y (it started, and is
    inside its minimum runtime): it reclaimed a and b for the gang, evictions the plan could
    have made (bench/contention.py seed 1, t = 148,440 s, in the eighth pass's history)."""
    nodes = [node(n).gpus(4) for n in ("n0", "n1", "n2")]
    queues = [queue("own", 8), queue("d", 1), queue("s", 2)]
    work = [
        job("z").queue("s").gpus(2).not_preemptible().running(("n0", (0, 1))),
        job("a").queue("d").gpus(4).running(("n1", (0, 1, 2, 3))),
        job("b").queue("d").gpus(4).running(("n2", (0, 1, 2, 3))),
        job("y").queue("d").gpus(1).min_runtime(600).submitted(900.0),
        job("g").queue("own").gpus(4).gang(2).submitted(100.0),
    ]
    cfg = SchedulerConfig(consolidate=False, max_reservations=0)
    plan, rerun = _rerun(state(nodes, queues, work), cfg)
    assert [e.workload_id for e in rerun.evictions] == []
    assert "g" in {p.workload_id for p in plan.placements}



def test_moves_made_for_work_a_preemption_then_unplaced_do_not_use_up_the_budget() -> None:
    """One move a cycle. p (4 GPUs, priority 0) fits only with a move: consolidation moves m
    off n1 (to n3, the only other node m may use) and places p there; then q (priority 10,
    H100 only: n1) preempts p, this cycle's placement. p waited again with the move spent,
    so the plan left p waiting where the rerun, with a budget of its own, moved a off n2 for
    it (bench/contention.py seed 4, t = 163,620 s in the eighth pass's history: 8 moves for
    job-001579, whose room job-001656 then took; the rerun moved 5 more). Now m's move is
    q's eviction (`consolidate.give_back`) and the move goes back to the budget."""
    nodes = [node("n1").gpus(4).model("H100"), node("n2").gpus(4).model("A100"),
             node("n3").gpus(4).model("L40S")]
    work = [job("m").models("H100", "L40S").running(("n1", (0,))),
            job("a").running(("n2", (0,))),
            job("f").queue("o").not_preemptible().running(("n3", (0,))),
            job("q").gpus(4).models("H100").priority(10).submitted(900.0),
            job("p").gpus(4).submitted(800.0)]
    cfg = SchedulerConfig(max_moves=1, max_reservations=0)
    plan, rerun = _rerun(state(nodes, [queue("default"), queue("o")], work), cfg)
    assert {p.workload_id for p in plan.placements} >= {"q", "p"}
    assert [e.workload_id for e in rerun.evictions] == []
    # within max_moves: m's move is charged to q, which took its room and may preempt it
    rules = {e.workload_id: (e.rule, e.for_workload) for e in plan.evictions}
    assert rules == {"m": ("Preempt", "q"), "a": ("Consolidate", "p")}
    assert plan.moves == {"m", "a"}


def test_a_move_the_preemptor_may_not_take_stays_consolidations() -> None:
    """As above, but m is in another queue than q: q may not preempt it, so its move stays
    consolidation's, the budget stays spent and p waits (the plan's consolidation evictions
    never exceed `max_moves`; the refund that broke this was reverted in 97ce9e5)."""
    nodes = [node("n1").gpus(4).model("H100"), node("n2").gpus(4).model("A100"),
             node("n3").gpus(4).model("L40S")]
    work = [job("m").queue("o").models("H100", "L40S").running(("n1", (0,))),
            job("a").running(("n2", (0,))),
            job("f").queue("o").not_preemptible().running(("n3", (0,))),
            job("q").gpus(4).models("H100").priority(10).submitted(900.0),
            job("p").gpus(4).submitted(800.0)]
    cfg = SchedulerConfig(max_moves=1, max_reservations=0)
    plan = schedule(state(nodes, [queue("default", 8), queue("o", 4)], work), NOW, cfg)
    assert [(e.workload_id, e.rule, e.for_workload) for e in plan.evictions] == [
        ("m", "Consolidate", "p")]
    assert "p" not in {p.workload_id for p in plan.placements}



def test_a_victim_of_this_cycles_reclaim_gets_its_consolidation_in_this_cycle() -> None:
    """g (queue own, owed 8) reclaims d (queue d, borrowing 4 GPUs on r1). While g waited,
    the gang b (queue b, borrowing nothing) could not hold the free slot (a queue below its
    quota was waiting: `allocate._may_succeed`); after the reclaim it could, and the rerun
    gives it n0 and n1. Consolidation tries at most 8 nodes, fewest movable GPUs first:
    n0-n7 each have one movable GPU beside 3 that cannot move (no room for 4), n8 has two and
    2 free. With n0 and n1 reserved, n8 is among the 8 tried: the rerun moved k1 and k2 to n9
    for d, which the plan, judging the slot before the reclaim, did not (bench/contention.py
    seed 4, t = 98,880 s in the eighth pass's history: job-000957 held the slot on the rerun
    only, which then moved 3 jobs for job-000898, a victim of the plan's reclaim)."""
    now = 10_000.0
    cfg = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=3600.0,
                          reservation_cooldown_s=600.0, max_reservations=1)
    nodes = [node(f"n{i}").gpus(4) for i in range(10)] + [node("r1").gpus(4)]
    work = [w for i in range(8) for w in (
        job(f"s{i}").running((f"n{i}", (0,))),
        job(f"h{i}").queue("o").gpus(3).not_preemptible().running((f"n{i}", (1, 2, 3))))]
    work += [job("k1").running(("n8", (0,))), job("k2").running(("n8", (1,))),
             job("h9").queue("o").gpus(2).not_preemptible().running(("n9", (0, 1))),
             # out of its reservation window now (in the cooldown): it cannot hold the slot
             job("d").queue("d").gpus(4).submitted(now - 3_900.0).running(("r1", (0, 1, 2, 3))),
             job("g").queue("own").gpus(4).submitted(now - 100.0),
             job("b").queue("b").gpus(4).gang(2).submitted(now - 1_000.0)]
    queues = [queue("own", 8), queue("d"), queue("b"), queue("o"), queue("default", 10)]
    s = state(nodes, queues, work)
    plan = schedule(s, now, cfg)
    assert [(e.workload_id, e.rule) for e in plan.evictions][:1] == [("d", "Reclaim")]
    after = apply_like_control_plane(s, plan, now)
    after = replace(after, reserved_for=tuple(r.workload_id for r in plan.reservations))
    assert [e.workload_id for e in schedule(after, now, cfg).evictions] == []


def test_the_rerun_keeps_the_holder_a_hand_over_named() -> None:
    """X (queue p, priority 10) fails first in allocation; its heir is H (queue q, older by
    more than a window); E (queue p, priority 0, older still) is not X's heir (in X's queue
    only work of at least its priority is), so H takes the slot. The rerun keeps H's slot
    and hands it to H's own heir, E: the holder changes on a rerun, and with it what a
    consolidation may use (bench/contention.py seed 4, t = 118,740 s: the slot passed
    job-000751 -> job-000648 on the rerun, which then moved 3 jobs for job-001168). Now the
    plan's hand-over tries H's own heirs first, so E holds in the plan too."""
    cfg = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=1000.0,
                          reservation_cooldown_s=0.0, max_reservations=1)
    nodes = [node(n).gpus(4) for n in ("n1", "n2")]
    queues = [queue("p"), queue("q"), queue("o")]
    work = [job(f"o{k}").queue("o").not_preemptible().running((n, (0,)))
            for k, n in enumerate(("n1", "n2"))]
    work += [job("x").queue("p").gpus(4).priority(10).submitted(NOW - 1_000.0),
             job("h").queue("q").gpus(4).submitted(NOW - 5_000.0),
             job("e").queue("p").gpus(4).gang(2).submitted(NOW - 9_000.0)]
    plan, rerun = _rerun(state(nodes, queues, work), cfg)
    held = [r.workload_id for r in plan.reservations]
    assert held in (["h"], ["e"])
    assert [r.workload_id for r in rerun.reservations] == held


def test_a_slot_is_not_given_back_on_nodes_an_heir_started_on() -> None:
    """h holds the one slot. At the start of the cycle its heir x (older by more than a
    window) fits and starts on m1 and m2; h keeps n1, n2 and a0. g (priority 50) preempts v
    and this cycle's x. v is an heir of h, so `age_reservations` releases h's slot: x, the
    older heir, fits on n1 and n2 and starts there, and v cannot hold (queue a, below its
    quota, waits: `_may_succeed`). Nobody took the slot, and h got n1, n2, a0 back under x,
    where q (x's queue, priority 10) may not preempt. The rerun reserved for h afresh (a0-a2)
    and q preempted x on n1 and n2 (bench/contention.py seed 2 with the gang filter, t =
    129,540 s: job-001263's slot, job-000030 the heir, job-001337 the preemptor). Now a
    holder whose released nodes an heir started on is reserved for afresh
    (`allocate._started_on`), in the plan as on the rerun."""
    cfg = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=1000.0,
                          reservation_cooldown_s=0.0, max_reservations=1, consolidate=False)
    now = 10_000.0
    nodes = [node(n).gpus(4) for n in ("a0", "a1", "a2", "m1", "m2", "m3", "n1", "n2")]
    queues = [queue("a", 4), queue("p", 12), queue("o", 12)]
    # one gang on a0-a2: h's slot waits for its end alone, so a0 comes before m1 (x's) and
    # m3 (v's) in the slot's node choice (`slot_nodes.drain_first`)
    work = [job("r").queue("o").gpus(4).gang(3).running(
        *((n, (0, 1, 2, 3)) for n in ("a0", "a1", "a2")))]
    work += [job("h").queue("a").gpus(4).gang(3).submitted(now - 500.0),
             job("x").queue("p").gpus(4).gang(2).submitted(now - 9_000.0),
             job("v").queue("p").gpus(4).submitted(now - 8_000.0).running(("m3", (0, 1, 2, 3))),
             job("g").queue("p").gpus(4).gang(3).priority(50).submitted(now - 50.0),
             job("q").queue("p").gpus(4).gang(2).priority(10).submitted(now - 100.0)]
    s = replace(state(nodes, queues, work), reserved_for=("h",))
    plan = schedule(s, now, cfg)
    assert [(e.workload_id, e.for_workload) for e in plan.evictions] == [("v", "g")]
    after = apply_like_control_plane(s, plan, now)
    after = replace(after, reserved_for=tuple(r.workload_id for r in plan.reservations))
    rerun = schedule(after, now, cfg)
    assert [e.workload_id for e in rerun.evictions] == []
    assert [(r.workload_id, r.node_ids) for r in rerun.reservations] == [
        (r.workload_id, r.node_ids) for r in plan.reservations]
