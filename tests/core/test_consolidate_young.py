"""Consolidation neither moves nor counts a placement of its own cycle that has a minimum
runtime (`VictimIndex.may_move`): the next cycle could not move it once it runs.

The case (bench/contention.py seed 4, reduced): w (4 GPUs) fits nowhere; node n0 would hold it
once t1 (1 GPU) and t2 (2 GPUs) move, and eight nodes each offer 3 GPUs of movable work that
frees too little. Consolidation tries the 8 nodes with the fewest movable GPUs (`_MAX_NODES`).
y (2 GPUs, a 1-hour minimum runtime) is placed on n0 earlier in the same cycle: counted as
movable, n0 offered 5 GPUs and ranked ninth, so the cycle left w waiting, and its rerun on the
applied result (y running, inside its minimum runtime) ranked n0 first and moved t1 and t2: a
rerun that evicts.
"""

from __future__ import annotations

from dataclasses import replace

from builders import job, node, queue, state
from corral.core import ClusterState, schedule
from corral.core.model import WorkloadState
from corral.core.plan import Plan


def _before() -> ClusterState:
    nodes = [node("n0").model("B"), *(node(f"n{i}").model("A") for i in range(1, 10))]
    work = [job("t1").queue("a").gpus(1).running(("n0", (0,))),
            job("t2").queue("a").gpus(2).running(("n0", (1, 2))),
            job("tf").queue("a").gpus(1).not_preemptible().running(("n0", (3,))),
            job("hf").queue("a").gpus(5).not_preemptible().running(("n9", (0, 1, 2, 3, 4))),
            job("y").queue("a").gpus(2).models("B").min_runtime(3600).priority(10)
            .submitted(5.0),
            job("w").queue("a").gpus(4).submitted(10.0)]
    for i in range(1, 9):
        work += [job(f"o{i}a").queue("a").gpus(1).running((f"n{i}", (0,))),
                 job(f"o{i}b").queue("a").gpus(2).running((f"n{i}", (1, 2))),
                 job(f"o{i}f").queue("a").gpus(5).not_preemptible()
                 .running((f"n{i}", (3, 4, 5, 6, 7)))]
    return state(nodes, [queue("a")], work)


def _applied(s: ClusterState, plan: Plan) -> ClusterState:
    """As the control plane applies a plan: placements run from `now`, a move waits again."""
    placed = {p.workload_id: p.assignments for p in plan.placements}
    evicted = {e.workload_id for e in plan.evictions}
    work = tuple(
        replace(w, state=WorkloadState.PENDING, started_at=None, assignments=())
        if w.id in evicted else
        replace(w, state=WorkloadState.RUNNING, started_at=plan.now, assignments=placed[w.id])
        if w.id in placed else w
        for w in s.workloads)
    return replace(s, workloads=work)


def test_the_cycle_moves_what_its_rerun_would_move() -> None:
    plan = schedule(_before(), 1000.0)
    placed = {p.workload_id: p.assignments[0].node_id for p in plan.placements}
    assert placed["y"] == "n0" and placed["w"] == "n0"
    assert sorted((e.workload_id, e.rule) for e in plan.evictions) == [
        ("t1", "Consolidate"), ("t2", "Consolidate")]
    rerun = schedule(_applied(_before(), plan), 1000.0)
    assert rerun.evictions == ()

