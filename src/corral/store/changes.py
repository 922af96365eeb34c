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
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Connection, func, select, text

from corral.store.schema import NodeRow, WorkloadRow

__all__ = ["FEED_LOCK_KEY", "next_node_seq", "next_workload_seq"]

#: PostgreSQL advisory lock key of the feed's writers ("feed" in ASCII)
FEED_LOCK_KEY: Final = 0x66656564


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FEED_LOCK_KEY})


def _next(conn: Connection, column: Any) -> int:
    _lock(conn)
    return int(conn.execute(select(func.coalesce(func.max(column), 0))).scalar_one()) + 1


def next_workload_seq(conn: Connection) -> int:
    """The number to stamp on the workloads this statement writes (inside a write txn)."""
    return _next(conn, WorkloadRow.change_seq)


def next_node_seq(conn: Connection) -> int:
    """The number to stamp on the nodes this statement writes (inside a write txn)."""
    return _next(conn, NodeRow.change_seq)
