from __future__ import annotations

import io
from decimal import Decimal
from fractions import Fraction

import pytest

from corral.core.model import CapacityKind
from corral.ledger import (
    LedgerInputError,
    PriceCatalog,
    PriceKey,
    PriceRule,
    meter,
    usage_report,
    write_csv,
)

from .builders import H100_AWS, ended, started

DAY = 86_400
SPOT_A100 = PriceKey("gcp", "eu", "A100", CapacityKind.SPOT)
CATALOG = PriceCatalog(
    [PriceRule.of("2.00", gpu_model="H100"), PriceRule.of("0.50", gpu_model="A100")]
)
USAGE = meter(
    [
        # ann: one H100 across midnight, 22:00 -> 02:00 (two hours each day)
        started("w1", at=DAY - 7200, user="ann"),
        ended("w1", at=DAY + 7200),
        # bob: half an A100 spot for 3 h on day 2, in another queue
        started("w2", at=DAY + 3600, user="bob", queue="vision", milli=500, key=SPOT_A100),
        ended("w2", at=DAY + 3 * 3600 + 3600),
        # ann again, still running at now: 8 H100 for 15 minutes
        started("w3", at=DAY + 36_000, user="ann", milli=8000),
    ],
    now=DAY + 36_900,
)


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        pytest.param(
            ("queue", "day"),
            [
                (("research", "1970-01-01"), "7200", Fraction(4)),
                (("research", "1970-01-02"), "14400", Fraction(8)),
                (("vision", "1970-01-02"), "5400", Fraction(3, 4)),
            ],
            id="queue-day-splits-at-midnight",
        ),
        pytest.param(
            ("user",),
            [(("ann",), "21600", Fraction(12)), (("bob",), "5400", Fraction(3, 4))],
            id="user",
        ),
        pytest.param(
            ("provider", "gpu_model", "capacity_kind"),
            [
                (("aws", "H100", "on-demand"), "21600", Fraction(12)),
                (("gcp", "A100", "spot"), "5400", Fraction(3, 4)),
            ],
            id="provider-model-kind",
        ),
    ],
)
def test_usage_report_groups_exactly(
    by: tuple[str, ...], expected: list[tuple[tuple[str, ...], str, Fraction]]
) -> None:
    rows = usage_report(USAGE, by=by, catalog=CATALOG)
    assert [(r.group, r.gpu_seconds, r.cost) for r in rows] == [
        (g, Decimal(s), c) for g, s, c in expected
    ]


def test_csv_export() -> None:
    stream = io.StringIO()
    by = ("queue", "day")
    write_csv(usage_report(USAGE, by=by, catalog=CATALOG), stream, by=by)
    assert stream.getvalue().splitlines() == [
        "queue,day,gpu_seconds,gpu_hours,cost,currency",
        "research,1970-01-01,7200,2.000000,4.00,CRD",
        "research,1970-01-02,14400,4.000000,8.00,CRD",
        "vision,1970-01-02,5400,1.500000,0.75,CRD",
    ]


def test_report_without_prices_has_no_cost() -> None:
    stream = io.StringIO()
    write_csv(usage_report(USAGE, by=("workload",)), stream, by=("workload",))
    assert stream.getvalue().splitlines()[1:] == [
        "w1,14400,4.000000,,CRD",
        "w2,5400,1.500000,,CRD",
        "w3,7200,2.000000,,CRD",
    ]


@pytest.mark.parametrize(
    "by",
    [
        pytest.param(("colour",), id="unknown"),
        pytest.param((), id="empty"),
        pytest.param(("day", "day"), id="repeat"),
    ],
)
def test_bad_dimensions_are_refused(by: tuple[str, ...]) -> None:
    with pytest.raises(LedgerInputError, match="choose from queue, user"):
        usage_report(USAGE, by=by)


def test_unpriced_usage_is_a_clear_error() -> None:
    with pytest.raises(LedgerInputError, match="no price for provider=aws"):
        usage_report(meter([started(at=0, key=H100_AWS)], now=10), catalog=PriceCatalog([]))


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        pytest.param(
            DAY - 3600,
            DAY + 3600,
            [(("w1", "1970-01-01"), "3600", Fraction(2)), (("w1", "1970-01-02"), "3600", Fraction(2))],
            id="across-midnight-cut-at-both-edges",
        ),
        pytest.param(
            DAY + 3 * 3600,
            None,
            [(("w2", "1970-01-02"), "1800", Fraction(1, 4)), (("w3", "1970-01-02"), "7200", Fraction(4))],
            id="since-cuts-a-running-attempt-and-drops-an-ended-one",
        ),
        pytest.param(
            None,
            DAY,
            [(("w1", "1970-01-01"), "7200", Fraction(4))],
            id="until-midnight-keeps-the-day-before",
        ),
        pytest.param(
            DAY + 36_000 + 450,
            DAY + 36_000 + 600,
            [(("w3", "1970-01-02"), "1200", Fraction(2, 3))],
            id="inside-one-attempt",
        ),
        pytest.param(DAY * 5, DAY * 6, [], id="after-everything"),
    ],
)
def test_a_window_counts_only_the_usage_inside_it(
    since: int | None, until: int | None, expected: list[tuple[tuple[str, ...], str, Fraction]]
) -> None:
    rows = usage_report(USAGE, by=("workload", "day"), catalog=CATALOG, since=since, until=until)
    assert [(r.group, r.gpu_seconds, r.cost) for r in rows] == [
        (g, Decimal(s), c) for g, s, c in expected
    ]


def test_a_window_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(LedgerInputError) as e:
        usage_report(USAGE, since=DAY, until=DAY)
    assert e.value.field == "until"
