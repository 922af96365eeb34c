"""The next cycle as the live loop runs it, for `bench/schedule_cycle.py`: the first cycle's
plan applied the way the control plane applies it (placements start, evictions wait again, a
move is its eviction only, nominations and reservation holders passed back), then a delta of
what happens between two cycles: some running work ends, new work arrives, one node is
cordoned. Imported by schedule_cycle.py from this folder (a script's folder is first on its
path)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from corral.core import ClusterState, Plan, WorkloadState
from corral.testing.apply_plan import apply_like_control_plane

__all__ = ["Delta", "next_state"]

#: seconds of ends and arrivals modelled between the two cycles (not `corral up`'s interval: it
#: steps on events, at least once a second; 30 s of churn is a heavier delta than one step sees)
INTERVAL_S = 30.0
#: shares of running work that ends and of waiting work that arrives anew between the cycles
ENDS, ARRIVALS = 0.01, 0.01


@dataclass(frozen=True)
class Delta:
    started: int  # placements of the first plan, now running
    requeued: int  # evicted by the first plan, waiting again
    ended: int
    arrived: int
    cordoned: str

    def text(self) -> str:
        return (f"{self.started} started, {self.requeued} evicted, {self.ended} ended, "
                f"{self.arrived} arrived, node {self.cordoned} cordoned")


def next_state(state: ClusterState, plan: Plan, now: float, seed: int
               ) -> tuple[ClusterState, float, Delta]:
    """The state the live loop's next cycle sees (at `now + INTERVAL_S`), and what changed.
    Unchanged workloads are the same objects, as the live loop keeps them (`LiveState`)."""
    rng = random.Random(seed * 7919)
    applied = apply_like_control_plane(state, plan, now, 4 * INTERVAL_S)
    moves = plan.moves  # (computed from the plan on each access)
    started = sum(1 for p in plan.placements if p.workload_id not in moves)
    evicted = len({e.workload_id for e in plan.evictions})
    out = applied.workloads
    running = [i for i, w in enumerate(out) if w.state is WorkloadState.RUNNING]
    ending = set(rng.sample(running, int(len(running) * ENDS)))
    kept = [w for i, w in enumerate(out) if i not in ending]
    waiting = [w for w in kept if w.state is not WorkloadState.RUNNING]
    later = now + INTERVAL_S
    arrivals = [replace(w, id=f"arrived-{seed}-{k:06d}", submitted_at=later)
                for k, w in enumerate(rng.sample(waiting, int(len(waiting) * ARRIVALS)))]
    nodes = list(state.nodes)
    k = rng.randrange(len(nodes))
    nodes[k] = replace(nodes[k], cordoned=True)
    after = replace(applied, nodes=tuple(nodes), workloads=(*kept, *arrivals),
                    reserved_for=tuple(r.workload_id for r in plan.reservations))
    return after, later, Delta(started, evicted, len(ending), len(arrivals), nodes[k].id)
