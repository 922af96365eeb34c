"""The idle/return rule's inputs: how busy each pool node is for the pool autoscaler, and since
when it has been idle (corral.autoscale.pool.decide returns an idle node after its timeout and a
drained one once nothing holds it).

A node counts as busy while work holds it, work whose stop was asked included: that work is out
of the core's snapshot (it only keeps holders with no stop reason), yet runs on its node until
its workers end (issue 11: a drained node returned at once left its work "running" on no node).
Where that work is comes from the loop's LiveState (`stopping_on`), which keeps the stopping
rows and their placements current from the store's change feed and reads them whole at a start
or a new lease: a pass reads nothing from the store for it, and costs the work now stopping,
not the pool's idle nodes (it read every idle node's placements at each pass before).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

from corral.autoscale import consolidate as CN
from corral.autoscale.pool import NodeUse
from corral.core.model import ClusterState, WorkerAssignment, WorkerResources, Workload

__all__ = ["Stopping", "node_use", "stopping_on"]

#: node id -> the workloads on it whose stop was asked and that still hold it
Stopping = Mapping[str, AbstractSet[str]]


def node_use(state: ClusterState, now: float, idle_since: dict[str, float],
             stopping: Stopping) -> dict[str, NodeUse]:
    """Each node's use, the snapshot's work and `stopping` counted; `idle_since` (kept by the
    caller across passes) is updated."""
    running: dict[str, list[int]] = {}
    alone: dict[str, list[Workload]] = {}  # work running only on that node
    taken: dict[str, list[tuple[Sequence[WorkerAssignment], WorkerResources]]] = {}
    for w in state.workloads:
        nodes = {a.node_id for a in w.assignments}
        for node in nodes:
            use = running.setdefault(node, [0, 0])
            use[0] += 1
            use[1] += 0 if w.preemptible else 1
            taken.setdefault(node, []).append((w.assignments, w.resources))
        if len(nodes) == 1:
            alone.setdefault(next(iter(nodes)), []).append(w)
    out = {}
    for n in state.nodes:
        count, stable = running.get(n.id, [len(stopping.get(n.id, ())), 0])
        if count:
            idle_since.pop(n.id, None)
        else:
            idle_since.setdefault(n.id, now)
        # a cordoned or unhealthy node's free room takes nothing (consolidate.py)
        free = (CN.free_room(n.gpu_count, n.cpu_milli, n.memory_mib, n.id,
                             taken.get(n.id, ())) if n.schedulable else None)
        out[n.id] = NodeUse(count, stable, idle_since.get(n.id),
                            tuple(alone.get(n.id, ())), free)
    return out


def stopping_on(stopping_ids: Iterable[str],
                assignments: Mapping[str, Sequence[WorkerAssignment]]) -> dict[str, set[str]]:
    """Where the work whose stop was asked still holds placements: LiveState's `stopping` and
    `assignments` (a holding row's current attempt; a row that stopped holding has none), as
    `W.holding_placements` would read them for those rows. Costs the stopping rows only."""
    out: dict[str, set[str]] = {}
    for wid in stopping_ids:
        for a in assignments.get(wid, ()):
            out.setdefault(a.node_id, set()).add(wid)
    return out
