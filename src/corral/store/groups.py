"""Groups of workloads: what a dependency on a workload or a submission's group reads.

A dependency names a workload id or a group id (an array's tasks, a service's replicas share
their submission's `group_id`); `states_of` counts the rows of each key by state in one
indexed GROUP BY per key (`id` is unique, `group_id` indexed), so what it costs grows with the
group, never with the table.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, func, or_, select

from corral.store.schema import WorkloadRow

__all__ = ["queues_of", "states_of"]


def states_of(conn: Connection, keys: Iterable[str]) -> dict[str, dict[str, int]]:
    """For each key: {state: rows} of the rows whose id or group_id is the key ({} when none)."""
    out: dict[str, dict[str, int]] = {}
    for key in sorted(set(keys)):
        rows = conn.execute(
            select(WorkloadRow.state, func.count())
            .where(or_(WorkloadRow.group_id == key, WorkloadRow.id == key))
            .group_by(WorkloadRow.state))
        out[key] = {state: int(n) for state, n in rows}
    return out


def queues_of(conn: Connection, keys: Iterable[str]) -> dict[str, str]:
    """For each key that names rows (by id or group_id): the queue of its first row."""
    out: dict[str, str] = {}
    for key in sorted(set(keys)):
        row = conn.execute(
            select(WorkloadRow.queue)
            .where(or_(WorkloadRow.group_id == key, WorkloadRow.id == key))
            .order_by(WorkloadRow.seq).limit(1)).first()
        if row is not None:
            out[key] = row[0]
    return out
