"""The ledger's journal in SQL: a `JournalStore` over `ledger_transactions`/`ledger_postings`, and
`LedgerDb`, which hands out a `Journal` that is current with the database.

How writers stay single (the journal's contract, `corral.ledger.storage`): every write goes
through `LedgerDb.write()`, one database transaction that

1. takes the ledger's write lock (PostgreSQL: a transaction-scoped advisory lock; SQLite: the
   store's writers already run `BEGIN IMMEDIATE`, which serialises them),
2. catches the cached `Journal` up with every transaction committed since it last looked (other
   processes, e.g. API replicas, append too),
3. lets the caller post; each accepted transaction is INSERTed in that same database transaction,
4. commits. If anything raises (the caller, a constraint, the commit), the cache is dropped and
   rebuilt from the database on next use, so memory never runs ahead of what was committed.

Reads (`LedgerDb.read()`) catch up the same way without the lock. The UNIQUE key is the second
line of defence: a replayed settlement is a no-op in the journal, and could not insert anyway.

Checkpoints (`corral.store.ledger_checkpoint`): a rebuild starts from the latest saved state and
replays only the transactions after it. Memory then keeps the transactions after the checkpoint
and only the keys of those before it; a post under an old key (a replay) reads its original from
the database, and so does reading the whole journal (`Journal.transactions`, rare: the API's
grants and history). A write saves a new checkpoint, and forgets the transactions it covers,
once `checkpoint_every` transactions, and half as many as the last one covered, were posted
after the last one and `checkpoint_min_s` seconds passed since this process wrote one;
`LedgerDb.checkpoint()` saves one now (the control loop's planned stop). A checkpoint's size
is what is open (lots, open holds, balances), plus one name per settled hold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select

from corral.ledger import (
    DEFAULT_CURRENCY,
    Account,
    AccountKind,
    Currency,
    Intent,
    Journal,
    Lot,
    Posting,
    QueueChart,
    Transaction,
    TxKind,
)
from corral.store import Store, pg_bulk
from corral.store import ledger_checkpoint as LC
from corral.store.driver_bulk import binder, insert_tuples
from corral.store.ledger_tables import LedgerPosting, LedgerTransaction
from corral.store.ordered_insert import insert_tuples_in_order
from corral.store.schema import QueueRow

__all__ = ["LedgerDb", "LedgerSession", "SqlJournalStore", "decode_transaction",
           "load_transactions"]

#: transactions INSERTed per bulk statement by `SqlJournalStore.flush`
FLUSH_CHUNK = 2500

#: key of the PostgreSQL advisory lock that serialises ledger writers ("corral" in ASCII-ish)
ADVISORY_LOCK_KEY = 0x636F7272616C


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


_INSERT_TX = insert(LedgerTransaction).returning(LedgerTransaction.seq)
_INSERT_POSTINGS = insert(LedgerPosting)


#: every column of ledger_transactions but `seq`, in the order of `_tx_values`
_TX_COLUMNS = ("key", "at", "kind", "queue", "amount", "workload", "counterparty", "expires_at",
               "memo", "opens", "at_s")
# an enum's `.value` is a Python property: read once per member, not once per row
_TX_KINDS = {k: k.value for k in TxKind}
_ACCOUNT_KINDS = {k: k.value for k in AccountKind}


def _tx_values(tx: Transaction, encode: Any = None) -> tuple[Any, ...]:
    """A transaction as a row of `_TX_COLUMNS`: the one place a transaction becomes a row.
    `encode` (if given) turns the opened lots into what the `opens` column stores (the SQLite
    bulk path hands these tuples to the driver as they are)."""
    opens = [[_ACCOUNT_KINDS[lot.account.kind], lot.account.queue, lot.account.ref,
              _text(lot.expires_at)] for lot in tx.opens]
    intent = tx.intent
    return (tx.key, str(tx.at), _TX_KINDS[intent.kind], intent.queue, str(intent.amount),
            intent.workload, intent.counterparty, _text(intent.expires_at), tx.memo,
            opens if encode is None else encode(opens), float(tx.at))


def _tx_row(tx: Transaction) -> dict[str, Any]:
    return dict(zip(_TX_COLUMNS, _tx_values(tx), strict=True))


def _opens_encoder(conn: Connection) -> Any:
    """What SQLAlchemy's JSON type writes for `opens` on this connection, with the empty list
    (every transaction but grants and transfers) encoded once."""
    table = LedgerTransaction.__table__
    assert isinstance(table, Table)
    convert = binder(conn, table.c.opens)
    empty = convert([])
    return lambda opens: convert(opens) if opens else empty


#: every column of ledger_postings (none is left to a default), in the order of `_posting_values`
_POSTING_COLUMNS = ("tx_seq", "position", "account_kind", "queue", "ref", "amount",
                    "amount_units")


def _posting_values(seq: int, tx: Transaction, scale: int) -> list[tuple[Any, ...]]:
    """A transaction's postings as rows of `_POSTING_COLUMNS`: the one place a posting becomes
    a row (the SQLite bulk path hands these tuples to the driver as they are)."""
    return [(seq, i, _ACCOUNT_KINDS[p.account.kind], p.account.queue, p.account.ref,
             str(p.amount), int(p.amount * scale)) for i, p in enumerate(tx.postings)]


def _posting_rows(seq: int, tx: Transaction, scale: int) -> list[dict[str, Any]]:
    return [dict(zip(_POSTING_COLUMNS, row, strict=True))
            for row in _posting_values(seq, tx, scale)]


def insert_transaction(conn: Connection, tx: Transaction, currency: Currency) -> int:
    """INSERT one transaction and its postings; returns its seq. A used key raises IntegrityError."""
    # Parameters, not inline .values(): the statement is built and compiled once.
    seq = conn.execute(_INSERT_TX, _tx_row(tx)).scalar_one()
    if tx.postings:
        conn.execute(_INSERT_POSTINGS, _posting_rows(seq, tx, 10 ** currency.places))
    return int(seq)


def insert_transactions(conn: Connection, txs: Sequence[Transaction], currency: Currency) -> int:
    """INSERT many transactions and their postings in a few bulk statements (a settlement burst
    posts thousands in one cycle); returns the last seq. Seqs come back in the order given
    (`corral.store.ordered_insert`), so the append order is the order of `txs`. A used key
    raises IntegrityError."""
    if len(txs) == 1:
        return insert_transaction(conn, txs[0], currency)
    scale = 10 ** currency.places
    table = LedgerPosting.__table__
    assert isinstance(table, Table)
    # the transactions as the driver's tuples (`insert_tuples_in_order`: SQLite's executemany,
    # PostgreSQL's COPY after drawing their seqs), the empty `opens` of holds and settlements
    # encoded once
    encode = _opens_encoder(conn)
    seqs = insert_tuples_in_order(conn, LedgerTransaction, "seq", "key", _TX_COLUMNS,
                                  [_tx_values(tx, encode) for tx in txs])
    # the postings (two or more per transaction, 50,000 in a step that places and ends
    # 10,000) as the driver's tuples, built once: not a dict per posting that `insert_rows`
    # then turns into a tuple; on PostgreSQL one COPY, not an INSERT per posting
    rows = [row for seq, tx in zip(seqs, txs, strict=True)
            for row in _posting_values(seq, tx, scale)]
    insert_tuples(conn, table, _POSTING_COLUMNS, rows)  # zero holds have none
    return max(seqs)


def load_transactions(conn: Connection, after_seq: int = 0, through_seq: int | None = None
                      ) -> list[tuple[int, Transaction]]:
    """Every transaction with `after_seq` < seq (<= `through_seq`), in append order."""
    txs = select(LedgerTransaction).where(LedgerTransaction.seq > after_seq)
    q = select(LedgerPosting).where(LedgerPosting.tx_seq > after_seq)
    if through_seq is not None:
        txs = txs.where(LedgerTransaction.seq <= through_seq)
        q = q.where(LedgerPosting.tx_seq <= through_seq)
    rows = list(conn.execute(txs.order_by(LedgerTransaction.seq)))
    if not rows:
        return []
    return _with_postings(conn, rows, q.order_by(LedgerPosting.tx_seq, LedgerPosting.position))


def load_transaction(conn: Connection, key: str) -> Transaction | None:
    """The transaction stored under `key`, or None."""
    found = load_keyed(conn, [key])
    return found[0] if found else None


def load_keyed(conn: Connection, keys: Sequence[str]) -> list[Transaction]:
    """The transactions stored under `keys` (those that exist), in append order."""
    return _load_in(conn, LedgerTransaction.key, keys)


def _load_in(conn: Connection, column: Any, values: Sequence[str]) -> list[Transaction]:
    """The transactions whose `column` is one of `values`, with their postings, in append
    order: two statements per 500 values."""
    out: list[tuple[int, Transaction]] = []
    for i in range(0, len(values), 500):
        rows = list(conn.execute(select(LedgerTransaction)
                                 .where(column.in_(values[i:i + 500]))
                                 .order_by(LedgerTransaction.seq)))
        if rows:
            q = (select(LedgerPosting).where(LedgerPosting.tx_seq.in_([r.seq for r in rows]))
                 .order_by(LedgerPosting.tx_seq, LedgerPosting.position))
            out.extend(_with_postings(conn, rows, q))
    return [tx for _, tx in sorted(out, key=lambda pair: pair[0])]


def recent_hold_workloads(conn: Connection, limit: int,
                          queues: Collection[str] | None) -> list[str]:
    """The workloads of the newest `limit` holds placed (of `queues`, or all), newest first:
    a walk back along the append order that stops at `limit`, not a read of the journal."""
    q = select(LedgerTransaction.workload).where(LedgerTransaction.kind == TxKind.HOLD.value)
    if queues is not None:
        q = q.where(LedgerTransaction.queue.in_(sorted(queues)))
    return list(conn.scalars(q.order_by(LedgerTransaction.seq.desc()).limit(limit)))


def load_of_workloads(conn: Connection, workloads: Sequence[str]) -> list[Transaction]:
    """The transactions of `workloads` (their holds, top-ups, settlements), in append order:
    a settled hold read back (`Journal.hold`, the API's list of holds), by the column's index."""
    return _load_in(conn, LedgerTransaction.workload, workloads)


def load_memos(conn: Connection, keys: Sequence[str]) -> dict[str, str]:
    """The memo of each transaction stored under `keys` (those that exist), one statement per
    500 keys: only the column asked for, not the transactions and their postings."""
    out: dict[str, str] = {}
    # PostgreSQL: by the keys' unique index. Without statistics of the holds inserted by the
    # step before, the planner read every stored transaction per 500 keys (the settlement
    # burst at 10,000 x 100,000: 20 such reads, 0.65 s profiled)
    with pg_bulk.by_index(conn):
        for i in range(0, len(keys), 500):
            out.update((k, m) for k, m in conn.execute(
                select(LedgerTransaction.key, LedgerTransaction.memo)
                .where(LedgerTransaction.key.in_(keys[i:i + 500]))))
    return out


def _with_postings(conn: Connection, rows: Sequence[Any], postings_query: Any
                   ) -> list[tuple[int, Transaction]]:
    postings: dict[int, list[Posting]] = {}
    accounts: dict[tuple[str, str, str], Account] = {}  # one object per account, shared
    for p in conn.execute(postings_query):
        key = (p.account_kind, p.queue, p.ref)
        account = accounts.get(key)
        if account is None:
            account = accounts[key] = Account(AccountKind(p.account_kind), p.queue, p.ref)
        postings.setdefault(p.tx_seq, []).append(Posting(account, Decimal(p.amount)))
    return [(r.seq, decode_transaction(r, postings.get(r.seq, []))) for r in rows]


def decode_transaction(r: Any, postings: Sequence[Posting]) -> Transaction:
    """A ledger_transactions row (any query naming its columns) as the journal's transaction,
    with `postings` (read apart: the grant index passes none)."""
    intent = Intent(TxKind(r.kind), r.queue, Decimal(r.amount), workload=r.workload,
                    counterparty=r.counterparty, expires_at=_dec(r.expires_at))
    opens = tuple(Lot(Account(AccountKind(k), q, ref), _dec(exp)) for k, q, ref, exp in r.opens)
    return Transaction(r.key, Decimal(r.at), intent, tuple(postings), opens, r.memo)


class SqlJournalStore:
    """A `JournalStore` whose appends INSERT through the connection it is bound to.

    It keeps the transactions it has seen in memory too (the journal replays them and looks keys
    up on every post); `LedgerDb` keeps that copy current. Unbound (reading), `append` refuses.
    Appends are buffered while bound and written in bulk by `flush` (at the latest when the
    binding ends, before the database transaction commits): a step that posts 10,000 holds
    makes two INSERTs, not 20,000.
    """

    def __init__(self, currency: Currency, store: Store | None = None) -> None:
        self.currency = currency
        self.store = store  # read what memory forgot when no connection is bound
        self.last_seq = 0
        self._order: list[Transaction] = []
        self._by_key: dict[str, Transaction] = {}
        self._conn: Connection | None = None
        self._reader: Connection | None = None  # for what memory forgot (before `_base_seq`)
        self._loading = False
        self._unsaved: list[Transaction] = []  # appended while bound, not INSERTed yet
        self._base_seq = 0  # transactions up to here are in the database only...
        self._old_keys: set[str] = set()  # ...and memory keeps their keys
        self._fetched: dict[str, Transaction] = {}  # old ones read back, for one session

    def forget_through(self, seq: int, keys: set[str]) -> None:
        """Keep only the keys of the transactions up to `seq` (a checkpoint covers them);
        called with everything appended so far, or at a rebuild before the replay of the rest."""
        self._base_seq = seq
        self._old_keys |= keys
        for tx in self._order:
            self._old_keys.add(tx.key)
        self._order, self._by_key = [], {}

    def append(self, tx: Transaction) -> None:
        if tx.key in self._by_key:
            raise KeyError(f"transaction key {tx.key!r} is already stored")
        if not self._loading:
            if self._conn is None:
                raise RuntimeError("the ledger is open for reading; write through LedgerDb.write()")
            self._unsaved.append(tx)
        self._order.append(tx)
        self._by_key[tx.key] = tx

    def flush(self) -> None:
        """INSERT what was appended since the last flush (in the bound transaction), a chunk
        (`FLUSH_CHUNK`) of transactions at a time: the driver's rows of one chunk are let go
        before the next is built (a settlement burst's 20,000 transactions and 50,000 postings
        as tuples at once were ~15 MiB alive together, on top of the step's high-water mark).
        The seqs are drawn in the same order, so the rows are those of one statement."""
        if self._unsaved:
            assert self._conn is not None
            txs, self._unsaved = self._unsaved, []
            for i in range(0, len(txs), FLUSH_CHUNK):
                self.last_seq = insert_transactions(self._conn, txs[i:i + FLUSH_CHUNK],
                                                    self.currency)

    def get(self, key: str) -> Transaction | None:
        found = self._by_key.get(key)
        if found is None and key in self._old_keys:
            found = self._fetched.get(key)
            if found is None:
                with self._database() as conn:
                    found = load_transaction(conn, key)
        return found

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read the older transactions among `keys` in bulk, for `get` until the session ends
        (a settlement burst asks for thousands of holds placed before the checkpoint)."""
        wanted = [k for k in keys
                  if k in self._old_keys and k not in self._by_key and k not in self._fetched]
        if wanted:
            with self._database() as conn:
                self._fetched.update((tx.key, tx) for tx in load_keyed(conn, wanted))

    def memos(self, keys: Iterable[str]) -> dict[str, str]:
        """The memo of each transaction of `keys` that exists: from memory where it is there,
        the rest (forgotten at a checkpoint) in one read of that column alone."""
        out: dict[str, str] = {}
        old: list[str] = []
        for k in keys:
            tx = self._by_key.get(k) or self._fetched.get(k)
            if tx is not None:
                out[k] = tx.memo
            elif k in self._old_keys:
                old.append(k)
        if old:
            with self._database() as conn:
                out.update(load_memos(conn, old))
        return out

    def transactions_of(self, workloads: Sequence[str]) -> list[Transaction]:
        """The stored transactions of `workloads` in append order (`Journal.hold` of a settled
        hold): from the database, and those appended in this session not written yet."""
        wanted = set(workloads)
        with self._database() as conn:
            found = load_of_workloads(conn, list(workloads))
        return found + [tx for tx in self._unsaved if tx.intent.workload in wanted]

    def recent_hold_workloads(self, limit: int, queues: Collection[str] | None) -> list[str]:
        """The workloads of the newest `limit` holds (of `queues`, or all), newest first:
        the database's, then those placed in this session and not written yet."""
        with self._database() as conn:
            stored = recent_hold_workloads(conn, limit, queues)
        unsaved = [tx.intent.workload for tx in reversed(self._unsaved)
                   if tx.intent.kind is TxKind.HOLD and (queues is None or tx.intent.queue in queues)]
        return [*unsaved, *stored][:limit]

    def __iter__(self) -> Iterator[Transaction]:
        if not self._old_keys:
            return iter(tuple(self._order))
        with self._database() as conn:
            old = load_transactions(conn, 0, self._base_seq)
        return iter([tx for _, tx in old] + self._order)

    def __len__(self) -> int:
        return len(self._old_keys) + len(self._order)

    @contextmanager
    def _database(self) -> Iterator[Connection]:
        """The bound connection (inside LedgerDb's sessions), else a read of its own."""
        if self._reader is not None:
            yield self._reader
        elif self.store is not None:
            with self.store.read() as conn:
                yield conn
        else:
            raise RuntimeError("the ledger's older transactions are read inside LedgerDb.read() "
                               "or LedgerDb.write()")

    @contextmanager
    def bound(self, conn: Connection) -> Iterator[None]:
        self._conn = self._reader = conn
        try:
            yield
            self.flush()
        finally:
            self._conn = self._reader = None
            self._unsaved = []  # on an error LedgerDb drops this copy; nothing half-written
            self._fetched = {}

    @contextmanager
    def reading(self, conn: Connection) -> Iterator[None]:
        # a read may nest in a write of the same thread (LedgerDb's lock is reentrant): the
        # write's connection is its reader again afterwards, or what memory forgot (and a
        # settled hold, `transactions_of`) would be read on another connection, which does
        # not see what the write has not committed
        reader, fetched = self._reader, self._fetched
        self._reader = conn
        try:
            yield
        finally:
            self._reader = reader
            self._fetched = fetched if reader is not None else {}

    def catch_up(self, journal: Journal, rows: Sequence[tuple[int, Transaction]]) -> None:
        """Feed transactions committed elsewhere through `journal.post` (which re-validates them)
        without inserting them again."""
        self._loading = True
        try:
            for seq, tx in rows:
                journal.post(tx)
                self.last_seq = seq
        finally:
            self._loading = False


@dataclass(frozen=True)
class LedgerSession:
    """One database transaction with the ledger: `conn` for other rows written atomically with
    the journal's postings (usage rows next to their settlement), `journal` to read and post."""

    conn: Connection
    journal: Journal
    store: SqlJournalStore | None = None

    def flush(self) -> None:
        """Write the transactions posted so far (they are written at commit anyway): for SQL
        that must see them inside this transaction."""
        if self.store is not None:
            self.store.flush()

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read in bulk the transactions of `keys` that memory forgot at a checkpoint, before
        asking `journal.get` for each (see `SqlJournalStore.prefetch`)."""
        if self.store is not None:
            self.store.prefetch(keys)

    def memos(self, keys: Iterable[str]) -> dict[str, str]:
        """The memo of each transaction of `keys` that exists (`SqlJournalStore.memos`); only
        the memo, where `journal.get` would read each whole transaction back."""
        if self.store is not None:
            return self.store.memos(keys)
        return {k: tx.memo for k in keys if (tx := self.journal.get(k)) is not None}


class LedgerDb:
    """The ledger of one store, cached in memory and kept current (see the module docstring).

    Thread-safe: sessions of one LedgerDb are serialised by a lock (the journal is not
    thread-safe), and different LedgerDbs (or processes) are serialised by the database.
    """

    def __init__(self, store: Store, *, currency: Currency = DEFAULT_CURRENCY,
                 draw_from_ancestors: bool = True, checkpoint_every: int = 10_000,
                 checkpoint_min_s: float = 60.0) -> None:
        self.store = store
        self.currency = currency
        self.draw_from_ancestors = draw_from_ancestors
        self.checkpoint_every = checkpoint_every
        self.checkpoint_min_s = checkpoint_min_s
        self._lock = threading.RLock()
        self._journal: Journal | None = None
        self._sql: SqlJournalStore | None = None
        self._parents: dict[str, str | None] = {}
        self._chart: dict[str, str | None] = {}  # the journal's chart (deleted queues kept)
        self._covered = 0  # transactions the latest checkpoint covers
        self._checkpointed_at = float("-inf")  # monotonic time of this process's last one
        self._force = False  # `checkpoint()`: save one whatever the burst rule says

    @contextmanager
    def write(self) -> Iterator[LedgerSession]:
        """A write transaction holding the ledger lock; commits when the block ends cleanly."""
        with self._lock:
            try:
                with self.store.write() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
                    journal, sql = self._current(conn)
                    with sql.bound(conn):
                        yield LedgerSession(conn, journal, sql)
                    if self._checkpoint_due(sql):
                        self._save_checkpoint(conn, journal, sql)
            except BaseException:
                self._journal = self._sql = None  # memory may be ahead of the database
                raise

    @contextmanager
    def read(self) -> Iterator[LedgerSession]:
        """A read-only view, current as of now; posting through it raises."""
        with self._lock, self.store.read() as conn:
            journal, sql = self._current(conn)
            with sql.reading(conn):
                yield LedgerSession(conn, journal, sql)

    def checkpoint(self) -> None:
        """Save a checkpoint now, whatever the burst rule says (`_checkpoint_due`): a planned
        stop (`ControlLoop.stop`, before the lease is given up) so that the next leader replays
        nothing, an operator before a handover, tests. Nothing is written when the latest
        checkpoint already covers every transaction."""
        with self._lock:
            self._force = True
            try:
                with self.write():
                    pass
            finally:
                self._force = False

    def _checkpoint_due(self, sql: SqlJournalStore) -> bool:
        # at least `checkpoint_every` new transactions, and at least half as many as the last
        # checkpoint covered: writing one costs its size (every open hold), so a step's
        # burst is not taxed with a whole checkpoint each time, and the replay after the latest
        # stays within half of what it covers. `checkpoint()` asks for one whatever this says.
        if self._force:
            return True
        if self.checkpoint_every < 0:
            return False
        if len(sql) - self._covered < max(self.checkpoint_every, self._covered // 2):
            return False
        return time.monotonic() - self._checkpointed_at >= self.checkpoint_min_s

    def _save_checkpoint(self, conn: Connection, journal: Journal, sql: SqlJournalStore) -> None:
        """Inside the write, after its postings were flushed: the state is exactly that of
        every transaction up to `sql.last_seq` (this writer holds the ledger's lock)."""
        if len(sql) == 0 or len(sql) == self._covered:
            return
        state = journal.state(copy=False)  # encoded here, under the lock: no copy needed
        # the queues its transactions name: a rebuild keeps them (as roots once deleted)
        named = {a.queue for a in state.balances} | {h.queue for h in state.holds}
        chart = {q: self._chart.get(q) for q in sorted(named)}
        LC.save(conn, sql.last_seq, len(sql), chart, state, time.time())
        sql.forget_through(sql.last_seq, set())
        self._covered = len(sql)
        self._checkpointed_at = time.monotonic()

    def _current(self, conn: Connection) -> tuple[Journal, SqlJournalStore]:
        parents = {r.name: r.parent for r in conn.execute(select(QueueRow.name, QueueRow.parent))}
        if self._journal is None or self._sql is None or not _same_tree(self._parents, parents):
            return self._rebuild(conn, parents)
        self._sql.catch_up(self._journal, load_transactions(conn, self._sql.last_seq))
        return self._journal, self._sql

    def _rebuild(self, conn: Connection, parents: dict[str, str | None]
                 ) -> tuple[Journal, SqlJournalStore]:
        saved = LC.latest(conn)
        rows = load_transactions(conn, 0 if saved is None else saved.seq)
        chart = dict(parents)
        for name in () if saved is None else saved.chart:  # deleted queues, as roots
            chart.setdefault(name, None)
        for _, tx in rows:  # queues deleted since: keep their accounts, as roots
            for q in (tx.intent.queue, tx.intent.counterparty,
                      *(p.account.queue for p in tx.postings)):
                if q and q not in chart:
                    chart[q] = None
        for name, parent in list(chart.items()):
            if parent is not None and parent not in chart:
                chart[name] = None
        sql = SqlJournalStore(self.currency, self.store)
        journal = Journal(QueueChart(chart), currency=self.currency, store=sql,
                          draw_from_ancestors=self.draw_from_ancestors,
                          state=None if saved is None else saved.state)
        if saved is not None:
            sql.forget_through(saved.seq, LC.keys_through(conn, saved.seq))
            sql.last_seq = saved.seq
        sql.catch_up(journal, rows)
        self._journal, self._sql, self._parents, self._chart = journal, sql, parents, chart
        self._covered = 0 if saved is None else saved.transactions
        return journal, sql


def _same_tree(cached: dict[str, str | None], current: dict[str, str | None]) -> bool:
    """Whether the queue tree is unchanged (a new queue, or a new parent, needs a new chart)."""
    return cached == current
