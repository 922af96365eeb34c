"""The usage report grouped in the database: `GROUP BY` on SQLite and PostgreSQL, so that a
report's read costs its groups, not every usage row of its window (issue 14, "Money").

`corral.ledger.usage_report` cuts each record at the window's edges, at every midnight UTC and
at every price change, then groups the pieces. Most rows need no cut: an attempt that ended,
inside the window, on one UTC day, away from any price change. Those are summed in SQL by the
report's dimensions plus what prices them (provider, region, GPU model, capacity kind) and
their UTC day; their cost is the group's milli-GPU-seconds times the one rule that prices them
all. The others (open attempts, and those that cross or come within a second of a midnight, a
window edge or a price change) are few, and take the ledger's own path, record by record
(`usage_stream.stream_usage_records`). Both add into the same exact groups, so the rows are
those `usage_report` gives for the same records (a test holds them equal on both stores).

Exact sums. PostgreSQL sums `milli * (end - start)` as NUMERIC. SQLite has no decimal type:
its rows qualify only where both times are plain decimals with at most 9 places (the store
writes `repr(float)` of an epoch time: 7 at most), and it sums integers: the whole seconds and
each 3-digit part of the fraction apart, so no SUM can overflow 64 bits (a part is at most
milli x 999 per row). Worked example: 1 GPU (milli 1000) from 10.25 to 12.5 is whole seconds
2 x 1000 = 2000, and fractions (500 - 250) x 1000 = 250,000 thousandths: 2,250 milli-GPU-s.

The report stops at its (limit + 1)th group, as `usage_report(max_rows=)` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import closing
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Numeric,
    and_,
    case,
    cast,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from corral.core.model import MILLI_PER_GPU, CapacityKind
from corral.ledger import ReportRow, usage_report
from corral.ledger.errors import LedgerInputError
from corral.ledger.instants import Instant, utc_day
from corral.ledger.prices import SECONDS_PER_HOUR, PriceCatalog, PriceKey
from corral.ledger.reports import DIMENSIONS
from corral.store.ledger_rows import usage_query
from corral.store.ledger_tables import LedgerUsage
from corral.store.usage_stream import stream_usage_records

__all__ = ["grouped_usage"]

#: how near (seconds, as floats) a row may come to an edge and still be summed in SQL: the
#: float columns are within microseconds of the exact times, so a second is a wide margin
MARGIN_S = 1.0
#: the most price changes the SQL path steps around: each is one OR in the WHERE clause, and
#: SQLite refuses an expression tree deeper than 1,000 (hourly spot prices over a month are
#: ~720); past it, every row of the window is metered record by record, as before the SQL path
MAX_SQL_EDGES = 200
DAY_S = 86400
_PRICE_COLUMNS = ("provider", "region", "gpu_model", "capacity_kind")


def grouped_usage(
    conn: Connection, now: Instant, *, by: Sequence[str], catalog: PriceCatalog,
    queues: Iterable[str] | None = None, workload_id: str | None = None,
    since: float | None = None, until: float | None = None, max_rows: int,
) -> tuple[ReportRow, ...]:
    """`usage_report(records, by=by, catalog=catalog, since=, until=, max_rows=)` of the
    `ledger_usage` rows of these queues (or workload), read grouped: the same rows, sorted by
    group. More than `max_rows` groups is a `LedgerInputError` on `limit`."""
    dims = _dimensions(by)
    queues = None if queues is None else list(queues)
    # rows inside the window are cut only by the price changes inside it
    edges = [e for e in _edges(catalog)
             if (since is None or e >= since) and (until is None or e <= until)]
    simple = (_summable(conn.dialect.name, since, until, edges)
              if len(edges) <= MAX_SQL_EDGES else None)  # else every row one by one
    acc = _Groups(max_rows)
    with closing(stream_usage_records(
            conn, now, queues=queues, workload_id=workload_id, since=since, until=until,
            where=None if simple is None else not_(simple))) as records:
        for row in usage_report(records, by=dims, catalog=catalog, since=since, until=until,
                                max_rows=max_rows):
            acc.add(row.group, row.gpu_seconds, row.cost or Fraction(0))
    if simple is None:
        return acc.rows()
    query = _sums(conn.dialect.name, dims, edges, usage_query(queues, workload_id, since, until)
                  .where(simple))
    with conn.execute(query.execution_options(yield_per=2000)) as rows:
        for r in rows:
            key = PriceKey(r.provider, r.region, r.gpu_model, CapacityKind(r.capacity_kind))
            milli_s = _milli_seconds(conn.dialect.name, r)
            rule = catalog.rule_at(key, Decimal(repr(r.at)))
            rate = Fraction(rule.price_per_gpu_hour) / (MILLI_PER_GPU * SECONDS_PER_HOUR)
            acc.add(tuple(_value(r, d) for d in dims), milli_s.scaleb(-3),
                    Fraction(milli_s) * rate)
    return acc.rows()


class _Groups:
    """Exact sums by report group, refusing the (max_rows + 1)th group."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.seconds: dict[tuple[str, ...], Decimal] = {}
        self.costs: dict[tuple[str, ...], Fraction] = {}

    def add(self, group: tuple[str, ...], seconds: Decimal, cost: Fraction) -> None:
        if group not in self.seconds and len(self.seconds) >= self.max_rows:
            raise LedgerInputError(
                "limit", f"the report has more than {self.max_rows:,} rows",
                "narrow it with since/until or queue, or group by fewer dimensions")
        self.seconds[group] = self.seconds.get(group, Decimal(0)) + seconds
        self.costs[group] = self.costs.get(group, Fraction(0)) + cost

    def rows(self) -> tuple[ReportRow, ...]:
        return tuple(ReportRow(g, self.seconds[g], self.costs[g]) for g in sorted(self.seconds))


