"""A reservation stays with its holder from one cycle to the next while it may succeed
(`ClusterState.reserved_for`, `actions.allocate.keep_reservations`).

The case (bench/contention.py seed 4, reduced): queue a's gang h (3 x 8 GPUs, one zone) is
blocked and holds the one reservation (`max_reservations` 1) on zone z1, where queue b's
priority-10 job l runs; the same cycle backfills a's 8-GPU job x on z2, which puts queue a
behind queue b in the fair-share order. Rerun on that applied result with no memory of the
holder, b's priority-50 gang g fails first and takes the reservation, and preemption evicts l
for it: a rerun that evicts, from a plan that decided nothing new. Passed the holder back, the
rerun keeps h's reservation and evicts nothing.
"""

from __future__ import annotations

from dataclasses import replace

from builders import job, node, queue, state
from corral.core import ClusterState, SchedulerConfig, schedule
from corral.core.model import TopologyLevel, WorkloadState
from corral.core.plan import Plan

CFG = SchedulerConfig(reserve_after_s=0.0, consolidate=False)


def _before() -> ClusterState:
    nodes = [*(node(f"n{i}").at(zone="z1") for i in (1, 2, 3)),
             *(node(f"n{i}").at(zone="z2") for i in (4, 5))]
    zone = TopologyLevel.ZONE
    return state(nodes, [queue("a", 40), queue("b", 40)], [
        job("l").queue("b").gpus(1).priority(10).running(("n1", (0,))),
        job("a0").queue("a").gpus(1).not_preemptible().running(("n4", (0,))),
        job("h").queue("a").gpus(8).gang(3).topology(zone).submitted(0.0),
        job("x").queue("a").gpus(8).submitted(1.0),
        job("g").queue("b").gpus(8).gang(3).priority(50).topology(zone).submitted(2.0),
    ])


def _applied(s: ClusterState, plan: Plan) -> ClusterState:
    """The plan applied as the control plane applies it (no evictions here: placements run),
    with the plan's reservation holders passed back."""
    assert plan.evictions == ()
    placed = {p.workload_id: p.assignments for p in plan.placements}
    work = tuple(replace(w, state=WorkloadState.RUNNING, started_at=plan.now,
                         assignments=placed[w.id]) if w.id in placed else w
                 for w in s.workloads)
    return replace(s, workloads=work,
                   reserved_for=tuple(r.workload_id for r in plan.reservations))


def test_the_first_cycle_reserves_for_h_and_backfills_x() -> None:
    plan = schedule(_before(), 1000.0, CFG)
    assert [p.workload_id for p in plan.placements] == ["x"]
    assert [(r.workload_id, sorted(r.node_ids)) for r in plan.reservations] == [
        ("h", ["n1", "n2", "n3"])]


def test_a_rerun_keeps_the_holder_and_evicts_nothing() -> None:
    first = schedule(_before(), 1000.0, CFG)
    rerun = schedule(_applied(_before(), first), 1000.0, CFG)
    assert rerun.evictions == () and rerun.placements == ()
    assert rerun.reservations == first.reservations
    assert rerun.pending["g"].code == first.pending["g"].code


def test_without_the_holder_passed_back_the_reservation_changes_hands() -> None:
    """What the core did before `reserved_for` (and still does for a caller that passes
    nothing): the order decides, b's gang takes the slot and preempts l for it."""
    first = schedule(_before(), 1000.0, CFG)
    rerun = schedule(replace(_applied(_before(), first), reserved_for=()), 1000.0, CFG)
    assert [(e.workload_id, e.rule, e.for_workload) for e in rerun.evictions] == [
        ("l", "Preempt", "g")]


def test_a_kept_reservation_ends_with_its_window() -> None:
    first = schedule(_before(), 1000.0, CFG)
    after_window = CFG.max_reservation_s + 60.0  # h's window (from t=0) closed: cooldown
    later = schedule(_applied(_before(), first), after_window, CFG)
    assert "h" not in {r.workload_id for r in later.reservations}


def test_a_kept_reservation_is_dropped_when_it_cannot_succeed() -> None:
    """Queue a's limit now stops h: the holder is not given its slot again."""
    first = schedule(_before(), 1000.0, CFG)
    s = _applied(_before(), first)
    limited = replace(s, queues=(queue("a", 40, limit=16), queue("b", 40)))
    rerun = schedule(limited, 1000.0, CFG)
    assert "h" not in {r.workload_id for r in rerun.reservations}


def test_a_holder_that_fits_now_starts_before_the_order() -> None:
    """Once zone z1 has drained, h starts there before allocation, although queue b is now
    further below its share: in b's turn first, b's gang g would take the nodes the
    reservation drained for h (what the core did before, and still does for a caller that
    passes no holders)."""
    first = schedule(_before(), 1000.0, CFG)
    s = _applied(_before(), first)
    work = tuple(w for w in s.workloads if w.id != "l")  # l ended: zone z1 is free
    plan = schedule(replace(s, workloads=work), 1060.0, CFG)
    assert [p.workload_id for p in plan.placements] == ["h"]
    assert sorted(a.node_id for a in plan.placements[0].assignments) == ["n1", "n2", "n3"]
    forgot = schedule(replace(s, workloads=work, reserved_for=()), 1060.0, CFG)
    assert [p.workload_id for p in forgot.placements] == ["g"]

def test_a_holder_that_fits_twice_is_placed_once() -> None:
    """Room for two copies of h: it starts once (a holder that fits is not kept, and its
    turn places it)."""
    nodes = [node(f"n{i}").at(zone="z1") for i in (1, 2, 3, 4, 5, 6)]
    h = job("h").queue("a").gpus(8).gang(3).topology(TopologyLevel.ZONE).submitted(0.0)
    s = state(nodes, [queue("a", 40)], [h])
    plan = schedule(replace(s, reserved_for=("h",)), 1000.0, CFG)
    assert [p.workload_id for p in plan.placements] == ["h"]
