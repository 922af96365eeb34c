"""The change feed: every write to a workload or a node stamps the row with a growing number.

    writer (any process)                        reader (the control loop)
    BEGIN                                       SELECT ... WHERE change_seq > last_seen
      take the feed's lock (PostgreSQL)           ORDER BY change_seq
      n = max(change_seq) + 1                   last_seen = the largest change_seq read
      UPDATE workloads SET ..., change_seq = n
    COMMIT

A reader that remembers the largest number it has read asks only for rows above it, and so
reads what changed, not the whole table. That is only sound if numbers become visible in the
order they were drawn: a writer must not commit a number below one another writer has already
committed. SQLite runs one writer at a time (`BEGIN IMMEDIATE`), so that holds there by itself;
on PostgreSQL the writer takes a transaction-scoped advisory lock first, released at its commit,
so the next writer draws its number only after the previous one is visible.

Rows and numbers: `workloads.change_seq` and `nodes.change_seq` each count on their own (a max
per table, read through its index). Rows written before the feed existed carry 0; a reader
starts with a full read.

**What this process wrote** (issue 16): a reader in the same process need not read back the
rows it has just written. Each versioned update of workloads notes, in its transaction
(`Store.write` gives it a list under `WRITES_KEY`), what it wrote: the statement's number, and
per row the version it was guarded by and the values it set (`RowWrite`); only a statement that
wrote every row it was given is noted, and nothing of a transaction that did not commit reaches
a reader. The reader (`corral.control.live_state`) then reads from the store only the rows whose
number is none of the noted ones (another process's writes, new submissions) and rebuilds the
others from what it held and what was noted, provided the versions chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, func, select, text
from sqlalchemy.sql import ClauseElement

from corral.store.schema import NodeRow, WorkloadRow

__all__ = ["FEED_LOCK_KEY", "INSERTS_KEY", "WRITES_KEY", "RowWrite", "next_node_seq",
           "next_workload_seq", "note_inserts", "note_writes", "plain"]

#: PostgreSQL advisory lock key of the feed's writers ("feed" in ASCII)
FEED_LOCK_KEY: Final = 0x66656564
#: the key of `Connection.info` under which a write transaction collects its `RowWrite`s
WRITES_KEY: Final = "corral.workload_writes"
#: the key of `Connection.info` set when a write transaction inserted workloads (`note_inserts`)
INSERTS_KEY: Final = "corral.workload_inserts"


@dataclass(frozen=True, slots=True)
class RowWrite:
    """One workload row as one statement wrote it: `stamp` (the statement's change number),
    the `version` its WHERE clause required, whether it bumped it, and the columns it set."""

    stamp: int
    id: str
    version: int
    bump: bool
    values: Mapping[str, Any]


def note_writes(conn: Connection, stamp: int, rows: Iterable[tuple[str, int, Mapping[str, Any]]],
                bump: bool) -> None:
    """Note, in a transaction of `Store.write`, that one statement numbered `stamp` wrote each
    of `rows` (id, version guarded by, values set; a value for a column that is not a record
    field, or for `id` and `version`, is passed over by readers). Call it only when every row
    was written, with plain values: a value that is an SQL expression is not known here
    (`plain` tells), and such a statement's rows are read back instead."""
    sink = conn.info.get(WRITES_KEY)
    if sink is None or conn.in_nested_transaction():  # a savepoint may roll back alone
        return
    notes = [RowWrite(stamp, wid, version, bump, values) for wid, version, values in rows]
    if len({n.id for n in notes}) == len(notes):  # one row once: else it is read back
        sink.extend(notes)


def note_inserts(conn: Connection) -> None:
    """Note, in a transaction of `Store.write`, that it inserted workloads: once it commits, its
    subscribers are called (with its noted writes, perhaps none) so that a reader waiting for
    work (the control loop) sees a new submission at once. The new rows themselves are not
    noted: readers read them from the feed. A savepoint that rolls back leaves the note set;
    the cost is one needless wake-up."""
    if WRITES_KEY in conn.info:
        conn.info[INSERTS_KEY] = True


def plain(values: Mapping[str, Any]) -> bool:
    """Whether every value is a value, not an SQL expression computed by the database."""
    return not any(isinstance(v, ClauseElement) for v in values.values())


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FEED_LOCK_KEY})


# built once: a statement built per call cost SQLAlchemy its construction and cache key each
# time (about a tenth of a one-submission commit's CPU; issue 14)
_LARGEST_WORKLOAD: Final = select(func.coalesce(func.max(WorkloadRow.change_seq), 0))
_LARGEST_NODE: Final = select(func.coalesce(func.max(NodeRow.change_seq), 0))


def _next(conn: Connection, largest: Any) -> int:
    _lock(conn)
    return int(conn.execute(largest).scalar_one()) + 1


def next_workload_seq(conn: Connection) -> int:
    """The number to stamp on the workloads this statement writes (inside a write txn)."""
    return _next(conn, _LARGEST_WORKLOAD)


def next_node_seq(conn: Connection) -> int:
    """The number to stamp on the nodes this statement writes (inside a write txn)."""
    return _next(conn, _LARGEST_NODE)
