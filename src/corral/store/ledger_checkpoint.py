"""Checkpoints of the ledger's journal: its derived state saved after transaction `seq`.

A new leader (or any process whose `LedgerDb` has no cache) rebuilds the journal from the
latest checkpoint and the transactions after it, as a database recovers from a checkpoint and
the log written since (PostgreSQL's checkpoint + WAL redo, SQLite's WAL checkpoints), instead of
replaying every transaction since the ledger began: at 10,000 nodes x 100,000 workloads the
whole replay was the largest part of a restart.

What a checkpoint holds is `corral.ledger.journal.JournalState` (balances, lots in opening
order, the open holds in placing order, the names of the workloads whose hold was settled,
swept lots, transfer sums) plus the queue chart it was taken with (queues deleted since keep
their accounts), as lines of JSON (a header, then a chunk of one section per line: `encode`)
with every amount and instant as exact Decimal text. The transactions themselves stay where they are: a checkpoint is derived, never
the source of truth, and deleting it only makes the next rebuild replay everything.

Only the latest checkpoint is kept; it is written inside a ledger write (under the ledger's
lock, after that write's postings), so it always matches exactly the transactions up to its
`seq` (`LedgerDb.write`).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from corral.ledger import Account, AccountKind, Hold, Lot, Posting
from corral.ledger.journal import JournalState
from corral.store.ledger_tables import LedgerCheckpoint, LedgerTransaction

__all__ = ["Checkpoint", "decode", "encode", "keys_through", "latest", "save"]

log = logging.getLogger(__name__)
FORMAT = 2  # bumped when the JSON's shape changes; an unknown format is ignored (full replay)
# format 1 kept settled holds whole (and their zero-balance hold accounts); it is still read,
# as format 2 reads it (`_settled_apart`), so an upgrade does not replay the whole journal
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


_SEP = (",", ":")
#: items per line of a format-2 checkpoint: one line's lists are alive at a time when it is
#: written or read, not the whole state's (at 10,000 x 100,000, 58,000 open holds and their
#: accounts as nested lists were ~40 MiB at once, above the loop's high-water mark)
LINE_ITEMS = 5000
_SECTIONS = ("balances", "lots", "holds", "settled", "swept", "transfers")


def _items(state: JournalState, section: str, derived: bool) -> Iterator[Any]:
    if section == "balances":  # the open holds' accounts left to their draws (`_held`)
        return ([*_account(a), str(v)] for a, v in state.balances.items()
                if not derived or a.kind is not AccountKind.HOLD)
    if section == "lots":
        return ([*_account(lot.account), _text(lot.expires_at)] for lot in state.lots)
    if section == "holds":
        return ([h.workload, h.queue, str(h.placed_at),
                 [[*_account(d.account), str(d.amount)] for d in h.draws],
                 h.settled_by, _text(h.charged)] for h in state.holds)
    if section == "settled":
        return iter(sorted(state.settled))
    if section == "swept":
        return (_account(a) for a in state.swept)
    return ([q, incoming, str(v)] for (q, incoming), v in state.transfers.items())


def _held(holds: Iterable[Hold]) -> dict[Account, Decimal]:
    """The balance of each open hold's accounts as its draws make it: each hold or top-up is
    paid whole by one queue, into that queue's account of the hold, so the account holds the
    sum of the draws from that queue's lots. A checkpoint leaves out every balance equal to
    this (all of them, as the journal posts) and the reader derives them again."""
    out: dict[Account, Decimal] = {}
    for h in holds:
        for d in h.draws:
            account = Account.hold(d.account.queue, h.workload)
            before = out.get(account)
            out[account] = d.amount if before is None else before + d.amount
    return out


def _held_exactly(state: JournalState) -> bool:
    """Whether `_held` of the open holds gives every hold account's balance, and no other:
    checked hold by hold, without building `_held`'s mapping (58,000 accounts at once)."""
    accounts = 0
    for h in state.holds:
        sums: dict[str, Decimal] = {}
        for d in h.draws:
            q = d.account.queue
            sums[q] = d.amount if q not in sums else sums[q] + d.amount
        for q, v in sums.items():
            if state.balances.get(Account.hold(q, h.workload)) != v:
                return False
        accounts += len(sums)
    return accounts == sum(1 for a in state.balances if a.kind is AccountKind.HOLD)


