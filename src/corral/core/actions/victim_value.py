"""Which nodes of a gang's domain to empty first when a cheaper class of victims would do:
an elastic job's extras before whole jobs (issue 13; issue 10 item 2 in part).

A gang's reclaim or preemption empties the nodes of one topology domain in the old order
(deficit, then node; victims cheapest first on each node) until it fits. So an elastic job's
core gang on the first node went before its extras on the next, although the extras' priority
is below every user priority and losing one core worker stops the whole job. Kubernetes'
preemption (`pickOneNodeForPreemption`: the lowest highest-priority victim, then the lowest
sum, then the fewest victims) and KAI-Scheduler's victim orderings (MinHighestPriority,
MinPrioritySum, LeastVictims) rank candidate nodes by their victims' value. Here:

1. victims are weighed by **value class** (`tier`): each priority below `USER_FLOOR` (an
   extra's) is a class of its own, every priority a user may give is one class;
2. the **threshold**: the lowest class p such that evicting every allowed victim of class <= p
   on the weighed nodes gives the gang the worker slots it misses ((free + freed) // per
   worker, less the slots free now, per node; a gang victim frees every weighed node it holds);
3. only if the old order would reach a dearer class: first the nodes chosen greedily under p
   (least to evict for a worker, fewest new victims per slot gained, most slots, node) and only
   their victims of class <= p; then every node and victim in the old order, as a second try.

Why classes and not every priority (bench/README.md, contention, "Gang victims by value,
2026-12-05"): ranking by each priority (0 / 10 / 50 in bench/contention.py) or by victim count
changed 4 of 888 gang attempts in seed 1's history, each sensibly (a priority-10 victim spared
for a priority-0 one), and the history diverged: seed 1's longest owed wait 1,320 -> 5,640 s,
seed 4's 420 -> 1,440 s, rerun evictions on seed 1, in every variant tried (the fifth to ninth
tries of this idea). With classes, work of user priorities keeps the old order (the benches'
plans are unchanged) and extras go first. Bounded: only the first `_WEIGHED` nodes of the old
order are weighed, and nothing is weighed where the nodes' victims are of one class.

Worked example (tests/core/test_gang_victims.py): n1 holds a core gang's 2 workers (priority
0) and two extras (-2000), n2 four extras; a gang of 4 x 1 GPU. Class -2000 gives n1 2 slots
and n2 4: 6 >= 4, so p = -2000, and the old order (n1 first) would reach class -1000 (the core
gang). Greedy: both need 1 GPU per worker and 1 victim per slot; n2 gives more slots: n2
first, its four extras evicted, the core gang kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.core.model import Workload

if TYPE_CHECKING:
    from corral.core.cycle import Cycle

_WEIGHED = 48  # nodes of a domain (the first, in the old order) whose victims are weighed
#: the lowest priority a user may give (`WorkloadSpec.priority`, pinned by a test); below it
#: are only an elastic job's extras (`corral.control.elastic.extra_priority`)
USER_FLOOR = -1000


@dataclass(frozen=True)
class Group:
    """Nodes to empty for one request, most promising first; with a threshold, first only
    the victims of value class (`tier`) <= `threshold` on the first `cheap` of `nodes`."""

    nodes: list[int]
    cheap: int = 0
    threshold: int | None = None


def by_value(cycle: Cycle, nodes: list[int], per: list[int], free: list[int],
             have: list[int], missing: int, allowed: Callable[[Workload], bool]) -> Group:
    """`nodes` of one domain in the old order (deficit, node), with per node the share one
    worker needs (`per`), the share free for it now (`free`) and its worker slots now (`have`),
    all in milli-GPUs; `missing` the worker slots the gang still lacks in the domain."""
    on_node = cycle.victim_index().on_node
    if len({tier(v.priority) for n in nodes[:_WEIGHED]
            for v in on_node.get(n, {}).values()}) < 2:
        return Group(nodes)  # one value class: nothing dearer for the value order to spare
    room = _Room(cycle, nodes[:_WEIGHED], per, free, have, allowed)
    for p in sorted({q for there in room.victims for q, _ in there}):
        if room.slots_upto(p) >= missing:
            break
    else:
        return Group(nodes)
    if p >= room.old_order_dearest(missing):
        return Group(nodes)  # the old order reaches no dearer class: keep it
    cheap = room.cheapest(p, missing)
    chosen = set(cheap)
    return Group(cheap + [n for n in nodes if n not in chosen], len(cheap), p)


class _Room:
    """The weighed nodes' victims and the worker slots evicting some of them would give. A
    victim is counted on every weighed node it holds: evicting a gang's worker stops the gang,
    so its other nodes free too."""

    def __init__(self, cycle: Cycle, nodes: list[int], per: list[int], free: list[int],
                 have: list[int], allowed: Callable[[Workload], bool]) -> None:
        self.nodes, self.per, self.free, self.have = nodes, per, free, have
        priced = [_priced(cycle, n, allowed) for n in nodes]
        self.victims = [[(q, vid) for q, vid, _ in there] for there in priced]
        self.spread: dict[str, list[tuple[int, int]]] = {}  # victim -> (node position, share)
        for i, there in enumerate(priced):
            for _, vid, milli in there:
                self.spread.setdefault(vid, []).append((i, milli))

    def _gain(self, i: int, freed: int) -> int:
        return max(0, (self.free[i] + freed) // max(self.per[i], 1) - self.have[i])

    def _slots(self, taken: set[str]) -> int:
        freed = [0] * len(self.nodes)
        for vid in taken:
            for i, milli in self.spread[vid]:
                freed[i] += milli
        return sum(self._gain(i, f) for i, f in enumerate(freed))

    def slots_upto(self, p: int) -> int:
        """The slots evicting every victim of priority <= p would give."""
        return self._slots({vid for there in self.victims for q, vid in there if q <= p})

    def old_order_dearest(self, missing: int) -> float:
        """The dearest victim the old order (nodes emptied in turn) reaches before the slots
        could hold the missing workers (+inf if the weighed nodes cannot)."""
        taken: set[str] = set()
        dearest = float("-inf")
        for there in self.victims:
            if not there:
                continue
            taken.update(vid for _, vid in there)
            dearest = max(dearest, max(q for q, _ in there))
            if self._slots(taken) >= missing:
                return dearest
        return float("inf")

    def cheapest(self, p: int, missing: int) -> list[int]:
        """Greedy: the node whose victims of priority <= p (not already taken) give the most
        new slots per victim, least to evict first; until the missing slots are covered."""
        taken: set[str] = set()
        order: list[int] = []
        got = 0
        while got < missing:
            best: tuple[int, float, int, int, int] | None = None
            for i, there in enumerate(self.victims):
                new = {vid for q, vid in there if q <= p and vid not in taken}
                if i in order or not new:
                    continue
                more = self._slots(taken | new) - got
                if more > 0:
                    key = (max(self.per[i] - self.free[i], 0), len(new) / more,
                           -min(more, missing), self.nodes[i], i)
                    best = key if best is None or key < best else best
            if best is None:
                break
            i = best[-1]
            order.append(i)
            taken |= {vid for q, vid in self.victims[i] if q <= p}
            got = self._slots(taken)
        return [self.nodes[i] for i in order]


def tier(priority: int) -> int:
    """A victim's value class: every priority a user may give is one class (their order is
    the old order's business: cheapest first on each node), each extra's priority its own."""
    return priority if priority < USER_FLOOR else USER_FLOOR


def _priced(cycle: Cycle, node: int, allowed: Callable[[Workload], bool]
            ) -> list[tuple[int, str, int]]:
    """(value class, id, GPU share held on `node`) of each victim `allowed` there now."""
    index, where = cycle.victim_index(), cycle.stmt.where
    node_id = cycle.cap.table.nodes[node].id
    out = []
    for v in index.on_node.get(node, {}).values():
        if v.id in where and index.past_min_runtime(v) and allowed(v):
            held = sum(a.milli_per_device * len(a.devices) for a in where[v.id]
                       if a.node_id == node_id)
            out.append((tier(v.priority), v.id, held))
    return out


def victims_of(group: Group, allowed: Callable[[Workload], bool],
               on: Callable[[list[int], Callable[[Workload], bool]], Iterator[Workload]]
               ) -> Iterator[Workload]:
    """The victims to try for `group`: those under the threshold on its cheap nodes, then
    everything allowed on all its nodes (victims already evicted are skipped by the caller)."""
    p = group.threshold
    if p is not None:
        yield from on(group.nodes[:group.cheap], lambda v: tier(v.priority) <= p and allowed(v))
    yield from on(group.nodes, allowed)
