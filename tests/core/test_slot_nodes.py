"""Which nodes a reservation's slot holds when no node of the domain holds a worker now
(`actions/slot_nodes.drain_first`, issue 10): those it waits on the fewest running workloads
for, a gang's nodes together, then those with the fewest GPUs free (held idle meanwhile).
Before, the tie went by node index: on bench/contention.py seed 1 the one slot sat under
workers of four different multi-node gangs for hours while GPUs sat free in pieces."""

from __future__ import annotations

from builders import job, node, queue, state
from corral.core import SchedulerConfig, schedule

NOW = 10_000.0
CFG = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=3600.0, max_reservations=1,
                      consolidate=False, reclaim=False, preempt=False)


def _slot(work: list, n: int) -> list[tuple[str, list[str]]]:
    nodes = [node(f"n{i}").gpus(4) for i in range(n)]
    plan = schedule(state(nodes, [queue("a"), queue("o")], work), NOW, CFG)
    return [(r.workload_id, sorted(r.node_ids)) for r in plan.reservations]


def test_the_slot_waits_for_one_gang_not_for_several_jobs() -> None:
    """n0 and n1 each run a 4-GPU job of their own; n2 and n3 run the two workers of one
    gang. g (2 x 4) waits: its slot takes n2 and n3, which free together when that gang
    ends, not n0 and n1 (two ends to wait for; the lowest indices, as before)."""
    work = [job("j0").queue("o").gpus(4).running(("n0", (0, 1, 2, 3))),
            job("j1").queue("o").gpus(4).running(("n1", (0, 1, 2, 3))),
            job("k").queue("o").gpus(4).gang(2).running(("n2", (0, 1, 2, 3)),
                                                       ("n3", (0, 1, 2, 3))),
            job("g").queue("a").gpus(4).gang(2).submitted(NOW - 100.0)]
    assert _slot(work, 4) == [("g", ["n2", "n3"])]


def test_the_slot_does_not_hold_free_pieces_idle_when_a_full_node_drains_as_soon() -> None:
    """n0 has 3 of 4 GPUs free under one 1-GPU job, n1 none free under one 4-GPU job: each
    waits for one end, and n1 holds nothing idle meanwhile. n2 runs two jobs (two ends)."""
    work = [job("p").queue("o").gpus(1).running(("n0", (0,))),
            job("f").queue("o").gpus(4).running(("n1", (0, 1, 2, 3))),
            job("x").queue("o").gpus(2).running(("n2", (0, 1))),
            job("y").queue("o").gpus(2).running(("n2", (2, 3))),
            job("g").queue("a").gpus(4).submitted(NOW - 100.0)]
    assert _slot(work, 3) == [("g", ["n1"])]


def test_a_node_that_holds_a_worker_now_comes_first() -> None:
    """n2 is empty: it holds one of g's workers now and goes first. The second worker's node
    is n1 (one job to wait for), not n0 (two; the lower index, as before)."""
    work = [job("x").queue("o").gpus(2).running(("n0", (0, 1))),
            job("y").queue("o").gpus(2).running(("n0", (2, 3))),
            job("z").queue("o").gpus(4).running(("n1", (0, 1, 2, 3))),
            job("g").queue("a").gpus(4).gang(2).submitted(NOW - 100.0)]
    assert _slot(work, 3) == [("g", ["n1", "n2"])]


def test_work_that_may_not_be_evicted_is_waited_for_too() -> None:
    """n0 runs two jobs that may not be evicted, n1 one that may: the slot waits for every
    end, evictable or not, so it takes n1 (the victim index alone lists only the latter)."""
    work = [job("x").queue("o").gpus(2).not_preemptible().running(("n0", (0, 1))),
            job("y").queue("o").gpus(2).not_preemptible().running(("n0", (2, 3))),
            job("z").queue("o").gpus(4).running(("n1", (0, 1, 2, 3))),
            job("g").queue("a").gpus(4).submitted(NOW - 100.0)]
    assert _slot(work, 2) == [("g", ["n1"])]


def test_for_one_worker_a_gangs_node_is_no_better_than_a_jobs() -> None:
    """n1 and n2 run one gang, n0 one job: a 1-worker slot waits for one end on any of them,
    so it goes by free GPUs, then index (n0). Counting the gang's two nodes put a 1 x 8 slot
    of bench/contention.py seed 4 under a 4 x 8 gang's worker."""
    work = [job("j").queue("o").gpus(4).running(("n0", (0, 1, 2, 3))),
            job("k").queue("o").gpus(4).gang(2).running(("n1", (0, 1, 2, 3)),
                                                       ("n2", (0, 1, 2, 3))),
            job("g").queue("a").gpus(4).submitted(NOW - 100.0)]
    assert _slot(work, 3) == [("g", ["n0"])]


def test_work_of_a_queue_the_cycle_does_not_know_is_waited_for_too() -> None:
    """Running work whose queue is gone from the snapshot cannot be evicted either (no row in
    the victim index): the slot counts its ends like a non-preemptible job's, so it takes n1
    (one end), not n0 (two ends the index did not list)."""
    work = [job("x").queue("gone").gpus(2).running(("n0", (0, 1))),
            job("y").queue("gone").gpus(2).running(("n0", (2, 3))),
            job("z").queue("o").gpus(4).running(("n1", (0, 1, 2, 3))),
            job("g").queue("a").gpus(4).submitted(NOW - 100.0)]
    assert _slot(work, 2) == [("g", ["n1"])]
