"""Money: exact Decimal amounts in one currency per ledger, and the one rounding rule.

Contract (the whole ledger follows it):

- Money is `decimal.Decimal`, never float. Inputs may be Decimal, int or str; a float is refused
  because 0.1 + 0.2 != 0.3 in binary and a ledger must add up to the cent.
- One ledger, one currency. `Currency("CRD")` (credits) is the default; the code is only a label,
  there is no conversion anywhere.
- Balances and postings carry exactly `places` decimal places (2 by default): a posting of
  1.005 is refused rather than silently rounded.
- Metering and pricing keep full precision: GPU-seconds are exact Decimals and costs are exact
  `fractions.Fraction`s (a price per GPU-hour divided by 3600 is not a finite decimal).
- Rounding happens at exactly two points, each once per amount:
  * a **charge** (settlement of real cost) rounds the exact total ROUND_HALF_EVEN
    ("banker's rounding": 0.125 -> 0.12, 0.135 -> 0.14), so rounding errors do not drift in
    one direction over many settlements;
  * a **hold** (an estimate reserved up front) rounds UP (ROUND_CEILING), so that a hold always
    covers the estimate it was computed from.

Worked example: 3 workers x 250 milli-GPU x 5400 s at 2.40 CRD per GPU-hour is
0.75 GPU x 1.5 h x 2.40 = 2.7 CRD exactly; at 2.45 it is 2.75625, charged as 2.76 (half-even
only breaks exact ties) and held as 2.76.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from corral.ledger.errors import LedgerInputError

__all__ = [
    "DEFAULT_CURRENCY",
    "Currency",
    "Exact",
    "MoneyLike",
    "to_decimal",
]

MoneyLike = Decimal | int | str
Exact = Fraction | Decimal | int
#: the largest amount is below 10**15 (a quadrillion), so that it, at up to 12 places, keeps
#: within the 28 digits of Python's default decimal context
MAX_AMOUNT = Decimal(10) ** 15


def to_decimal(value: object, field: str) -> Decimal:
    """Read a money-like input exactly. Refuses float, bool, NaN and infinities with a clear error."""
    if isinstance(value, (bool, float)):
        raise LedgerInputError(
            field,
            f"{value!r} is a {type(value).__name__}",
            "pass money as a Decimal, an int or a string such as '12.50' (never a float)",
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except ArithmeticError:
            raise LedgerInputError(
                field, f"{value!r} is not a number", "write a decimal such as '12.50'"
            ) from None
    else:
        raise LedgerInputError(
            field, f"{value!r} is not money", "pass a Decimal, an int or a string such as '12.50'"
        )
    if not result.is_finite():
        raise LedgerInputError(field, f"{value!r} is not finite", "pass a finite amount")
    return result


_QUANTA = {places: Decimal(1).scaleb(-places) for places in range(13)}  # 0..12, as checked


@dataclass(frozen=True, slots=True)
class Currency:
    """The ledger's single currency: a code, a noun for sentences, and a balance's decimal places."""

    code: str = "CRD"
    places: int = 2
    name: str = "credits"  # the plural noun used in sentences ("needs 412.50 credits held")

    def __post_init__(self) -> None:
        if not self.code or not self.code.strip():
            raise LedgerInputError("currency.code", "is empty", "name the currency, e.g. 'CRD'")
        if not 0 <= self.places <= 12:
            raise LedgerInputError(
                "currency.places", f"{self.places} is out of range", "use 0..12 decimal places"
            )

    @property
    def quantum(self) -> Decimal:
        """The smallest amount a balance can hold (0.01 for two places)."""
        return _QUANTA[self.places]

    def amount(self, value: object, field: str) -> Decimal:
        """An exact amount with no more than `places` decimals, normalised to exactly `places`."""
        exact = to_decimal(value, field)
        if abs(exact) >= MAX_AMOUNT:  # "1e400" would overflow the 28-digit decimal context
            raise LedgerInputError(
                field, f"{value!r} is too large", f"amounts must stay below {MAX_AMOUNT:,}")
        quantised = exact.quantize(self.quantum)
        if quantised != exact:
            raise LedgerInputError(
                field,
                f"{exact} has more than {self.places} decimal places",
                f"round it to {self.places} places before posting (e.g. {quantised})",
            )
        return quantised

    def charge(self, exact: Exact) -> Decimal:
        """Round an exact cost to a charge: ROUND_HALF_EVEN, computed without double rounding."""
        # on the numerator and denominator as they are: scaling the numerator without
        # reducing the fraction gives the same quotient, and a remainder scaled like the
        # denominator, so the same comparisons (a settlement burst rounds 10,000 costs)
        value = exact if isinstance(exact, Fraction) else Fraction(exact)
        numerator, denominator = value.numerator * 10**self.places, value.denominator
        sign = -1 if numerator < 0 else 1
        q, r = divmod(abs(numerator), denominator)
        if 2 * r > denominator or (2 * r == denominator and q % 2 == 1):
            q += 1
        return self._from_units(sign * q)

    def hold(self, exact: Exact) -> Decimal:
        """Round an exact estimate to a hold: always up (ROUND_CEILING), so the hold covers it."""
        scaled = Fraction(exact) * 10**self.places
        return self._from_units(-(-scaled.numerator // scaled.denominator))

    def format(self, amount: Decimal) -> str:
        """'412.50' -- the amount at the currency's places, without the code."""
        return str(amount.quantize(self.quantum))

    def _from_units(self, units: int) -> Decimal:
        return Decimal(units).scaleb(-self.places)


DEFAULT_CURRENCY = Currency()
