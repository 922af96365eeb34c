from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from corral.ledger import (
    INSUFFICIENT_CREDITS,
    Account,
    Deny,
    HoldPlaced,
    HoldStateError,
    IdempotencyConflictError,
    Journal,
    LedgerInputError,
    PriceCatalog,
    PriceRule,
    decide,
    expected_cost,
    grant,
    meter,
    place_hold,
    release,
    rolling_top_up,
    settle,
    settle_usage,
    statement,
    top_up,
)

from .builders import H100_AWS, d, ended, journal, started


def funded(*queues: str, ancestors: bool = True, **grants: str) -> Journal:
    j = journal(*queues, draw_from_ancestors=ancestors)
    for queue, amount in grants.items():
        grant(j, key=f"g-{queue}", queue=queue, amount=amount, at=0)
    return j


def test_admit_hold_settle_release_rest() -> None:
    j = funded("research", research="500")
    placed = place_hold(j, workload="w1", queue="research", amount="412.50", at=0)
    assert isinstance(placed, HoldPlaced) and placed.hold.amount == d("412.50")
    s = statement(j, "research", 0)
    assert (s.held, s.available, s.balanced) == (d("412.50"), d("87.50"), True)
    settle(j, workload="w1", cost=Fraction(30001, 1000), at=3600)  # 30.001 -> 30.00
    s = statement(j, "research", 3600)
    assert (s.settled, s.held, s.available, s.balanced) == (30, 0, 470, True)
    assert j.hold("w1") is not None and j.hold("w1").charged == d("30.00")  # type: ignore[union-attr]


def test_deny_sentence_and_nothing_posted() -> None:
    j = funded("research", research="96.20")
    verdict = place_hold(j, workload="w1", queue="research", amount="412.50", at=0)
    assert isinstance(verdict, Deny)
    assert (verdict.code, verdict.message) == (
        INSUFFICIENT_CREDITS,
        "queue research needs 412.50 credits held, 96.20 available",
    )
    assert j.hold("w1") is None and len(j) == 1


@pytest.mark.parametrize(
    ("ancestors", "child", "parent", "funder"),
    [
        pytest.param(True, "500", "1000", "research", id="own-credits-first"),
        pytest.param(True, "10", "1000", "org", id="parent-covers-whole-hold"),
        pytest.param(True, "10", "20", None, id="nobody-covers-so-deny"),
        pytest.param(False, "10", "1000", None, id="ancestors-off"),
    ],
)
def test_nested_queues_fall_back_to_the_nearest_ancestor(
    ancestors: bool, child: str, parent: str, funder: str | None
) -> None:
    j = funded("org", "research<org", ancestors=ancestors, research=child, org=parent)
    verdict = place_hold(j, workload="w", queue="research", amount="100", at=0)
    if funder is None:
        assert isinstance(verdict, Deny)
        return
    assert isinstance(verdict, HoldPlaced) and verdict.hold.funders == (funder,)
    settle(j, workload="w", cost=Decimal("40"), at=1)
    assert statement(j, funder, 1).settled == 40
    assert all(statement(j, q, 1).balanced for q in ("org", "research"))


def test_deny_lists_each_candidate_queue() -> None:
    j = funded("org", "research<org", research="96.20", org="50")
    verdict = decide(j, "research", d("412.50"), Decimal(0))
    assert isinstance(verdict, Deny)
    assert verdict.candidates == (("research", d("96.20")), ("org", d("50.00")))
    assert verdict.message == "queue research needs 412.50 credits held, 96.20 available"


def test_zero_hold_is_admitted_even_without_credits() -> None:
    j = journal("research")
    placed = place_hold(j, workload="free", queue="research", amount="0", at=0)
    assert isinstance(placed, HoldPlaced) and placed.transaction.postings == ()
    tx = release(j, workload="free", at=1)
    assert tx.postings == () and not j.hold("free").open  # type: ignore[union-attr]