def _lines(chart: Mapping[str, str | None], state: JournalState) -> Iterator[str]:
    # the hold accounts are left out only when the draws make every one of them (true of
    # what the journal posts; else every balance is written and the reader derives none)
    exact = _held_exactly(state)
    yield json.dumps({"format": FORMAT, "chart": dict(chart), "held_from_draws": exact},
                     separators=_SEP)
    for section in _SECTIONS:
        items = _items(state, section, exact)
        while chunk := list(islice(items, LINE_ITEMS)):
            yield json.dumps([section, chunk], separators=_SEP)


def encode(chart: Mapping[str, str | None], state: JournalState) -> str:
    """The state as lines of JSON: a header (format, chart), then `[section, [items...]]`
    lines of at most `LINE_ITEMS` items, so that neither writing nor reading it builds the
    whole state as nested lists at once."""
    return "\n".join(_lines(chart, state))


def decode(text: str) -> tuple[dict[str, str | None], JournalState] | None:
    """The chart and state of a checkpoint's JSON; None for a format this code does not know."""
    lines = io.StringIO(text)
    data: dict[str, Any] = json.loads(lines.readline())
    if data.get("format") == 1:  # one JSON object, every section in it
        sections: Iterable[tuple[str, list[Any]]] = (
            (name, data[name]) for name in _SECTIONS if name in data)
    elif data.get("format") == FORMAT:
        sections = (json.loads(line) for line in lines)
    else:
        return None
    build = _Builder(derive=data["format"] == FORMAT and bool(data.get("held_from_draws")))
    for name, items in sections:
        build.add(name, items)
    return dict(data["chart"]), _settled_apart(build.state())


class _Builder:
    """A state from its sections' items, one line of them at a time; equal accounts and equal
    amounts share one object (a checkpoint repeats them: 0.00, equal holds)."""

    def __init__(self, derive: bool) -> None:
        self.derive = derive  # format 2: the open holds' balances from their draws
        self.accounts: dict[tuple[str, str, str], Account] = {}
        self.numbers: dict[str, Decimal] = {}
        self.balances: dict[Account, Decimal] = {}
        self.lots: list[Lot] = []
        self.holds: list[Hold] = []
        self.settled: set[str] = set()
        self.swept: set[Account] = set()
        self.transfers: dict[tuple[str, bool], Decimal] = {}

    def account(self, kind: str, queue: str, ref: str) -> Account:
        key = (kind, queue, ref)
        found = self.accounts.get(key)
        if found is None:
            found = self.accounts[key] = Account(_KINDS[kind], queue, ref)
        return found

    def dec(self, text: str) -> Decimal:
        found = self.numbers.get(text)
        if found is None:
            found = self.numbers[text] = Decimal(text)
        return found

    def hold(self, w: str, q: str, at: str, draws: list[list[str]], settled_by: str | None,
             charged: str | None) -> Hold:
        return Hold(w, q, self.dec(at), tuple(Posting(self.account(k, dq, r), self.dec(v))
                                              for k, dq, r, v in draws),
                    settled_by, None if charged is None else self.dec(charged))

    def add(self, section: str, items: list[Any]) -> None:
        if section == "balances":
            self.balances.update((self.account(k, q, r), self.dec(v)) for k, q, r, v in items)
        elif section == "lots":
            self.lots.extend(Lot(self.account(k, q, r), _dec(e)) for k, q, r, e in items)
        elif section == "holds":
            self.holds.extend(self.hold(*h) for h in items)
        elif section == "settled":
            self.settled.update(items)
        elif section == "swept":
            self.swept.update(self.account(k, q, r) for k, q, r in items)
        elif section == "transfers":
            self.transfers.update(((q, bool(incoming)), Decimal(v)) for q, incoming, v in items)
        else:
            raise ValueError(f"unknown checkpoint section {section!r}")

    def state(self) -> JournalState:
        # the open holds' accounts left out by `encode` (format 2), before those written
        balances = {**_held(self.holds), **self.balances} if self.derive else self.balances
        return JournalState(balances, tuple(self.lots), tuple(self.holds),
                            frozenset(self.swept), self.transfers, frozenset(self.settled))


def _settled_apart(state: JournalState) -> JournalState:
    """A format-1 state as the journal keeps it now: settled holds as names, their
    zero-balance hold accounts dropped (format 2 has none: returned as is)."""
    settled = [h for h in state.holds if not h.open]
    if not settled:
        return state
    gone = {Account.hold(q, h.workload) for h in settled for q in h.funders}
    return JournalState({a: v for a, v in state.balances.items() if a not in gone}, state.lots,
                        tuple(h for h in state.holds if h.open), state.swept, state.transfers,
                        state.settled | {h.workload for h in settled})


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
