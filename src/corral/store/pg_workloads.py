"""The PostgreSQL forms of `corral.store.workloads`' bulk writes: one statement per chunk
where an executemany sent one per row.

At 10,000 nodes x 100,000 workloads the step that ends and places 10,000 jobs sent 31,182
UPDATEs of workloads, 10,000 of placements, 31,182 event INSERTs and 10,591 placement INSERTs
one by one (psycopg's executemany), after SQLAlchemy had processed every parameter of every
row in Python. Here updates go as one `UPDATE ... FROM unnest(arrays)` and inserts as one
COPY per chunk (`corral.store.pg_bulk`, `driver_bulk.insert_tuples`): the same rows, in the
same order (events and placements get their ids as the INSERTs would), in the caller's
transaction. `workloads` keeps the chunking (`BULK_CHUNK`) and SQLite's paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection

from corral.core.model import WorkerAssignment
from corral.store import pg_bulk
from corral.store.driver_bulk import binder, insert_tuples
from corral.store.schema import Event, Placement, WorkloadRow

__all__ = ["arrays_fit", "copy_events", "copy_placements", "delete_placements",
           "distinct_workers", "set_placement_states", "update_versioned"]

_EVENTS: Any = Event.__table__
_WORKLOADS: Any = WorkloadRow.__table__
_PLACEMENTS: Any = Placement.__table__

#: the workload columns an update sends as arrays: all but JSON (the spec)
_ARRAYS = frozenset(c.name for c in _WORKLOADS.c if not isinstance(c.type, JSON))


def arrays_fit(conn: Connection, keys: Sequence[str], rows: Sequence[dict[str, Any]]) -> bool:
    """Whether `update_versioned` can write these rows: PostgreSQL, no JSON column among
    `keys`, and no id twice (an UPDATE ... FROM would write a repeated id once; the
    executemany wrote, or refused, each in order)."""
    return (conn.dialect.name == "postgresql" and _ARRAYS.issuperset(keys)
            and pg_bulk.distinct([r["id"] for r in rows]))


def update_versioned(conn: Connection, keys: Sequence[str], rows: Sequence[dict[str, Any]],
                     stamp: int, bump: bool) -> int:
    """`workloads.update_many_versioned` for one chunk: each row's `keys` written where its id
    is still at its version, stamped `stamp` (and the version bumped, if `bump`). Returns how
    many rows it wrote."""
    extra = f"change_seq = {int(stamp)}" + (", version = t.version + 1" if bump else "")
    return pg_bulk.update_keyed(conn, _WORKLOADS, ("id", "version"), keys,
                                [[r[k] for r in rows] for k in ("id", "version", *keys)], extra)


def distinct_workers(rows: Sequence[tuple[Any, ...]]) -> bool:
    """Whether no (workload, attempt, worker) comes twice among `set_placement_states`' rows."""
    return pg_bulk.distinct([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def set_placement_states(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """`workloads.set_many_placement_states` for one chunk of distinct workers: (workload,
    attempt, worker, state, exit code, reason)."""
    pg_bulk.update_keyed(conn, _PLACEMENTS, ("workload_id", "attempt", "worker"),
                         ("state", "exit_code", "reason"), list(zip(*rows, strict=True)))


def delete_placements(conn: Connection, keys: Sequence[tuple[str, int]]) -> None:
    """The placements of these (workload, attempt)s, deleted in one statement."""
    pg_bulk.delete_keyed(conn, _PLACEMENTS, ("workload_id", "attempt"),
                         [[w for w, _ in keys], [a for _, a in keys]])


#: the placement columns a new attempt's rows set (`exit_code` stays NULL)
_PLACEMENT_COLUMNS = ("workload_id", "attempt", "worker", "node_id", "devices",
                      "milli_per_device", "gpu_memory_mib_per_device", "state", "reason")


def copy_placements(conn: Connection,
                    placed: Sequence[tuple[str, int, Sequence[WorkerAssignment]]]) -> None:
    """The workers of (workload, attempt, assignments) as `planned` placements, one COPY."""
    json = binder(conn, _PLACEMENTS.c.devices)
    insert_tuples(conn, _PLACEMENTS, _PLACEMENT_COLUMNS, [
        (w, attempt, a.worker, a.node_id, json(list(a.devices)), a.milli_per_device,
         a.gpu_memory_mib_per_device, "planned", "")
        for w, attempt, assignments in placed for a in assignments])


#: the events' columns `copy_events` writes, `data` last (every one but the generated id),
#: and the defaults of those an event may leave out (`workloads.append_event`'s arguments)
_EVENT_COLUMNS = ("at", "kind", "workload_id", "subject", "from_state", "to_state", "attempt",
                  "reason", "message", "data")
_EVENT_DEFAULTS: dict[str, Any] = {"workload_id": None, "subject": "", "from_state": "",
                                   "to_state": "", "attempt": 0, "message": "", "data": {}}
_EVENT_PLAIN = itemgetter(*_EVENT_COLUMNS[:-1])


def copy_events(conn: Connection, events: Sequence[dict[str, Any]]) -> None:
    """`events` in one COPY, in order (their ids drawn as an INSERT's would be), `data` as
    SQLAlchemy's JSON type binds it (the empty dict of most events bound once)."""
    json = binder(conn, _EVENTS.c.data)
    empty = json({})
    full = [{**_EVENT_DEFAULTS, **e} for e in events]
    insert_tuples(conn, _EVENTS, _EVENT_COLUMNS,
                  [(*_EVENT_PLAIN(e), empty if e["data"] == {} else json(e["data"]))
                   for e in full])
