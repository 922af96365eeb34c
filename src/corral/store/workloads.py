"""Workloads, their placements and their events: small functions over one Connection. Also what
attempts held over time (`gpu_spans`, read from the ledger's metering rows) for fair share.

The caller owns the transaction (`Store.read()` / `Store.write()`); nothing here commits. State
changes go through `update_versioned`, which only writes when the version the caller saw is still
current: the optimistic-concurrency guard that makes a stale plan fail instead of half-applying.
Which transitions are legal is decided above this layer (`corral.control.lifecycle`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from corral.core.model import WorkerAssignment
from corral.store import pg_workloads as PG
from corral.store.changes import next_workload_seq, note_inserts, note_writes, plain
from corral.store.driver_bulk import insert_rows, update_rows
from corral.store.holdings import HOLDING_STATES, Held, holding_placements, milli_used_by_group
from corral.store.ordered_insert import insert_in_order
from corral.store.schema import Event, Placement, WorkloadRow
from corral.store.spec_bodies import SpecBodies

__all__ = [
    "ACTIVE_STATES",
    "HOLDING_STATES",
    "EventRecord",
    "Held",
    "SpecBodies",
    "WorkloadRecord",
    "append_event",
    "append_events",
    "assignments_of",
    "changed_since",
    "count_by_state",
    "count_events",
    "current_assignments",
    "get_workload",
    "get_workloads",
    "holding_placements",
    "insert_many_placements",
    "insert_placements",
    "insert_workloads",
    "last_change",
    "last_event_id",
    "list_events",
    "list_workloads",
    "load_active",
    "milli_used_by_group",
    "placements_of",
    "set_many_placement_states",
    "set_placement_states",
    "transitions_of",
    "update_many_versioned",
    "update_unversioned",
    "update_versioned",
]

#: states in which a workload holds or waits for capacity (the scheduler's working set)
ACTIVE_STATES = ("pending", "scheduled", "starting", "running")


@dataclass(frozen=True, slots=True)
class WorkloadRecord:
    seq: int
    id: str
    group_id: str
    name: str
    queue: str
    user: str
    kind: str
    spec: dict[str, Any]
    state: str
    reason_code: str
    reason_message: str
    attempt: int
    restart_count: int
    version: int
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    not_before: float
    stop_reason: str | None
    stop_message: str
    exit_code: int | None
    #: `core.reasons.stored_refs` of the pending reason ("" when none, or written before them)
    reason_refs: str = ""

    @classmethod
    def of(cls, row: Any) -> WorkloadRecord:
        return cls(**{f: getattr(row, f) for f in cls.__slots__})


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    at: float
    kind: str
    workload_id: str | None
    subject: str
    from_state: str
    to_state: str
    attempt: int
    reason: str
    message: str
    data: dict[str, Any]

    @classmethod
    def of(cls, row: Any) -> EventRecord:
        return cls(**{f: getattr(row, f) for f in cls.__slots__})


_COLUMNS = [getattr(WorkloadRow, f) for f in WorkloadRecord.__slots__]
# The hot reads (the change feed, a new leader's full read) take the spec as text, not as JSON:
# equal bodies (a sweep, an array's tasks) are decoded once and shared (`SpecBodies`), and a row
# already held in memory is not decoded at all (specs never change after submission).
_SPEC_AT = WorkloadRecord.__slots__.index("spec")
_LEAN = [c for c in _COLUMNS if c.key != "spec"]
_SPEC_TEXT = cast(WorkloadRow.spec, Text)


#: the text columns with few distinct values (name, queue, user, kind, state, reasons, stop
#: reason and message), by position in a `_LEAN` row: each distinct value held once
_REPEATED = tuple(i for i, c in enumerate(_LEAN) if c.key in (
    "name", "queue", "user", "kind", "state", "reason_code", "reason_message", "stop_reason",
    "stop_message", "reason_refs"))
_ID, _GROUP = WorkloadRecord.__slots__.index("id"), WorkloadRecord.__slots__.index("group_id")
_TEXTS: dict[str, str] = {}


def _shared(text: str) -> str:
    if len(_TEXTS) >= 100_000:  # a bound: messages can be many
        _TEXTS.clear()
    return _TEXTS.setdefault(text, text)


def _record(row: Sequence[Any], spec: dict[str, Any]) -> WorkloadRecord:
    """A record from a `_LEAN` row (columns in `WorkloadRecord` order, spec left out).

    The driver makes a new string object per column per row: 100,000 records then hold
    100,000 copies of "pending" and of each queue's name. Repeated values are shared (and a
    group id equal to the workload's id is the id), which is most of a record's memory."""
    values = list(row[:len(_LEAN)])
    for i in _REPEATED:
        if values[i] is not None:
            values[i] = _shared(values[i])
    if values[_GROUP] == values[_ID]:
        values[_GROUP] = values[_ID]
    values.insert(_SPEC_AT, spec)
    return WorkloadRecord(*values)
# Hot inserts are built once, on the Core tables: an ORM-entity insert with inline `.values()`
# re-coerces every value and recomputes its cache key per call (most of a submission's cost).
_EVENTS: Any = Event.__table__
_WORKLOADS: Any = WorkloadRow.__table__
_PLACEMENTS: Any = Placement.__table__


def insert_workloads(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert new workloads (state pending, version 1); return their seqs, in order.
    Keys: the WorkloadRow columns, the same in every row. Raises IntegrityError when an id is
    taken."""
    if not rows:
        return []
    stamp = next_workload_seq(conn)
    note_inserts(conn)  # the commit wakes a reader waiting for work (Store.subscribe)
    rows = [{**r, "change_seq": stamp} for r in rows]
    # One bulk statement, seqs in the order of `rows` (SQLAlchemy's ordered RETURNING is one
    # INSERT per row on SQLite; see corral.store.ordered_insert): a batch is one round trip.
    return insert_in_order(conn, WorkloadRow, "seq", "id", rows)


