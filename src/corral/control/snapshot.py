"""Load: the store's rows become the core's immutable ClusterState, plus what apply must check.

What the core sees, and why:
- pending rows, except those in restart backoff (they are not eligible yet);
- scheduled, starting and running rows without a stop request, as running on their current
  attempt's assignments (a scheduled workload holds its GPUs although not launched yet);
- rows being stopped are left out: their GPUs are already promised to whatever the plan that
  stopped them placed there, and the launch of that work waits until the GPUs are really free
  (see `corral.control.act`). Showing them would let the next cycle pick them as victims again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sqlalchemy import Connection

from corral.core.model import ClusterState, Workload, WorkloadState
from corral.spec import WorkloadSpec
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = ["Snapshot", "SpecCache", "load_snapshot", "replica_index"]


def replica_index(record: WorkloadRecord) -> int:
    """Which replica of its service a row is (ids are `<group>-r<i>`); 0 for jobs."""
    if record.id == record.group_id:
        return 0
    return int(record.id.rsplit("-r", 1)[1])


class SpecCache:
    """Parsed specs by workload id. Specs never change after submission, and parsing 100,000
    of them with pydantic on every cycle would dominate the cycle."""

    def __init__(self) -> None:
        self._specs: dict[str, WorkloadSpec] = {}

    def spec(self, record: WorkloadRecord) -> WorkloadSpec:
        s = self._specs.get(record.id)
        if s is None:
            s = self._specs[record.id] = WorkloadSpec.model_validate(record.spec)
        return s

    def core(self, record: WorkloadRecord) -> Workload:
        """The record as a pending core workload (no assignments)."""
        spec = self.spec(record)
        units = spec.to_core(record.group_id, record.submitted_at, record.user)
        return dataclasses.replace(units[replica_index(record)], id=record.id)

    def retain(self, workload_ids: set[str]) -> None:
        """Drop the specs of workloads that are no longer active."""
        for wid in set(self._specs) - workload_ids:
            del self._specs[wid]


@dataclass(frozen=True)
class Snapshot:
    state: ClusterState
    records: dict[str, WorkloadRecord]  # every active row, by id
    versions: dict[str, int]  # what apply re-checks
    backoff: set[str] = field(default_factory=set)  # pending rows not yet eligible


def load_snapshot(conn: Connection, now: float, specs: SpecCache) -> Snapshot:
    nodes = tuple(P.list_nodes(conn))
    queues = tuple(P.list_queues(conn))
    records = {r.id: r for r in W.load_active(conn)}
    specs.retain(set(records))
    holding = [r for r in records.values() if r.state != "pending" and r.stop_reason is None]
    placed = W.assignments_of(conn, [(r.id, r.attempt) for r in holding])
    workloads: list[Workload] = []
    backoff: set[str] = set()
    for r in records.values():
        if r.state == "pending":
            if r.not_before > now:
                backoff.add(r.id)
            else:
                workloads.append(specs.core(r))
        elif r.stop_reason is None:
            workloads.append(dataclasses.replace(
                specs.core(r), state=WorkloadState.RUNNING,
                started_at=r.started_at if r.started_at is not None else now,
                assignments=placed[(r.id, r.attempt)]))
    state = ClusterState(nodes=nodes, queues=queues, workloads=tuple(workloads))
    return Snapshot(state, records, {r.id: r.version for r in records.values()}, backoff)
