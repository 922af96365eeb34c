"""Price rules and metered usage in the store: small functions over one Connection.

The caller owns the transaction. Usage rows are written from lifecycle events by
`corral.control.accounting`: `record_start` when an attempt is launched (idempotent: a row that
exists is left alone), `record_end` when it ends (only an open row is closed, so a replay cannot
move an end). Reading turns rows back into the ledger's own `WorkerStarted`/`WorkerEnded`
events, so metering is the ledger's pure `MeterLog`, not a second implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Select,
    Table,
    bindparam,
    cast,
    delete,
    insert,
    or_,
    select,
    update,
)

from corral.ledger import (
    EndReason,
    MeterLog,
    PriceRule,
    UsageRecord,
    WorkerEnded,
    WorkerStarted,
)
from corral.ledger.instants import Instant, to_instant
from corral.store import pg_bulk
from corral.store.ledger_tables import LedgerPrice, LedgerUsage

__all__ = [
    "PriceRow",
    "add_price",
    "close_attempt_rows",
    "delete_price",
    "list_prices",
    "record_end",
    "record_ends",
    "record_start",
    "replace_pool_prices",
    "started_of",
    "usage_records",
    "usage_row",
]


@dataclass(frozen=True, slots=True)
class PriceRow:
    id: int
    rule: PriceRule
    source: str  # "pool" | "api"


def _rule(r: Any) -> PriceRule:  # a row of ledger_prices
    return PriceRule.of(
        Decimal(r.price_per_gpu_hour), provider=r.provider or None, region=r.region or None,
        gpu_model=r.gpu_model or None, capacity_kind=r.capacity_kind or None,
        valid_from=None if r.valid_from is None else Decimal(r.valid_from),
        valid_until=None if r.valid_until is None else Decimal(r.valid_until))


def list_prices(conn: Connection) -> list[PriceRow]:
    rows = conn.execute(select(LedgerPrice).order_by(LedgerPrice.id))
    return [PriceRow(r.id, _rule(r), r.source) for r in rows]


def add_price(conn: Connection, rule: PriceRule, source: str, now: float) -> int:
    kind = "" if rule.capacity_kind is None else rule.capacity_kind.value
    return int(conn.execute(insert(LedgerPrice).values(
        provider=rule.provider or "", region=rule.region or "", gpu_model=rule.gpu_model or "",
        capacity_kind=kind, price_per_gpu_hour=str(rule.price_per_gpu_hour),
        valid_from=None if rule.valid_from is None else str(rule.valid_from),
        valid_until=None if rule.valid_until is None else str(rule.valid_until),
        source=source, created_at=now).returning(LedgerPrice.id)).scalar_one())


def delete_price(conn: Connection, price_id: int) -> bool:
    return conn.execute(delete(LedgerPrice).where(LedgerPrice.id == price_id)).rowcount == 1


def replace_pool_prices(conn: Connection, rules: Sequence[PriceRule], now: float) -> None:
    """Make the pool file's `prices:` current (admins' rules are kept)."""
    conn.execute(delete(LedgerPrice).where(LedgerPrice.source == "pool"))
    for rule in rules:
        add_price(conn, rule, "pool", now)


# --- usage ----------------------------------------------------------------------------------


def record_start(conn: Connection, started: WorkerStarted) -> bool:
    """Insert the usage row of one worker's attempt; False (nothing written) if it exists."""
    exists = conn.execute(select(LedgerUsage.worker).where(
        LedgerUsage.workload_id == started.workload_id, LedgerUsage.attempt == started.attempt,
        LedgerUsage.worker == started.worker)).first()
    if exists is not None:
        return False
    conn.execute(insert(LedgerUsage).values(**usage_row(started)))
    return True


def usage_row(started: WorkerStarted) -> dict[str, Any]:
    """The `ledger_usage` row of a worker's start (for bulk inserts)."""
    return {"workload_id": started.workload_id, "attempt": started.attempt,
            "worker": started.worker, "queue": started.queue, "user": started.user,
            "provider": started.provider, "region": started.region, "node": started.node,
            "gpu_model": started.gpu_model, "capacity_kind": started.capacity_kind.value,
            "milli": started.milli, "start": str(started.at), "end": None, "end_reason": "",
            "start_s": float(started.at)}


def record_end(conn: Connection, workload_id: str, attempt: int, at: Instant,
               reason: EndReason) -> int:
    """Close the open rows of an attempt at `at` (never before their start); returns how many."""
    rows = list(conn.execute(select(LedgerUsage.worker, LedgerUsage.start).where(
        LedgerUsage.workload_id == workload_id, LedgerUsage.attempt == attempt,
        LedgerUsage.end.is_(None))))
    for worker, start in rows:
        end = max(at, Decimal(start))
        conn.execute(update(LedgerUsage).where(
            LedgerUsage.workload_id == workload_id, LedgerUsage.attempt == attempt,
            LedgerUsage.worker == worker, LedgerUsage.end.is_(None),
        ).values(end=str(end), end_reason=reason.value))
    return len(rows)


def record_ends(conn: Connection, ends: Sequence[dict[str, Any]]) -> None:
    """`record_end` for many workers in one executemany: {"w", "a", "k", "end", "reason"} (the
    end already at or after the row's start); rows already closed are left alone."""
    if ends:
        conn.execute(update(LedgerUsage).where(
            LedgerUsage.workload_id == bindparam("w"), LedgerUsage.attempt == bindparam("a"),
            LedgerUsage.worker == bindparam("k"), LedgerUsage.end.is_(None),
        ).values(end=bindparam("end"), end_reason=bindparam("reason")), list(ends))