def get_workload(conn: Connection, workload_id: str) -> WorkloadRecord | None:
    row = conn.execute(select(*_COLUMNS).where(WorkloadRow.id == workload_id)).first()
    return WorkloadRecord.of(row) if row is not None else None


def get_workloads(conn: Connection, workload_ids: Sequence[str]) -> list[WorkloadRecord]:
    """The rows of these ids that exist (any order)."""
    out: list[WorkloadRecord] = []
    for chunk in _chunks(list(workload_ids), 500):
        out.extend(WorkloadRecord.of(r) for r in conn.execute(
            select(*_COLUMNS).where(WorkloadRow.id.in_(chunk))))
    return out


def transitions_of(conn: Connection, workload_ids: Sequence[str]) -> list[EventRecord]:
    """The transition events of these workloads, oldest first."""
    out: list[EventRecord] = []
    for chunk in _chunks(list(workload_ids), 500):
        out.extend(EventRecord.of(r) for r in conn.execute(
            select(Event).where(Event.workload_id.in_(chunk), Event.kind == "transition")
            .order_by(Event.id)))
    return out


def list_workloads(
    conn: Connection, *, queues: Iterable[str] | None = None, states: Iterable[str] = (),
    user: str | None = None, group_id: str | None = None, before_seq: int | None = None,
    limit: int = 100,
) -> list[WorkloadRecord]:
    """Newest first. `queues` None means all; `before_seq` pages (pass the last seq seen)."""
    q = select(*_COLUMNS).order_by(WorkloadRow.seq.desc()).limit(limit)
    if queues is not None:
        q = q.where(WorkloadRow.queue.in_(list(queues)))
    states = list(states)
    if states:
        q = q.where(WorkloadRow.state.in_(states))
    if user:
        q = q.where(WorkloadRow.user == user)
    if group_id:
        q = q.where(WorkloadRow.group_id == group_id)
    if before_seq is not None:
        q = q.where(WorkloadRow.seq < before_seq)
    return [WorkloadRecord.of(r) for r in conn.execute(q)]


