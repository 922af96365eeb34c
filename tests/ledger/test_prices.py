from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.model import CapacityKind
from corral.ledger import LedgerInputError, NoPriceError, PriceCatalog, PriceKey, PriceRule

from .builders import H100_AWS

SPOT_AWS = PriceKey("aws", "us-east-1", "H100", CapacityKind.SPOT)
A100_GCP = PriceKey("gcp", "eu-west4", "A100", CapacityKind.ON_DEMAND)
OWNED = PriceKey("onprem", "lab", "A100", CapacityKind.OWNED)

CATALOG = PriceCatalog(
    [
        PriceRule.of("1.00"),  # list price for anything
        PriceRule.of("2.40", gpu_model="H100"),
        PriceRule.of("0.90", gpu_model="H100", capacity_kind="spot"),
        PriceRule.of("2.10", provider="aws"),
        PriceRule.of("2.20", provider="aws", gpu_model="H100"),
        PriceRule.of("0", capacity_kind=CapacityKind.OWNED),
        PriceRule.of("1.80", provider="gcp", region="*", gpu_model="A100"),
    ]
)


@pytest.mark.parametrize(
    ("key", "price"),
    [
        pytest.param(H100_AWS, "2.20", id="two-fields-beat-one"),
        pytest.param(SPOT_AWS, "2.20", id="provider+model-beats-model+kind"),
        pytest.param(PriceKey("x", "r", "H100", CapacityKind.SPOT), "0.90", id="model+kind"),
        pytest.param(PriceKey("x", "r", "H100", CapacityKind.ON_DEMAND), "2.40", id="model"),
        pytest.param(
            PriceKey("aws", "r", "L4", CapacityKind.SPOT), "2.10", id="provider-beats-kind"
        ),
        pytest.param(OWNED, "0", id="owned-is-free"),
        pytest.param(A100_GCP, "1.80", id="star-is-wildcard"),
        pytest.param(PriceKey("x", "r", "L4", CapacityKind.ON_DEMAND), "1.00", id="fallback"),
    ],
)
def test_most_specific_rule_wins(key: PriceKey, price: str) -> None:
    assert CATALOG.rule_at(key, Decimal(0)).price_per_gpu_hour == Decimal(price)


def test_validity_is_half_open_and_missing_price_is_a_clear_error() -> None:
    catalog = PriceCatalog(
        [
            PriceRule.of("2.00", gpu_model="H100", valid_until=100),
            PriceRule.of("3.00", gpu_model="H100", valid_from=100, valid_until=200),
        ]
    )
    assert catalog.rule_at(H100_AWS, Decimal(99)).price_per_gpu_hour == 2
    assert catalog.rule_at(H100_AWS, Decimal(100)).price_per_gpu_hour == 3
    with pytest.raises(
        NoPriceError, match=r"gpu_model=H100 capacity_kind=on-demand at t=200"
    ) as err:
        catalog.rule_at(H100_AWS, Decimal(200))
    assert "add a price rule" in str(err.value)


def test_cost_split_at_price_change_worked_example() -> None:
    # 500 milli-GPU from 09:30 to 10:30, 2.00 until 10:00 then 3.00: 0.50 + 0.75 = 1.25.
    ten = 36_000
    catalog = PriceCatalog(
        [
            PriceRule.of("2.00", valid_until=ten),
            PriceRule.of("3.00", valid_from=ten),
        ]
    )
    segments = catalog.segments(H100_AWS, Decimal(ten - 1800), Decimal(ten + 1800))
    assert [(s.start, s.end, s.price_per_gpu_hour) for s in segments] == [
        (ten - 1800, ten, 2),
        (ten, ten + 1800, 3),
    ]
    assert catalog.cost(H100_AWS, 500, Decimal(ten - 1800), Decimal(ten + 1800)) == Fraction(5, 4)


