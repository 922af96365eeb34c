"""Where a spread group's next worker goes: away from the group's other workers.

A service runs as one workload per replica. Placed independently, with bin-packing scores,
every replica of a service would land on the same node (often the same GPU), and one node
lost would take the whole service down. A workload may name a `spread_group` (a service's
replicas name the service); among the nodes where it fits, placement then prefers, in this
order:

1. the node that holds the fewest workers of its group,
2. then the zone that does (zones are qualified by provider and region),
3. then the provider that does,
4. then the scoring policy's best node (ties: the lowest node index, as everywhere).

It is a preference, never a filter: it only chooses among nodes the workload fits on now, so
a one-node pool still starts every replica, hard constraints and quotas decide as before, and
whether a workload fits (hence every reason and failure memo) does not depend on it.

Worked example: zones a (nodes a1, a2) and b (node b1), one replica already on a1. The next
one may go to a2 or b1 (no worker of the group on either), and b1 wins, its zone holding
none; a third replica goes to a2 (the only node without one), though zone a then holds two.

Cost: `SpreadIndex` keeps, per group, its workers per node, zone and provider, updated by the
cycle's statement (a listener, as `VictimIndex`), so replicas placed earlier in the same cycle
count. A placement reads only its own group's counts (a few entries) and filters the nodes the
workload fits on in three vectorised steps, the same order of work as the argmax it replaces.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np

from corral.core.model import TopologyLevel, WorkerAssignment, Workload
from corral.core.snapshot import FloatArray, IntArray, NodeTable

#: picks one node of `nodes` (ascending indices, every one feasible) given their scores
NodeChooser = Callable[[IntArray, FloatArray], int]


@dataclass(frozen=True)
class GroupCounts:
    """Workers of one group now, per node index, zone code and provider code."""

    nodes: Counter[int]
    zones: Counter[int]
    providers: Counter[int]


class SpreadIndex:
    def __init__(self, table: NodeTable) -> None:
        self.zone: IntArray = table.domain(TopologyLevel.ZONE)
        self.provider: IntArray = table.provider
        self.index = table.index
        self.groups: dict[str, GroupCounts] = {}

    def fill(self, live: Iterable[tuple[Workload, tuple[WorkerAssignment, ...]]]) -> None:
        for w, assignments in live:
            self.changed(w, assignments, +1)

    def changed(self, w: Workload, assignments: tuple[WorkerAssignment, ...], sign: int) -> None:
        """A statement listener: `w` now holds (+1) or no longer holds (-1) `assignments`."""
        if w.spread_group is None:
            return
        counts = self.groups.get(w.spread_group)
        if counts is None:
            counts = self.groups[w.spread_group] = GroupCounts(Counter(), Counter(), Counter())
        for a in assignments:
            node = self.index[a.node_id]
            for counter, key in ((counts.nodes, node), (counts.zones, int(self.zone[node])),
                                 (counts.providers, int(self.provider[node]))):
                counter[key] += sign
                if counter[key] <= 0:  # emptied keys go, so "no workers yet" is an empty group
                    del counter[key]

    def chooser(self, group: str | None) -> NodeChooser | None:
        """How to choose among feasible nodes for a worker of `group` (`choose` with the
        group's counts), or None when the group has no worker placed: nothing to avoid."""
        if group is None:
            return None
        counts = self.groups.get(group)
        if counts is None or not counts.nodes:
            return None
        return partial(self.choose, counts)

    def choose(self, counts: GroupCounts, nodes: IntArray, scores: FloatArray) -> int:
        """The node of `nodes` (ascending, all feasible) with the fewest workers of the group,
        then the fewest in its zone, then in its provider, then the highest of `scores` (aligned
        with `nodes`), then the lowest index."""
        keep = np.ones(nodes.shape, dtype=np.bool_)
        for counter, codes in ((counts.nodes, nodes), (counts.zones, self.zone[nodes]),
                               (counts.providers, self.provider[nodes])):
            held = _lookup(counter, codes)
            held[~keep] = np.iinfo(np.int64).max
            keep &= held == held.min()
        best = np.flatnonzero(keep)
        return int(nodes[best[int(np.argmax(scores[best]))]])


def _lookup(counter: Counter[int], codes: IntArray) -> IntArray:
    """`counter[c]` for every code of `codes` (0 where absent), by binary search over the
    counter's keys (at most the group's size): O(codes x log group)."""
    keys = np.array(sorted(counter), dtype=np.int64)
    values = np.array([counter[k] for k in keys.tolist()], dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, codes), keys.size - 1)
    return np.where(keys[pos] == codes, values[pos], 0).astype(np.int64)
