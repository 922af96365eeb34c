"""Apply: write a Plan into the store, all of it or none of it.

One write transaction: re-check the leader's fence, then for every placement and eviction update
the workload only if its version is the one the snapshot saw. One miss (a cancel, a submission
racing, another scheduler) raises StalePlan, the transaction rolls back, and the next cycle plans
again from fresh state: a stale plan is rejected, never half-applied.

Placements become `scheduled` with their assignments under the current attempt; evictions become
stop requests (`stop_reason` = the rule). A workload both evicted and placed (a move) is applied as
its eviction only: it is requeued once its workers end, and the next cycle places it again, so
two attempts of one workload never hold GPUs at once. Pending reasons are informational and only
written where they changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection

from corral.control import lifecycle as L
from corral.control.snapshot import Snapshot
from corral.core.plan import Plan
from corral.core.reasons import Reason
from corral.store import workloads as W

__all__ = ["Applied", "StalePlan", "apply_plan"]


class StalePlan(Exception):
    """The store changed under the plan (or the lease was lost); nothing of it was written."""


@dataclass
class Applied:
    scheduled: list[str] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)
    reasons_updated: int = 0


def apply_plan(
    conn: Connection, snapshot: Snapshot, plan: Plan, now: float,
    fence: Callable[[Connection], bool], extra_reasons: Mapping[str, Reason] | None = None,
) -> Applied:
    """Write `plan`; raise StalePlan (the caller's transaction must then roll back)."""
    if not fence(conn):
        raise StalePlan("this scheduler no longer holds the leader lease")
    out = Applied()
    moves = plan.moves
    for ev in plan.evictions:
        record = _current(snapshot, ev.workload_id)
        if not W.update_versioned(conn, record.id, record.version, stop_reason=ev.rule,
                                  stop_message=ev.message):
            raise StalePlan(f"{record.id} changed since the snapshot")
        W.append_event(conn, at=now, kind="eviction", reason=ev.rule, message=ev.message,
                       workload_id=record.id, attempt=record.attempt,
                       data={"for_workload": ev.for_workload, "move": record.id in moves})
        out.stopping.append(record.id)
    for p in plan.placements:
        if p.workload_id in moves:
            continue
        record = _current(snapshot, p.workload_id)
        message = "placed on " + ", ".join(sorted({a.node_id for a in p.assignments}))
        if p.backfilled:
            message += " (backfilled ahead of a blocked gang)"
        if not L.transition(conn, record, L.State.SCHEDULED, reason=L.SCHEDULED, message=message,
                            now=now, data={"backfilled": p.backfilled}):
            raise StalePlan(f"{record.id} changed since the snapshot")
        W.insert_placements(conn, record.id, record.attempt, p.assignments)
        out.scheduled.append(record.id)
    reasons = {**plan.pending, **(extra_reasons or {})}
    out.reasons_updated = _write_reasons(conn, snapshot, reasons)
    return out


def _current(snapshot: Snapshot, workload_id: str) -> W.WorkloadRecord:
    record = snapshot.records.get(workload_id)
    if record is None:  # the plan names a workload the snapshot did not contain: a bug
        raise StalePlan(f"{workload_id} is not in the snapshot")
    return record


def _write_reasons(conn: Connection, snapshot: Snapshot, reasons: Mapping[str, Reason]) -> int:
    n = 0
    for wid, reason in reasons.items():
        record = snapshot.records.get(wid)
        if record is None or record.state != "pending":
            continue
        if (record.reason_code, record.reason_message) == (reason.code, reason.message):
            continue
        # A lost race here is harmless (the row moved on); no need to fail the plan.
        n += W.update_unversioned(conn, wid, record.version, reason_code=reason.code,
                                  reason_message=reason.message)
    return n
