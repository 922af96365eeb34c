"""Why a shape does not fit: the capacity diagnosis a waiting workload's reason starts from.

Unresolvable reasons first (`never_fits`: no node it may use could ever hold it, a model nobody
offers, a price cap below every allowed node, a gang larger than any domain even empty), then
what blocks it now (`diagnose`: room reserved for another workload, topology fragmented, not
enough free capacity). Explanations only: placement never reads them to decide.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from corral.core import reasons as R
from corral.core.constraints import unmet_constraint
from corral.core.fit import Shape, empty_slots, worker_slots
from corral.core.model import STABLE_CAPACITY, CapacityKind, TopologyLevel, Workload
from corral.core.snapshot import Capacity, IntArray, NodeTable

if TYPE_CHECKING:
    from corral.core.placement import Placer


LEVEL_NAME = {
    TopologyLevel.NVLINK: "NVLink domain",
    TopologyLevel.RACK: "rack",
    TopologyLevel.ZONE: "zone",
    TopologyLevel.REGION: "region",
    TopologyLevel.ANY: "pool",
}


def diagnose(placer: Placer, shape: Shape, owner: str) -> R.Reason:
    """Why `shape` does not fit now: the most specific reason, unresolvable ones first."""
    never = placer.never_fits(shape)
    if never is not None:
        return never
    level = shape.required_level
    now_all, now_usable, total_free = placer.room(shape, owner)
    what = f"needs {shape.describe()}"
    if now_all >= shape.workers > now_usable:
        owners = sorted(o for o in placer.cap.reservations if o != owner)
        return R.Reason(
            R.RESERVED_FOR_GANG,
            f"{what}; the room that fits it is reserved for {', '.join(owners)}, a larger "
            "workload waiting for those nodes to drain",
            (("reserved_for", tuple(owners)),),
        )
    # The sentences are stored and rewritten only when they change: they name the kind of
    # shortage, not how much is free, which moves at every placement and end (issue 16); the
    # details carry the counts.
    if shape.workers > 1 and total_free >= shape.workers:
        where = LEVEL_NAME[level]
        return R.Reason(
            R.TOPOLOGY_FRAGMENTED,
            f"{what} in one {where}; the free capacity it may use would hold them all, but no "
            f"one {where} has room for all {shape.workers}",
            (("largest_free_domain", now_usable), ("level", where)),
        )
    return R.Reason(
        R.INSUFFICIENT_CAPACITY,
        f"{what}; " + (f"free capacity it may use holds some of its {shape.workers} workers, "
                       "not all" if total_free
                       else "no free capacity it may use holds one worker now"),
        (("free_workers", total_free),),
    )


def free_room(placer: Placer, shape: Shape, owner: str) -> tuple[int, int, int]:
    """`Placer.room` computed now (the placer keeps it per capacity state)."""
    cap, r, level = placer.cap, shape.resources, shape.required_level
    allowed = np.flatnonzero(placer.static(shape))
    usable = placer.usable(shape, owner)
    slots = worker_slots(cap, r, usable)
    return (
        largest_domain(cap, allowed, worker_slots(cap, r, allowed), level),
        largest_domain(cap, usable, slots, level),
        int(slots.sum()) if usable.size else 0,
    )


def largest_domain(cap: Capacity, nodes: IntArray, slots: IntArray, level: TopologyLevel) -> int:
    if nodes.size == 0:
        return 0
    per_dom = np.bincount(cap.table.domain(level)[nodes], weights=slots)
    return int(per_dom.max()) if per_dom.size else 0



def never_fits(placer: Placer, shape: Shape) -> R.Reason | None:
    table, r = placer.cap.table, shape.resources
    sched = np.flatnonzero(table.schedulable)
    if shape.gpu_models and (r.gpus or r.fractional):
        offered = placer.offered_models()
        if not offered & set(shape.gpu_models):
            return R.Reason(
                R.GPU_MODEL_UNAVAILABLE,
                f"asks for {'/'.join(shape.gpu_models)}, which no schedulable node "
                f"offers (offered: {', '.join(sorted(offered)) or 'none'})",
                (("field", "gpu_models"),),
            )
    allowed = np.flatnonzero(placer.static(shape))
    if allowed.size == 0 and shape.max_price is not None:
        # the cheapest node it could use but for its price cap: quoting a node of another
        # model or capacity kind would suggest a cap that still does not work
        uncapped = np.flatnonzero(placer.static(replace(shape, max_price=None)))
        if uncapped.size:
            cheapest = float(table.price[uncapped].min())
            return R.Reason(
                R.PRICE_CAP_TOO_LOW,
                f"max price {shape.max_price:g}/GPU-hour is below the cheapest node it may "
                f"use ({cheapest:g}/GPU-hour); raise max_price_per_gpu_hour to at least that",
                (("field", "max_price_per_gpu_hour"), ("cheapest_allowed", cheapest)),
            )
    if allowed.size == 0 and sched.size:
        unmet = unmet_constraint(_as_workload(shape), [table.nodes[i] for i in sched])
        if unmet is not None:
            return unmet
    empty = empty_slots(table, r, allowed)
    if allowed.size == 0 or int(empty.max()) < 1:
        return _too_large(table, shape, allowed)
    if shape.workers > 1:
        most = largest_domain(placer.cap, allowed, empty, shape.required_level)
        if most < shape.workers:
            where = LEVEL_NAME[shape.required_level]
            return R.Reason(
                R.GANG_TOO_LARGE,
                f"needs {shape.describe()} in one {where}; even empty, the largest "
                f"{where} holds {most}",
                (("field", "workers"),),
            )
    return None


def _as_workload(shape: Shape) -> Workload:
    """A workload of `shape`, for the constraint diagnosis (which speaks of spec fields). Stable
    capacity only is what work that may not be preempted gets by default: said as such."""
    stable = set(shape.capacity) == {str(k) for k in STABLE_CAPACITY}
    return Workload(
        id="", queue="", resources=shape.resources, workers=shape.workers,
        gpu_models=shape.gpu_models, preemptible=not stable,
        capacity_kinds=() if stable or not shape.capacity else tuple(
            CapacityKind(k) for k in shape.capacity),
        node_selector=shape.selector, min_gpu_memory_mib=shape.min_gpu_memory)


def _too_large(table: NodeTable, shape: Shape, allowed: IntArray) -> R.Reason:
    """No node it may use could hold one worker even empty: name the resource that binds,
    with the most any such node has of it."""
    r = shape.resources
    what = f"needs {shape.describe()} per worker"
    if allowed.size == 0:
        return R.Reason(R.NO_NODE_LARGE_ENOUGH,
                        f"{what}; no schedulable node meets its constraints (models, capacity "
                        "kinds, node selector, GPU memory)", (("field", "spec"),))
    checks: list[tuple[bool, str, str]] = []
    if r.gpus:
        most = int(table.gpu_count[allowed].max())
        checks.append((most < r.gpus, f"the largest node it may use has {most} GPUs", "gpus"))
    if r.fractional and r.gpu_memory_mib:
        most = int(table.gpu_memory[allowed].max())
        checks.append((most < r.gpu_memory_mib,
                       f"the largest GPU it may use has {_mib(most)} of memory", "gpu_memory"))
    if r.cpu_milli:
        most = int(table.cpu[allowed].max())
        checks.append((most < r.cpu_milli,
                       f"the most CPU a node it may use has is {most / 1000:g}", "cpu"))
    if r.memory_mib:
        most = int(table.ram[allowed].max())
        checks.append((most < r.memory_mib,
                       f"the most RAM a node it may use has is {_mib(most)}", "memory"))
    binding = [(text, field) for short, text, field in checks if short]
    if not binding:  # each resource fits some node, just never all on the same one
        binding = [("no node it may use has all of that at once", "spec")]
    return R.Reason(R.NO_NODE_LARGE_ENOUGH, f"{what}; " + "; ".join(t for t, _ in binding),
                    (("field", binding[0][1]),))


def _mib(mib: int) -> str:
    return f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib} MiB"
