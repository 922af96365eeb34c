"""Scaling a service: the desired replica count moves by adding replicas or draining some.

    scale(store, "chat-1a2b3c4d", 3, now, "ann")

- up: new replica rows `<service>-r<k>` (k above every index the service ever used: ids are
  never reused, so a replica's history stays its own), pending, with their Submitted event;
  the loop places and launches them like any replica.
- down: the highest-indexed live replicas are drained first (the lowest indices are the
  `min_replicas` floor kept off spot capacity, `WorkloadSpec._replica_capacity`): a pending one
  ends at once, a launched one gets the stop request `ScaledDown` (SIGTERM, grace, SIGKILL) and
  becomes cancelled, reason ScaledDown, once its worker has ended. Where a gateway routes the
  service, the SIGTERM waits until it routes the replica draining (`corral.api.service_routes`:
  the loop holds the stop one step), whoever asked: `corral scale`, the autoscaler, a cancel.

The count must lie in [min_replicas, max_replicas] of the service's spec (min_replicas unset:
0 is allowed only if the spec says so, so the floor is 1; max_replicas unset: the spec's own
limit on replicas). A refusal is a `ScaleRefused` naming the field, never a partial change: the
whole change is one transaction.
"""

from __future__ import annotations

import json
from typing import Any, Final

from sqlalchemy import Connection

from corral.control import lifecycle as L
from corral.control.lifecycle import State
from corral.control.services import DRAINING, ServiceStatus, replica_state, service_status
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = ["MAX_REPLICAS", "SCALED", "ScaleRefused", "ServiceNotFound", "add_replicas", "drain",
           "end_idle", "load_service", "replica_bounds", "rolling_out", "scale"]

#: the spec's own limit on `replicas` (corral.spec.workload)
MAX_REPLICAS: Final = 1000
#: the reason of a service's own event when its replica count changed by hand
SCALED: Final = "Scaled"
_RETRIES = 5


class ServiceNotFound(LookupError):
    pass


