"""Emptying a rented node whose work fits the free room of the others (Karpenter's
consolidation, "delete").

Karpenter deletes a node when every pod on it can run on the free capacity of the other nodes
(a scheduling simulation that includes the pending pods), one node at a time within the
disruption budget (https://karpenter.sh/docs/concepts/disruption/#consolidation). corral does
the same, bounded:

- only a node that joined, was launched at least `min_age_s` ago, and whose running work is all
  preemptible, runs only there (a gang spread over nodes would restart whole) and is past its
  `min_runtime_s`: it is stopped with the preemption contract (stop reason `NodeConsolidated`,
  requeued from its checkpoint with no restart spent, as `NodeReplaced`);
- only when that work all fits the free room of the *other* joined nodes (not draining, not the
  node being replaced), after the waiting work has taken its share of that room first (packed
  in the core's order): make before break, the room is there before anything is stopped. Where
  the moved work lands is the core's decision at its next cycle (it is requeued like any work);
- only room on nodes that run work and cost no more per GPU-hour than the node emptied: an
  idle node is on its way out (its idle timeout) and filling it would keep it rented, paying
  for it instead of the node emptied; and work moved to dearer room keeps that dearer node up
  longer. In the simulator (bench/README, issue 11, fifth pass; seeds 1-3, both regimes) the
  three-cloud bill summed 20,727 / 25,858 without emptying, 20,901 / 26,532 with any room,
  20,799 / 27,181 with busy nodes only, and 20,370 / 25,742 with both rules (kept);
- one at a time in the whole pool, and never while a replacement (replace.py) is in progress:
  a disruption budget of one node shared by both;
- the dearest node first (the most saved per hour; ties: instance id).

Why it cannot flap: the work moved off a node is remembered (`AutoscalerState.emptied`) for the
idle timeout, and nothing is rented for it while remembered. Without that, work that lost its
room to a newer arrival would get a node rented at once for it, the node the policy just
returned, and the two would alternate every pass. The memory is bounded: after the idle timeout
the work is rented for like any other (so it never waits longer than that for this reason), and
by then an idle node rented earlier would itself have been returned.

Worked example: nodes A (8 x H100 at 23.92/h, 2.99/GPU-h) and B (8 x H100 at 98.32/h,
12.29/GPU-h) run one preemptible 1-GPU job each, both 40 min old; A has 7 free GPUs. B's job
fits A's room, which is cheaper per GPU-hour: B is drained, its job stopped and requeued (the
core places it on A), and B returned: 98.32/h saved. A's job would fit B's room too, but that
room is dearer, so A is never emptied into B.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from corral.autoscale.packing import Bin, eligible, pack
from corral.core.model import (
    MILLI_PER_GPU,
    CapacityKind,
    WorkerAssignment,
    WorkerResources,
    Workload,
    pending_order,
)
from corral.providers.base import CapacityState, Instance

__all__ = ["NODE_CONSOLIDATED", "Room", "choose", "free_room"]

#: the stop reason of work moved off a node being emptied (requeued, no restart used up)
NODE_CONSOLIDATED = "NodeConsolidated"


@dataclass(frozen=True)
class Room:
    """A joined node's use: its running work (only-here work in `work`) and its free room."""

    running: int
    non_preemptible: int
    work: tuple[Workload, ...]
    free_milli: tuple[int, ...]  # per device: free share in milli-GPUs
    free_cpu: int
    free_mem: int


def choose(live: Sequence[Instance], rooms: Callable[[str], Room | None],
           waiting: Sequence[Workload], *, min_age_s: float, now: float,
           kinds: Callable[[Workload], tuple[CapacityKind, ...]],
           keep: frozenset[str] = frozenset()) -> tuple[Instance, tuple[Workload, ...]] | None:
    """The node to empty and its work, or None. `keep`: instance ids that take no moved work
    and are not emptied (draining this decision, being replaced)."""
    ready = [i for i in live if i.state == CapacityState.READY and i.node_id is not None
             and i.id not in keep]
    for i in sorted(ready, key=lambda i: (-i.offer.price_per_hour, i.id)):
        work = _movable(i, rooms, min_age_s, now)
        if work is not None and _fits(work, _targets(i, ready), rooms, waiting, kinds):
            return i, work
    return None


def _targets(i: Instance, ready: Sequence[Instance]) -> list[Instance]:
    """The nodes whose free room may take `i`'s work: no dearer per GPU-hour than `i` (only
    busy ones: see `_fits`)."""
    return [o for o in ready if o.id != i.id
            and o.offer.price_per_gpu_hour <= i.offer.price_per_gpu_hour]


def _movable(i: Instance, rooms: Callable[[str], Room | None], min_age_s: float,
             now: float) -> tuple[Workload, ...] | None:
    room = rooms(i.node_id or "")
    if room is None or now - i.launched_at < min_age_s:
        return None
    if not room.running or room.non_preemptible or len(room.work) != room.running:
        return None
    for w in room.work:
        if not w.preemptible or w.started_at is None or now - w.started_at < w.min_runtime_s:
            return None
    return room.work


def _fits(work: tuple[Workload, ...], others: Sequence[Instance],
          rooms: Callable[[str], Room | None], waiting: Sequence[Workload],
          kinds: Callable[[Workload], tuple[CapacityKind, ...]]) -> bool:
    """Whether `work` fits the others' free room once the waiting work took what it fits."""
    bins = []
    for o in others:
        r = rooms(o.node_id or "")
        if r is not None and r.running and any(r.free_milli):
            bins.append(Bin(o.offer, list(r.free_milli), r.free_cpu, r.free_mem, new=False))
    if not bins:
        return False
    for w in waiting:  # in the core's order: they come first for the room
        pack(w, [b for b in bins if eligible(w, b.offer, kinds(w)) is None])
    for w in sorted(work, key=pending_order):
        if pack(w, [b for b in bins if eligible(w, b.offer, kinds(w)) is None]) is None:
            return False
    return True


def free_room(gpus: int, cpu_milli: int, memory_mib: int, node: str,
              taken: Iterable[tuple[Sequence[WorkerAssignment], WorkerResources]]
              ) -> tuple[tuple[int, ...], int, int]:
    """A node's free room: its capacity less what running workers take there (`taken`: each
    running workload's assignments and per-worker resources)."""
    milli = [MILLI_PER_GPU] * gpus
    cpu, mem = cpu_milli, memory_mib
    for assignments, r in taken:
        for a in assignments:
            if a.node_id != node:
                continue
            for d in a.devices:
                if 0 <= d < gpus:
                    milli[d] -= a.milli_per_device
            cpu -= r.cpu_milli
            mem -= r.memory_mib
    return tuple(max(m, 0) for m in milli), max(cpu, 0), max(mem, 0)

