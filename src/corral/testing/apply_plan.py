"""A plan applied to a `ClusterState` the way the control plane applies it, for the core's
multi-cycle tests (tests/core/test_churn.py and the tests built on it) and the cycle benchmark's
next cycle (bench/live_delta.py): one definition, so a change in what the control plane does
with a plan changes both.

Placements start (a moved workload's placement is its new home, started by the loop only once
its eviction has stopped it, so here a move is its eviction only); evictions stop and wait again;
the plan's nominations are kept, a new one for `nomination_s`. Unchanged workloads stay the same
objects, as the live loop keeps them (`LiveState`)."""

from __future__ import annotations

from dataclasses import replace

from corral.core import ClusterState, Plan, Workload, WorkloadState

__all__ = ["apply_like_control_plane"]


def apply_like_control_plane(state: ClusterState, plan: Plan, now: float,
                             nomination_s: float) -> ClusterState:
    moves = plan.moves
    placed = {p.workload_id: p for p in plan.placements if p.workload_id not in moves}
    evicted = {e.workload_id for e in plan.evictions}
    out: list[Workload] = []
    for w in state.workloads:
        if w.id in placed:
            w = replace(w, state=WorkloadState.RUNNING, started_at=now,
                        assignments=placed[w.id].assignments)
        elif w.id in evicted:
            w = replace(w, state=WorkloadState.PENDING, started_at=None, assignments=())
        out.append(w)
    kept = tuple(n if n.until is not None else replace(n, until=now + nomination_s)
                 for n in plan.nominations)
    return replace(state, workloads=tuple(out), nominations=kept)
