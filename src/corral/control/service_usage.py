"""What a service has used: replica-hours (every replica's attempts, launched to ended) and the
GPU-hours and cost the ledger metered for them.

    usage = service_usage(conn, status, now, catalog)
    usage.replica_seconds, usage.gpu_seconds, usage.cost

Replica-seconds come from each replica's lifecycle events, with the same span the ledger meters
an attempt over (`attempt_usage.attempt_span`: from its `starting` transition, when the backend
was handed it, to the first transition out of starting/running); an attempt still running counts
up to `now`. They count every replica, GPU or not (a CPU replica has no ledger row). GPU-seconds
and cost are the ledger's own usage rows, priced by the catalog, exactly as `corral usage`
prices them; a CPU-only service costs 0 there.

Per replica: one event read and one usage read, both by its id (indexed). A service's history
is its replicas' rows: a service that scaled a thousand times reads a thousand replicas.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import Connection, select

from corral.control.attempt_usage import attempt_span
from corral.control.services import ServiceStatus
from corral.ledger import PriceCatalog, usage_report
from corral.store import ledger_rows as LR
from corral.store.schema import Event
from corral.store.workloads import EventRecord

__all__ = ["ServiceUsage", "service_usage"]


@dataclass(frozen=True)
class ServiceUsage:
    replica_seconds: float
    gpu_seconds: Decimal
    #: in the ledger's currency units, exact; None without a catalog
    cost: Fraction | None

    @property
    def replica_hours(self) -> float:
        return self.replica_seconds / 3600


def service_usage(conn: Connection, status: ServiceStatus, now: float,
                  catalog: PriceCatalog | None = None) -> ServiceUsage:
    ids = [r.id for _, r in status.replicas]
    transitions: dict[str, list[EventRecord]] = {rid: [] for rid in ids}
    q = select(Event).where(Event.workload_id.in_(ids), Event.kind == "transition")
    for row in conn.execute(q):
        transitions[row.workload_id].append(EventRecord.of(row))
    seconds = 0.0
    for _, rec in status.replicas:
        for attempt in range(rec.attempt + 1):
            span = attempt_span(transitions[rec.id], attempt)
            if span.start is not None:
                end = float(span.end) if span.end is not None else now
                seconds += max(0.0, end - float(span.start))
    at = Decimal(repr(float(now)))
    records = [u for rid in ids for u in LR.usage_records(conn, at, workload_id=rid)]
    rows = usage_report(records, by=["queue"], catalog=catalog) if records else ()
    gpu = sum((r.gpu_seconds for r in rows), Decimal(0))
    cost = sum((r.cost or Fraction(0) for r in rows), Fraction(0)) if catalog is not None \
        else None
    return ServiceUsage(seconds, gpu, cost)
