"""The ledger's tables: the journal (transactions + postings), prices, and metered usage.

    ledger_transactions ─< ledger_postings     the double-entry journal (append-only)
    ledger_prices                               price rules with validity (pool file and admins)
    ledger_usage                                one row per worker per attempt: where it ran, from
                                                when to when (exact), and why it ended
    ledger_checkpoints                          the journal's derived state after transaction `seq`
                                                (a rebuild replays only what came after it)

Why these shapes:

- **The journal is the source of truth** for credits: grants, transfers, holds, top-ups,
  settlements and expiries are all transactions; balances, lots and holds are derived by
  replaying them (`corral.ledger.Journal`). `ledger_transactions.key` is UNIQUE, so a settlement
  replayed after a crash cannot post twice even if the in-memory checks were bypassed.
- **Money and time are exact text.** Amounts are Decimal strings ("412.50") and times are the
  ledger's exact instants ("1767225600.25"): SQLite has no exact decimal type, and a float would
  lose the cent. `ledger_postings.amount_units` repeats the amount in the currency's smallest unit
  (cents) as an integer, so SQL can check `SUM(amount_units) = 0` on both databases.
- **Usage is recorded, not recomputed**: a usage row copies the node's provider, region, GPU
  model and capacity kind when the attempt starts, so reports stay true after the pool changes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from corral.store.schema import Base

__all__ = ["LedgerCheckpoint", "LedgerPosting", "LedgerPrice", "LedgerTransaction", "LedgerUsage"]

_BigId = BigInteger().with_variant(Integer(), "sqlite")


class LedgerTransaction(Base):
    """One accepted journal transaction. `seq` is the append order the journal replays."""

    __tablename__ = "ledger_transactions"
    seq: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    at: Mapped[str] = mapped_column(String(64))  # exact instant (Decimal text)
    kind: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(63), index=True)
    amount: Mapped[str] = mapped_column(String(64))
    #: indexed (migration 0390): a settled hold is read back by its workload
    workload: Mapped[str] = mapped_column(String(160), default="", index=True)
    counterparty: Mapped[str] = mapped_column(String(63), default="")
    expires_at: Mapped[str | None] = mapped_column(String(64), nullable=True)
    memo: Mapped[str] = mapped_column(Text, default="")
    #: lots opened: [[kind, queue, ref, expires_at or null], ...]
    opens: Mapped[list[Any]] = mapped_column(JSON)
    at_s: Mapped[float] = mapped_column(Float)  # the same instant as a float, for range queries


class LedgerPosting(Base):
    __tablename__ = "ledger_postings"
    tx_seq: Mapped[int] = mapped_column(
        _BigId, ForeignKey("ledger_transactions.seq"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_kind: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(63))
    ref: Mapped[str] = mapped_column(String(255), default="")
    amount: Mapped[str] = mapped_column(String(64))
    amount_units: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_ledger_postings_queue_kind", "queue", "account_kind"),)


class LedgerPrice(Base):
    """A price rule. Empty pattern fields are wildcards; `source` is `pool` (replaced from the
    pool file on every start) or `api` (added by an admin)."""

    __tablename__ = "ledger_prices"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(63), default="")
    region: Mapped[str] = mapped_column(String(63), default="")
    gpu_model: Mapped[str] = mapped_column(String(63), default="")
    capacity_kind: Mapped[str] = mapped_column(String(16), default="")
    price_per_gpu_hour: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    valid_until: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)


class LedgerUsage(Base):
    """One worker of one attempt: where it ran and for how long (`end` NULL while it runs)."""

    __tablename__ = "ledger_usage"
    workload_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue: Mapped[str] = mapped_column(String(63), index=True)
    user: Mapped[str] = mapped_column(String(63))
    provider: Mapped[str] = mapped_column(String(63))
    region: Mapped[str] = mapped_column(String(63))
    node: Mapped[str] = mapped_column(String(200))
    gpu_model: Mapped[str] = mapped_column(String(63))
    capacity_kind: Mapped[str] = mapped_column(String(16))
    milli: Mapped[int] = mapped_column(Integer)
    start: Mapped[str] = mapped_column(String(64))
    end: Mapped[str | None] = mapped_column(String(64), nullable=True)
    end_reason: Mapped[str] = mapped_column(String(16), default="")
    start_s: Mapped[float] = mapped_column(Float, index=True)


class LedgerCheckpoint(Base):
    """The journal's balances, lots and holds after every transaction up to `seq`
    (`corral.store.ledger_checkpoint`). Derived, never the source of truth: deleting every row
    only makes the next rebuild replay the whole journal."""

    __tablename__ = "ledger_checkpoints"
    seq: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=False)
    transactions: Mapped[int] = mapped_column(BigInteger)  # how many it covers
    state: Mapped[str] = mapped_column(Text)  # JSON, see ledger_checkpoint.encode
    created_at: Mapped[float] = mapped_column(Float)
