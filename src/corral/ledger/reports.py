"""Reports: usage and cost grouped by queue, user, provider, GPU model, day (and more); CSV.

`usage_report(records, by=("queue", "day"), catalog=...)` groups exact usage records. Usage
that crosses midnight UTC is split at midnight, so per-day figures are exact. Each row keeps
exact figures (GPU-seconds as a Decimal, cost as a Fraction). The CSV writes GPU-seconds exactly
and rounds the rest for people: GPU-hours to 6 places and cost to the currency's places, both
half-even, row by row.
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
from corral.ledger.instants import next_midnight, utc_day
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
) -> tuple[ReportRow, ...]:
    """Group usage by the dimensions `by` (any of DIMENSIONS), sorted by group."""
    dims = _check_dimensions(by)
    seconds: dict[tuple[str, ...], Decimal] = {}
    costs: dict[tuple[str, ...], Fraction] = {}
    for piece in _split_by_day(records):
        group = tuple(_value(piece, d) for d in dims)
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


def _split_by_day(records: Iterable[UsageRecord]) -> Iterator[UsageRecord]:
    for record in records:
        cursor = record.start
        while cursor < record.end:
            stop = min(record.end, next_midnight(cursor))
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
