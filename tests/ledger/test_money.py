from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.ledger import Currency, LedgerInputError, to_instant
from corral.ledger.instants import next_midnight, utc_day
from corral.ledger.money import to_decimal

CRD = Currency()


@pytest.mark.parametrize(
    ("exact", "charge", "hold"),
    [
        pytest.param(Fraction(1, 8), "0.12", "0.13", id="tie-rounds-to-even-down"),
        pytest.param(Decimal("0.135"), "0.14", "0.14", id="tie-rounds-to-even-up"),
        pytest.param(Fraction(2, 3), "0.67", "0.67", id="non-terminating"),
        pytest.param(Fraction(1, 300), "0.00", "0.01", id="tiny-hold-still-covers"),
        pytest.param(Decimal("2.75625"), "2.76", "2.76", id="worked-example"),
        pytest.param(Decimal("-0.125"), "-0.12", "-0.12", id="negative-tie"),
        pytest.param(0, "0.00", "0.00", id="zero"),
        pytest.param(Fraction(12345, 1), "12345.00", "12345.00", id="integer"),
    ],
)
def test_charge_is_half_even_and_hold_rounds_up(exact: Fraction, charge: str, hold: str) -> None:
    assert CRD.charge(exact) == Decimal(charge)
    assert str(CRD.charge(exact)) == charge
    assert CRD.hold(exact) == Decimal(hold)


def test_charge_avoids_double_rounding() -> None:
    # 0.134999...9 (30 nines) is below the tie and must round down to 0.13; rounding it to 28
    # significant digits first would make it the tie 0.135, which half-even takes up to 0.14.
    just_below_tie = Fraction(135, 1000) - Fraction(1, 10**33)
    assert CRD.charge(just_below_tie) == Decimal("0.13")
    assert CRD.charge(Fraction(135, 1000) + Fraction(1, 10**33)) == Decimal("0.14")


@pytest.mark.parametrize(
    ("value", "field_in_message"),
    [
        pytest.param(0.1, "float", id="float"),
        pytest.param(True, "bool", id="bool"),
        pytest.param("abc", "not a number", id="garbage-string"),
        pytest.param("NaN", "not finite", id="nan"),
        pytest.param(Decimal("Infinity"), "not finite", id="infinity"),
        pytest.param([1], "not money", id="list"),
    ],
)
def test_to_decimal_refuses_bad_money(value: object, field_in_message: str) -> None:
    with pytest.raises(LedgerInputError, match=field_in_message) as err:
        to_decimal(value, "amount")
    assert err.value.field == "amount"


def test_amount_refuses_more_places_than_the_currency() -> None:
    with pytest.raises(LedgerInputError, match=r"more than 2 decimal places.*1\.00"):
        CRD.amount("1.005", "amount")
    assert str(CRD.amount("7", "amount")) == "7.00"
    assert str(Currency("JPY", places=0).amount(12, "amount")) == "12"


@pytest.mark.parametrize(
    ("code", "places"),
    [pytest.param("", 2, id="empty-code"), pytest.param("CRD", 13, id="too-many-places")],
)
def test_currency_validates(code: str, places: int) -> None:
    with pytest.raises(LedgerInputError):
        Currency(code, places)


@pytest.mark.parametrize(
    ("value", "exact"),
    [
        pytest.param(0.1, "0.1", id="float-via-shortest-repr"),
        pytest.param(1_700_000_000.25, "1700000000.25", id="epoch-float"),
        pytest.param(42, "42", id="int"),
        pytest.param(Decimal("3.5"), "3.5", id="decimal"),
    ],
)
def test_to_instant_reads_time_exactly(value: float | int | Decimal, exact: str) -> None:
    assert to_instant(value, "at") == Decimal(exact)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("10", id="string"),
        pytest.param(True, id="bool"),
        pytest.param(float("nan"), id="nan"),
    ],
)
def test_to_instant_refuses_non_times(value: object) -> None:
    with pytest.raises(LedgerInputError, match=r"^at: "):
        to_instant(value, "at")


@pytest.mark.parametrize(
    ("instant", "day", "midnight"),
    [
        pytest.param("0", "1970-01-01", 86_400, id="epoch"),
        pytest.param("86399.999", "1970-01-01", 86_400, id="last-instant-of-day"),
        pytest.param("86400", "1970-01-02", 172_800, id="midnight-starts-next-day"),
        pytest.param("-1", "1969-12-31", 0, id="before-epoch"),
        pytest.param("1700000000", "2023-11-14", 1_700_006_400, id="2023"),
    ],
)
def test_utc_days(instant: str, day: str, midnight: int) -> None:
    assert utc_day(Decimal(instant)).isoformat() == day
    assert next_midnight(Decimal(instant)) == midnight


def _charge_reference(exact: Fraction | Decimal | int, places: int) -> Decimal:
    """Half-even on the reduced fraction scaled by 10**places (the rounding written plainly)."""
    scaled = Fraction(exact) * 10**places
    q, r = divmod(abs(scaled.numerator), scaled.denominator)
    if 2 * r > scaled.denominator or (2 * r == scaled.denominator and q % 2 == 1):
        q += 1
    return Decimal(-q if scaled < 0 else q).scaleb(-places)


@settings(max_examples=400, deadline=None)
@given(exact=st.one_of(st.fractions(), st.integers(-10**9, 10**9),
                       st.decimals(allow_nan=False, allow_infinity=False, places=6)),
       places=st.integers(0, 6))
def test_charge_rounds_like_the_reduced_fraction(exact: Fraction | Decimal | int,
                                                 places: int) -> None:
    # charge scales the numerator without reducing the fraction first (a settlement burst
    # rounds 10,000 costs): the same quotient, a remainder scaled like the denominator
    currency = Currency(places=places)
    got = currency.charge(exact)
    want = _charge_reference(exact, places)
    assert got == want and str(got) == str(want)
