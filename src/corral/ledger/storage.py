"""The storage seam of the journal: where transactions are kept.

The journal's semantics (validation, idempotency, balances) live in `corral.ledger.journal`;
a `JournalStore` only keeps accepted transactions, in order. `InMemoryJournalStore` ships here;
the store layer (`corral.store`) persists the same transactions in SQL, with a unique index on
`key`, and must keep the contract below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from corral.ledger.entries import Transaction

__all__ = ["InMemoryJournalStore", "JournalStore"]


class JournalStore(Protocol):
    """Append-only storage of accepted transactions.

    Contract:
    - `append` is called only with a transaction the journal has validated, whose key is new;
      it stores it durably (or raises, storing nothing). It must refuse a key that is already
      stored (a unique constraint), as a second line of defence against double charges.
    - `get` returns the transaction stored under a key, or None.
    - iteration yields every stored transaction in append order (the journal rebuilds its
      derived state, such as lots and holds, by replaying them in that order).
    - the journal is the single writer of a store: appends are serialised by the caller (in SQL,
      one transaction per append with the journal's state loaded under a lock).
    """

    def append(self, tx: Transaction) -> None: ...

    def get(self, key: str) -> Transaction | None: ...

    def __iter__(self) -> Iterator[Transaction]: ...

    def __len__(self) -> int: ...


class InMemoryJournalStore:
    """A `JournalStore` in a list and a dict; for tests, the simulator and dry runs."""

    def __init__(self) -> None:
        self._order: list[Transaction] = []
        self._by_key: dict[str, Transaction] = {}

    def append(self, tx: Transaction) -> None:
        if tx.key in self._by_key:
            raise KeyError(f"transaction key {tx.key!r} is already stored")
        self._order.append(tx)
        self._by_key[tx.key] = tx

    def get(self, key: str) -> Transaction | None:
        return self._by_key.get(key)

    def __iter__(self) -> Iterator[Transaction]:
        return iter(tuple(self._order))

    def __len__(self) -> int:
        return len(self._order)
