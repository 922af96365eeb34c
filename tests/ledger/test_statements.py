from __future__ import annotations

from decimal import Decimal

from corral.ledger import grant, place_hold, rollup, settle, statement, transfer

from .builders import journal


def test_rollup_adds_a_subtree_and_internal_transfers_cancel() -> None:
    j = journal("org", "ml<org", "vision<ml", "infer<org")
    for queue, amount in (("org", "100"), ("ml", "50"), ("vision", "20"), ("infer", "7")):
        grant(j, key=queue, queue=queue, amount=amount, at=0)
    transfer(j, key="t", source="ml", target="vision", amount="5", at=0)
    place_hold(j, workload="w", queue="vision", amount="25", at=0)
    settle(j, workload="w", cost=Decimal("11"), at=1)
    ml = rollup(j, "ml", 1)
    assert (ml.queue, ml.granted, ml.settled, ml.balance, ml.balanced) == ("ml", 70, 11, 59, True)
    assert ml.transferred_in == ml.transferred_out == 5
    everything = rollup(j, "org", 1)
    assert (everything.granted, everything.balance) == (177, 166)
    assert statement(j, "infer", 1).balance == 7


def test_statement_amounts_are_at_the_currency_places() -> None:
    s = statement(journal("research"), "research", 0)
    assert [str(s.granted), str(s.balance), str(s.available)] == ["0.00", "0.00", "0.00"]
