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
from typing import Any, Protocol

from sqlalchemy import Connection, Select, and_, or_, select

from corral.core.model import Node, WorkerAssignment
from corral.ledger import EndReason, MeterLog, UsageRecord, WorkerEnded, WorkerStarted
from corral.ledger.instants import to_instant
from corral.store import ledger_rows as LR
from corral.store import pg_bulk
from corral.store import workloads as W
from corral.store.driver_bulk import insert_rows
from corral.store.ledger_tables import LedgerUsage
from corral.store.schema import Event, WorkloadRow

__all__ = [
    "AttemptSpan",
    "attempt_span",
    "close_attempts",
    "record_attempt_start",
    "record_attempt_usage",
    "record_starts",
]

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


class Transition(Protocol):
    """What a span is read from: a transition event (`corral.store.workloads.EventRecord`)."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def from_state(self) -> str: ...
    @property
    def to_state(self) -> str: ...
    @property
    def attempt(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Transition:
    id: int
    kind: str
    at: float
    from_state: str
    to_state: str
    attempt: int


def attempt_span(events: Iterable[Transition], attempt: int) -> AttemptSpan:
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
    written: dict[tuple[str, int], tuple[WorkerStarted, ...]] | None = None,
) -> dict[tuple[str, int], Decimal]:
    """`record_attempt_start` for many launched attempts in a few statements: their starts from
    the `starting` transitions (one query per 500 workloads), the rows already written skipped
    (idempotent), the rest inserted in one executemany. Returns the attempts now metered, with
    their start. `written` (if given) receives the rows of each attempt whose every row was
    written here: then they are all the attempt has (see `close_attempts`)."""
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
    stored = {(w, a) for w, a, _ in have}  # attempts with a row written before this call
    rows, done = [], {}
    for key, rec in launched.items():
        start = starts.get(key)
        if start is None:
            continue
        done[key] = start
        # whole (all its rows written here) only if it had none stored: a stored row counts
        # even when its worker is skipped below (its node gone from `nodes`)
        mine, whole = [], key not in stored
        for a in placed.get(key, ()):
            milli = a.milli_per_device * len(a.devices)
            node = nodes.get(a.node_id)
            if milli <= 0 or node is None or (key[0], key[1], a.worker) in have:
                continue
            mine.append(WorkerStarted(
                workload_id=rec.id, worker=a.worker, attempt=key[1], at=start, queue=rec.queue,
                user=rec.user, provider=node.provider, region=node.region, node=node.id,
                gpu_model=node.gpu_model, capacity_kind=node.capacity_kind, milli=milli))
        rows.extend(LR.usage_row(w) for w in mine)
        if written is not None and whole and mine:
            written[key] = tuple(mine)
        if len(rows) >= W.BULK_CHUNK:  # a chunk's rows alive at a time, in order: the
            # 48,504 rows of the step that sees 47,913 launches running were the loop's
            # peak RSS (+45 MiB in its accounting at 10,000 x 100,000)
            insert_rows(conn, LedgerUsage.__table__, rows)
            rows = []
    # through the driver on SQLite (`driver_bulk`): SQLAlchemy's executemany processed every
    # parameter of every row, a quarter of this function's time in a 10,000-placement step
    insert_rows(conn, LedgerUsage.__table__, rows)
    return done


def _chunks(items: list[tuple[str, int]], size: int) -> Iterable[list[tuple[str, int]]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@dataclass(frozen=True, slots=True)
class Closed:
    """An attempt whose usage rows `close_attempts` brought up to date."""

    span: AttemptSpan
    usage: tuple[UsageRecord, ...]  # metered up to its end (or `now` if it has none)


#: a usage row as `close_attempts` reads it: the start event, its end (text) and end reason
_Row = tuple[WorkerStarted, str | None, str]


def close_attempts(
    conn: Connection, keys: Sequence[tuple[str, int]], nodes: Mapping[str, Node], now: Decimal,
    known: Mapping[tuple[str, int], Sequence[WorkerStarted]] | None = None,
) -> dict[tuple[str, int], Closed]:
    """`record_attempt_usage` for many attempts in a few statements per 500 workloads (their
    rows, their transitions, their usage rows; the ends written in one executemany), and each
    attempt's usage as the ledger meters it. Attempts whose workload is gone are left out.

    `known`: the usage rows of attempts that this process wrote itself and has not closed
    (`record_starts`' `written`): all the rows those attempts have, open, so they are not read
    back (a step that ends 10,000 attempts read and decoded 10,000 rows it had written)."""
    out: dict[tuple[str, int], Closed] = {}
    for chunk in _chunks(list(keys), 500):
        out.update(_close_chunk(conn, chunk, nodes, now, known or {}))
    return out


def _close_chunk(conn: Connection, keys: list[tuple[str, int]], nodes: Mapping[str, Node],
                 now: Decimal, known: Mapping[tuple[str, int], Sequence[WorkerStarted]]
                 ) -> dict[tuple[str, int], Closed]:
    ids = list({w for w, _ in keys})
    present = set(conn.execute(select(WorkloadRow.id).where(WorkloadRow.id.in_(ids))).scalars())
    events = _transitions(conn, ids)
    spans = {k: attempt_span(events.get(k[0], ()), k[1]) for k in keys if k[0] in present}
    rows: dict[tuple[str, int], list[_Row]] = {
        k: [(w, None, "") for w in known[k]] for k in keys if k in known}
    unknown = list({w for w, a in keys if (w, a) not in known})
    if unknown:
        rows.update((k, v) for k, v in _usage_rows(conn, unknown).items() if k not in rows)
    for key, span in spans.items():  # starts never recorded (rare): the one-by-one path
        if span.start is not None and not rows.get(key):
            rec = W.get_workload(conn, key[0])
            assert rec is not None
            record_attempt_start(conn, rec, key[1], span.start, nodes)
            rows.update({k: v for k, v in _usage_rows(conn, [key[0]]).items() if k == key})
    closed = _close_open_rows(conn, spans, rows)
    out = {}
    for key, span in spans.items():
        log = MeterLog()
        for started, end, end_reason in rows.get(key, []):
            log.record(started)
            closing = closed.get((key[0], key[1], started.worker))
            if closing is not None:
                log.record(WorkerEnded(key[0], started.worker, key[1], *closing))
            elif end is not None:
                log.record(WorkerEnded(key[0], started.worker, key[1], Decimal(end),
                                       EndReason(end_reason)))
        at = span.end if span.end is not None else now
        out[key] = Closed(span, log.usage(at))
    return out


def _close_open_rows(conn: Connection, spans: Mapping[tuple[str, int], AttemptSpan],
                     rows: Mapping[tuple[str, int], list[_Row]]
                     ) -> dict[tuple[str, int, int], tuple[Decimal, EndReason]]:
    """Close the open usage rows of the ended attempts among `spans` at their end (never before
    a row's start); returns each closed row's (end, reason) by (workload, attempt, worker).

    An attempt whose open rows all started by its end (every one, in practice: its rows start
    at its own start) is closed whole, keyed by the attempt (`close_attempt_rows`: one
    statement for the attempts of a step); the rows of one with a row that started later are
    closed one by one, that row at its start."""
    whole: list[tuple[str, int, Decimal, EndReason]] = []
    single: list[dict[str, Any]] = []
    closed: dict[tuple[str, int, int], tuple[Decimal, EndReason]] = {}
    for key, span in spans.items():
        if span.end is None or span.reason is None:
            continue
        open_rows = [(w.worker, w.at) for w, end, _ in rows.get(key, []) if end is None]
        fits = all(start <= span.end for _, start in open_rows)
        if fits:
            whole.append((key[0], key[1], span.end, span.reason))
        for worker, start in open_rows:
            end = max(span.end, start)
            closed[(key[0], key[1], worker)] = (end, span.reason)
            if not fits:
                single.append({"w": key[0], "a": key[1], "k": worker, "end": str(end),
                               "reason": span.reason.value})
    LR.close_attempt_rows(conn, whole)
    LR.record_ends(conn, single)
    return closed


def _transitions(conn: Connection, ids: list[str]) -> dict[str, list[_Transition]]:
    """The transition events of these workloads that can start or end a span (`attempt_span`
    passes over the others: to scheduled, to running), by workload, oldest first: only the
    columns a span needs (an event's message and data are most of its row)."""
    out: dict[str, list[_Transition]] = {}
    # PostgreSQL: without statistics of the events inserted moments before, the planner read
    # every event ever stored, once per 500 workloads (a sequential scan of 264,000 rows, 30
    # ms, 20 times in the step that ends 10,000 jobs at 10,000 x 100,000): by the index here
    with pg_bulk.by_index(conn):
        rows = conn.execute(transitions_query(ids)).all()
    for wid, eid, kind, at, from_state, to_state, attempt in rows:
        out.setdefault(str(wid), []).append(
            _Transition(eid, kind, at, from_state, to_state, attempt))
    return out


def transitions_query(ids: list[str]) -> Select[Any]:
    """`_transitions`' statement: the columns a span needs, oldest first."""
    return (select(Event.workload_id, Event.id, Event.kind, Event.at, Event.from_state,
                   Event.to_state, Event.attempt)
            .where(Event.workload_id.in_(ids), Event.kind == "transition",
                   or_(Event.to_state == "starting",
                       and_(Event.from_state.in_(("starting", "running")),
                            Event.to_state != "running")))
            .order_by(Event.id))


def _usage_rows(conn: Connection, ids: list[str]) -> dict[tuple[str, int], list[_Row]]:
    rows: dict[tuple[str, int], list[_Row]] = {}
    for r in conn.execute(select(LedgerUsage).where(LedgerUsage.workload_id.in_(ids))):
        rows.setdefault((r.workload_id, r.attempt), []).append(
            (LR.started_of(r), r.end, r.end_reason))
    return rows
