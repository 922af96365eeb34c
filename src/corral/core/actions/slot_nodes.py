"""Which nodes a reservation's slot holds: those that drain soonest (issue 10).

`allocate._maybe_reserve` picks the topology domain closest to holding the workload; this picks
the nodes inside it (`drain_first`).

Slurm's backfill reserves where the top job can start earliest, from the time limits of the
work running there (slurm.schedmd.com/sched_config.html; LSF's slot reservation likewise from
run limits). Corral has no runtime estimates, so "soonest" is judged by how many running
workloads the slot must wait for: the last of k ends comes later as k grows, and each earlier
end leaves GPUs idle on the reserved nodes meanwhile. So, after the nodes that hold a worker
now: the fewest occupants not already waited for (a gang's other nodes then cost nothing: they
free at once), then the occupant that spans most of the candidates (the rest of its nodes come
free with it), then the fewest free GPUs (held idle until the slot fills), then node index.
Before, that tie went by node index alone: on bench/contention.py seed 1 with the gang filter
the one slot sat under workers of four different multi-node gangs for hours; a choice by free
GPUs held 3.4x more GPUs idle (bench/README.md, contention, eleventh and twelfth passes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from corral.core.fit import empty_slots, worker_slots

if TYPE_CHECKING:
    from corral.core.cycle import Cycle
    from corral.core.model import WorkerResources
    from corral.core.snapshot import IntArray


def drain_first(cycle: Cycle, r: WorkerResources, workers: int, inside: IntArray) -> list[int]:
    """The nodes of `inside` a slot for `workers` workers of `r` holds, in the order above."""
    cap = cycle.cap
    now_slots = worker_slots(cap, r, inside)
    holds = empty_slots(cap.table, r, inside)
    chosen: list[int] = []
    held = 0
    for k in np.lexsort((inside, -now_slots)):
        if now_slots[k] == 0:
            break
        chosen.append(int(inside[k]))
        held += int(holds[k])
        if held >= workers:
            return chosen
    busy = now_slots == 0
    _Drain(cycle, inside[busy], holds[busy]).pick(workers - held, chosen)
    return chosen


class _Drain:
    """The greedy choice among nodes with no whole slot free. Occupants come from the victim
    index (kept current by the statement, built once a cycle for the evictions anyway), so no
    pass over what runs; the count of new occupants is an array updated only for the nodes of
    the occupants just waited for (a gang's siblings)."""

    def __init__(self, cycle: Cycle, nodes: IntArray, holds: IntArray) -> None:
        index = cycle.victim_index()
        self.where = cycle.stmt.where
        self.node_index = cycle.cap.table.index
        self.on_node, self.fixed = index.on_node, index.fixed_on_node
        self.nodes, self.holds = nodes, holds
        self.pos = {int(n): k for k, n in enumerate(nodes.tolist())}
        self.new = np.fromiter((len(self.occupants(int(n))) for n in nodes), dtype=np.int64,
                               count=nodes.size)
        self.free = cycle.cap.free_sum[nodes]
        self.left = np.ones(nodes.size, dtype=np.bool_)
        self.waited: set[str] = set()
        self.spans: dict[str, int] = {}

    def occupants(self, node: int) -> set[str]:
        return self.on_node.get(node, {}).keys() | self.fixed.get(node, set())

    def span(self, wid: str) -> int:
        """How many of the candidate nodes `wid` runs on (they free together)."""
        if wid not in self.spans:
            self.spans[wid] = len(self.nodes_of(wid))
        return self.spans[wid]

    def nodes_of(self, wid: str) -> set[int]:
        index, pos = self.node_index, self.pos
        return {n for a in self.where.get(wid, ()) if (n := index[a.node_id]) in pos}

    def pick(self, missing: int, chosen: list[int]) -> None:
        while missing > 0 and self.left.any():
            fewest = self.new[self.left].min()
            tied = np.flatnonzero(self.left & (self.new == fewest))
            k = min(tied.tolist(), key=lambda k: self._key(k, missing))
            self.left[k] = False
            node = int(self.nodes[k])
            chosen.append(node)
            missing -= int(self.holds[k])
            for wid in self.occupants(node) - self.waited:
                self.waited.add(wid)
                for n in self.nodes_of(wid):
                    self.new[self.pos[n]] -= 1

    def _key(self, k: int, missing: int) -> tuple[int, int, int]:
        """An occupant on more nodes frees them at once, which counts only as far as workers
        are still missing (for one worker a gang's node is no better than a job's)."""
        new = self.occupants(int(self.nodes[k])) - self.waited
        spans = min(max(map(self.span, new), default=0), missing)
        return (-spans, int(self.free[k]), int(self.nodes[k]))