def load_active(conn: Connection, bodies: SpecBodies | None = None) -> list[WorkloadRecord]:
    """Every workload the scheduler must consider, oldest first. One query; equal spec bodies
    are decoded once and shared (through `bodies`, when the caller keeps one between reads)."""
    decode = bodies or SpecBodies()
    q = (select(*_LEAN, _SPEC_TEXT).where(WorkloadRow.state.in_(ACTIVE_STATES))
         .order_by(WorkloadRow.seq))
    return [_record(r, decode(r[-1])) for r in conn.execute(q)]


def changed_since(
    conn: Connection, after: int, known: Callable[[str], dict[str, Any] | None] | None = None,
    bodies: SpecBodies | None = None, skip_stamps: Collection[int] = (),
) -> tuple[list[WorkloadRecord], int]:
    """Every workload written after change number `after` (any state), oldest change first,
    and the largest change number read (`after` when none): the change feed's read side
    (`corral.store.changes`).

    `known(id)` gives the spec of a row the caller already holds (None: not held): those rows
    are read without their spec, which never changes after submission. Most of what a loop's
    step reads back is rows it just wrote; their spec bodies are most of their bytes.

    `skip_stamps`: change numbers whose rows the caller knows already (statements this process
    wrote, `corral.store.changes.RowWrite`): rows whose last write is one of them are not read.
    The number returned is then only that of the rows read."""
    q = (select(*_LEAN, WorkloadRow.change_seq).where(WorkloadRow.change_seq > after)
         .order_by(WorkloadRow.change_seq))
    if skip_stamps:
        q = q.where(WorkloadRow.change_seq.not_in(list(skip_stamps)))
    rows = conn.execute(q).all()
    specs: dict[str, dict[str, Any]] = {}
    unknown: list[str] = []
    for r in rows:
        spec = None if known is None else known(r[1])
        if spec is None:
            unknown.append(r[1])
        else:
            specs[r[1]] = spec
    decode = bodies or SpecBodies()
    for chunk in _chunks(unknown, 500):
        for wid, text in conn.execute(select(WorkloadRow.id, _SPEC_TEXT)
                                      .where(WorkloadRow.id.in_(chunk))):
            specs[wid] = decode(text)
    last = max((int(r[-1]) for r in rows), default=after)
    return [_record(r, specs[r[1]]) for r in rows], max(last, after)


def last_change(conn: Connection) -> int:
    """The largest change number of any workload (0 when none was ever stamped)."""
    return int(conn.execute(select(func.coalesce(func.max(WorkloadRow.change_seq), 0)))
               .scalar_one())


def count_by_state(conn: Connection) -> dict[str, int]:
    q = select(WorkloadRow.state, func.count()).group_by(WorkloadRow.state)
    return {state: n for state, n in conn.execute(q)}


def update_versioned(conn: Connection, workload_id: str, version: int, **values: Any) -> bool:
    """Write `values` and bump the version, only if the row is still at `version`."""
    stamp = next_workload_seq(conn)
    result = conn.execute(
        update(WorkloadRow)
        .where(WorkloadRow.id == workload_id, WorkloadRow.version == version)
        .values(version=WorkloadRow.version + 1, change_seq=stamp, **values)
    )
    if result.rowcount != 1:
        return False
    if plain(values):
        note_writes(conn, stamp, [(workload_id, version, values)], bump=True)
    return True


#: rows per executemany of the bulk writes below: their parameters exist one chunk at a time.
#: At 10,000 nodes x 100,000 workloads the step that sees the first step's 47,913 launches
#: running set the loop's peak RSS (+69 MiB in its reconcile, SQLite and PostgreSQL alike).
BULK_CHUNK = 5000


