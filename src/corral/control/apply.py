"""Apply: write a Plan into the store, all of it or none of it.

One write transaction: re-check the leader's fence, then for every placement and eviction update
the workload only if its version is the one the snapshot saw. One miss (a cancel, a submission
racing, another scheduler) raises StalePlan, the transaction rolls back, and the next cycle plans
again from fresh state: a stale plan is rejected, never half-applied.

Placements become `scheduled` with their assignments under the current attempt; evictions become
stop requests (`stop_reason` = the rule). A workload both evicted and placed (a move) is applied as
its eviction only: it is requeued once its workers end, and the next cycle places it again, so
two attempts of one workload never hold GPUs at once. So that the room its victims freed is still
there when it comes back, the plan nominates it to that room (`Plan.nominations`): the
nominations in force are stored with the plan (`corral.store.nominations`), a new one held for
`nomination_hold_s` (the stop grace plus a margin: it is stopping, then waits one cycle), and the
next cycles hold the room for it and place it there first (`corral.core.nominations`). Pending
reasons are informational and only written where they changed.

Bulk: the evictions are one executemany UPDATE, the placements another, their events one INSERT
and their assignments one more: a plan placing 10,000 workloads is a handful of statements in
one commit. The version guard holds row by row inside each statement; a total short of the
plan's size means a miss, and the whole plan is rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection

from corral.control import lifecycle as L
from corral.control.device_cordons import is_device_hold, reworded
from corral.control.nomination_hold import nomination_hold_s  # below elastic too (G, #13)
from corral.control.snapshot import Snapshot
from corral.core.plan import Placement, Plan
from corral.core.reasons import Reason, stored_refs
from corral.store import workloads as W
from corral.store.nominations import replace_nominations
from corral.store.reservations import replace_reservations

__all__ = ["Applied", "StalePlan", "apply_plan", "nomination_hold_s"]


class StalePlan(Exception):
    """The store changed under the plan (or the lease was lost); nothing of it was written."""


@dataclass
class Applied:
    scheduled: list[str] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)
    reasons_updated: int = 0
    nominations: int = 0


def apply_plan(
    conn: Connection, snapshot: Snapshot, plan: Plan, now: float,
    fence: Callable[[Connection], bool], extra_reasons: Mapping[str, Reason] | None = None,
    nomination_s: float = nomination_hold_s(30.0, 1.0),
) -> Applied:
    """Write `plan`; raise StalePlan (the caller's transaction must then roll back)."""
    if not fence(conn):
        raise StalePlan("this scheduler no longer holds the leader lease")
    out = Applied()
    moves = plan.moves
    evicted = [(_current(snapshot, ev.workload_id), ev) for ev in plan.evictions]
    written = W.update_many_versioned(conn, [
        {"id": r.id, "version": r.version, "stop_reason": ev.rule, "stop_message": ev.message}
        for r, ev in evicted])
    if written != len(evicted):
        raise StalePlan(f"{len(evicted) - (written or 0)} evicted workload(s) changed since the "
                        "snapshot")
    W.append_events(conn, [
        {"at": now, "kind": "eviction", "reason": ev.rule, "message": ev.message,
         "workload_id": r.id, "attempt": r.attempt,
         "data": {"for_workload": ev.for_workload, "move": r.id in moves}} for r, ev in evicted])
    out.stopping.extend(r.id for r, _ in evicted)
    placed = [(_current(snapshot, p.workload_id), p) for p in plan.placements
              if p.workload_id not in moves]
    if not L.transition_many(conn, [(r, _placed_message(p), {"backfilled": p.backfilled})
                                    for r, p in placed],
                             L.State.SCHEDULED, reason=L.SCHEDULED, now=now):
        raise StalePlan("a placed workload changed since the snapshot")
    W.insert_many_placements(conn, [(r.id, r.attempt, p.assignments) for r, p in placed])
    out.scheduled.extend(r.id for r, _ in placed)
    # the holds of cordoned GPUs are made afresh each cycle from the nodes: never stored
    out.nominations = replace_nominations(conn, [n for n in plan.nominations
                                                 if not is_device_hold(n.workload_id)],
                                          now, nomination_s)
    replace_reservations(conn, plan.reservations)  # the holders the sentences leave out
    reasons = {wid: reworded(r) for wid, r in {**plan.pending, **(extra_reasons or {})}.items()}
    out.reasons_updated = _write_reasons(conn, snapshot, reasons)
    return out


def _placed_message(p: Placement) -> str:
    message = "placed on " + ", ".join(sorted({a.node_id for a in p.assignments}))
    if p.backfilled:
        message += " (backfilled ahead of a blocked gang)"
    return message


def _current(snapshot: Snapshot, workload_id: str) -> W.WorkloadRecord:
    record = snapshot.records.get(workload_id)
    if record is None:  # the plan names a workload the snapshot did not contain: a bug
        raise StalePlan(f"{workload_id} is not in the snapshot")
    return record


def _write_reasons(conn: Connection, snapshot: Snapshot, reasons: Mapping[str, Reason]) -> int:
    rows = []
    # a reason's refs (`stored_refs`, what the API completes the sentence from), once per
    # distinct reason object: the core shares one among all workloads alike
    refs_of: dict[int, str] = {}
    for wid, reason in reasons.items():
        record = snapshot.records.get(wid)
        if record is None or record.state != "pending":
            continue
        refs = refs_of.get(id(reason))
        if refs is None:
            refs = refs_of[id(reason)] = stored_refs(reason)
        if (record.reason_code, record.reason_message, record.reason_refs) == (
                reason.code, reason.message, refs):
            continue
        rows.append({"id": wid, "version": record.version, "reason_code": reason.code,
                     "reason_message": reason.message, "reason_refs": refs})
    # A lost race here is harmless (the row moved on); no need to fail the plan.
    written = W.update_many_versioned(conn, rows, bump=False)
    return len(rows) if written is None else written
