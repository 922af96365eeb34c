"""Escrow holds: reserve a workload's expected cost when it is admitted, settle it when it ends.

The flow, per workload (a workload has at most one hold, ever, so it is charged at most once):

    place_hold ──> [top_up ...] ──> settle(cost)      charge the real cost, release the rest
                                └─> release            settle at zero (the work never ran)

- **How much to hold**: `expected_cost` prices `milli` milli-GPUs for the workload's maximum
  runtime from the admission time on (price changes ahead are known to the catalog and split
  exactly); `hold_amount` rounds it UP to the currency. Work without a maximum runtime holds a
  rolling window (say one hour) instead, and the control loop calls `rolling_top_up` as it runs,
  which keeps the hold at least `accrued cost + one window`.
- **Who pays**: the workload's queue, or its nearest ancestor with enough credits
  (`corral.ledger.funding`); a hold or top-up that nobody can cover is a `Deny` value.
- **Settlement**: the cost (exact, from metering) is rounded half-even; it is charged against the
  hold's draws in the order they were drawn, and whatever is left goes back to the lots it came
  from. Credits returned to a lot that lapsed while they were held expire at once (a hold does
  not extend the life of credits). A cost above the hold is drawn from the queue's credits,
  and if those are short, becomes an overdraft (debt) of the workload's queue.
- Keys: "hold:<workload>" and "settle:<workload>" by default, so a retried or replayed
  settlement is the same transaction and never charges twice; top-ups need a key from the
  caller (one per top-up, for example "topup:<workload>:<window index>").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from corral.ledger.accounts import Account
from corral.ledger.admission import Deny, decide
from corral.ledger.entries import Hold, Intent, Transaction, TxKind
from corral.ledger.errors import HoldStateError, LedgerInputError
from corral.ledger.funding import Draft, funding_chain
from corral.ledger.instants import Instant, TimeLike, to_instant
from corral.ledger.journal import Journal
from corral.ledger.metering import UsageRecord, usage_cost
from corral.ledger.money import Exact, MoneyLike
from corral.ledger.prices import PriceCatalog, PriceKey

__all__ = [
    "HoldPlaced",
    "expected_cost",
    "place_hold",
    "release",
    "rolling_top_up",
    "settle",
    "settle_usage",
    "top_up",
]


@dataclass(frozen=True, slots=True)
class HoldPlaced:
    """A hold (or top-up) that was posted, and its transaction (the original one on a replay)."""

    hold: Hold
    transaction: Transaction

    @property
    def ok(self) -> bool:
        return True


def expected_cost(
    catalog: PriceCatalog, key: PriceKey, milli: int, start: TimeLike, seconds: TimeLike
) -> Fraction:
    """Exact cost of `milli` milli-GPUs on `key` for `seconds` from `start` (split at price changes)."""
    begin = to_instant(start, "start")
    return catalog.cost(key, milli, begin, begin + to_instant(seconds, "seconds"))


def place_hold(
    journal: Journal,
    *,
    workload: str,
    queue: str,
    amount: MoneyLike,
    at: TimeLike,
    key: str | None = None,
    memo: str = "",
) -> HoldPlaced | Deny:
    """Hold `amount` for `workload` of `queue`; Deny (posting nothing) if nobody can cover it."""
    journal.chart.require(queue)
    held = _non_negative(journal, amount)
    when = to_instant(at, "at")
    key = key or f"hold:{workload}"
    intent = Intent(TxKind.HOLD, queue, held, workload=_named(workload))
    if (done := journal.replay(key, intent)) is not None:
        return HoldPlaced(_hold(journal, workload), done)
    if journal.had_hold(workload):
        raise HoldStateError(f"workload {workload!r} already has a hold; one hold per workload")
    verdict = decide(journal, queue, held, when)
    if isinstance(verdict, Deny):
        return verdict
    draft = _draw_into_hold(journal, when, workload, verdict.funder, held)
    tx = journal.post(Transaction(key, when, intent, draft.postings(), draft.opens(), memo))
    return HoldPlaced(_hold(journal, workload), tx)


def top_up(
    journal: Journal,
    *,
    workload: str,
    amount: MoneyLike,
    at: TimeLike,
    key: str,
    memo: str = "",
) -> HoldPlaced | Deny:
    """Add `amount` to an open hold (paid by the nearest queue that can); Deny if nobody can."""
    hold = _hold(journal, workload)
    more = _non_negative(journal, amount)
    if more == 0:
        raise LedgerInputError("amount", "is zero", "skip the top-up when nothing is needed")
    when = to_instant(at, "at")
    intent = Intent(TxKind.TOPUP, hold.queue, more, workload=workload)
    if (done := journal.replay(key, intent)) is not None:
        return HoldPlaced(_hold(journal, workload), done)
    if not hold.open:
        raise HoldStateError(f"the hold of workload {workload!r} is settled; cannot top it up")
    verdict = decide(journal, hold.queue, more, when)
    if isinstance(verdict, Deny):
        return verdict
    draft = _draw_into_hold(journal, when, workload, verdict.funder, more)
    tx = journal.post(Transaction(key, when, intent, draft.postings(), draft.opens(), memo))
    return HoldPlaced(_hold(journal, workload), tx)


def rolling_top_up(journal: Journal, workload: str, accrued: Exact, window: Exact) -> Decimal:
    """How much to add so that the hold covers `accrued` cost plus one more `window` of cost.

    Zero when the hold already covers it. Both costs are exact; the target is rounded up.
    """
    target = journal.currency.hold(Fraction(accrued) + Fraction(window))
    return max(Decimal(0), target - _hold(journal, workload).amount)


def settle(
    journal: Journal,
    *,
    workload: str,
    cost: Exact,
    at: TimeLike,
    key: str | None = None,
    memo: str = "",
) -> Transaction:
    """Charge the real `cost` of `workload` (rounded half-even) and release the rest of its hold.

    Replaying the same settlement (same key, same charge) returns the original transaction.
    """
    hold = _hold(journal, workload)
    charge = journal.currency.charge(_exact(cost))
    if charge < 0:
        raise LedgerInputError("cost", f"{charge} is negative", "a cost is zero or more")
    when = to_instant(at, "at")
    key = key or f"settle:{workload}"
    intent = Intent(TxKind.SETTLE, hold.queue, charge, workload=workload)
    if (done := journal.replay(key, intent)) is not None:
        return done
    if not hold.open:
        raise HoldStateError(
            f"workload {workload!r} was already settled by {hold.settled_by!r}; not charging twice"
        )
    draft = Draft(journal, when)
    funders = hold.funders  # a property that walks the draws: read once here
    _empty_hold(draft, hold, funders)
    excess = _charge_draws(draft, hold, charge)
    if excess > 0:
        _charge_excess(draft, hold.queue, excess)
    for queue in dict.fromkeys((*funders, hold.queue)):
        draft.repay_overdraft(queue)
    return journal.post(Transaction(key, when, intent, draft.postings(), draft.opens(), memo))


def release(
    journal: Journal, *, workload: str, at: TimeLike, key: str | None = None, memo: str = ""
) -> Transaction:
    """Give the whole hold back (the work never ran): a settlement at zero cost."""
    return settle(journal, workload=workload, cost=0, at=at, key=key, memo=memo)


def settle_usage(
    journal: Journal,
    *,
    workload: str,
    usage: Iterable[UsageRecord],
    catalog: PriceCatalog,
    at: TimeLike,
    key: str | None = None,
) -> Transaction:
    """Settle `workload` at the exact priced cost of its usage records (others are ignored)."""
    cost = sum((usage_cost(r, catalog) for r in usage if r.workload_id == workload), Fraction(0))
    return settle(journal, workload=workload, cost=cost, at=at, key=key)


def _draw_into_hold(
    journal: Journal, when: Instant, workload: str, funder: str, amount: Decimal
) -> Draft:
    draft = Draft(journal, when)
    drawn = sum((d.amount for d in draft.draw(funder, amount)), Decimal(0))
    if drawn:
        draft.add(Account.hold(funder, workload), drawn)
    return draft


def _empty_hold(draft: Draft, hold: Hold, funders: tuple[str, ...]) -> None:
    for queue in funders:
        account = Account.hold(queue, hold.workload)
        draft.add(account, -draft.balance(account))


def _charge_draws(draft: Draft, hold: Hold, charge: Decimal) -> Decimal:
    """Charge the earliest draws first, return the rest to its lots. Returns what is uncovered."""
    left = charge
    for draw in hold.draws:
        queue = draw.account.queue
        charged = min(draw.amount, left)
        left -= charged
        if charged:
            draft.add(Account.spent(queue), charged)
        back = draw.amount - charged
        if back:
            keep = draft.spendable(draw.account)
            draft.add(draw.account if keep else Account.expired(queue), back)
    return left


def _charge_excess(draft: Draft, queue: str, excess: Decimal) -> None:
    """Charge a cost above the hold: the nearest queue that can pay it whole, else debt."""
    chain = funding_chain(draft.journal, queue)
    payer = next((q for q in chain if draft.available(q) >= excess), queue)
    drawn = sum((d.amount for d in draft.draw(payer, excess)), Decimal(0))
    if drawn < excess:
        draft.overdraw(payer, excess - drawn)
    draft.add(Account.spent(payer), excess)


def _hold(journal: Journal, workload: str) -> Hold:
    hold = journal.hold(workload)
    if hold is None:
        raise HoldStateError(f"workload {workload!r} has no hold; place one first")
    return hold


def _non_negative(journal: Journal, amount: MoneyLike) -> Decimal:
    value = journal.currency.amount(amount, "amount")
    if value < 0:
        raise LedgerInputError("amount", f"{value} is negative", "hold zero or more")
    return value


def _exact(cost: Exact) -> Fraction:
    if isinstance(cost, bool) or not isinstance(cost, Fraction | Decimal | int):
        raise LedgerInputError(
            "cost", f"{cost!r} is not an exact number", "pass a Fraction, Decimal or int"
        )
    return cost if type(cost) is Fraction else Fraction(cost)  # immutable: no copy needed


def _named(workload: str) -> str:
    if not workload or not workload.strip():
        raise LedgerInputError("workload", "is empty", "pass the workload's id")
    return workload