class ScaleRefused(ValueError):
    """A scale the service's spec or state does not allow; `field` is what to change."""

    def __init__(self, field: str, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.field, self.conflict = field, conflict


def load_service(conn: Connection, service_id: str) -> tuple[ServiceStatus, WorkloadSpec]:
    """The service's status and spec; ServiceNotFound if `service_id` names no service."""
    rows = W.list_workloads(conn, group_id=service_id, limit=MAX_REPLICAS * 10)
    if not rows or rows[0].kind != "service":
        raise ServiceNotFound(service_id)
    return service_status(service_id, rows), WorkloadSpec.from_stored(rows[0].spec)


def replica_bounds(spec: WorkloadSpec) -> tuple[int, int]:
    lo = spec.min_replicas if spec.min_replicas is not None else 1
    return lo, spec.max_replicas if spec.max_replicas is not None else MAX_REPLICAS


def scale(store: Store, service_id: str, replicas: int, now: float, by: str,
          why: tuple[str, str] | None = None) -> ServiceStatus:
    """Set the service's desired replica count; returns its status after the change. A change
    is an event on the service's own id (reason `why[0]`, message `why[1]`: the autoscaler's
    code and sentence; default Scaled, "scaled from 2 to 3 by ann"), in the same transaction."""
    for _ in range(_RETRIES):
        try:
            with store.write() as conn:
                status, spec = load_service(conn, service_id)
                _check(status, spec, replicas)
                _apply(conn, status, replicas, now, by, why)
                return load_service(conn, service_id)[0]
        except _Raced:  # the loop moved a replica meanwhile: rolled back whole; read again
            continue
    raise RuntimeError(f"could not scale {service_id}: its replicas kept changing; try again")


def _check(status: ServiceStatus, spec: WorkloadSpec, replicas: int) -> None:
    if rolling_out(status):
        raise ScaleRefused("replicas", f"service {status.id} is rolling out a new spec; scale "
                           "it once the update has finished or rolled back", conflict=True)
    if status.cancelled:
        raise ScaleRefused("service", f"service {status.id} was cancelled; submit it again",
                           conflict=True)
    lo, hi = replica_bounds(spec)
    if not lo <= replicas <= hi:
        field = "min_replicas" if replicas < lo else "max_replicas"
        raise ScaleRefused("replicas", f"replicas must lie between {lo} and {hi} ({field} of "
                           f"the service's spec; {replicas} asked); update the spec to change "
                           f"its {field}")


class _Raced(Exception):
    pass


def _apply(conn: Connection, status: ServiceStatus, replicas: int, now: float, by: str,
           why: tuple[str, str] | None) -> None:
    live = status.live()
    change = f"scaled from {len(live)} to {replicas} by {by}"
    if replicas != len(live):  # the service's own history: `corral describe` shows it
        code, message = why or (SCALED, change)
        W.append_event(conn, at=now, kind="info", reason=code, message=message,
                       workload_id=status.id, subject=by)
    if replicas > len(live):
        add_replicas(conn, status, replicas - len(live), now, change)
    for _, rec in reversed(live[replicas:]):  # the highest index first
        if not drain(conn, rec, now, change):
            raise _Raced


def rolling_out(status: ServiceStatus) -> bool:
    """Whether the live replicas run more than one spec (an update under way)."""
    return len({json.dumps(r.spec, sort_keys=True) for _, r in status.live()}) > 1


def add_replicas(conn: Connection, status: ServiceStatus, count: int, now: float, change: str,
                 spec: dict[str, Any] | None = None) -> None:
    """`count` new replica rows (pending), with `spec` (default: the newest live replica's, the
    spec the service runs now; after a rollback, not the newest row's)."""
    live = status.live()
    model = (live or list(status.replicas))[-1][1]
    first = status.replicas[-1][0] + 1
    rows = [{"id": f"{status.id}-r{i}", "group_id": status.id, "name": model.name,
             "queue": model.queue, "user": model.user, "kind": model.kind,
             "spec": model.spec if spec is None else spec,
             "state": "pending", "reason_code": L.SUBMITTED,
             "reason_message": "waiting for the next scheduling cycle", "submitted_at": now}
            for i in range(first, first + count)]
    W.insert_workloads(conn, rows)
    W.append_events(conn, [{"at": now, "kind": "transition", "reason": L.SUBMITTED,
                            "message": change, "workload_id": r["id"], "to_state": "pending"}
                           for r in rows])


def drain(conn: Connection, rec: WorkloadRecord, now: float, change: str,
          reason: str = L.SCALED_DOWN) -> bool:
    """End a replica for good with `reason` (one of `L.DRAINS`): at once when it has not been
    launched, else by a stop request. False when its row moved meanwhile."""
    if replica_state(rec) == DRAINING:
        return True
    if rec.state in ("pending", "preempted"):
        return L.transition(conn, rec, State.CANCELLED, reason=reason, message=change, now=now)
    if not W.update_versioned(conn, rec.id, rec.version, stop_reason=reason,
                              stop_message=change):
        return False
    W.append_event(conn, at=now, kind="info", reason=reason,
                   message=f"{change}; draining this replica", workload_id=rec.id,
                   attempt=rec.attempt)
    return True


def end_idle(store: Store, service_id: str, now: float, by: str) -> bool:
    """Cancel a service scaled to zero (no replica left to cancel). Its status is derived from
    its rows, and an idle one's last row ended ScaledDown: that row's reason becomes Cancelled,
    so the service is `ended` for every reader (the autoscaler stops routing and scaling it; a
    request can no longer bring it back). False when the service is not idle."""
    with store.write() as conn:
        status, _ = load_service(conn, service_id)
        if status.state != "idle":
            return False
        last = max((r for _, r in status.replicas), key=lambda r: (r.finished_at or 0.0, r.seq))
        message = f"service cancelled by {by} at zero replicas"
        if not W.update_versioned(conn, last.id, last.version, reason_code=L.CANCELLED,
                                  reason_message=message):
            return False
        W.append_event(conn, at=now, kind="info", reason=L.CANCELLED, message=message,
                       workload_id=service_id, subject=by)
    return True
