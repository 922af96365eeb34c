"""A node rented for waiting work is held for that work for a bounded time after it joins.

Why: a node joins empty, and the next scheduling cycle places work on it in the core's order
(priority, then age). Smaller work ahead in that order took nodes rented for a gang (the
Alibaba replay, issue 11: 1-GPU pods filled an 8-GPU node rented for an 8-GPU pod, which
then waited for another rental). After Karpenter's nominated node (a pod that triggered a
node launch is nominated to it, and the scheduler keeps other pods off the room it needs
while it is on its way), the work a node was rented for is nominated to the devices it will
take there: a `corral.core.model.Nomination`, the core's existing input, which keeps every
other workload off that room and places the nominee there first once it waits
(`corral.core.nominations`).

The bound: a hold lasts `hold_s` from the moment the node is first seen joined (the caller
sets `until`); the nominee is placed at the first cycle that sees the node, so the bound only
matters when it never comes (it started elsewhere, was cancelled, or changed): then the room
is free again at `until` at the latest, and the core drops it sooner when the nominee runs
elsewhere. Only work all of whose workers fit the one joined node is held: a gang spread over
several new instances is not (its nomination would have to wait for all of them).

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from corral.core.model import MILLI_PER_GPU, Nomination, WorkerAssignment, Workload
from corral.providers.base import Offer

__all__ = ["joined_holds"]


def joined_holds(node_id: str, offer: Offer, rented_for: Sequence[Workload],
                 held: Iterable[str], until: float) -> tuple[Nomination, ...]:
    """Nominations on the empty node `node_id` (an instance of `offer`) for the waiting work
    it was rented for, in the order given, each placed whole on devices not yet held; work
    already `held` elsewhere, or that does not fit what is left, gets none.

    >>> from decimal import Decimal
    >>> from corral.core.model import CapacityKind, WorkerResources
    >>> o = Offer("c", "x8", "H100", 8, 81_920, 96_000, 1_048_576, Decimal(8),
    ...           CapacityKind.ON_DEMAND, "r", "ra", "test", "2026-01-01")
    >>> big = Workload("big", "q", WorkerResources(gpus=8, cpu_milli=8_000))
    >>> [a.devices for a in joined_holds("n", o, [big], (), 60.0)[0].assignments]
    [(0, 1, 2, 3, 4, 5, 6, 7)]
    """
    taken = set(held)
    free = [MILLI_PER_GPU] * offer.gpus
    cpu, ram = offer.cpu_milli, offer.memory_mib
    out = []
    for w in rented_for:
        r, n = w.resources, max(w.workers, 1)
        if w.id in taken or cpu < n * r.cpu_milli or ram < n * r.memory_mib:
            continue
        assignments = _devices(node_id, offer, w, free)
        if assignments is None:
            continue
        taken.add(w.id)
        cpu, ram = cpu - n * r.cpu_milli, ram - n * r.memory_mib
        out.append(Nomination(w.id, assignments, r.cpu_milli, r.memory_mib, until))
    return tuple(out)


def _devices(node_id: str, offer: Offer, w: Workload, free: list[int]
             ) -> tuple[WorkerAssignment, ...] | None:
    """Devices for every worker of `w` on the node (taking them from `free`), or None."""
    r, trial = w.resources, list(free)
    out = []
    for worker in range(max(w.workers, 1)):
        if r.gpus:
            devices = tuple(d for d, m in enumerate(trial) if m == MILLI_PER_GPU)[: r.gpus]
            if len(devices) < r.gpus:
                return None
            milli, mem = MILLI_PER_GPU, offer.gpu_memory_mib
        elif r.fractional:  # as the core's placement writes a share (placement._assignment)
            milli = r.nominal_milli(offer.gpu_memory_mib)
            d = next((d for d, m in enumerate(trial) if m >= milli), None)
            if d is None:
                return None
            devices = (d,)
            mem = max(r.gpu_memory_mib, offer.gpu_memory_mib * r.gpu_milli // MILLI_PER_GPU)
        else:
            return None  # CPU-only work: no device to hold (the core has no such nomination)
        for d in devices:
            trial[d] -= milli
        out.append(WorkerAssignment(worker, node_id, devices, milli, mem))
    free[:] = trial
    return tuple(out)
