"""Checkpoints of the ledger's journal: its derived state saved after transaction `seq`.

A new leader (or any process whose `LedgerDb` has no cache) rebuilds the journal from the
latest checkpoint and the transactions after it, as a database recovers from a checkpoint and
the log written since (PostgreSQL's checkpoint + WAL redo, SQLite's WAL checkpoints), instead of
replaying every transaction since the ledger began: at 10,000 nodes x 100,000 workloads the
whole replay was the largest part of a restart.

What a checkpoint holds is `corral.ledger.journal.JournalState` (balances, lots in opening
order, holds in placing order, swept lots, transfer sums) plus the queue chart it was taken
with (queues deleted since keep their accounts), as JSON with every amount and instant as exact
Decimal text. The transactions themselves stay where they are: a checkpoint is derived, never
the source of truth, and deleting it only makes the next rebuild replay everything.

Only the latest checkpoint is kept; it is written inside a ledger write (under the ledger's
lock, after that write's postings), so it always matches exactly the transactions up to its
`seq` (`LedgerDb.write`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from corral.ledger import Account, AccountKind, Hold, Lot, Posting
from corral.ledger.journal import JournalState
from corral.store.ledger_tables import LedgerCheckpoint, LedgerTransaction

__all__ = ["Checkpoint", "decode", "encode", "keys_through", "latest", "save"]

log = logging.getLogger(__name__)
FORMAT = 1  # bumped when the JSON's shape changes; an unknown format is ignored (full replay)
_KINDS = {k.value: k for k in AccountKind}  # a dict lookup, not an Enum call per account


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # the last transaction it covers
    transactions: int  # how many transactions it covers
    chart: Mapping[str, str | None]  # queue -> parent, as the journal's chart had them
    state: JournalState


def _account(a: Account) -> list[str]:
    return [a.kind.value, a.queue, a.ref]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def encode(chart: Mapping[str, str | None], state: JournalState) -> str:
    return json.dumps({
        "format": FORMAT,
        "chart": dict(chart),
        "balances": [[*_account(a), str(v)] for a, v in state.balances.items()],
        "lots": [[*_account(lot.account), _text(lot.expires_at)] for lot in state.lots],
        "holds": [[h.workload, h.queue, str(h.placed_at),
                   [[*_account(d.account), str(d.amount)] for d in h.draws],
                   h.settled_by, _text(h.charged)] for h in state.holds],
        "swept": [_account(a) for a in state.swept],
        "transfers": [[q, incoming, str(v)] for (q, incoming), v in state.transfers.items()],
    }, separators=(",", ":"))


def decode(text: str) -> tuple[dict[str, str | None], JournalState] | None:
    """The chart and state of a checkpoint's JSON; None for a format this code does not know."""
    data: dict[str, Any] = json.loads(text)
    if data.get("format") != FORMAT:
        return None
    accounts: dict[tuple[str, str, str], Account] = {}  # one object per account, shared
    numbers: dict[str, Decimal] = {}  # amounts repeat (0.00, equal holds): one Decimal each

    def account(kind: str, queue: str, ref: str) -> Account:
        key = (kind, queue, ref)
        found = accounts.get(key)
        if found is None:
            found = accounts[key] = Account(_KINDS[kind], queue, ref)
        return found

    def dec(text: str) -> Decimal:
        found = numbers.get(text)
        if found is None:
            found = numbers[text] = Decimal(text)
        return found

    def hold(w: str, q: str, at: str, draws: list[list[str]], settled_by: str | None,
             charged: str | None) -> Hold:
        return Hold(w, q, dec(at), tuple(Posting(account(k, dq, r), dec(v))
                                         for k, dq, r, v in draws),
                    settled_by, None if charged is None else dec(charged))

    state = JournalState(
        balances={account(k, q, r): dec(v) for k, q, r, v in data["balances"]},
        lots=tuple(Lot(account(k, q, r), _dec(e)) for k, q, r, e in data["lots"]),
        holds=tuple(hold(*h) for h in data["holds"]),
        swept=frozenset(account(k, q, r) for k, q, r in data["swept"]),
        transfers={(q, bool(incoming)): Decimal(v) for q, incoming, v in data["transfers"]},
    )
    return dict(data["chart"]), state


def save(conn: Connection, seq: int, transactions: int, chart: Mapping[str, str | None],
         state: JournalState, now: float) -> None:
    """Write a checkpoint after transaction `seq` and drop the older ones (same transaction)."""
    conn.execute(delete(LedgerCheckpoint).where(LedgerCheckpoint.seq <= seq))
    conn.execute(insert(LedgerCheckpoint), {"seq": seq, "transactions": transactions,
                                            "state": encode(chart, state), "created_at": now})


def latest(conn: Connection) -> Checkpoint | None:
    row = conn.execute(select(LedgerCheckpoint).order_by(LedgerCheckpoint.seq.desc())
                       .limit(1)).first()
    if row is None:
        return None
    try:
        decoded = decode(row.state)
    except (KeyError, TypeError, ValueError, ArithmeticError):  # damaged: it is only derived
        log.warning("ledger checkpoint after transaction %s is unreadable; replaying the whole "
                    "journal instead", row.seq, exc_info=True)
        return None
    if decoded is None:
        return None
    chart, state = decoded
    return Checkpoint(int(row.seq), int(row.transactions), chart, state)


def keys_through(conn: Connection, seq: int) -> set[str]:
    """The idempotency keys of every transaction up to `seq`: a post under one of them is a
    replay, whose original is then read from the database (`SqlJournalStore.get`)."""
    return set(conn.execute(select(LedgerTransaction.key)
                            .where(LedgerTransaction.seq <= seq)).scalars())