def update_many_versioned(conn: Connection, rows: Sequence[dict[str, Any]], *,
                          bump: bool = True) -> int | None:
    """One bulk UPDATE (SQLite: the driver's executemany; PostgreSQL: one UPDATE ... FROM
    unnest(arrays) per chunk, `pg_workloads`): each row is {"id", "version", and the columns
    to set, the same keys in every row}, written only where the version is still current (and
    bumped, unless `bump` is False: informational columns). Returns how many rows were
    written, or None where the driver cannot count an executemany (the caller then cannot
    tell a partial write)."""
    if not rows:
        return 0
    keys = [k for k in rows[0] if k not in ("id", "version")]
    stamp = next_workload_seq(conn)
    if conn.dialect.name == "sqlite":  # the driver's executemany (corral.store.driver_bulk)
        result = update_rows(conn, _WORKLOADS, keys, rows, stamp, bump)
        count = int(result.rowcount)
    elif PG.arrays_fit(conn, keys, rows):  # one UPDATE ... FROM unnest per chunk
        count = sum(PG.update_versioned(conn, keys, chunk, stamp, bump)
                    for chunk in _chunks(list(rows), BULK_CHUNK))
    else:
        values: dict[str, Any] = {k: bindparam(f"v_{k}") for k in keys}
        values["change_seq"] = stamp
        if bump:
            values["version"] = WorkloadRow.version + 1
        statement = update(WorkloadRow).where(
            WorkloadRow.id == bindparam("w_id"), WorkloadRow.version == bindparam("w_v"),
        ).values(**values)
        count = 0
        # the renamed parameters (and SQLAlchemy's processed copy of them) one chunk at a
        # time: 48,000 rows at once were tens of MiB alive together (`BULK_CHUNK`)
        for chunk in _chunks(list(rows), BULK_CHUNK):
            result = conn.execute(statement, [{"w_id": r["id"], "w_v": r["version"],
                                               **{f"v_{k}": r[k] for k in keys}}
                                              for r in chunk])
            count += result.rowcount
    if not conn.dialect.supports_sane_multi_rowcount:
        return None
    if count == len(rows):  # every row written: what it wrote is known row by row
        # (bound parameters, so plain values; each row's own dict: its id and version are
        # passed over by readers)
        note_writes(conn, stamp, [(r["id"], r["version"], r) for r in rows], bump)
    return count


def update_unversioned(conn: Connection, workload_id: str, version: int, **values: Any) -> bool:
    """Write informational fields (a pending reason) without bumping the version."""
    stamp = next_workload_seq(conn)
    result = conn.execute(
        update(WorkloadRow)
        .where(WorkloadRow.id == workload_id, WorkloadRow.version == version)
        .values(change_seq=stamp, **values)
    )
    if result.rowcount != 1:
        return False
    if plain(values):
        note_writes(conn, stamp, [(workload_id, version, values)], bump=False)
    return True


# --- placements ---------------------------------------------------------------------------------


def insert_placements(
    conn: Connection, workload_id: str, attempt: int, assignments: Sequence[WorkerAssignment]
) -> None:
    conn.execute(delete(Placement).where(
        Placement.workload_id == workload_id, Placement.attempt == attempt))
    conn.execute(insert(Placement), [
        {"workload_id": workload_id, "attempt": attempt, "worker": a.worker,
         "node_id": a.node_id, "devices": list(a.devices), "milli_per_device": a.milli_per_device,
         "gpu_memory_mib_per_device": a.gpu_memory_mib_per_device, "state": "planned",
         "reason": ""}
        for a in assignments
    ])


def assignments_of(
    conn: Connection, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], tuple[WorkerAssignment, ...]]:
    """Assignments per (workload, attempt), workers in order."""
    keys = list(keys)
    out: dict[tuple[str, int], list[WorkerAssignment]] = {k: [] for k in keys}
    for chunk in _chunks(keys, 500):
        cond = or_(*(and_(Placement.workload_id == w, Placement.attempt == a) for w, a in chunk))
        rows = conn.execute(select(Placement).where(cond).order_by(Placement.worker))
        for r in rows:
            out[(r.workload_id, r.attempt)].append(WorkerAssignment(
                r.worker, r.node_id, tuple(r.devices), r.milli_per_device,
                r.gpu_memory_mib_per_device))
    return {k: tuple(v) for k, v in out.items()}