def test_settlement_replay_never_charges_twice() -> None:
    j = funded("research", research="100")
    place_hold(j, workload="w", queue="research", amount="50", at=0)
    first = settle(j, workload="w", cost=Decimal("12.34"), at=10)
    assert settle(j, workload="w", cost=Decimal("12.34"), at=99) is first
    assert settle(j, workload="w", cost=Fraction(1234, 100), at=10) is first
    with pytest.raises(IdempotencyConflictError, match=r"settle 12\.34"):
        settle(j, workload="w", cost=Decimal("13"), at=10)
    with pytest.raises(HoldStateError, match="already settled"):
        settle(j, workload="w", cost=Decimal("12.34"), at=10, key="other-key")
    assert statement(j, "research", 99).settled == d("12.34")


def test_one_hold_per_workload() -> None:
    j = funded("research", research="100")
    place_hold(j, workload="w", queue="research", amount="10", at=0)
    again = place_hold(j, workload="w", queue="research", amount="10", at=5)
    assert isinstance(again, HoldPlaced) and len(j) == 2  # replay: the original
    with pytest.raises(HoldStateError, match="one hold per workload"):
        place_hold(j, workload="w", queue="research", amount="10", at=5, key="hold:w:again")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(
            lambda j: settle(j, workload="nope", cost=1, at=0), HoldStateError, id="settle-unknown"
        ),
        pytest.param(
            lambda j: top_up(j, workload="nope", amount="1", at=0, key="t"),
            HoldStateError,
            id="top-up-unknown",
        ),
        pytest.param(
            lambda j: settle(j, workload="w", cost=1.5, at=0),  # type: ignore[arg-type]
            LedgerInputError,
            id="float-cost",
        ),
        pytest.param(
            lambda j: settle(j, workload="w", cost=-1, at=0), LedgerInputError, id="negative-cost"
        ),
        pytest.param(
            lambda j: place_hold(j, workload="x", queue="research", amount="-1", at=0),
            LedgerInputError,
            id="negative-hold",
        ),
        pytest.param(
            lambda j: place_hold(j, workload="", queue="research", amount="1", at=0),
            LedgerInputError,
            id="no-workload",
        ),
    ],
)
def test_bad_hold_operations(call, error: type[Exception]) -> None:  # type: ignore[no-untyped-def]
    j = funded("research", research="100")
    place_hold(j, workload="w", queue="research", amount="10", at=0)
    with pytest.raises(error):
        call(j)


def test_rolling_window_top_ups() -> None:
    j = funded("research", research="10")
    window = Decimal("2.50")  # an hour of cost
    place_hold(j, workload="svc", queue="research", amount=window, at=0)
    assert rolling_top_up(j, "svc", accrued=Decimal("1"), window=window) == 1
    assert rolling_top_up(j, "svc", accrued=Decimal(0), window=window) == 0
    more = rolling_top_up(j, "svc", accrued=Fraction(5, 2), window=window)
    placed = top_up(j, workload="svc", amount=more, at=3600, key="topup:svc:1")
    assert isinstance(placed, HoldPlaced) and placed.hold.amount == 5
    assert top_up(j, workload="svc", amount=more, at=3600, key="topup:svc:1") == placed
    denied = top_up(j, workload="svc", amount="6", at=7200, key="topup:svc:2")
    assert isinstance(denied, Deny) and denied.message.endswith("6.00 credits held, 5.00 available")
    settle(j, workload="svc", cost=Decimal("4.99"), at=7200)
    s = statement(j, "research", 7200)
    assert (s.settled, s.available, s.balanced) == (d("4.99"), d("5.01"), True)
    with pytest.raises(HoldStateError, match="settled"):
        top_up(j, workload="svc", amount="1", at=7300, key="topup:svc:3")


