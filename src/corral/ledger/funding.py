"""Who pays: which queue's credits, and which of its lots, fund a draw.

Rules (each documented once, here):

- **Available** credits of a queue at `now` are the balances of its lots that have not lapsed,
  plus its overdraft (zero or negative). Lapsed lots pay for nothing even before `expire_due`
  sweeps them, so decisions never depend on when the sweep last ran.
- **Draw-down order** inside a queue: soonest-expiring lot first, non-expiring last, ties in
  opening order (`Journal.lots`).
- **Nested queues**: a draw (a hold or a top-up) is paid *whole* by one queue: the workload's own
  queue if it has enough available, otherwise the nearest ancestor that has (when the journal's
  `draw_from_ancestors` is on, the default). A draw is never split across queues, so the Deny
  sentence names one number and a release goes back to one place. A parent thus acts as a shared
  reserve for its sub-projects, without pre-splitting its budget; turning the option off makes
  every queue live on its own credits and transfers.
- **Overdraft**: only a settlement that costs more than was held can push a queue below zero
  (the work already ran; refusing to record its cost would lose money). The debt sits on the
  queue's `credits:q:overdraft` account and is repaid first from any credits that arrive later.
"""

from __future__ import annotations

from decimal import Decimal

from corral.ledger.accounts import Account, AccountKind
from corral.ledger.entries import Lot, Posting
from corral.ledger.instants import Instant
from corral.ledger.journal import Journal

__all__ = ["Draft", "available", "funding_chain"]

ZERO = Decimal(0)


def available(journal: Journal, queue: str, now: Instant) -> Decimal:
    """Credits `queue` can spend at `now` (its own only; see `funding_chain` for ancestors)."""
    return sum(
        (journal.balance(lot.account) for lot in journal.lots(queue) if not lot.lapsed(now)),
        ZERO,
    )


def funding_chain(journal: Journal, queue: str) -> tuple[str, ...]:
    """The queues that may pay for `queue`'s draws, nearest first."""
    return (
        journal.chart.chain(queue)
        if journal.draw_from_ancestors
        else (journal.chart.require(queue),)
    )


class Draft:
    """The postings of one transaction being built, with balances as they will be after it.

    Operations add signed amounts per account (repeated adds to one account are summed), open
    lots, and read balances that include what they added so far.
    """

    def __init__(self, journal: Journal, at: Instant) -> None:
        self.journal = journal
        self.at = at
        self._deltas: dict[Account, Decimal] = {}
        self._opens: list[Lot] = []

    def add(self, account: Account, amount: Decimal) -> None:
        self._deltas[account] = self._deltas.get(account, ZERO) + amount

    def open(self, lot: Lot) -> None:
        self._opens.append(lot)

    def balance(self, account: Account) -> Decimal:
        return self.journal.balance(account) + self._deltas.get(account, ZERO)

    def lots(self, queue: str) -> tuple[Lot, ...]:
        """Lots of `queue`, existing and opened here, in draw-down order."""
        new = [lot for lot in self._opens if lot.account.queue == queue]
        if not new:  # the journal's lots are already in this order (and kept sorted there)
            return self.journal.lots(queue)
        # sorted() is stable: existing lots keep the journal's order, new ones come after ties.
        return tuple(
            sorted(
                (*self.journal.lots(queue), *new),
                key=lambda lot: (lot.expires_at is None, lot.expires_at or ZERO),
            )
        )

    def available(self, queue: str) -> Decimal:
        return sum(
            (self.balance(lot.account) for lot in self.lots(queue) if not lot.lapsed(self.at)),
            ZERO,
        )

    def draw(self, queue: str, amount: Decimal) -> tuple[Posting, ...]:
        """Take up to `amount` from the queue's spendable lots in draw-down order.

        Returns the draws as positive amounts per lot; their total is less than `amount` only
        when the queue lacks credits. The caller posts the counterpart.
        """
        draws: list[Posting] = []
        left = amount
        for lot in self.lots(queue):
            if left <= 0:
                break
            balance = self.balance(lot.account)
            if lot.account.is_overdraft or lot.lapsed(self.at) or balance <= 0:
                continue
            take = min(balance, left)
            self.add(lot.account, -take)
            draws.append(Posting(lot.account, take))
            left -= take
        return tuple(draws)

    def overdraw(self, queue: str, amount: Decimal) -> None:
        """Put `amount` on the queue's overdraft, opening that account the first time."""
        account = Account.overdraft(queue)
        if self.journal.lot(account) is None and all(lot.account != account for lot in self._opens):
            self.open(Lot(account, None))
        self.add(account, -amount)

    def repay_overdraft(self, queue: str) -> None:
        """Move spendable credits of `queue` onto its overdraft until the debt is gone."""
        debt = -self.balance(Account.overdraft(queue))
        if debt > 0:
            repaid = sum((d.amount for d in self.draw(queue, debt)), ZERO)
            if repaid:
                self.add(Account.overdraft(queue), repaid)

    def postings(self) -> tuple[Posting, ...]:
        """Non-zero postings, in the order their accounts were first touched."""
        return tuple(Posting(a, amount) for a, amount in self._deltas.items() if amount != 0)

    def opens(self) -> tuple[Lot, ...]:
        return tuple(self._opens)

    def spendable(self, account: Account) -> bool:
        """Whether returning credits to `account` keeps them spendable (a lot that has not lapsed)."""
        lot = self.journal.lot(account)
        return (
            account.kind is AccountKind.CREDITS
            and lot is not None
            and not lot.lapsed(self.at)
            and not self.journal.swept(account)
        )
