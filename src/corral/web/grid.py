"""The pool as a grid: every node a row of GPU cells, each cell the shares that occupy it.

Pure: nodes and held placements in, rows out. A fractional workload (0.25 GPU) fills a quarter
of its cell. What the caller may not see is merged: on each device, the shares of other
queues become one anonymous share (`queue=None`), so a user sees how full the pool is without
learning who fills it.

    totals: total = allocated + idle + unavailable
      allocated    held by placed work (wherever it runs, even on a cordoned node)
      idle         free on schedulable nodes: where new work can start now
      unavailable  free on cordoned, degraded or unhealthy nodes
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from corral.core.model import MILLI_PER_GPU, Node
from corral.store.workloads import Held
from corral.web.models import DeviceCell, GpuTotals, NodeRow, Share

__all__ = ["gpu_totals", "node_rows"]

Visible = Callable[[str], bool]


def _cells(node: Node, held: Iterable[Held], visible: Visible) -> list[DeviceCell]:
    mine: dict[int, dict[tuple[str, str], int]] = defaultdict(dict)
    hidden: dict[int, int] = defaultdict(int)
    for h in held:
        for d in h.devices:
            if visible(h.queue):
                key = (h.queue, h.workload_id)
                mine[d][key] = mine[d].get(key, 0) + h.milli_per_device
            else:
                hidden[d] += h.milli_per_device
    cells = []
    for i in range(node.gpu_count):
        shares = [Share(queue=q, gpus=m / MILLI_PER_GPU, workload_id=w)
                  for (q, w), m in sorted(mine[i].items())]
        if hidden[i]:
            shares.append(Share(queue=None, gpus=hidden[i] / MILLI_PER_GPU))
        cells.append(DeviceCell(index=i, shares=shares))
    return cells


def node_rows(nodes: Sequence[Node], held: Sequence[Held], visible: Visible) -> list[NodeRow]:
    """One row per node, in the order given, cells in device order."""
    by_node: dict[str, list[Held]] = defaultdict(list)
    for h in held:
        by_node[h.node_id].append(h)
    rows = []
    for n in nodes:
        mine = by_node[n.id]
        used = sum(h.milli_per_device * len(h.devices) for h in mine) / MILLI_PER_GPU
        rows.append(NodeRow(
            id=n.id, provider=n.provider, region=n.region, zone=n.zone, gpu_model=n.gpu_model,
            gpu_count=n.gpu_count, gpu_memory_mib=n.gpu_memory_mib,
            capacity_kind=str(n.capacity_kind), price_per_gpu_hour=n.price_per_gpu_hour,
            cordoned=n.cordoned, health=str(n.health), gpus_used=round(used, 3),
            devices=_cells(n, mine, visible)))
    return rows


def gpu_totals(nodes: Sequence[Node], held: Sequence[Held]) -> GpuTotals:
    used: dict[str, int] = defaultdict(int)
    for h in held:
        used[h.node_id] += h.milli_per_device * len(h.devices)
    total = allocated = idle = unavailable = 0
    for n in nodes:
        cap, u = n.gpu_count * MILLI_PER_GPU, used[n.id]
        total += cap
        allocated += u
        free = max(cap - u, 0)
        if n.schedulable:
            idle += free
        else:
            unavailable += free
    return GpuTotals(total=total / MILLI_PER_GPU, allocated=allocated / MILLI_PER_GPU,
                     idle=idle / MILLI_PER_GPU, unavailable=unavailable / MILLI_PER_GPU)