def test_top_ups_may_come_from_the_parent_and_go_back_there() -> None:
    j = funded("org", "ml<org", ml="10", org="100")
    place_hold(j, workload="w", queue="ml", amount="10", at=0)
    top_up(j, workload="w", amount="30", at=1, key="t1")
    assert j.hold("w").funders == ("ml", "org")  # type: ignore[union-attr]
    settle(j, workload="w", cost=Decimal("15"), at=2)  # 10 from ml, 5 from org; 25 back to org
    ml, org = statement(j, "ml", 2), statement(j, "org", 2)
    assert (ml.settled, ml.available, org.settled, org.available) == (10, 0, 5, 95)
    assert j.balance(Account.hold("org", "w")) == 0 and ml.balanced and org.balanced


def test_overrun_is_charged_from_credits_then_as_debt() -> None:
    j = funded("org", "ml<org", ml="20", org="5")
    place_hold(j, workload="w", queue="ml", amount="10", at=0)
    settle(j, workload="w", cost=Decimal("22"), at=1)  # 10 held + 10 left in ml + 2 of debt
    ml = statement(j, "ml", 1)
    assert (ml.settled, ml.debt, ml.balance, ml.balanced) == (22, 2, -2, True)
    assert statement(j, "org", 1).available == 5  # org could not pay the excess whole


def test_settle_usage_prices_exactly_and_holds_cover_the_estimate() -> None:
    catalog = PriceCatalog([PriceRule.of("2.45", gpu_model="H100")])
    estimate = expected_cost(catalog, H100_AWS, 750, 0, 5400)  # 0.75 GPU x 1.5 h x 2.45
    assert estimate == Fraction(275625, 100000)
    j = funded("research", research="10")
    place_hold(j, workload="w1", queue="research", amount=j.currency.hold(estimate), at=0)
    usage = meter(
        [started("w1", at=0, milli=250, worker=w) for w in range(3)]
        + [ended("w1", at=5400, worker=w) for w in range(3)]
        + [started("other", at=0, milli=8000)],
        now=5400,
    )
    tx = settle_usage(j, workload="w1", usage=usage, catalog=catalog, at=5400)
    assert tx.intent.amount == d("2.76")  # 2.75625 rounded half-even
    assert statement(j, "research", 5400).settled == d("2.76")


def test_a_settled_hold_leaves_memory_and_is_read_back_from_its_transactions() -> None:
    """Settlement drops the hold, its draws and its zero-balance hold account from the journal's
    state (memory that grew with every hold ever placed); the hold is still answered, read back
    from the stored transactions, and the workload still has had its one hold."""
    j = funded("org", "ml<org", org="100", ml="5")
    placed = place_hold(j, workload="w", queue="ml", amount="40", at=1)  # ml has 5: org pays
    assert isinstance(placed, HoldPlaced)
    top_up(j, workload="w", amount="2", at=2, key="topup:w:1")  # ml pays this one
    before = j.hold("w")
    assert before is not None and before.amount == d("42.00")
    assert before.funders == ("org", "ml")
    settle(j, workload="w", cost=Fraction(123, 10), at=3)
    state = j.state()
    assert state.holds == () and state.settled == frozenset({"w"})
    for queue in ("org", "ml"):
        assert Account.hold(queue, "w") not in state.balances
        assert Account.hold(queue, "w") not in j.accounts(queue)
        assert statement(j, queue, 5).balanced
    assert j.open_hold("w") is None and j.had_hold("w")
    after = j.hold("w")
    assert after is not None and not after.open
    assert (after.queue, after.placed_at, after.draws) == (before.queue, before.placed_at,
                                                          before.draws)
    assert (after.settled_by, after.charged) == ("settle:w", d("12.30"))
    assert j.holds() == (after,) and j.holds(open_only=True) == ()
    with pytest.raises(HoldStateError, match="already has a hold"):
        place_hold(j, workload="w", queue="ml", amount="1", at=4, key="another-key")
    with pytest.raises(HoldStateError, match="settled"):
        top_up(j, workload="w", amount="1", at=4, key="topup:w:2")
    assert settle(j, workload="w", cost=Fraction(123, 10), at=9).key == "settle:w"  # a replay
