"""A service's status, derived from its replicas' rows: nothing about it is stored twice.

A service is the group of its replica rows (`<service id>-r<i>`, group id = the service's id).
Each replica is, as far as serving goes:

    ready     running, no stop asked, and its readiness probe passing where the spec has one
              (reason ReplicaReady, written by `corral.control.probes`): it takes traffic
    starting  pending, scheduled, starting (a restart waiting out its backoff included)
    draining  a stop asked for good (cancel, scale down), not ended yet
    ended     cancelled (or failed: a launch the backend refused as invalid)

`serving` is stricter than ready: a ready replica seen to serve, ReplicaReady on its row (its
readiness probe passed; without one, its port accepted a TCP connection). A rolling update
counts new replicas by it, so it never drains an old replica for a process that has not opened
its port yet.

desired = ready + starting: the replicas corral keeps serving. `scale` changes it by adding
replicas or draining the highest-indexed ones, so the count of live rows *is* the desired count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from corral.control import lifecycle as L
from corral.control.snapshot import replica_index
from corral.store.workloads import WorkloadRecord

__all__ = [
    "DRAINING",
    "ENDED",
    "PORT_IN_USE",
    "READY",
    "REPLICA_NOT_READY",
    "REPLICA_READY",
    "STARTING",
    "ServiceStatus",
    "replica_state",
    "service_status",
    "serving",
]

READY: Final = "ready"
#: reason codes the readiness prober writes on a running replica
REPLICA_READY: Final = "ReplicaReady"
REPLICA_NOT_READY: Final = "ReplicaNotReady"
#: its port is answered by another process (corral.control.port_owners), or was given to an
#: older live replica on its host (corral.control.replicas.replace_port_clashes): no traffic
PORT_IN_USE: Final = "PortInUse"
STARTING: Final = "starting"
DRAINING: Final = "draining"
ENDED: Final = "ended"


def replica_state(rec: WorkloadRecord) -> str:
    """One of READY, STARTING, DRAINING, ENDED for a replica row."""
    if rec.state in L.TERMINAL:
        return ENDED
    if rec.stop_reason in L.DRAINS:
        return DRAINING
    if rec.state == "running" and rec.stop_reason is None and (
            rec.reason_code == REPLICA_READY
            or ("readiness" not in rec.spec and rec.reason_code != PORT_IN_USE)):
        return READY
    return STARTING


def serving(rec: WorkloadRecord) -> bool:
    """Ready, and seen to serve: its readiness probe passed or its port accepted TCP."""
    return replica_state(rec) == READY and rec.reason_code == REPLICA_READY


@dataclass(frozen=True)
class ServiceStatus:
    id: str
    desired: int
    ready: int
    starting: int
    draining: int
    #: serving (every desired replica ready), degraded (some), starting (none yet),
    #: stopping (only draining ones left), idle (scaled to zero), ended (cancelled)
    state: str
    #: (replica index, row), by index
    replicas: tuple[tuple[int, WorkloadRecord], ...]

    @property
    def cancelled(self) -> bool:
        return self.state == "ended"

    def live(self) -> list[tuple[int, WorkloadRecord]]:
        """Replicas corral keeps serving (ready or starting), by index."""
        return [(i, r) for i, r in self.replicas if replica_state(r) in (READY, STARTING)]


def service_status(service_id: str, rows: Iterable[WorkloadRecord]) -> ServiceStatus:
    replicas = tuple(sorted(((replica_index(r), r) for r in rows), key=lambda p: p[0]))
    count = {READY: 0, STARTING: 0, DRAINING: 0, ENDED: 0}
    for _, r in replicas:
        count[replica_state(r)] += 1
    desired = count[READY] + count[STARTING]
    if desired:
        state = ("serving" if count[READY] == desired else
                 "degraded" if count[READY] else "starting")
    else:
        state = "stopping" if count[DRAINING] else "idle" if _scaled_to_zero(replicas) else "ended"
    return ServiceStatus(service_id, desired, count[READY], count[STARTING], count[DRAINING],
                         state, replicas)


def _scaled_to_zero(replicas: tuple[tuple[int, WorkloadRecord], ...]) -> bool:
    """Every replica ended, the last of them by a scale down (not a cancel)."""
    last = max((r for _, r in replicas), key=lambda r: (r.finished_at or 0.0, r.seq),
               default=None)
    return last is not None and last.reason_code == L.SCALED_DOWN
