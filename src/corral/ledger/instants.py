"""How the ledger reads time: seconds since the Unix epoch, exactly.

Like `corral.core`, the ledger never reads a clock: every `now`, `at`, start and stop is passed
in as seconds since 1970-01-01T00:00:00Z, as an int, a float or a Decimal. It is read into an
exact `Decimal`:

- an int or a Decimal is taken as is;
- a float is taken through its shortest repr (`repr(0.1) == '0.1'`), so 0.1 s means exactly
  0.1 s and not 0.1000000000000000055511151231257827 s; two callers passing the same float get
  the same Decimal, which keeps replayed events identical.

Calendar days (for reports) are UTC days: day boundaries are multiples of 86 400 s.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from fractions import Fraction

from corral.ledger.errors import LedgerInputError

__all__ = [
    "SECONDS_PER_DAY",
    "Instant",
    "TimeLike",
    "next_midnight",
    "to_instant",
    "utc_day",
]

SECONDS_PER_DAY = 86_400
Instant = Decimal
TimeLike = int | float | Decimal


def to_instant(value: object, field: str) -> Instant:
    """Read a time (seconds since the epoch) exactly; refuse bools, strings, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise LedgerInputError(
            field,
            f"{value!r} is not a time",
            "pass seconds since the Unix epoch as an int, float or Decimal",
        )
    result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not result.is_finite():
        raise LedgerInputError(field, f"{value!r} is not finite", "pass a finite time")
    return result


def utc_day(instant: Instant) -> dt.date:
    """The UTC calendar day an instant falls in (pure arithmetic, no clock, no time zone DB)."""
    days = math.floor(Fraction(instant) / SECONDS_PER_DAY)
    return dt.date(1970, 1, 1) + dt.timedelta(days=days)


def next_midnight(instant: Instant) -> Instant:
    """The first UTC midnight strictly after `instant`."""
    return Instant((math.floor(Fraction(instant) / SECONDS_PER_DAY) + 1) * SECONDS_PER_DAY)