def insert_many_placements(
    conn: Connection, placed: Sequence[tuple[str, int, Sequence[WorkerAssignment]]]
) -> None:
    """`insert_placements` for many (workload, attempt, assignments) in two statements."""
    if not placed:
        return
    keys = [(w, a) for w, a, _ in placed]
    if conn.dialect.name == "postgresql":  # one DELETE a chunk, one COPY
        for chunk in _chunks(keys, BULK_CHUNK):
            PG.delete_placements(conn, chunk)
        PG.copy_placements(conn, placed)
        return
    for chunk in _chunks(keys, 500):
        for attempt in {a for _, a in chunk}:
            conn.execute(delete(Placement).where(
                Placement.attempt == attempt,
                Placement.workload_id.in_([w for w, a in chunk if a == attempt])))
    insert_rows(conn, _PLACEMENTS, [  # through the driver on SQLite, as `append_events`
        {"workload_id": w, "attempt": attempt, "worker": a.worker, "node_id": a.node_id,
         "devices": list(a.devices), "milli_per_device": a.milli_per_device,
         "gpu_memory_mib_per_device": a.gpu_memory_mib_per_device, "state": "planned",
         "reason": ""}
        for w, attempt, assignments in placed for a in assignments])


def current_assignments(
    conn: Connection, workload_ids: Iterable[str] | None = None
) -> dict[tuple[str, int], tuple[WorkerAssignment, ...]]:
    """The assignments of the current attempt of every workload that holds GPUs (scheduled,
    starting, running), or of those among `workload_ids`: one join, not one lookup each."""
    base = (select(Placement.workload_id, Placement.attempt, Placement.worker, Placement.node_id,
                   Placement.devices, Placement.milli_per_device,
                   Placement.gpu_memory_mib_per_device)
            .join(WorkloadRow, and_(WorkloadRow.id == Placement.workload_id,
                                    WorkloadRow.attempt == Placement.attempt))
            .where(WorkloadRow.state.in_(HOLDING_STATES))
            .order_by(Placement.workload_id, Placement.worker))
    out: dict[tuple[str, int], list[WorkerAssignment]] = {}
    queries = ([base] if workload_ids is None else
               [base.where(Placement.workload_id.in_(chunk))
                for chunk in _chunks(list(workload_ids), 500)])
    for q in queries:
        for r in conn.execute(q):
            out.setdefault((r[0], r[1]), []).append(WorkerAssignment(
                r[2], r[3], tuple(r[4]), r[5], r[6]))
    return {k: tuple(v) for k, v in out.items()}


def set_placement_states(
    conn: Connection, workload_id: str, attempt: int, states: dict[int, tuple[str, int | None, str]]
) -> None:
    """Per worker: (state, exit code, reason) as last reported by the backend."""
    for worker, (state, code, reason) in states.items():
        conn.execute(update(Placement).where(
            Placement.workload_id == workload_id, Placement.attempt == attempt,
            Placement.worker == worker).values(state=state, exit_code=code, reason=reason))


