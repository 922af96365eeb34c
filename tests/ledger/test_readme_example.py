"""The worked example of src/corral/ledger/README.md, kept true by running it."""

from __future__ import annotations

import io
from decimal import Decimal

from corral.core.model import CapacityKind
from corral.ledger import (
    Deny,
    EndReason,
    HoldPlaced,
    Journal,
    PriceCatalog,
    PriceKey,
    PriceRule,
    QueueChart,
    WorkerEnded,
    WorkerStarted,
    expected_cost,
    grant,
    meter,
    place_hold,
    settle_usage,
    statement,
    usage_report,
    write_csv,
)

H = 3600
DAY0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def at(hour: float) -> Decimal:
    return Decimal(DAY0) + Decimal(str(hour)) * H


def test_readme_worked_example() -> None:
    journal = Journal(QueueChart({"org": None, "research": "org"}))
    grant(journal, key="org-2026", queue="org", amount="1000.00", at=at(0))
    grant(
        journal,
        key="research-q1",
        queue="research",
        amount="100.00",
        at=at(0),
        expires_at=at(24 * 90),
    )

    catalog = PriceCatalog(
        [
            PriceRule.of("2.40", provider="aws", gpu_model="H100", valid_until=at(10)),
            PriceRule.of("3.00", provider="aws", gpu_model="H100", valid_from=at(10)),
        ]
    )
    h100 = PriceKey("aws", "us-east-1", "H100", CapacityKind.ON_DEMAND)

    # Admit at 08:00: 8 GPUs for at most 4 h = 2 h x 2.40 + 2 h x 3.00 per GPU = 86.40.
    estimate = expected_cost(catalog, h100, 8000, at(8), 4 * H)
    placed = place_hold(
        journal,
        workload="train-1",
        queue="research",
        amount=journal.currency.hold(estimate),
        at=at(8),
    )
    assert isinstance(placed, HoldPlaced) and placed.hold.amount == Decimal("86.40")
    assert statement(journal, "research", at(8)).available == Decimal("13.60")

    # A second job asking 120.00 while research has 13.60: org (1000.00) pays its hold.
    other = place_hold(journal, workload="eval-1", queue="research", amount="120.00", at=at(8))
    assert isinstance(other, HoldPlaced) and other.hold.funders == ("org",)
    # One asking 1200.00 stays pending.
    denied = place_hold(journal, workload="big-1", queue="research", amount="1200.00", at=at(8))
    assert isinstance(denied, Deny)
    assert denied.message == "queue research needs 1200.00 credits held, 880.00 available"

    # Preempted at 09:30, restarted at 09:45, done at 10:30 (price changes at 10:00).
    def start(attempt: int, hour: float) -> WorkerStarted:
        return WorkerStarted(
            "train-1",
            0,
            attempt,
            at(hour),
            "research",
            "ann",
            "aws",
            "us-east-1",
            "node-7",
            "H100",
            CapacityKind.ON_DEMAND,
            8000,
        )

    events = [
        start(0, 8),
        WorkerEnded("train-1", 0, 0, at(9.5), EndReason.PREEMPTED),
        start(1, 9.75),
        WorkerEnded("train-1", 0, 1, at(10.5), EndReason.STOPPED),
    ]
    usage = meter(events, now=at(11))
    assert sum(u.gpu_seconds for u in usage) == 8 * (1.5 + 0.75) * H  # 18 GPU-hours
    # 8 x 1.5 h x 2.40 + 8 x 0.25 h x 2.40 + 8 x 0.5 h x 3.00 = 28.80 + 4.80 + 12.00 = 45.60
    tx = settle_usage(journal, workload="train-1", usage=usage, catalog=catalog, at=at(11))
    assert tx.intent.amount == Decimal("45.60")

    research = statement(journal, "research", at(11))
    assert (research.granted, research.settled, research.held, research.available) == (
        Decimal("100.00"),
        Decimal("45.60"),
        Decimal("0.00"),
        Decimal("54.40"),
    )
    assert research.balanced

    out = io.StringIO()
    write_csv(
        usage_report(usage, by=("queue", "user", "day"), catalog=catalog),
        out,
        by=("queue", "user", "day"),
    )
    assert out.getvalue().splitlines() == [
        "queue,user,day,gpu_seconds,gpu_hours,cost,currency",
        "research,ann,2026-01-01,64800,18.000000,45.60,CRD",
    ]
