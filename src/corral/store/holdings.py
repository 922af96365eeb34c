"""What the current attempts hold: every worker placement of a workload that holds GPUs
(scheduled, starting, running), read by the health monitor, node returns and the API's pool
views.

Split out of `corral.store.workloads` (which re-exports these names): reads only, over the
workloads and placements tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, select

from corral.store.schema import Placement, WorkloadRow

__all__ = ["HOLDING_STATES", "Held", "holding_placements", "milli_used_by_group"]

#: states in which a workload's current attempt holds GPUs
HOLDING_STATES = ("scheduled", "starting", "running")


@dataclass(frozen=True, slots=True)
class Held:
    workload_id: str
    queue: str
    node_id: str
    devices: tuple[int, ...]
    milli_per_device: int
    #: when the hold began to be judged by measured use: the attempt's start (its workers seen
    #: running, `WorkloadRow.started_at`, on the server's clock); None while it is not running
    #: yet (`corral.control.device_use.judges`: no sample speaks for it then)
    began: float | None = None


def holding_placements(conn: Connection, node_ids: Sequence[str] | None = None) -> list[Held]:
    """Every worker placement of a current attempt that holds GPUs, stopping ones included
    (only those on `node_ids`, when given)."""
    q = (select(WorkloadRow.id, WorkloadRow.queue, Placement.node_id, Placement.devices,
                Placement.milli_per_device, WorkloadRow.started_at)
         .join(Placement, and_(Placement.workload_id == WorkloadRow.id,
                               Placement.attempt == WorkloadRow.attempt))
         .where(WorkloadRow.state.in_(HOLDING_STATES)))
    if node_ids is None:
        return [Held(r[0], r[1], r[2], tuple(r[3]), r[4], r[5]) for r in conn.execute(q)]
    out: list[Held] = []
    for chunk in _chunks(list(node_ids), 500):
        out += [Held(r[0], r[1], r[2], tuple(r[3]), r[4], r[5])
                for r in conn.execute(q.where(Placement.node_id.in_(chunk)))]
    return out


def milli_used_by_group(conn: Connection) -> dict[tuple[str, str, str], int]:
    """Milli-GPU held per (provider, GPU model, node state) of active nodes (see
    `corral.store.pool.node_groups`), summed in SQL over the placements' device counts."""
    from corral.store.schema import NodeRow

    state = case((NodeRow.health != "healthy", "unhealthy"),
                 (NodeRow.cordoned.is_(True), "cordoned"), else_="schedulable")
    q = (select(NodeRow.provider, NodeRow.gpu_model, state, Placement.milli_per_device,
                Placement.devices)
         .join(Placement, Placement.node_id == NodeRow.id)
         .join(WorkloadRow, and_(Placement.workload_id == WorkloadRow.id,
                                 Placement.attempt == WorkloadRow.attempt))
         .where(WorkloadRow.state.in_(HOLDING_STATES), NodeRow.active.is_(True)))
    out: dict[tuple[str, str, str], int] = {}
    for provider, model, st, milli, devices in conn.execute(q):
        key = (provider, model, st)
        out[key] = out.get(key, 0) + milli * len(devices)
    return out


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
