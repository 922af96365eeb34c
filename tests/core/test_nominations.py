"""Nominations: the room a plan freed for a moved workload is held for it, and it goes there
first (`corral.core.nominations`).

The case: consolidation moves x (4 GPUs) from n1 to n2 so that `big` (8 GPUs) fits on n1. The
control plane applies the move as x's eviction only, so until x waits again, n2's devices 4-7
look free; without a nomination, work that arrives meanwhile takes them and x, back in line,
finds nothing (bench/contention.py: the victim then evicted again, in the rerun of the cycle).
"""

from __future__ import annotations

from dataclasses import replace

from builders import job, node, queue, state
from corral.core import ClusterState, WorkerAssignment, schedule
from corral.core import reasons as R
from corral.core.model import Nomination, Workload, WorkloadState

N2_ROOM = (WorkerAssignment(0, "n2", (4, 5, 6, 7), 1000, 80_000),)


def _before() -> ClusterState:
    return state([node("n1"), node("n2")], [queue("a", 8), queue("b", 8), queue("c", 4)],
                 [job("x").queue("a").gpus(4).running(("n1", (0, 1, 2, 3)), since=0.0),
                  job("y").queue("a").gpus(4).running(("n2", (0, 1, 2, 3)), since=0.0),
                  job("big").queue("b").gpus(8).submitted(10.0)])


def _after_move(x_waits: bool) -> ClusterState:
    """The move applied as the control plane applies it: big runs on n1, x stopping (absent)
    or waiting again, and four 1-GPU jobs of queue c arrived (c is owed all 4: it goes first)."""
    plan = schedule(_before(), 1000.0)
    assert [e.workload_id for e in plan.evictions] == ["x"] and plan.moves == {"x"}
    assert plan.nominations == (Nomination("x", N2_ROOM),)
    big = replace(_before().workloads[2], state=WorkloadState.RUNNING, started_at=1000.0,
                  assignments=plan.placement_of("big").assignments)  # type: ignore[union-attr]
    x = replace(_before().workloads[0], state=WorkloadState.PENDING, started_at=None,
                assignments=())
    arrivals = [job(f"c{i}").queue("c").gpus(1).submitted(1001.0).build() for i in range(4)]
    work: list[Workload] = [_before().workloads[1], big, *arrivals, *([x] if x_waits else [])]
    return replace(_before(), workloads=tuple(work),
                   nominations=(replace(plan.nominations[0], until=1200.0),))


def _on_n2_room(plan_placements: dict[str, tuple[WorkerAssignment, ...]]) -> set[str]:
    return {wid for wid, where in plan_placements.items()
            if any(a.node_id == "n2" and set(a.devices) & {4, 5, 6, 7} for a in where)}


def test_the_room_is_held_while_the_nominee_is_stopping() -> None:
    s = _after_move(x_waits=False)
    plan = schedule(s, 1060.0)
    assert plan.placements == ()
    for i in range(4):
        reason = plan.pending[f"c{i}"]
        assert reason.code == R.ROOM_NOMINATED, reason
        assert dict(reason.details)["nominated_for"] == ("x",)
        assert "held for x" in reason.message and "t=1200" in reason.message
    assert plan.nominations == s.nominations  # still in force, its bound unchanged
    # without the nomination, the arrivals take the room x was moved to
    free = schedule(replace(s, nominations=()), 1060.0)
    assert _on_n2_room({p.workload_id: p.assignments for p in free.placements}) == {
        "c0", "c1", "c2", "c3"}


def test_the_nominee_is_placed_on_its_room_first() -> None:
    s = _after_move(x_waits=True)
    plan = schedule(s, 1060.0)
    placed = {p.workload_id: p.assignments for p in plan.placements}
    assert placed == {"x": N2_ROOM}, "x goes first, although queue c is further below its share"
    assert plan.nominations == ()  # placed: nothing is held any more
    # c is owed 4 GPUs, but nothing it may reclaim makes room (queue a is within its quota)
    assert all(plan.pending[f"c{i}"].code == R.RECLAIM_BLOCKED for i in range(4)), plan.pending
    # without it, queue c (further below its share) comes first and x finds no room
    free = schedule(replace(s, nominations=()), 1060.0)
    assert "x" not in {p.workload_id for p in free.placements}


def test_a_nomination_that_no_longer_helps_is_dropped() -> None:
    s = _after_move(x_waits=True)
    # x runs elsewhere: nothing is held for it
    elsewhere = replace(s.workloads[-1], state=WorkloadState.RUNNING, started_at=1030.0,
                        assignments=(WorkerAssignment(0, "n3", (0, 1, 2, 3), 1000, 80_000),))
    moved = replace(s, nodes=(*s.nodes, node("n3").build()),
                    workloads=(*s.workloads[:-1], elsewhere))
    plan = schedule(moved, 1060.0)
    assert _on_n2_room({p.workload_id: p.assignments for p in plan.placements}) == {
        "c0", "c1", "c2", "c3"}
    assert plan.nominations == ()
    # a queue limit stops x: the room is not held for work that would not start there
    limited = replace(s, queues=(queue("a", 8, limit=4), *s.queues[1:]))
    plan = schedule(limited, 1060.0)
    assert plan.pending["x"].code == R.QUEUE_LIMIT
    assert _on_n2_room({p.workload_id: p.assignments for p in plan.placements}) == {
        "c0", "c1", "c2", "c3"}
    assert plan.nominations == ()
    # the room is not free any more (work runs there): nothing to hold, x waits like others
    squatter = job("z").queue("b").gpus(2).running(("n2", (4, 5)), since=1030.0).build()
    taken = replace(s, workloads=(*s.workloads, squatter))
    plan = schedule(taken, 1060.0)
    assert plan.nominations == () and "x" not in {p.workload_id for p in plan.placements}


def test_a_rerun_on_the_applied_move_places_the_nominee_and_evicts_nothing() -> None:
    """Applied like the control plane and rerun at the same instant: x is placed on the room
    it was moved to (its nomination), nothing is evicted, nobody else takes the room."""
    s = _after_move(x_waits=True)
    again = schedule(replace(s, workloads=tuple(w for w in s.workloads
                                                if not w.id.startswith("c"))), 1000.0)
    assert again.evictions == ()
    assert {p.workload_id: p.assignments for p in again.placements} == {"x": N2_ROOM}
