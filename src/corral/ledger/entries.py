"""What the journal records: transactions made of balanced postings, each with a key.

A `Transaction` is the unit of the journal:

- `key`: its idempotency key. The journal holds at most one transaction per key; posting a key
  again with the same intent and postings is a no-op that returns the original, and with a
  different body is an `IdempotencyConflictError`.
- `intent`: what was asked (grant 100 to research, settle workload w1 at 12.34, ...). The
  operations compare intents when a key is replayed, because the postings of a replay could not
  be recomputed after the fact (a settled hold is closed).
- `postings`: what it did, one signed amount per account, summing to exactly zero.
- `opens`: the credit lots it creates (with their expiry), so that the journal's derived state
  can be rebuilt by replaying transactions alone.
- `at`: when (seconds since the epoch, see `corral.ledger.instants`). Not part of the body that
  idempotency compares: a retry a minute later is the same transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from corral.ledger.accounts import Account
from corral.ledger.instants import Instant

__all__ = ["Hold", "Intent", "Lot", "Posting", "Transaction", "TxKind"]


class TxKind(enum.StrEnum):
    GRANT = "grant"
    TRANSFER = "transfer"
    HOLD = "hold"
    TOPUP = "topup"
    SETTLE = "settle"
    EXPIRE = "expire"


@dataclass(frozen=True, slots=True)
class Posting:
    """A signed amount on one account. Positive adds to the account's balance."""

    account: Account
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Lot:
    """A lot of credits: one grant (or the part of a transfer with one expiry).

    Lots are spent soonest-expiring first, non-expiring last, ties in the order they were opened
    (the draw-down order of Stripe's, Kong's and Stigg's credit grants). A lot *lapses* at
    `expires_at`: from then on it can no longer pay for anything, and `expire_due` moves what is
    left of it to the queue's `expired` account.
    """

    account: Account
    expires_at: Instant | None = None

    def lapsed(self, now: Instant) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class Intent:
    """What an operation was asked to do; compared when an idempotency key is replayed.

    queue: the queue acted on (grant target, transfer source, the workload's queue for holds).
    amount: the operation's headline amount (granted, transferred, held, topped up, charged,
    expired). counterparty: the target queue of a transfer.
    """

    kind: TxKind
    queue: str
    amount: Decimal
    workload: str = ""
    counterparty: str = ""
    expires_at: Instant | None = None

    def describe(self) -> str:
        parts = [f"{self.kind.value} {self.amount} on queue {self.queue}"]
        if self.workload:
            parts.append(f"workload {self.workload}")
        if self.counterparty:
            parts.append(f"to queue {self.counterparty}")
        if self.expires_at is not None:
            parts.append(f"expiring at {self.expires_at}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A balanced set of postings with an idempotency key (see the module docstring)."""

    key: str
    at: Instant
    intent: Intent
    postings: tuple[Posting, ...]
    opens: tuple[Lot, ...] = ()
    memo: str = ""

    @property
    def total(self) -> Decimal:
        """Sum of the postings; zero for every transaction the journal accepted."""
        return sum((p.amount for p in self.postings), Decimal(0))

    def same_body(self, other: Transaction) -> bool:
        """Equal in everything idempotency compares (all but `at` and `memo`)."""
        return (self.key, self.intent, self.postings, self.opens) == (
            other.key,
            other.intent,
            other.postings,
            other.opens,
        )


@dataclass(frozen=True, slots=True)
class Hold:
    """Credits held in escrow for one workload (a workload has at most one hold, ever).

    draws: the lots that paid for the hold, as positive amounts, in the order they were drawn
    (placement first, then each top-up). Settlement charges the earliest draws first and returns
    the rest, latest first, to the lots they came from.
    """

    workload: str
    queue: str
    placed_at: Instant
    draws: tuple[Posting, ...]
    settled_by: str | None = None
    charged: Decimal | None = None

    @property
    def amount(self) -> Decimal:
        """Everything drawn into the hold (placement plus top-ups)."""
        return sum((d.amount for d in self.draws), Decimal(0))

    @property
    def open(self) -> bool:
        return self.settled_by is None

    @property
    def funders(self) -> tuple[str, ...]:
        """Queues that paid into the hold, in draw order, without repeats."""
        return tuple(dict.fromkeys(d.account.queue for d in self.draws))