def set_many_placement_states(
    conn: Connection, rows: Sequence[tuple[str, int, int, str, int | None, str]]
) -> None:
    """`set_placement_states` for many workers in one executemany: (workload, attempt, worker,
    state, exit code, reason)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":  # through the driver: no per-row parameter processing
        conn.exec_driver_sql(_PLACEMENT_STATES_SQLITE, [(st, c, r, w, a, k)
                                                        for w, a, k, st, c, r in rows])
        return
    if conn.dialect.name == "postgresql" and PG.distinct_workers(rows):
        for chunk in _chunks(list(rows), BULK_CHUNK):  # one UPDATE ... FROM unnest each
            PG.set_placement_states(conn, chunk)
        return
    statement = update(Placement).where(
        Placement.workload_id == bindparam("w"), Placement.attempt == bindparam("a"),
        Placement.worker == bindparam("k")).values(
        state=bindparam("s"), exit_code=bindparam("c"), reason=bindparam("r"))
    for chunk in _chunks(list(rows), BULK_CHUNK):  # a chunk's parameters at a time
        conn.execute(statement, [{"w": w, "a": a, "k": k, "s": st, "c": c, "r": r}
                                 for w, a, k, st, c, r in chunk])


_PLACEMENT_STATES_SQLITE = ("UPDATE placements SET state = ?, exit_code = ?, reason = ? "
                            "WHERE workload_id = ? AND attempt = ? AND worker = ?")


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# --- events -------------------------------------------------------------------------------------


def append_event(
    conn: Connection, *, at: float, kind: str, reason: str, message: str = "",
    workload_id: str | None = None, subject: str = "", from_state: str = "",
    to_state: str = "", attempt: int = 0, data: dict[str, Any] | None = None,
) -> None:
    conn.execute(insert(Event).values(
        at=at, kind=kind, reason=reason, message=message, workload_id=workload_id,
        subject=subject, from_state=from_state, to_state=to_state, attempt=attempt,
        data=data or {}))


def append_events(conn: Connection, events: Sequence[dict[str, Any]]) -> None:
    """Several events in one statement (keys as `append_event`'s arguments)."""
    # through the driver on SQLite (`driver_bulk.insert_rows`): SQLAlchemy's executemany
    # processed every parameter of every row in Python, and a step that ends 10,000 jobs
    # and places 10,000 writes 30,000 events. The full rows (and the driver's parameters made
    # of them) one chunk at a time, in order: the 48,000 events of a step that sees 48,000
    # launches running were tens of MiB alive together (`BULK_CHUNK`)
    copy = conn.dialect.name == "postgresql"
    for chunk in _chunks(list(events), BULK_CHUNK):
        if copy:  # one COPY, not an INSERT per event (`driver_bulk.insert_tuples`)
            PG.copy_events(conn, chunk)
            continue
        insert_rows(conn, _EVENTS, [
            {"workload_id": None, "subject": "", "from_state": "", "to_state": "", "attempt": 0,
             "message": "", "data": {}, **e}  # every key in every row: one executemany
            for e in chunk])


def last_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(Event.id), 0))).scalar_one())


def count_events(conn: Connection, after: int, upto: int
                 ) -> list[tuple[str, str, str, str, int]]:
    """Events of workloads with after < id <= upto, counted in SQL per (kind, reason, to_state,
    the workload's queue); the queue is "" where the workload row is gone."""
    q = (select(Event.kind, Event.reason, Event.to_state, WorkloadRow.queue, func.count())
         .select_from(Event)
         .join(WorkloadRow, WorkloadRow.id == Event.workload_id, isouter=True)
         .where(Event.id > after, Event.id <= upto, Event.workload_id.is_not(None))
         .group_by(Event.kind, Event.reason, Event.to_state, WorkloadRow.queue))
    return [(k, r, t, q or "", int(n)) for k, r, t, q, n in conn.execute(q)]


def list_events(
    conn: Connection, *, workload_id: str | None = None, after_id: int = 0, limit: int = 1000
) -> list[EventRecord]:
    q = select(Event).where(Event.id > after_id).order_by(Event.id).limit(limit)
    if workload_id is not None:
        q = q.where(Event.workload_id == workload_id)
    return [EventRecord.of(r) for r in conn.execute(q)]


def placements_of(conn: Connection, workload_id: str, attempt: int) -> list[Any]:
    q = (select(Placement).where(Placement.workload_id == workload_id,
                                 Placement.attempt == attempt).order_by(Placement.worker))
    return list(conn.execute(q))
