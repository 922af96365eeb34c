"""Cancellation: pending work ends at once; launched work gets a stop request that the loop carries
out (SIGTERM, the grace deadline, SIGKILL) and finalizes as `cancelled` once every worker ended."""

from __future__ import annotations

from sqlalchemy import Connection

from corral.control import lifecycle as L
from corral.control.lifecycle import IllegalTransition, State
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = ["cancel", "cancel_service"]

_RETRIES = 5


def cancel(store: Store, workload_id: str, now: float, by: str) -> WorkloadRecord | None:
    """Cancel one workload; idempotent. None when it does not exist. Raises IllegalTransition
    for work that already ended (other than by cancellation)."""
    for _ in range(_RETRIES):  # lost a race with the loop: read again and retry
        with store.write() as conn:
            rec = W.get_workload(conn, workload_id)
            if rec is None:
                return None
            if rec.state == "cancelled" or rec.stop_reason == L.CANCELLED:
                return rec
            if _request(conn, rec, now, by):
                return W.get_workload(conn, workload_id)
    raise RuntimeError(f"could not cancel {workload_id}: it kept changing; try again")


def _request(conn: Connection, rec: WorkloadRecord, now: float, by: str) -> bool:
    message = f"cancelled by {by}"
    if rec.state in ("pending", "preempted"):
        return L.transition(conn, rec, State.CANCELLED, reason=L.CANCELLED, message=message,
                            now=now)
    if not L.is_legal(rec.state, State.CANCELLED):
        raise IllegalTransition(rec.id, rec.state, State.CANCELLED)
    if not W.update_versioned(conn, rec.id, rec.version, stop_reason=L.CANCELLED,
                              stop_message=message):
        return False
    W.append_event(conn, at=now, kind="info", reason=L.CANCEL_REQUESTED,
                   message=f"{message}; stopping its workers", workload_id=rec.id,
                   attempt=rec.attempt)
    return True


def cancel_service(store: Store, service_id: str, now: float, by: str) -> list[WorkloadRecord]:
    """Cancel every replica of a service that has not ended; idempotent. Its rows after the
    request, every replica's (an empty list: no such service)."""
    with store.read() as conn:
        rows = W.list_workloads(conn, group_id=service_id, limit=100_000)
    if not rows or rows[0].kind != "service":
        return []
    for rec in rows:
        if rec.state not in L.TERMINAL:
            cancel(store, rec.id, now, by)
    with store.read() as conn:
        return W.list_workloads(conn, group_id=service_id, limit=100_000)
