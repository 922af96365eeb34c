"""Statements: a queue's credits explained, and the identity that must always hold.

For every queue, at every moment (all amounts from the journal's accounts, see
`corral.ledger.accounts`):

    balance = granted - settled - held - expired + transferred_in - transferred_out

where `balance` is the sum of the queue's credit lots (overdraft included). `available` is what
the queue can spend now: the balance less lapsed lots that `expire_due` has not swept yet.
`rollup` adds up a queue and all its descendants, the view of a parent team's total budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from corral.ledger.accounts import Account, AccountKind
from corral.ledger.funding import available
from corral.ledger.instants import TimeLike, to_instant
from corral.ledger.journal import Journal

__all__ = ["Statement", "rollup", "statement"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Statement:
    """Where a queue's credits came from and went (see the module docstring)."""

    queue: str
    granted: Decimal
    settled: Decimal
    held: Decimal
    expired: Decimal
    transferred_in: Decimal
    transferred_out: Decimal
    balance: Decimal
    available: Decimal
    debt: Decimal

    @property
    def expected_balance(self) -> Decimal:
        return (
            self.granted
            - self.settled
            - self.held
            - self.expired
            + self.transferred_in
            - self.transferred_out
        )

    @property
    def balanced(self) -> bool:
        """The ledger identity; False would mean a bug in the ledger, never a user error."""
        return self.balance == self.expected_balance

    def __add__(self, other: Statement) -> Statement:
        return Statement(
            self.queue,
            *(getattr(self, f) + getattr(other, f) for f in _AMOUNTS),
        )


_AMOUNTS = (
    "granted",
    "settled",
    "held",
    "expired",
    "transferred_in",
    "transferred_out",
    "balance",
    "available",
    "debt",
)


def statement(journal: Journal, queue: str, now: TimeLike) -> Statement:
    """The statement of one queue (its own accounts only) at `now`."""
    journal.chart.require(queue)
    places = journal.currency.quantum
    by_kind: dict[AccountKind, Decimal] = {}
    for account in journal.accounts(queue):
        by_kind[account.kind] = by_kind.get(account.kind, ZERO) + journal.balance(account)
    plain = Statement(
        queue=queue,
        granted=-by_kind.get(AccountKind.GRANTED, ZERO),
        settled=by_kind.get(AccountKind.SPENT, ZERO),
        held=by_kind.get(AccountKind.HOLD, ZERO),
        expired=by_kind.get(AccountKind.EXPIRED, ZERO),
        transferred_in=journal.transferred(queue, incoming=True),
        transferred_out=journal.transferred(queue, incoming=False),
        balance=by_kind.get(AccountKind.CREDITS, ZERO),
        available=available(journal, queue, to_instant(now, "now")),
        debt=-journal.balance(Account.overdraft(queue)),
    )
    # Every amount is already exact at the currency's places; quantize only fixes the display
    # of zeros (0 -> 0.00).
    return Statement(queue, *(getattr(plain, f).quantize(places) for f in _AMOUNTS))


def rollup(journal: Journal, queue: str, now: TimeLike) -> Statement:
    """The sum of the statements of `queue` and all its descendants, labelled `queue`.

    Transfers inside the subtree appear both in and out, so they cancel in the identity.
    """
    total = statement(journal, queue, now)
    for child in journal.chart.subtree(queue):
        if child != queue:
            total = total + statement(journal, child, now)
    return total