def test_segments_merge_when_a_more_specific_rule_does_not_apply() -> None:
    catalog = PriceCatalog(
        [PriceRule.of("1.00"), PriceRule.of("5.00", gpu_model="A100", valid_from=50)]
    )
    assert len(catalog.segments(H100_AWS, Decimal(0), Decimal(100))) == 1
    assert len(catalog.segments(A100_GCP, Decimal(0), Decimal(100))) == 2


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param(
            [
                PriceRule.of("1", gpu_model="H100"),
                PriceRule.of("2", gpu_model="H100", valid_from=5),
            ],
            id="open-ended-then-new",
        ),
        pytest.param(
            [
                PriceRule.of("1", provider="aws", valid_from=0, valid_until=10),
                PriceRule.of("2", provider="aws", valid_from=9, valid_until=20),
            ],
            id="overlapping-periods",
        ),
        pytest.param([PriceRule.of("1"), PriceRule.of("2", gpu_model="*")], id="two-list-prices"),
    ],
)
def test_overlapping_rules_for_the_same_pattern_are_refused(rules: list[PriceRule]) -> None:
    with pytest.raises(LedgerInputError, match="overlap in time"):
        PriceCatalog(rules)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"price_per_gpu_hour": "-1"}, "price_per_gpu_hour", id="negative"),
        pytest.param({"price_per_gpu_hour": 2.4}, "price_per_gpu_hour", id="float-price"),
        pytest.param(
            {"price_per_gpu_hour": "1", "capacity_kind": "reserved"}, "capacity_kind", id="kind"
        ),
        pytest.param(
            {"price_per_gpu_hour": "1", "valid_from": 10, "valid_until": 10},
            "valid_until",
            id="empty",
        ),
    ],
)
def test_bad_rules_name_the_field(kwargs: dict[str, object], field: str) -> None:
    price = kwargs.pop("price_per_gpu_hour")
    with pytest.raises(LedgerInputError) as err:
        PriceRule.of(price, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


changes = st.lists(st.integers(1, 2_000), min_size=0, max_size=6, unique=True).map(sorted)
prices = st.decimals(min_value=0, max_value=100, places=4)


@settings(max_examples=150, deadline=None)
@given(
    cuts=changes,
    rates=st.lists(prices, min_size=7, max_size=7),
    milli=st.integers(1, 16_000),
    a=st.integers(-100, 2_100),
    b=st.integers(-100, 2_100),
    m=st.integers(-100, 2_100),
)
def test_price_splitting_is_exact(
    cuts: list[int], rates: list[Decimal], milli: int, a: int, b: int, m: int
) -> None:
    """Cost is additive over any split point, and equals the sum of the per-period prices."""
    bounds = [None, *cuts, None]
    rules = [
        PriceRule.of(rate, gpu_model="H100", valid_from=lo, valid_until=hi)
        for rate, lo, hi in zip(rates, bounds, bounds[1:], strict=False)
    ]
    catalog = PriceCatalog(rules)
    start, end = sorted((a, b))
    mid = min(max(m, start), end)
    s, e, mi = Decimal(start), Decimal(end), Decimal(mid)
    whole = catalog.cost(H100_AWS, milli, s, e)
    assert whole == catalog.cost(H100_AWS, milli, s, mi) + catalog.cost(H100_AWS, milli, mi, e)
    by_second = (
        sum(
            (
                Fraction(milli) * Fraction(catalog.rule_at(H100_AWS, Decimal(t)).price_per_gpu_hour)
                for t in range(start, end)
            ),
            Fraction(0),
        )
        / 3_600_000
    )
    assert whole == by_second


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from([H100_AWS, SPOT_AWS, A100_GCP, OWNED]),
    milli=st.integers(0, 64_000),
    start=st.decimals(0, 10**7, places=6),
    seconds=st.decimals(0, 10**6, places=6),
)
def test_undated_prices_cost_the_same_as_their_segments(
    key: PriceKey, milli: int, start: Decimal, seconds: Decimal
) -> None:
    """The one-product path for keys whose rules are all undated gives the exact fraction the
    segment-by-segment sum gives."""
    end = start + seconds
    by_segments = sum(
        (s.cost(milli) for s in CATALOG.segments(key, start, end)), Fraction(0)
    )
    assert CATALOG.cost(key, milli, start, end) == by_segments


def test_a_dated_rule_still_splits_the_cost() -> None:
    """A key with one dated rule among undated ones is priced by segments (the flat path would
    miss the change)."""
    catalog = PriceCatalog([PriceRule.of("1.00"), PriceRule.of("3.00", gpu_model="H100", valid_from=100)])
    assert catalog.cost(H100_AWS, 1000, Decimal(0), Decimal(200)) == Fraction(100 + 300, 3600)
    with pytest.raises(LedgerInputError):
        catalog.cost(H100_AWS, 1000, Decimal(5), Decimal(1))
    with pytest.raises(LedgerInputError):
        CATALOG.cost(H100_AWS, 1000, Decimal(5), Decimal(1))
