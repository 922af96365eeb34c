"""The idle/return rule's inputs: how busy each pool node is for the pool autoscaler, and since
when it has been idle (corral.autoscale.pool.decide returns an idle node after its timeout and a
drained one once nothing holds it).

A node counts as busy while work holds it, work whose stop was asked included: that work is out
of the core's snapshot (it only keeps holders with no stop reason), yet runs on its node until
its workers end (issue 11: a drained node returned at once left its work "running" on no node).
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.autoscale import consolidate as CN
from corral.autoscale.pool import NodeUse
from corral.core.model import ClusterState, WorkerAssignment, WorkerResources, Workload
from corral.store import Store
from corral.store import workloads as W

__all__ = ["node_use", "stopping"]


def node_use(store: Store, state: ClusterState, now: float,
             idle_since: dict[str, float]) -> dict[str, NodeUse]:
    """Each node's use; `idle_since` (kept by the caller across passes) is updated."""
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
    held = stopping(store, [n.id for n in state.nodes if n.id not in running])
    out = {}
    for n in state.nodes:
        count, stable = running.get(n.id, [len(held.get(n.id, ())), 0])
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


def stopping(store: Store, idle: Sequence[str]) -> dict[str, set[str]]:
    """Work still on nodes the core sees idle: a workload whose stop was asked is out of its
    view, yet runs on its node until its workers end. Counted, a drained node is returned
    only once its work stopped (issue 11: returned at once, the work stayed "running" on no
    node; test_replace_restart.py). One indexed read of the idle nodes' placements."""
    out: dict[str, set[str]] = {}
    if idle:
        with store.read() as conn:
            for h in W.holding_placements(conn, idle):
                out.setdefault(h.node_id, set()).add(h.workload_id)
    return out
