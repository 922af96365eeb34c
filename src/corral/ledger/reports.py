"""Reports: usage and cost grouped by queue, user, provider, GPU model, day (and more); CSV.

`usage_report(records, by=("queue", "day"), catalog=..., since=..., until=...)` groups exact
usage records. Each record is cut into pieces, in one place (`_pieces`): at the report's window
[since, until), so that an attempt running across an edge counts only its time inside, and at
every midnight UTC inside it, so that per-day figures are exact. Each row keeps exact figures
(GPU-seconds as a Decimal, cost as a Fraction).

Worked example: one GPU from 22:00 to 02:00 the next day, reported with since = 23:00 and
until = 01:00, is two pieces, 23:00-24:00 and 00:00-01:00: 3600 GPU-seconds on each day.

The CSV writes GPU-seconds exactly and rounds the rest for people: GPU-hours to 6 places and
cost to the currency's places, both half-even, row by row.
A column of rounded rows may therefore differ from the rounded total by a few cents; the
ledger's charges come from settlement, never from a report.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Final, TextIO

from corral.ledger.errors import LedgerInputError
from corral.ledger.instants import Instant, TimeLike, next_midnight, to_instant, utc_day
from corral.ledger.metering import UsageRecord, usage_cost
from corral.ledger.money import DEFAULT_CURRENCY, Currency
from corral.ledger.prices import PriceCatalog

__all__ = ["DIMENSIONS", "ReportRow", "usage_report", "write_csv"]

DIMENSIONS: Final = (
    "queue",
    "user",
    "provider",
    "region",
    "gpu_model",
    "capacity_kind",
    "node",
    "workload",
    "day",
)
HOURS_PLACES = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One group: its values for the report's dimensions, exact usage and exact cost."""

    group: tuple[str, ...]
    gpu_seconds: Decimal
    cost: Fraction | None  # None when the report was made without a price catalog

    @property
    def gpu_hours(self) -> Decimal:
        return (self.gpu_seconds / 3600).quantize(HOURS_PLACES)


def usage_report(
    records: Iterable[UsageRecord],
    *,
    by: Sequence[str] = ("queue", "day"),
    catalog: PriceCatalog | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    max_rows: int | None = None,
) -> tuple[ReportRow, ...]:
    """Group usage by the dimensions `by` (any of DIMENSIONS), sorted by group.

    `since`/`until` (seconds since the epoch, either may be None for an open end) keep only the
    usage inside [since, until): an attempt that started before `since` or ends after `until`
    counts its GPU-seconds and cost inside the window only.

    `max_rows`: a report that would have more rows is refused (`LedgerInputError` on `limit`)
    as soon as its (max_rows + 1)th group appears; `records` is read no further (an API reads
    them from the database as they come: `corral.store.usage_stream`)."""
    dims = _check_dimensions(by)
    window = _window(since, until)
    seconds: dict[tuple[str, ...], Decimal] = {}
    costs: dict[tuple[str, ...], Fraction] = {}
    for piece in _pieces(records, *window):
        group = tuple(_value(piece, d) for d in dims)
        if max_rows is not None and group not in seconds and len(seconds) >= max_rows:
            raise LedgerInputError(
                "limit", f"the report has more than {max_rows:,} rows",
                "narrow it with since/until or queue, or group by fewer dimensions")
        seconds[group] = seconds.get(group, Decimal(0)) + piece.gpu_seconds
        if catalog is not None:
            costs[group] = costs.get(group, Fraction(0)) + usage_cost(piece, catalog)
    return tuple(
        ReportRow(group, seconds[group], costs[group] if catalog is not None else None)
        for group in sorted(seconds)
    )


def write_csv(
    rows: Iterable[ReportRow],
    stream: TextIO,
    *,
    by: Sequence[str] = ("queue", "day"),
    currency: Currency = DEFAULT_CURRENCY,
) -> None:
    """Write rows as CSV: the `by` columns, gpu_seconds, gpu_hours, cost, currency."""
    dims = _check_dimensions(by)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*dims, "gpu_seconds", "gpu_hours", "cost", "currency"])
    for row in rows:
        if len(row.group) != len(dims):
            raise LedgerInputError("by", f"rows have {len(row.group)} groups", "pass the same by")
        cost = "" if row.cost is None else currency.format(currency.charge(row.cost))
        writer.writerow([*row.group, _exact(row.gpu_seconds), row.gpu_hours, cost, currency.code])


def _exact(value: Decimal) -> str:
    """An exact Decimal without exponent or trailing zeros: 64800.000 -> '64800', 0.20 -> '0.2'."""
    text = format(value, "f")  # no precision given: exact, never rounded by the context
    return text.rstrip("0").rstrip(".") if "." in text else text


def _window(since: TimeLike | None, until: TimeLike | None
            ) -> tuple[Instant | None, Instant | None]:
    lo = None if since is None else to_instant(since, "since")
    hi = None if until is None else to_instant(until, "until")
    if lo is not None and hi is not None and hi <= lo:
        raise LedgerInputError("until", f"{hi} is not after since {lo}",
                               "give a window that ends after it starts")
    return lo, hi


def _pieces(records: Iterable[UsageRecord], since: Instant | None,
            until: Instant | None) -> Iterator[UsageRecord]:
    """Each record's part inside [since, until), cut at every midnight UTC (a day each)."""
    for record in records:
        cursor = record.start if since is None else max(record.start, since)
        end = record.end if until is None else min(record.end, until)
        while cursor < end:
            stop = min(end, next_midnight(cursor))
            piece = record.clipped(cursor, stop)
            if piece is not None:
                yield piece
            cursor = stop


def _value(record: UsageRecord, dimension: str) -> str:
    if dimension == "day":
        return utc_day(record.start).isoformat()
    if dimension == "workload":
        return record.workload_id
    return str(getattr(record, dimension))


def _check_dimensions(by: Sequence[str]) -> tuple[str, ...]:
    dims = tuple(by)
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown or not dims or len(set(dims)) != len(dims):
        raise LedgerInputError(
            "by",
            f"{list(dims)} is not a list of distinct report dimensions",
            f"choose from {', '.join(DIMENSIONS)}",
        )
    return dims
