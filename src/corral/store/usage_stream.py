"""The usage report's read: a window's `ledger_usage` rows streamed from the database a chunk
at a time, each turned into the ledger's exact record as it comes.

`GET /v1/ledger/usage?limit=N` refused a report of more than N rows, but only after the server
had read every matching row into memory (`ledger_rows.usage_records` returns them all, sorted)
and built every group (issue 14, "Money"; the review's finding). The report's rows are groups
(a queue's day, a provider), not usage rows, so the bound cannot be a SQL `LIMIT N + 1` on
the usage rows: one group may sum thousands of them. Instead the report consumes this stream
and stops at its (N + 1)th group (`corral.ledger.usage_report(max_rows=)`): what is held is
bounded by N groups and one chunk of rows, and a report over its limit stops reading there.

Each row is metered by the ledger's own `meter` (the same `MeterLog` checks as
`usage_records`: an end before its start is refused), so the records are the same ones.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from decimal import Decimal

from sqlalchemy import Connection
from sqlalchemy.sql.elements import ColumnElement

from corral.ledger import EndReason, UsageRecord, WorkerEnded, meter
from corral.ledger.instants import Instant, to_instant
from corral.store.ledger_rows import started_of, usage_query

__all__ = ["CHUNK_ROWS", "stream_usage_records"]

#: rows fetched from the database at a time (a server-side cursor on PostgreSQL)
CHUNK_ROWS = 2000


def stream_usage_records(
    conn: Connection, now: Instant, *, queues: Iterable[str] | None = None,
    workload_id: str | None = None, since: float | None = None, until: float | None = None,
    chunk: int = CHUNK_ROWS, where: ColumnElement[bool] | None = None,
) -> Generator[UsageRecord, None, None]:
    """The records `ledger_rows.usage_records` returns for the same arguments, in no particular
    order, read `chunk` rows at a time. The caller's transaction must stay open while it reads,
    and a caller that stops early closes the stream (`contextlib.closing`) before it ends: that
    closes the cursor (a server-side one on PostgreSQL). `where`: only the rows it also keeps
    (`usage_groups` streams those it does not sum in SQL)."""
    lo = None if since is None else to_instant(since, "since")
    hi = None if until is None else to_instant(until, "until")
    query = usage_query(queues, workload_id, since, until)
    if where is not None:
        query = query.where(where)
    query = query.execution_options(yield_per=chunk)
    with conn.execute(query) as rows:
        for r in rows:
            ended = () if r.end is None else (WorkerEnded(
                r.workload_id, r.worker, r.attempt, Decimal(r.end), EndReason(r.end_reason)),)
            for u in meter((started_of(r), *ended), now):
                if (lo is None or u.end > lo) and (hi is None or u.start < hi):
                    yield u

