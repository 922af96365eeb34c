"""Fluent-ish builders for ledger tests: queues, journals, lifecycle events."""

from __future__ import annotations

from decimal import Decimal

from corral.core.model import CapacityKind
from corral.ledger import (
    EndReason,
    Journal,
    PriceKey,
    QueueChart,
    WorkerEnded,
    WorkerStarted,
    to_instant,
)

H100_AWS = PriceKey("aws", "us-east-1", "H100", CapacityKind.ON_DEMAND)


def journal(*queues: str, draw_from_ancestors: bool = True) -> Journal:
    """A journal over queues written 'child<parent' or 'root', e.g. journal('org', 'ml<org')."""
    parents: dict[str, str | None] = {}
    for spec in queues:
        name, _, parent = spec.partition("<")
        parents[name] = parent or None
    return Journal(QueueChart(parents), draw_from_ancestors=draw_from_ancestors)


def started(
    workload: str = "w1",
    *,
    at: float | int = 0,
    worker: int = 0,
    attempt: int = 0,
    queue: str = "research",
    user: str = "ann",
    milli: int = 1000,
    key: PriceKey = H100_AWS,
    node: str = "n1",
) -> WorkerStarted:
    return WorkerStarted(
        workload_id=workload,
        worker=worker,
        attempt=attempt,
        at=to_instant(at, "at"),
        queue=queue,
        user=user,
        provider=key.provider,
        region=key.region,
        node=node,
        gpu_model=key.gpu_model,
        capacity_kind=key.capacity_kind,
        milli=milli,
    )


def ended(
    workload: str = "w1",
    *,
    at: float | int,
    worker: int = 0,
    attempt: int = 0,
    reason: EndReason = EndReason.STOPPED,
) -> WorkerEnded:
    return WorkerEnded(workload, worker, attempt, to_instant(at, "at"), reason)


def d(value: str | int) -> Decimal:
    return Decimal(value)
