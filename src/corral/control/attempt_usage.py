"""When an attempt used its GPUs, read from the workload's lifecycle events, and its usage rows.

An attempt is metered from the moment it was handed to the backend (the `starting` transition,
reason Launched: its GPUs are taken from then on, whether the processes have started yet or not)
until the first transition that takes it out of `starting`/`running` other than to `running`:

    to succeeded, cancelled  -> ended, reason stopped
    to failed                -> failed
    to preempted             -> preempted (evicted: preempt, reclaim, consolidate)
    to pending               -> restarted (a failed gang with restarts left; attempt + 1)

An attempt that never reached `starting` (cancelled or evicted while only scheduled) used
nothing. Each worker of an attempt is metered over the same span: a gang holds all its GPUs
until its last worker has ended, which is when the workload's transition is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, insert, select

from corral.core.model import Node, WorkerAssignment
from corral.ledger import EndReason, WorkerStarted
from corral.ledger.instants import to_instant
from corral.store import ledger_rows as LR
from corral.store import workloads as W
from corral.store.ledger_tables import LedgerUsage
from corral.store.schema import Event
from corral.store.workloads import EventRecord

__all__ = ["AttemptSpan", "attempt_span", "record_attempt_start", "record_attempt_usage",
           "record_starts"]

_END_REASONS = {
    "succeeded": EndReason.STOPPED,
    "cancelled": EndReason.STOPPED,
    "failed": EndReason.FAILED,
    "preempted": EndReason.PREEMPTED,
    "pending": EndReason.RESTARTED,
}


@dataclass(frozen=True, slots=True)
class AttemptSpan:
    start: Decimal | None  # None: never launched, nothing to meter
    end: Decimal | None  # None: still running
    reason: EndReason | None


def attempt_span(events: Iterable[EventRecord], attempt: int) -> AttemptSpan:
    """The span of `attempt` in one workload's events (any order; sorted by id here)."""
    start: Decimal | None = None
    for e in sorted(events, key=lambda e: e.id):
        if e.kind != "transition":
            continue
        if start is None:
            if e.to_state == "starting" and e.attempt == attempt:
                start = to_instant(e.at, "at")
            continue
        if e.from_state in ("starting", "running") and e.to_state != "running":
            end = max(start, to_instant(e.at, "at"))
            return AttemptSpan(start, end, _END_REASONS.get(e.to_state, EndReason.STOPPED))
    return AttemptSpan(start, None, None)


def record_attempt_start(
    conn: Connection, rec: W.WorkloadRecord, attempt: int, start: Decimal,
    nodes: Mapping[str, Node],
) -> int:
    """Usage rows for every GPU-holding worker of the attempt (idempotent). Returns rows added."""
    added = 0
    for p in W.placements_of(conn, rec.id, attempt):
        milli = p.milli_per_device * len(p.devices)
        node = nodes.get(p.node_id)
        if milli <= 0 or node is None:
            continue
        added += LR.record_start(conn, WorkerStarted(
            workload_id=rec.id, worker=p.worker, attempt=attempt, at=start, queue=rec.queue,
            user=rec.user, provider=node.provider, region=node.region, node=node.id,
            gpu_model=node.gpu_model, capacity_kind=node.capacity_kind, milli=milli))
    return added


def record_attempt_usage(
    conn: Connection, rec: W.WorkloadRecord, attempt: int, nodes: Mapping[str, Node]
) -> AttemptSpan:
    """Write what the events say about the attempt: its start rows and, once ended, its end."""
    span = attempt_span(W.list_events(conn, workload_id=rec.id, limit=100_000), attempt)
    if span.start is not None:
        record_attempt_start(conn, rec, attempt, span.start, nodes)
        if span.end is not None and span.reason is not None:
            LR.record_end(conn, rec.id, attempt, span.end, span.reason)
    return span


def record_starts(
    conn: Connection, launched: Mapping[tuple[str, int], W.WorkloadRecord],
    placed: Mapping[tuple[str, int], Sequence[WorkerAssignment]], nodes: Mapping[str, Node],
) -> dict[tuple[str, int], Decimal]:
    """`record_attempt_start` for many launched attempts in a few statements: their starts from
    the `starting` transitions (one query per 500 workloads), the rows already written skipped
    (idempotent), the rest inserted in one executemany. Returns the attempts now metered, with
    their start."""
    keys = list(launched)
    starts: dict[tuple[str, int], Decimal] = {}
    have: set[tuple[str, int, int]] = set()
    for chunk in _chunks(keys, 500):
        ids = list({w for w, _ in chunk})
        for wid, attempt, at in conn.execute(
                select(Event.workload_id, Event.attempt, Event.at)
                .where(Event.workload_id.in_(ids), Event.kind == "transition",
                       Event.to_state == "starting").order_by(Event.id)):
            starts.setdefault((str(wid), attempt), to_instant(at, "at"))
        have.update((w, a, k) for w, a, k in conn.execute(
            select(LedgerUsage.workload_id, LedgerUsage.attempt, LedgerUsage.worker)
            .where(LedgerUsage.workload_id.in_(ids))))
    rows, done = [], {}
    for key, rec in launched.items():
        start = starts.get(key)
        if start is None:
            continue
        done[key] = start
        for a in placed.get(key, ()):
            milli = a.milli_per_device * len(a.devices)
            node = nodes.get(a.node_id)
            if milli <= 0 or node is None or (key[0], key[1], a.worker) in have:
                continue
            rows.append(LR.usage_row(WorkerStarted(
                workload_id=rec.id, worker=a.worker, attempt=key[1], at=start, queue=rec.queue,
                user=rec.user, provider=node.provider, region=node.region, node=node.id,
                gpu_model=node.gpu_model, capacity_kind=node.capacity_kind, milli=milli)))
    if rows:
        conn.execute(insert(LedgerUsage), rows)
    return done


def _chunks(items: list[tuple[str, int]], size: int) -> Iterable[list[tuple[str, int]]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
