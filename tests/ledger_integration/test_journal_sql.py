"""The SQL journal: the ledger's own Hypothesis machine over it, and what SQL adds (a unique key
in the database, rollback safety, other writers, a queue tree that changes)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, run_state_machine_as_test
from sqlalchemy import Connection, delete, event, func, select
from sqlalchemy.exc import IntegrityError
from tests.ledger.test_properties import CHART, QUEUES, LedgerMachine

from corral.core.model import Queue
from corral.ledger import (
    DEFAULT_CURRENCY,
    Account,
    Transaction,
    grant,
    place_hold,
    settle,
    statement,
)
from corral.store import Store
from corral.store import pool as P
from corral.store.journal_sql import LedgerDb, insert_transaction
from corral.store.ledger_tables import LedgerCheckpoint, LedgerPosting, LedgerTransaction
from corral.store.schema import QueueRow


def _queues(store: Store, *specs: str) -> None:
    with store.write() as c:
        for spec in specs:
            name, _, parent = spec.partition("<")
            P.upsert_queue(c, Queue(name, parent or None))


class SqlLedgerMachine(LedgerMachine):
    """The ledger's state machine, with every posting INSERTed into a real database; at the end
    the journal is rebuilt from the database and must tell the same story."""

    store: ClassVar[Store]

    @initialize(ancestors=st.booleans())
    def start(self, ancestors: bool) -> None:
        with self.store.write() as c:  # a clean ledger for every example
            c.execute(delete(LedgerCheckpoint))
            c.execute(delete(LedgerPosting))
            c.execute(delete(LedgerTransaction))
            c.execute(delete(QueueRow))
        _queues(self.store, *CHART)
        self.db = LedgerDb(self.store, draw_from_ancestors=ancestors)
        self._session = self.db.write()
        self.session = self._session.__enter__()
        self.journal = self.session.journal
        self.fresh_model()

    @invariant()
    def database_matches_the_journal(self) -> None:
        self.session.flush()  # posts are written in bulk at commit; SQL inside sees them after
        conn = self.session.conn
        count = conn.execute(select(func.count()).select_from(LedgerTransaction)).scalar_one()
        units = conn.execute(select(func.sum(LedgerPosting.amount_units))).scalar_one()
        assert count == len(self.journal)
        assert (units or 0) == 0

    def teardown(self) -> None:
        if not hasattr(self, "journal"):
            return
        try:
            super().teardown()
        finally:  # a failed example must not keep the database locked for the next one
            self._session.__exit__(None, None, None)
        with LedgerDb(self.store, draw_from_ancestors=self.db.draw_from_ancestors).read() as s:
            for queue in QUEUES:
                assert statement(s.journal, queue, self.now) == statement(
                    self.journal, queue, self.now)
            assert [t.key for t in s.journal.transactions()] == [
                t.key for t in self.journal.transactions()]


def test_the_ledger_machine_holds_on_sql(store: Store) -> None:
    SqlLedgerMachine.store = store
    run_state_machine_as_test(
        SqlLedgerMachine, settings=settings(max_examples=15, stateful_step_count=25,
                                            deadline=None))


def test_a_used_key_is_refused_by_the_database_itself(store: Store) -> None:
    _queues(store, "research")
    db = LedgerDb(store)
    with db.write() as s:
        tx = grant(s.journal, key="g1", queue="research", amount="10", at=0)
    with pytest.raises(IntegrityError), store.write() as c:
        insert_transaction(c, tx, db.currency)
    with store.read() as c:
        assert c.execute(select(func.count()).select_from(LedgerTransaction)).scalar_one() == 1


def test_a_session_writes_its_posts_in_bulk_in_order(store: Store) -> None:
    _queues(store, "research")
    db = LedgerDb(store)
    with db.write() as s:
        for i in range(5):
            grant(s.journal, key=f"g{i}", queue="research", amount="10", at=i)
        place_hold(s.journal, workload="w@0", queue="research", amount="3", at=5)
        with store.read() as other:  # nothing is visible before the commit
            assert other.execute(select(func.count()).select_from(LedgerTransaction)
                                 ).scalar_one() == 0
    with store.read() as c:
        rows = list(c.execute(select(LedgerTransaction.seq, LedgerTransaction.key)
                              .order_by(LedgerTransaction.seq)))
        assert [k for _, k in rows] == [f"g{i}" for i in range(5)] + ["hold:w@0"]
        assert c.execute(select(func.sum(LedgerPosting.amount_units))).scalar_one() == 0
    with LedgerDb(store).read() as s:  # a fresh reader rebuilds the same balances
        assert statement(s.journal, "research", Decimal(6)).held == Decimal("3.00")


def _bulk_and_one_by_one(store: Store, db: LedgerDb,
                         rows: Callable[[Connection], list[tuple[object, ...]]],
                         ) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """`rows` as the bulk write stored them, then as the one-transaction path stores the same
    journal after both tables are emptied."""
    with db.read() as s:
        bulk, txs = rows(s.conn), list(s.journal.transactions())
    with store.write() as c:
        c.execute(delete(LedgerPosting))
        c.execute(delete(LedgerTransaction))
        for tx in txs:
            insert_transaction(c, tx, DEFAULT_CURRENCY)
        return bulk, rows(c)


def test_bulk_postings_are_the_rows_of_one_by_one_inserts(store: Store) -> None:
    """A bulk write (SQLite: the postings as the driver's tuples) stores exactly the rows the
    one-transaction path does: every column, in place (amounts as text and as units)."""
    _queues(store, "research")
    db = LedgerDb(store)
    with db.write() as s:
        grant(s.journal, key="g", queue="research", amount="100", at=0)
    with db.write() as s:  # a burst: holds, then settlements (several postings each)
        for i in range(3):
            place_hold(s.journal, workload=f"w{i}@0", queue="research", amount=f"{i + 2}.25",
                       at=1)
        for i in range(3):
            settle(s.journal, workload=f"w{i}@0", cost=Decimal(i) + Decimal("0.5"), at=2)

    def rows(conn: Connection) -> list[tuple[object, ...]]:  # tx_seq as the append rank
        got = conn.execute(select(LedgerPosting).order_by(LedgerPosting.tx_seq,
                                                          LedgerPosting.position)).all()
        rank = {seq: i for i, seq in enumerate(sorted({r.tx_seq for r in got}))}
        return [(rank[r.tx_seq], r.position, r.account_kind, r.queue, r.ref, r.amount,
                 r.amount_units) for r in got]

    bulk, single = _bulk_and_one_by_one(store, db, rows)
    assert len(bulk) == 17 and single == bulk


def test_bulk_postings_go_to_postgresql_in_one_copy(store: Store) -> None:
    """PostgreSQL: a burst's postings are one COPY, not an INSERT per posting (psycopg's
    executemany sent 51,182 INSERTs in the 10,000 x 100,000 place step); SQLite keeps its
    one driver executemany."""
    _queues(store, "research")
    db = LedgerDb(store)
    with db.write() as s:
        grant(s.journal, key="g", queue="research", amount="100", at=0)
    sent: list[tuple[str, int]] = []

    def seen(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if "ledger_postings" in sql:
            sent.append((sql.split("(")[0].strip(), len(params) if many else 1))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with db.write() as s:
            for i in range(3):
                place_hold(s.journal, workload=f"w{i}@0", queue="research", amount="2", at=1)
            for i in range(3):
                settle(s.journal, workload=f"w{i}@0", cost=Decimal("0.5"), at=2)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    with store.read() as c:
        assert c.execute(select(func.count()).select_from(LedgerPosting)).scalar_one() == 17
    if store.engine.dialect.name == "sqlite":
        assert sent == [("INSERT INTO ledger_postings", 15)]
    else:
        assert sent == []  # the COPY goes through psycopg's cursor, past SQLAlchemy


def test_bulk_transactions_are_the_rows_of_one_by_one_inserts(store: Store) -> None:
    """A bulk write (SQLite: the transactions as the driver's tuples, the empty `opens`
    encoded once) stores exactly the rows the one-transaction path does: every column."""
    _queues(store, "research", "prod")
    db = LedgerDb(store)
    with db.write() as s:  # a burst: grants that open lots (one expiring), holds, settlements
        grant(s.journal, key="g", queue="research", amount="100", at=0)
        grant(s.journal, key="g2", queue="prod", amount="7.5", at=0, expires_at=900)
        for i in range(3):
            place_hold(s.journal, workload=f"w{i}@0", queue="research", amount=f"{i + 2}.25",
                       at=Decimal("1.5"))
        place_hold(s.journal, workload="z@0", queue="prod", amount=0, at=1, memo="unmetered")
        for i in range(3):
            settle(s.journal, workload=f"w{i}@0", cost=Decimal(i) + Decimal("0.5"), at=2)

    def rows(conn: Connection) -> list[tuple[object, ...]]:  # every column but seq
        got = conn.execute(select(LedgerTransaction).order_by(LedgerTransaction.seq)).all()
        return [tuple(getattr(r, c.name) for c in LedgerTransaction.__table__.c
                      if c.name != "seq") for r in got]

    bulk, single = _bulk_and_one_by_one(store, db, rows)
    assert len(bulk) == 9 and single == bulk
    assert any(r[-2] for r in bulk) and any(r[-2] == [] for r in bulk)  # opens: some, none


def test_a_bulk_write_of_postless_transactions_is_stored(store: Store) -> None:
    """Zero holds (unmetered queues) have no postings: a burst of only them writes its
    transactions and no posting rows (the driver must not be handed an empty list)."""
    _queues(store, "research")
    with LedgerDb(store).write() as s:
        for i in range(3):
            place_hold(s.journal, workload=f"w{i}@0", queue="research", amount=0, at=1)
    with store.read() as c:
        assert c.execute(select(func.count()).select_from(LedgerTransaction)).scalar_one() == 3
        assert c.execute(select(func.count()).select_from(LedgerPosting)).scalar_one() == 0


def test_a_rolled_back_write_leaves_neither_rows_nor_memory(store: Store) -> None:
    _queues(store, "research")
    db = LedgerDb(store)
    with pytest.raises(RuntimeError, match="boom"), db.write() as s:
        grant(s.journal, key="g1", queue="research", amount="10", at=0)
        raise RuntimeError("boom")
    with db.read() as s:
        assert len(s.journal) == 0 and s.journal.get("g1") is None
    with db.write() as s:  # the same key is free again: nothing was committed under it
        assert isinstance(grant(s.journal, key="g1", queue="research", amount="10", at=0),
                          Transaction)


def test_writers_in_other_processes_are_seen(store: Store) -> None:
    _queues(store, "research")
    api, loop = LedgerDb(store), LedgerDb(store)
    with api.write() as s:
        grant(s.journal, key="g1", queue="research", amount="100", at=0)
    with loop.write() as s:  # catches up before it decides
        placed = place_hold(s.journal, workload="w@0", queue="research", amount="60", at=1)
        assert placed.ok
    with api.write() as s:
        denied = place_hold(s.journal, workload="w2@0", queue="research", amount="60", at=2)
        assert not denied.ok and "needs 60.00 credits held, 40.00 available" in denied.message
        settle(s.journal, workload="w@0", cost=Decimal("12.5"), at=3)
    with loop.read() as s:
        st_ = statement(s.journal, "research", 4)
        assert (st_.settled, st_.held, st_.balance) == (Decimal("12.50"), 0, Decimal("87.50"))


def test_a_new_queue_rebuilds_the_chart_without_losing_history(store: Store) -> None:
    _queues(store, "org")
    db = LedgerDb(store)
    with db.write() as s:
        grant(s.journal, key="g1", queue="org", amount="100", at=0)
    _queues(store, "team<org")
    with db.write() as s:  # team draws on its parent's credits
        assert place_hold(s.journal, workload="w@0", queue="team", amount="30", at=1).ok
        assert s.journal.balance(Account.hold("org", "w@0")) == Decimal("30.00")
