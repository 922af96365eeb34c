"""The budget check of admission: can this queue's credits cover a hold right now?

`decide` is pure over the journal's state: it returns `Admit` (and which queue will pay) or
`Deny` with a stable reason code and a sentence for "why pending", e.g.

    queue research needs 412.50 credits held, 96.20 available

Work that is denied stays pending; nothing is posted. The control loop then places the hold
with `corral.ledger.holds.place_hold`, which runs the same check and so never over-commits.
`available` in the sentence is the most that any single paying queue could hold (a hold is
paid whole by one queue; see `corral.ledger.funding`); `Deny.candidates` lists each queue of the
chain with its own available credits, for a fuller explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from corral.ledger.funding import available, funding_chain
from corral.ledger.instants import Instant
from corral.ledger.journal import Journal

__all__ = ["INSUFFICIENT_CREDITS", "Admit", "Deny", "decide"]

INSUFFICIENT_CREDITS: Final = "InsufficientCredits"


@dataclass(frozen=True, slots=True)
class Admit:
    """The hold can be covered; `funder` is the queue whose credits will pay it."""

    queue: str
    funder: str
    amount: Decimal
    available: Decimal

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Deny:
    """The amount cannot be covered. `code` is a stable constant; `message` is for people."""

    code: str
    queue: str
    needed: Decimal
    available: Decimal
    message: str
    candidates: tuple[tuple[str, Decimal], ...] = ()

    @property
    def ok(self) -> bool:
        return False


def decide(
    journal: Journal,
    queue: str,
    amount: Decimal,
    now: Instant,
    *,
    purpose: str = "held",
    own_only: bool = False,
) -> Admit | Deny:
    """Whether `queue` (or, if allowed, its nearest ancestor) can pay `amount` at `now`.

    A zero amount is always admitted and paid by the queue itself (free capacity still gets a
    hold record, so that settlement stays uniform). `purpose` completes the sentence
    ("held", "to transfer"); `own_only` ignores ancestors (transfers move a queue's own credits).
    """
    chain = (journal.chart.require(queue),) if own_only else funding_chain(journal, queue)
    if amount <= 0:
        return Admit(queue, queue, amount, available(journal, queue, now))
    candidates = tuple((q, available(journal, q, now)) for q in chain)
    for funder, credits in candidates:
        if credits >= amount:
            return Admit(queue, funder, amount, credits)
    best = max(credits for _, credits in candidates)
    fmt = journal.currency.format
    return Deny(
        code=INSUFFICIENT_CREDITS,
        queue=queue,
        needed=amount,
        available=best,
        message=(
            f"queue {queue} needs {fmt(amount)} {journal.currency.name} {purpose}, "
            f"{fmt(best)} available"
        ),
        candidates=candidates,
    )