def _dimensions(by: Sequence[str]) -> tuple[str, ...]:
    dims = tuple(by)
    if not dims or len(set(dims)) != len(dims) or any(d not in DIMENSIONS for d in dims):
        raise LedgerInputError("by", f"{list(dims)} is not a list of distinct report dimensions",
                               f"choose from {', '.join(DIMENSIONS)}")
    return dims


def _edges(catalog: PriceCatalog) -> list[float]:
    """Every instant a price may change at (any rule's start or end)."""
    found = {t for r in catalog.rules for t in (r.valid_from, r.valid_until) if t is not None}
    return sorted(float(t) for t in found)


def _end_s() -> ColumnElement[Any]:
    return cast(LedgerUsage.end, Float)


def _summable(dialect: str, since: float | None, until: float | None,
              edges: list[float]) -> ColumnElement[bool]:
    """The rows summed in SQL: ended, after their start, on one UTC day, inside the window and
    away from every price change in the window (`edges`, each by MARGIN_S), with times SQL
    sums exactly."""
    start, end = LedgerUsage.start_s, _end_s()
    parts = [LedgerUsage.end.is_not(None), end > start + MARGIN_S,
             _whole(dialect, LedgerUsage.start) // DAY_S == _whole(dialect, LedgerUsage.end) // DAY_S]
    if since is not None:
        parts.append(start >= since + MARGIN_S)
    if until is not None:
        parts.append(end <= until - MARGIN_S)
    parts += [or_(end <= e - MARGIN_S, start >= e + MARGIN_S) for e in edges]
    if dialect == "sqlite":
        parts += [_plain(LedgerUsage.start), _plain(LedgerUsage.end)]
    return and_(*parts)


def _plain(text: Any) -> ColumnElement[bool]:
    """SQLite: a non-negative decimal without exponent, with at most 9 places."""
    dot = func.instr(text, ".")
    return and_(not_(text.like("%e%")), not_(text.like("-%")),
                or_(dot == 0, func.length(text) - dot <= 9))


def _whole(dialect: str, text: Any) -> ColumnElement[Any]:
    """The whole seconds of a time written as text (SQLite's CAST reads the leading digits)."""
    if dialect == "sqlite":
        return cast(text, Integer)
    return func.floor(cast(text, _numeric()))


def _numeric() -> Numeric[Decimal]:
    return Numeric(asdecimal=True)


def _fraction(text: Any, part: int) -> ColumnElement[Any]:
    """SQLite: the `part`th group of 3 digits (0, 1, 2) of a time's first 9 decimal places."""
    dot = func.instr(text, ".")
    padded = func.substr(text, dot + 1).op("||")(literal("000000000"))
    nine = cast(func.substr(padded, 1, 9), Integer)
    digits: ColumnElement[Any] = case((dot == 0, 0), else_=nine)
    chunk: ColumnElement[Any] = (digits // 10 ** (6 - 3 * part)) % 1000
    return chunk


def _sums(dialect: str, dims: tuple[str, ...], edges: list[float], base: Any) -> Any:
    """Per report group, price key, day and span between price changes: the exact
    milli-GPU-seconds (SQLite: in parts) and the earliest start (a moment to price the group
    at: its rows share one price)."""
    u = base.subquery()
    day = (_whole(dialect, u.c.start) // DAY_S).label("day_index")
    span = (case(*((u.c.start_s < e, i) for i, e in enumerate(edges)), else_=len(edges))
            if edges else literal(0)).label("span")
    keys = {d: u.c.workload_id if d == "workload" else u.c[d] for d in dims if d != "day"}
    group = [*(u.c[c] for c in _PRICE_COLUMNS), day, span,
             *(col for d, col in keys.items() if d not in _PRICE_COLUMNS)]
    labelled = [*(u.c[c] for c in _PRICE_COLUMNS), day, span,
                *(col.label(f"dim_{d}") for d, col in keys.items() if d not in _PRICE_COLUMNS)]
    if dialect == "sqlite":
        sums = [func.sum(u.c.milli * (cast(u.c.end, Integer) - cast(u.c.start, Integer)))
                .label("whole"),
                *(func.sum(u.c.milli * (_fraction(u.c.end, i) - _fraction(u.c.start, i)))
                  .label(f"part{i}") for i in range(3))]
    else:
        sums = [func.sum(u.c.milli * (cast(u.c.end, _numeric()) - cast(u.c.start, _numeric())))
                .label("whole")]
    return select(*labelled, *sums, func.min(u.c.start_s).label("at")).group_by(*group)


def _milli_seconds(dialect: str, r: Any) -> Decimal:
    if dialect != "sqlite":
        return Decimal(r.whole)
    return (Decimal(r.whole) + Decimal(r.part0).scaleb(-3) + Decimal(r.part1).scaleb(-6)
            + Decimal(r.part2).scaleb(-9))


def _value(r: Any, dimension: str) -> str:
    if dimension == "day":
        return utc_day(Decimal(int(r.day_index) * DAY_S)).isoformat()
    if dimension == "capacity_kind":
        return str(CapacityKind(r.capacity_kind))
    if dimension in _PRICE_COLUMNS:
        return str(getattr(r, dimension))
    return str(getattr(r, f"dim_{dimension}"))
