"""The ledger's grants as `GET /v1/ledger/grants` lists them, kept current without decoding the
journal (issue 14).

The journal keeps in memory only the transactions after its latest checkpoint, so listing
grants through `Journal.transactions` read and decoded every transaction before it from the
database, and walked every one after it, on every request: a cost that grew with the journal
(every hold and settlement ever posted), for a handful of grants. A `GrantIndex` keeps the grants
read so far and the journal seq it has read through; a request reads only the grant rows
appended since (`seq` is the primary key, so the range costs the new transactions; only the
grants' columns are read, no postings). Transactions are never updated or deleted, so a grant
once read stays as read; what is left of it is the live journal's balance of its lot, read by
the caller.

The index is read through the journal's own `last_seq`, in the journal's read session, so the
grants listed and the balances beside them are of the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, select

from corral.ledger import Account, Transaction, TxKind
from corral.store.journal_sql import decode_transaction
from corral.store.ledger_tables import LedgerTransaction

__all__ = ["Grant", "GrantIndex"]

_T = LedgerTransaction
# every column `decode_transaction` reads; a grant's postings are not read (nothing here needs
# them)
_GRANTS = select(_T.seq, _T.key, _T.kind, _T.queue, _T.amount, _T.workload, _T.counterparty,
                 _T.at, _T.expires_at, _T.memo, _T.opens).where(
    _T.kind == TxKind.GRANT.value).order_by(_T.seq)


@dataclass(frozen=True, slots=True)
class Grant:
    key: str
    queue: str
    amount: Decimal
    at: Decimal
    expires_at: Decimal | None
    memo: str
    lot: Account | None  # the credits lot it opened: its balance is what is left

    @classmethod
    def of(cls, tx: Transaction) -> Grant:
        """A grant transaction just posted (the answer to `POST /v1/ledger/grants`)."""
        return cls(tx.key, tx.intent.queue, tx.intent.amount, tx.at, tx.intent.expires_at,
                   tx.memo, tx.opens[0].account if tx.opens else None)


class GrantIndex:
    """Every grant of one ledger, in the journal's order, read incrementally.

    Not thread-safe: callers read it inside `LedgerDb.read()`, whose lock serialises sessions."""

    def __init__(self) -> None:
        self.seq = 0  # every transaction up to here has been looked at
        self.grants: list[Grant] = []

    def through(self, conn: Connection, seq: int) -> list[Grant]:
        """The grants of the transactions up to `seq` (the journal's `last_seq`); reads only
        those appended since the last call. A `seq` below the last one read (a store restored
        to an earlier state) reads everything again."""
        if seq < self.seq:
            self.seq, self.grants = 0, []
        if seq > self.seq:
            q = _GRANTS.where(_T.seq > self.seq, _T.seq <= seq)
            self.grants += [Grant.of(decode_transaction(r, ())) for r in conn.execute(q)]
            self.seq = seq
        return self.grants