#: attempts closed per statement by `close_attempt_rows` off SQLite (two parameters each: well
#: under PostgreSQL's 65,535 bound parameters)
CLOSE_CHUNK = 5000


def close_attempt_rows(conn: Connection, ends: Sequence[tuple[str, int, Instant, EndReason]]
                       ) -> None:
    """Close every open row of each attempt (workload, attempt, end, reason) at its end, keyed by
    the attempt, where `record_ends` is one row update per worker. The caller checked that no
    open row of these attempts started after its end; rows already closed are left alone.

    SQLite: one executemany through the driver, each attempt found by the primary key's prefix.
    SQLite plans `(workload_id, attempt) IN (VALUES ...)` as a scan of the whole table per
    statement (EXPLAIN QUERY PLAN: SCAN ledger_usage), so closing a step's attempts cost what
    the table holds, every attempt ever run. PostgreSQL: one UPDATE ... FROM unnest(arrays)
    per distinct end and reason (the attempts a step stopped end at the step's moment), up to
    `CLOSE_CHUNK` attempts each (`corral.store.pg_bulk`: the ids also as `workload_id = ANY`,
    an Index Cond on the key's first column whatever the statistics say). Before ANALYZE has
    seen the rows a step inserted, the pairs' IN alone made PostgreSQL 15 walk the whole
    primary key testing each entry against every pair (0.49 s per 500 attempts over 60,000
    rows, 7.5 s of the 10,000 x 100,000 place step); the IN lists' 15,000 parameters were
    also converted one by one in Python by SQLAlchemy and psycopg."""
    if not ends:
        return
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_CLOSE_SQLITE, [(str(end), reason.value, workload_id, attempt)
                                             for workload_id, attempt, end, reason in ends])
        return
    groups: dict[tuple[str, str], dict[tuple[str, int], None]] = {}
    for workload_id, attempt, end, reason in ends:  # a pair given twice is sent once
        groups.setdefault((str(end), reason.value), {})[(workload_id, attempt)] = None
    table = LedgerUsage.__table__
    assert isinstance(table, Table)
    for (end_text, reason_text), attempts in groups.items():
        keys = list(attempts)
        for i in range(0, len(keys), CLOSE_CHUNK):
            chunk = keys[i:i + CLOSE_CHUNK]
            pg_bulk.update_keyed(conn, table, ("workload_id", "attempt"), ("end", "end_reason"),
                                 [[w for w, _ in chunk], [a for _, a in chunk],
                                  [end_text] * len(chunk), [reason_text] * len(chunk)],
                                 where='t."end" IS NULL')


_CLOSE_SQLITE = ('UPDATE ledger_usage SET "end" = ?, end_reason = ? '
                 'WHERE workload_id = ? AND attempt = ? AND "end" IS NULL')


def started_of(r: Any) -> WorkerStarted:
    """A `ledger_usage` row as the ledger's start event."""
    return WorkerStarted(r.workload_id, r.worker, r.attempt, Decimal(r.start), r.queue, r.user,
                         r.provider, r.region, r.node, r.gpu_model, r.capacity_kind, r.milli)


def usage_query(queues: Iterable[str] | None, workload_id: str | None, since: float | None,
                until: float | None, *, attempt: int | None = None) -> Select[Any]:
    """The `ledger_usage` rows of these queues, workload (and attempt) that may overlap
    [since, until): coarse in SQL, exact in the caller. A float of an exact time may round onto
    the window's edge (never across it), so the SQL keeps the edge and the caller's Decimals
    decide (`usage_records`, `usage_stream.stream_usage_records`: one filter, no drift)."""
    q = select(LedgerUsage)
    if queues is not None:
        q = q.where(LedgerUsage.queue.in_(list(queues)))
    if workload_id is not None:
        q = q.where(LedgerUsage.workload_id == workload_id)
    if attempt is not None:
        q = q.where(LedgerUsage.attempt == attempt)
    if since is not None:
        q = q.where(or_(LedgerUsage.end.is_(None), cast(LedgerUsage.end, Float) >= since))
    if until is not None:
        q = q.where(LedgerUsage.start_s <= until)
    return q


def usage_records(
    conn: Connection, now: Instant, *, queues: Iterable[str] | None = None,
    workload_id: str | None = None, attempt: int | None = None,
    since: float | None = None, until: float | None = None,
) -> tuple[UsageRecord, ...]:
    """Usage as the ledger's exact records (open attempts metered up to `now`).

    `since`/`until` (seconds since the epoch) keep the attempts whose usage overlaps
    [since, until), whole: `corral.ledger.usage_report(..., since=, until=)` cuts them at the
    window's edges."""
    log = MeterLog()
    for r in conn.execute(usage_query(queues, workload_id, since, until, attempt=attempt)):
        log.record(started_of(r))
        if r.end is not None:
            log.record(WorkerEnded(r.workload_id, r.worker, r.attempt, Decimal(r.end),
                                   EndReason(r.end_reason)))
    lo = None if since is None else to_instant(since, "since")
    hi = None if until is None else to_instant(until, "until")
    return tuple(u for u in log.usage(now)
                 if (lo is None or u.end > lo) and (hi is None or u.start < hi))
