"""Hypothesis properties of the ledger as a whole.

- postings always sum to zero (per transaction and over the whole journal);
- per queue: balance = granted - settled - held - expired + transferred in - out;
- a workload is never charged twice, even when settlements are replayed in any order;
- at every step, each hold is exactly one of open, settled (charged) or released (charged zero),
  as the model of what was asked says, with its escrow, its settlement and the queues' `held`
  consistent with that; and ending a workload (settling or releasing it) always leaves it
  without an open hold, at once.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from corral.ledger import (
    Account,
    AccountKind,
    Deny,
    Hold,
    HoldPlaced,
    Journal,
    Transaction,
    TxKind,
    expire_due,
    grant,
    place_hold,
    release,
    settle,
    statement,
    top_up,
    transfer,
)

from .builders import journal

QUEUES = ("org", "ml", "vision", "infer")
CHART = ("org", "ml<org", "vision<ml", "infer<org")
cents = st.integers(1, 50_000).map(lambda c: Decimal(c).scaleb(-2))
credits = st.integers(1, 20_000).map(lambda c: Decimal(c))
costs = st.fractions(min_value=0, max_value=600, max_denominator=3_600_000)


class LedgerMachine(RuleBasedStateMachine):
    """Random grants, transfers, holds, top-ups, settlements (and their replays), expiries."""

    @initialize(ancestors=st.booleans())
    def start(self, ancestors: bool) -> None:
        self.journal: Journal = journal(*CHART, draw_from_ancestors=ancestors)
        self.fresh_model()

    def fresh_model(self) -> None:
        """The model of what was asked, against which the journal is checked at every step."""
        self.now = Decimal(0)
        self.serial = 0
        self.live: dict[str, Decimal] = {}  # workloads with an open hold: what it must hold
        self.charged: dict[str, Decimal] = {}  # ended workloads: what each must have paid
        self.settle_calls: dict[str, Fraction] = {}

    def _key(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    @rule(queue=st.sampled_from(QUEUES), amount=credits, life=st.none() | st.integers(1, 5000))
    def give(self, queue: str, amount: Decimal, life: int | None) -> None:
        expiry = None if life is None else self.now + life
        key = self._key("g")
        tx = grant(
            self.journal, key=key, queue=queue, amount=amount, at=self.now, expires_at=expiry
        )
        before = len(self.journal)
        assert (
            grant(self.journal, key=key, queue=queue, amount=amount, at=self.now, expires_at=expiry)
            is tx
        )
        assert len(self.journal) == before

    @rule(source=st.sampled_from(QUEUES), dest=st.sampled_from(QUEUES), amount=cents)
    def move(self, source: str, dest: str, amount: Decimal) -> None:
        if source != dest:
            transfer(
                self.journal,
                key=self._key("t"),
                source=source,
                target=dest,
                amount=amount,
                at=self.now,
            )

    @rule(queue=st.sampled_from(QUEUES), amount=cents | st.just(Decimal("0.00")))
    def hold(self, queue: str, amount: Decimal) -> None:
        workload = self._key("w")
        result = place_hold(
            self.journal, workload=workload, queue=queue, amount=amount, at=self.now
        )
        assert isinstance(result, HoldPlaced | Deny)
        if isinstance(result, HoldPlaced):
            assert result.hold.amount == amount
            self.live[workload] = amount
            event(
                "hold paid by "
                + ("own queue" if result.hold.funders in ((), (queue,)) else "ancestor")
            )
        else:
            event("hold denied")

    def _open(self) -> list[str]:
        # From the model, not the journal: a hold the journal lost would not be picked, and the
        # invariants below would report it.
        return sorted(self.live)

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data(), amount=cents)
    def top(self, data: st.DataObject, amount: Decimal) -> None:
        workload = data.draw(st.sampled_from(self._open()))
        result = top_up(
            self.journal, workload=workload, amount=amount, at=self.now, key=self._key("u")
        )
        if isinstance(result, HoldPlaced):
            self.live[workload] += amount

    def _ended(self, workload: str, tx: Transaction, cost: Fraction) -> None:
        """Record that `workload` ended (settled by `tx` at `cost`), and check that it holds
        nothing from this moment on."""
        del self.live[workload]
        self.charged[workload] = self.journal.currency.charge(cost)
        self.settle_calls[workload] = cost
        hold = self.journal.hold(workload)
        assert hold is not None and not hold.open and hold.settled_by == tx.key
        assert hold.charged == self.charged[workload] and self._escrow(hold) == 0
        assert workload not in {h.workload for h in self.journal.holds(open_only=True)}

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data(), cost=costs, skew=st.sampled_from([0, 0, 5, 500]))
    def settle_one(self, data: st.DataObject, cost: Fraction, skew: int) -> None:
        # skew: settlements may be dated a little before other operations (clocks, retries).
        workload = data.draw(st.sampled_from(self._open()))
        tx = settle(self.journal, workload=workload, cost=cost, at=self.now - skew)
        self._ended(workload, tx, cost)
        event(f"settle opening an overdraft: {bool(tx.opens)}")
        event(
            f"settle expiring returns: {any(p.account.kind is AccountKind.EXPIRED for p in tx.postings)}"
        )

    @precondition(lambda self: bool(self.settle_calls))
    @rule(data=st.data(), later=st.integers(0, 100))
    def replay_settlement(self, data: st.DataObject, later: int) -> None:
        workload = data.draw(st.sampled_from(sorted(self.settle_calls)))
        before = len(self.journal)
        settle(
            self.journal, workload=workload, cost=self.settle_calls[workload], at=self.now + later
        )
        assert len(self.journal) == before

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data())
    def release_one(self, data: st.DataObject) -> None:
        workload = data.draw(st.sampled_from(self._open()))
        self._ended(workload, release(self.journal, workload=workload, at=self.now), Fraction(0))

    @rule(step=st.integers(1, 2000))
    def tick(self, step: int) -> None:
        self.now += step

    @rule()
    def sweep(self) -> None:
        expire_due(self.journal, self.now)

    @invariant()
    def postings_sum_to_zero(self) -> None:
        total = Decimal(0)
        for tx in self.journal.transactions():
            assert tx.total == 0
            total += tx.total
        assert total == 0

    @invariant()
    def every_queue_balances(self) -> None:
        for queue in QUEUES:
            s = statement(self.journal, queue, self.now)
            assert (
                s.balance
                == s.granted - s.settled - s.held - s.expired + s.transferred_in - s.transferred_out
            )
            assert s.available <= s.balance

    @invariant()
    def accounts_keep_their_sign(self) -> None:
        for queue in QUEUES:
            for account in self.journal.accounts(queue):
                balance = self.journal.balance(account)
                if account.is_overdraft or account.kind is AccountKind.GRANTED:
                    assert balance <= 0
                else:
                    assert balance >= 0, account.key

    @invariant()
    def never_charged_twice(self) -> None:
        spent = sum((self.journal.balance(Account.spent(q)) for q in QUEUES), Decimal(0))
        assert spent == sum(self.charged.values(), Decimal(0))
        settles = [
            tx.intent.workload
            for tx in self.journal.transactions()
            if tx.intent.kind is TxKind.SETTLE
        ]
        assert sorted(settles) == sorted(self.charged)

    def _escrow(self, hold: Hold) -> Decimal:
        return sum(
            (self.journal.balance(Account.hold(q, hold.workload)) for q in hold.funders),
            Decimal(0),
        )

    @invariant()
    def every_hold_is_open_xor_settled_xor_released(self) -> None:
        holds = {h.workload: h for h in self.journal.holds()}
        assert holds.keys() == self.live.keys() | self.charged.keys()  # none lost, none invented
        for workload, hold in holds.items():
            is_open = hold.settled_by is None and hold.charged is None
            closed = hold.settled_by is not None and hold.charged is not None
            settled = closed and hold.charged is not None and hold.charged > 0
            released = closed and hold.charged == 0
            assert [is_open, settled, released].count(True) == 1, hold
            assert hold.open is is_open
            if is_open:
                assert workload in self.live and workload not in self.charged
                assert hold.amount == self.live[workload] == self._escrow(hold)
            else:
                assert workload in self.charged and workload not in self.live
                assert hold.charged == self.charged[workload] and self._escrow(hold) == 0
                assert hold.settled_by is not None
                tx = self.journal.get(hold.settled_by)
                assert tx is not None and tx.intent.kind is TxKind.SETTLE
                assert (tx.intent.workload, tx.intent.amount) == (workload, hold.charged)

    @invariant()
    def the_queues_hold_exactly_the_open_holds(self) -> None:
        held = sum((statement(self.journal, q, self.now).held for q in QUEUES), Decimal(0))
        assert held == sum(self.live.values(), Decimal(0))

    def teardown(self) -> None:
        # Ending what still runs (as the control loop does when work stops) leaves nothing
        # held; `_ended` checks each workload as it goes.
        if not hasattr(self, "journal"):
            return
        for workload in self._open():
            tx = release(self.journal, workload=workload, at=self.now)
            self._ended(workload, tx, Fraction(0))
        assert self.journal.holds(open_only=True) == ()
        for queue in QUEUES:
            assert statement(self.journal, queue, self.now).held == 0


LedgerMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase


@settings(max_examples=80, deadline=None)
@given(
    workload_costs=st.lists(costs, min_size=1, max_size=8),
    data=st.data(),
)
def test_settlement_replayed_in_any_order_charges_each_workload_once(
    workload_costs: list[Fraction], data: st.DataObject
) -> None:
    j = journal("research")
    grant(j, key="g", queue="research", amount="100000", at=0)
    workloads = [f"w{i}" for i in range(len(workload_costs))]
    for w in workloads:
        place_hold(j, workload=w, queue="research", amount="2000", at=0)
    replays = data.draw(st.lists(st.sampled_from(workloads), max_size=20))
    order = data.draw(st.permutations(workloads + replays))
    for t, w in enumerate(order):
        settle(j, workload=w, cost=workload_costs[workloads.index(w)], at=t)
    expected = sum((j.currency.charge(c) for c in workload_costs), Decimal(0))
    s = statement(j, "research", len(order))
    assert (s.settled, s.held, s.balance) == (expected, 0, 100000 - expected)
    assert len(j) == 1 + 2 * len(workloads)
