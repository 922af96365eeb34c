from __future__ import annotations

from decimal import Decimal

import pytest

from corral.ledger import (
    Account,
    IdempotencyConflictError,
    InMemoryJournalStore,
    Intent,
    Journal,
    LedgerInputError,
    Lot,
    Posting,
    QueueChart,
    Transaction,
    TxKind,
    UnbalancedTransactionError,
    grant,
    place_hold,
    settle,
    statement,
    transfer,
)

from .builders import d, journal

LOT = Account.lot("research", "g")


def tx(*postings: tuple[Account, str], key: str = "k", opens: tuple[Lot, ...] = ()) -> Transaction:
    amount = sum((Decimal(a) for _, a in postings if Decimal(a) > 0), Decimal(0))
    return Transaction(
        key,
        Decimal(0),
        Intent(TxKind.GRANT, "research", amount),
        tuple(Posting(acc, Decimal(a)) for acc, a in postings),
        opens,
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param(
            tx((Account.granted("research"), "-1.00"), (LOT, "2.00"), opens=(Lot(LOT),)),
            "sum to 1.00",
            id="unbalanced",
        ),
        pytest.param(
            tx((Account.granted("research"), "-1.005"), (LOT, "1.005"), opens=(Lot(LOT),)),
            "not at 2 decimal places",
            id="sub-cent",
        ),
        pytest.param(
            tx((Account.granted("research"), "-1.00"), (LOT, "1.00")),
            "not an open lot",
            id="no-lot",
        ),
        pytest.param(
            tx((Account.lot("research", "x"), "-1.00"), (LOT, "1.00"), opens=(Lot(LOT),)),
            "not an open lot",
            id="lot-never-opened",
        ),
        pytest.param(
            tx(
                (Account.granted("research"), "1.00"),
                (Account.granted("research"), "-1.00"),
            ),
            "one posting per account",
            id="duplicate-account",
        ),
        pytest.param(tx(key=""), "idempotency key", id="no-key"),
    ],
)
def test_post_refuses_malformed_transactions(bad: Transaction, message: str) -> None:
    j = journal("research")
    with pytest.raises(UnbalancedTransactionError, match=message):
        j.post(bad)
    assert len(j) == 0


def test_post_refuses_a_lot_going_negative() -> None:
    j = journal("research")
    grant(j, key="g", queue="research", amount="5", at=0)
    with pytest.raises(UnbalancedTransactionError, match=r"would go to -1\.00"):
        j.post(tx((LOT, "-6.00"), (Account.spent("research"), "6.00"), key="k2"))


def test_post_refuses_unknown_queues() -> None:
    with pytest.raises(LedgerInputError, match="unknown queue 'nope'"):
        journal("research").post(tx((Account.granted("nope"), "-1.00"), (LOT, "1.00")))


def test_replay_with_same_body_is_a_noop_and_other_body_is_a_conflict() -> None:
    j = journal("research")
    first = grant(j, key="g", queue="research", amount="10", at=0)
    again = grant(j, key="g", queue="research", amount="10.00", at=999)  # a retry, later
    assert again is first and len(j) == 1
    assert j.post(first) is first
    with pytest.raises(IdempotencyConflictError, match=r"grant 10\.00 on queue research"):
        grant(j, key="g", queue="research", amount="11", at=0)
    with pytest.raises(IdempotencyConflictError):
        j.post(tx((Account.granted("research"), "-10.00"), (LOT, "10.00"), key="g"))


def test_state_is_rebuilt_from_the_store() -> None:
    store = InMemoryJournalStore()
    chart = QueueChart({"org": None, "research": "org", "infer": "org"})
    j = Journal(chart, store=store)
    grant(j, key="g1", queue="research", amount="100", at=0, expires_at=1000)
    grant(j, key="g2", queue="org", amount="50", at=0)
    transfer(j, key="t", source="research", target="infer", amount="30", at=1)
    place_hold(j, workload="w1", queue="research", amount="60", at=2)
    place_hold(j, workload="w2", queue="infer", amount="40", at=2)  # infer has 30: org pays
    settle(j, workload="w1", cost=Decimal("12.345"), at=3)
    rebuilt = Journal(chart, store=store)
    for queue in chart.queues:
        assert statement(rebuilt, queue, 5) == statement(j, queue, 5)
        assert rebuilt.lots(queue) == j.lots(queue)
    assert rebuilt.holds() == j.holds()
    assert list(rebuilt.transactions()) == list(j.transactions())


def test_store_refuses_a_duplicate_key_as_second_line_of_defence() -> None:
    store = InMemoryJournalStore()
    j = Journal(QueueChart({"research": None}), store=store)
    first = grant(j, key="g", queue="research", amount="1", at=0)
    with pytest.raises(KeyError):
        store.append(first)


def test_accounts_and_keys_are_readable() -> None:
    j = journal("research")
    grant(j, key="g", queue="research", amount="1", at=0)
    assert [a.key for a in j.accounts("research")] == ["credits:research:g", "granted:research"]
    assert j.balance(Account.granted("research")) == d("-1.00")


def test_an_account_hashes_as_its_fields_and_keeps_it_through_pickle_and_sorting() -> None:
    """Account's hash is computed once (a hot dict key); equal accounts must still hash alike
    (a rebuilt or unpickled one finds the balance of the original), and the cached hash must
    not take part in equality or order."""
    import pickle

    from corral.ledger.accounts import AccountKind

    a, b = Account(AccountKind.HOLD, "q", "w@0"), Account.hold("q", "w@0")
    balances = {a: 5}
    assert b == a and hash(b) == hash(a) and balances[b] == 5
    back = pickle.loads(pickle.dumps(a))
    assert back == a and hash(back) == hash(a) and balances[back] == 5
    assert Account.hold("q", "w@1") not in balances
    assert hash(Account.spent("q")) != hash(Account.expired("q"))
    assert sorted([Account.spent("q"), Account.granted("q")]) == [
        Account.granted("q"), Account.spent("q")]
    assert "_hash" not in repr(a)
