from __future__ import annotations

from decimal import Decimal

import pytest

from corral.ledger import (
    INSUFFICIENT_CREDITS,
    Account,
    Deny,
    LedgerInputError,
    available,
    expire_due,
    grant,
    place_hold,
    settle,
    statement,
    transfer,
)

from .builders import d, journal

DAY = 86_400


def test_grant_adds_a_lot_and_the_identity_holds() -> None:
    j = journal("research")
    tx = grant(j, key="g", queue="research", amount="412.50", at=0, memo="Q3 budget")
    assert tx.total == 0 and tx.memo == "Q3 budget"
    s = statement(j, "research", 0)
    assert (s.granted, s.balance, s.available, s.balanced) == (
        d("412.50"),
        d("412.50"),
        d("412.50"),
        True,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"amount": "0"}, "amount", id="zero"),
        pytest.param({"amount": "-5"}, "amount", id="negative"),
        pytest.param({"amount": 1.5}, "amount", id="float"),
        pytest.param({"amount": "1", "expires_at": 0}, "expires_at", id="expires-at-grant-time"),
        pytest.param({"amount": "1", "queue": "ghost"}, "queue", id="unknown-queue"),
    ],
)
def test_bad_grants_name_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"key": "g", "queue": "research", "at": 0, **kwargs}
    with pytest.raises(LedgerInputError) as err:
        grant(journal("research"), **args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_soonest_expiring_lot_is_spent_first() -> None:
    j = journal("research")
    grant(j, key="forever", queue="research", amount="100", at=0)
    grant(j, key="late", queue="research", amount="100", at=0, expires_at=30 * DAY)
    grant(j, key="soon", queue="research", amount="100", at=0, expires_at=7 * DAY)
    place_hold(j, workload="w", queue="research", amount="150", at=0)
    balances = {lot.account.ref: j.balance(lot.account) for lot in j.lots("research")}
    assert balances == {"soon": 0, "late": d("50.00"), "forever": d("100.00")}


def test_expiry_sweeps_unspent_credits_once() -> None:
    j = journal("research")
    grant(j, key="g", queue="research", amount="100", at=0, expires_at=DAY)
    place_hold(j, workload="w", queue="research", amount="30", at=0)
    settle(j, workload="w", cost=Decimal("30"), at=10)
    assert available(j, "research", Decimal(DAY - 1)) == 70
    # A lapsed lot pays for nothing even before the sweep, so decisions never wait on it.
    assert available(j, "research", Decimal(DAY)) == 0
    assert statement(j, "research", DAY).balance == 70
    (swept,) = expire_due(j, DAY)
    assert expire_due(j, DAY + 5) == ()
    s = statement(j, "research", DAY)
    assert (swept.intent.amount, s.expired, s.balance, s.balanced) == (d("70.00"), 70, 0, True)


def test_credits_returned_to_a_lapsed_lot_expire_at_once() -> None:
    j = journal("research")
    grant(j, key="g", queue="research", amount="100", at=0, expires_at=DAY)
    place_hold(j, workload="w", queue="research", amount="80", at=0)
    expire_due(j, DAY)  # sweeps the 20 left in the lot; the 80 held are not touched
    settle(j, workload="w", cost=Decimal("50"), at=DAY + 1)
    s = statement(j, "research", DAY + 1)
    assert (s.settled, s.expired, s.balance, s.held, s.balanced) == (50, 50, 0, 0, True)


def test_transfer_moves_credits_with_their_expiry() -> None:
    j = journal("org", "research<org", "infer<org")
    grant(j, key="soon", queue="research", amount="10", at=0, expires_at=DAY)
    grant(j, key="never", queue="research", amount="100", at=0)
    tx = transfer(j, key="t1", source="research", target="infer", amount="25", at=5)
    assert not isinstance(tx, Deny)
    assert {(lot.expires_at, j.balance(lot.account)) for lot in j.lots("infer")} == {
        (DAY, d("10.00")),
        (None, d("15.00")),
    }
    src, dst = statement(j, "research", 5), statement(j, "infer", 5)
    assert (src.transferred_out, dst.transferred_in, src.balanced, dst.balanced) == (
        25,
        25,
        True,
        True,
    )


def test_transfer_beyond_the_balance_is_denied_and_never_uses_the_parent() -> None:
    j = journal("org", "research<org", "infer<org")
    grant(j, key="g", queue="org", amount="1000", at=0)
    grant(j, key="r", queue="research", amount="20", at=0)
    verdict = transfer(j, key="t", source="research", target="infer", amount="96.20", at=0)
    assert isinstance(verdict, Deny)
    assert verdict.code == INSUFFICIENT_CREDITS
    assert verdict.message == "queue research needs 96.20 credits to transfer, 20.00 available"
    assert len(j) == 2


@pytest.mark.parametrize(
    ("source", "target", "field"),
    [
        pytest.param("research", "research", "target", id="to-itself"),
        pytest.param("ghost", "research", "source", id="unknown-source"),
        pytest.param("research", "ghost", "target", id="unknown-target"),
    ],
)
def test_bad_transfers_name_the_field(source: str, target: str, field: str) -> None:
    j = journal("research")
    grant(j, key="g", queue="research", amount="10", at=0)
    with pytest.raises(LedgerInputError) as err:
        transfer(j, key="t", source=source, target=target, amount="1", at=0)
    assert err.value.field == field


def test_a_grant_repays_overdraft_first() -> None:
    j = journal("research")
    grant(j, key="g", queue="research", amount="10", at=0)
    place_hold(j, workload="w", queue="research", amount="10", at=0)
    settle(j, workload="w", cost=Decimal("25"), at=1)  # ran past its hold: 15 of debt
    s = statement(j, "research", 1)
    assert (s.debt, s.balance, s.available, s.balanced) == (15, -15, -15, True)
    grant(j, key="g2", queue="research", amount="100", at=2)
    s = statement(j, "research", 2)
    assert (s.debt, s.balance, s.available, s.balanced) == (0, 85, 85, True)
    assert j.balance(Account.overdraft("research")) == 0


def test_a_swept_lot_stays_dead_even_for_back_dated_operations() -> None:
    j = journal("research")
    grant(j, key="g", queue="research", amount="100", at=0, expires_at=DAY)
    place_hold(j, workload="w", queue="research", amount="80", at=0)
    expire_due(j, DAY)
    # Settled late, but dated before the expiry: the unused 60 cannot revive the swept lot.
    settle(j, workload="w", cost=Decimal("20"), at=DAY - 10)
    s = statement(j, "research", DAY)
    assert (s.settled, s.expired, s.balance, s.balanced) == (20, 80, 0, True)
    assert expire_due(j, DAY + 1) == ()
