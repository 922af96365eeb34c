"""Errors of the ledger.

Expected outcomes (a hold that cannot be covered, a transfer larger than the balance) are values
(`corral.ledger.admission.Deny`), never exceptions. Exceptions mean bad input or a caller bug::

    LedgerError                      base of everything raised by corral.ledger
    ├── LedgerInputError (ValueError) bad input: names the field and the fix
    │   ├── NoPriceError              the price catalog has no price for a key at a time
    │   └── ConflictingEventError     one lifecycle event reported twice with different content
    ├── IdempotencyConflictError      a key already used for a *different* transaction body
    ├── UnbalancedTransactionError    postings that do not sum to zero (a bug in the caller)
    └── HoldStateError                a hold that does not exist, or is already settled
"""

from __future__ import annotations

__all__ = [
    "ConflictingEventError",
    "HoldStateError",
    "IdempotencyConflictError",
    "LedgerError",
    "LedgerInputError",
    "NoPriceError",
    "UnbalancedTransactionError",
]


class LedgerError(Exception):
    """Base class of every error raised by `corral.ledger`."""


class LedgerInputError(LedgerError, ValueError):
    """Bad input. The message names the offending field and says how to fix it."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}; {fix}")


class NoPriceError(LedgerInputError):
    """No price rule covers a (provider, region, GPU model, capacity kind) at some time."""


class ConflictingEventError(LedgerInputError):
    """The same lifecycle event (same identity) arrived twice with different content."""


class IdempotencyConflictError(LedgerError):
    """An idempotency key was reused for a transaction with a different body.

    A replay of the *same* transaction is a no-op; reusing a key for different postings means two
    operations collided on one key, which is a bug to surface, never to paper over.
    """


class UnbalancedTransactionError(LedgerError):
    """A transaction whose postings do not sum to zero, or that is otherwise malformed."""


class HoldStateError(LedgerError):
    """An operation on a hold that does not exist or is no longer open."""
