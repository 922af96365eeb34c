"""Credits coming in, moving and lapsing: grants, admin transfers, expiry.

Every function here builds one balanced transaction (see `corral.ledger.journal`) and returns
it; called again with the same key and the same request it returns the original and posts
nothing. Amounts are exact at the currency's places (`Currency.amount`); times are seconds
since the epoch (`corral.ledger.instants`).

- `grant`: credits enter a queue from its `granted` source as a new lot, optionally expiring.
  Any debt of the queue (overdraft) is repaid first.
- `transfer`: an admin moves credits from one queue to another. The moved credits keep their
  expiry (a transfer never extends the life of credits); not enough available is a `Deny`.
- `expire_due`: at `now`, whatever is left in lapsed lots moves to the queue's `expired` account.
"""

from __future__ import annotations

from decimal import Decimal

from corral.ledger.accounts import Account
from corral.ledger.admission import Deny, decide
from corral.ledger.entries import Intent, Lot, Posting, Transaction, TxKind
from corral.ledger.errors import LedgerInputError
from corral.ledger.funding import Draft
from corral.ledger.instants import TimeLike, to_instant
from corral.ledger.journal import Journal
from corral.ledger.money import MoneyLike

__all__ = ["expire_due", "grant", "transfer"]


def grant(
    journal: Journal,
    *,
    key: str,
    queue: str,
    amount: MoneyLike,
    at: TimeLike,
    expires_at: TimeLike | None = None,
    memo: str = "",
) -> Transaction:
    """Grant `amount` credits to `queue` at `at`, expiring at `expires_at` (None = never)."""
    journal.chart.require(queue)
    credits = _positive(journal, amount, "amount")
    when = to_instant(at, "at")
    expiry = None if expires_at is None else to_instant(expires_at, "expires_at")
    if expiry is not None and expiry <= when:
        raise LedgerInputError(
            "expires_at", f"{expiry} is not after the grant time {when}", "give a later expiry"
        )
    intent = Intent(TxKind.GRANT, queue, credits, expires_at=expiry)
    if (done := journal.replay(key, intent)) is not None:
        return done
    draft = Draft(journal, when)
    lot = Lot(Account.lot(queue, key), expiry)
    draft.open(lot)
    draft.add(Account.granted(queue), -credits)
    draft.add(lot.account, credits)
    draft.repay_overdraft(queue)
    return journal.post(Transaction(key, when, intent, draft.postings(), draft.opens(), memo))


def transfer(
    journal: Journal,
    *,
    key: str,
    source: str,
    target: str,
    amount: MoneyLike,
    at: TimeLike,
    memo: str = "",
) -> Transaction | Deny:
    """Move `amount` of `source`'s available credits to `target` (an admin operation).

    Only the source's own credits move (never its ancestors'). Returns Deny when the source has
    less available than `amount`.
    """
    journal.chart.require(source, "source")
    journal.chart.require(target, "target")
    if source == target:
        raise LedgerInputError("target", "is the same queue as source", "pick another queue")
    credits = _positive(journal, amount, "amount")
    when = to_instant(at, "at")
    intent = Intent(TxKind.TRANSFER, source, credits, counterparty=target)
    if (done := journal.replay(key, intent)) is not None:
        return done
    verdict = decide(journal, source, credits, when, purpose="to transfer", own_only=True)
    if isinstance(verdict, Deny):
        return verdict
    draft = Draft(journal, when)
    by_expiry: dict[Decimal | None, Decimal] = {}
    for draw in draft.draw(source, credits):
        expiry = _lot_expiry(journal, draw)
        by_expiry[expiry] = by_expiry.get(expiry, Decimal(0)) + draw.amount
    for i, (expiry, moved) in enumerate(by_expiry.items()):
        lot = Lot(Account.lot(target, f"{key}#{i}"), expiry)
        draft.open(lot)
        draft.add(lot.account, moved)
    draft.repay_overdraft(target)
    return journal.post(Transaction(key, when, intent, draft.postings(), draft.opens(), memo))


def expire_due(journal: Journal, now: TimeLike) -> tuple[Transaction, ...]:
    """Move what is left in every lot lapsed at `now` to its queue's `expired` account.

    Safe to call at any time and any number of times: each lot expires once, under the key
    "expire:'<queue>':'<lot>'". Returns the transactions posted by this call.
    """
    when = to_instant(now, "now")
    posted: list[Transaction] = []
    for queue in journal.chart.queues:
        for lot in journal.lots(queue):
            left = journal.balance(lot.account)
            if not lot.lapsed(when) or left <= 0:
                continue
            intent = Intent(TxKind.EXPIRE, queue, left)
            postings = (Posting(lot.account, -left), Posting(Account.expired(queue), left))
            key = f"expire:{queue!r}:{lot.account.ref!r}"
            posted.append(journal.post(Transaction(key, when, intent, postings)))
    return tuple(posted)


def _lot_expiry(journal: Journal, draw: Posting) -> Decimal | None:
    lot = journal.lot(draw.account)
    return None if lot is None else lot.expires_at


def _positive(journal: Journal, amount: MoneyLike, field: str) -> Decimal:
    credits = journal.currency.amount(amount, field)
    if credits <= 0:
        raise LedgerInputError(field, f"{credits} is not positive", "pass an amount above zero")
    return credits
