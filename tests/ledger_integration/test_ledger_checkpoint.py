"""Ledger checkpoints: a rebuild from the latest checkpoint and the transactions after it equals
the replay of the whole journal, after random histories; what a checkpoint spares and forgets."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test
from sqlalchemy import delete, func, select, update
from tests.ledger_integration.test_journal_sql import SqlLedgerMachine, _queues

from corral.ledger import Journal, grant, place_hold, settle
from corral.store import Store
from corral.store import journal_sql as JS
from corral.store.journal_sql import LedgerDb, load_transactions
from corral.store.ledger_tables import LedgerCheckpoint

pytestmark = pytest.mark.slow  # 20 tests, 79 s (-n 2 whole run, 2026-12-05, load 8-32)


def full_replay(db: LedgerDb) -> Journal:
    """The journal as the whole log makes it, with no checkpoint."""
    with db.store.read() as conn, db.read() as s:
        journal = Journal(s.journal.chart, currency=db.currency,
                          draw_from_ancestors=db.draw_from_ancestors)
        for _, tx in load_transactions(conn):
            journal.post(tx)
        return journal


class CheckpointLedgerMachine(SqlLedgerMachine):
    """The SQL ledger machine, with checkpoints and restarts (a new LedgerDb, as a new leader)
    at random moments; the model's invariants keep checking the restored journal, and each
    restart compares it with a replay of every transaction."""

    store: ClassVar[Store]

    def _commit_and_reopen(self, db: LedgerDb) -> None:
        self._session.__exit__(None, None, None)
        self.db = db
        self._session = db.write()
        self.session = self._session.__enter__()
        self.journal = self.session.journal

    @rule()
    def checkpoint(self) -> None:
        self._session.__exit__(None, None, None)
        self.db.checkpoint()
        self._session = self.db.write()
        self.session = self._session.__enter__()
        self.journal = self.session.journal

    @rule(saved=st.booleans(), every=st.sampled_from([0, 1, 3, 10_000]))
    def restart(self, saved: bool, every: int) -> None:
        if saved:
            self._session.__exit__(None, None, None)
            self.db.checkpoint()
            self._session = self.db.write()
            self.session = self._session.__enter__()
        self._commit_and_reopen(LedgerDb(self.store, draw_from_ancestors=self.db.draw_from_ancestors,
                                         checkpoint_every=every, checkpoint_min_s=0))
        replayed = full_replay(self.db)
        assert self.journal.state() == replayed.state()
        assert [t.key for t in self.journal.transactions()] == [
            t.key for t in replayed.transactions()]
        assert len(self.journal) == len(replayed)


def test_a_rebuild_from_a_checkpoint_equals_the_whole_replay(store: Store) -> None:
    CheckpointLedgerMachine.store = store
    run_state_machine_as_test(
        CheckpointLedgerMachine, settings=settings(max_examples=15, stateful_step_count=30,
                                                   deadline=None))


def _history(db: LedgerDb, first: int, last: int) -> None:
    with db.write() as s:
        for i in range(first, last):
            place_hold(s.journal, workload=f"w{i}", queue="research", amount=Decimal("1.00"),
                       at=Decimal(i))
        for i in range(first, last, 2):
            settle(s.journal, workload=f"w{i}", cost=Decimal("0.5"), at=Decimal(i + 1))


@pytest.fixture
def funded(store: Store) -> LedgerDb:
    _queues(store, "research")
    db = LedgerDb(store, checkpoint_every=-1)  # checkpoints only when asked
    with db.write() as s:
        grant(s.journal, key="g1", queue="research", amount=Decimal(1000), at=Decimal(0))
    return db


def test_a_rebuild_replays_only_what_came_after_the_checkpoint(
        funded: LedgerDb, monkeypatch: pytest.MonkeyPatch) -> None:
    _history(funded, 0, 20)
    funded.checkpoint()
    _history(funded, 20, 23)
    replayed: list[int] = []
    real = JS.load_transactions

    def counting(conn, after_seq=0, through_seq=None):  # type: ignore[no-untyped-def]
        rows = real(conn, after_seq, through_seq)
        replayed.append(len(rows))
        return rows

    monkeypatch.setattr(JS, "load_transactions", counting)
    fresh = LedgerDb(funded.store)
    with fresh.read() as s:
        assert s.journal.balance(s.journal.lots("research")[0].account) == 1000 - 23 + Decimal("0.50") * 12
        assert replayed == [3 + 2]  # 3 holds and 2 settlements after the checkpoint
        assert len(s.journal) == 1 + 23 + 12
    monkeypatch.undo()
    assert fresh.read().__enter__().journal.state() == full_replay(funded).state()


def test_a_replay_of_an_operation_before_the_checkpoint_returns_the_original(
        funded: LedgerDb) -> None:
    _history(funded, 0, 4)
    funded.checkpoint()
    fresh = LedgerDb(funded.store)
    with fresh.write() as s:
        original = s.journal.get("settle:w0")
        assert original is not None
        assert settle(s.journal, workload="w0", cost=Decimal("0.5"), at=Decimal(99)) == original
        assert grant(s.journal, key="g1", queue="research", amount=Decimal(1000),
                     at=Decimal(5)).key == "g1"
    with funded.store.read() as c:
        assert c.execute(select(func.count()).select_from(JS.LedgerTransaction)).scalar_one() == 7


def test_a_checkpoint_forgets_the_transactions_it_covers(funded: LedgerDb) -> None:
    _history(funded, 0, 10)
    funded.checkpoint()
    sql = funded._sql
    assert sql is not None and list(sql._order) == [] and len(sql) == 1 + 10 + 5
    _history(funded, 10, 12)  # the cached journal goes on from there
    assert len(sql._order) == 3 and funded.read().__enter__().journal.state() == full_replay(
        funded).state()


@pytest.mark.parametrize("damage", ["deleted", "unknown format", "damaged"])
def test_without_a_usable_checkpoint_the_whole_journal_is_replayed(
        funded: LedgerDb, damage: str) -> None:
    _history(funded, 0, 6)
    funded.checkpoint()
    with funded.store.write() as c:
        if damage == "deleted":
            c.execute(delete(LedgerCheckpoint))
        elif damage == "damaged":
            c.execute(update(LedgerCheckpoint).values(state='{"format": 1, "balances": [[1]]}'))
        else:
            c.execute(update(LedgerCheckpoint).values(state='{"format": 999}'))
    fresh = LedgerDb(funded.store)
    with fresh.read() as s:
        assert s.journal.state() == full_replay(funded).state()
        assert fresh._sql is not None and len(fresh._sql._order) == 1 + 6 + 3


def test_writes_save_a_checkpoint_every_so_many_transactions(store: Store) -> None:
    _queues(store, "research")
    db = LedgerDb(store, checkpoint_every=5, checkpoint_min_s=0)
    with db.write() as s:
        grant(s.journal, key="g1", queue="research", amount=Decimal(1000), at=Decimal(0))
    _history(db, 0, 2)  # 4 transactions: not yet
    with store.read() as c:
        assert c.execute(select(func.count()).select_from(LedgerCheckpoint)).scalar_one() == 0
    _history(db, 2, 6)  # 10 in all: one checkpoint, the latest only kept
    _history(db, 6, 12)
    with store.read() as c:
        seqs = list(c.execute(select(LedgerCheckpoint.seq)).scalars())
    assert len(seqs) == 1
    assert LedgerDb(store).read().__enter__().journal.state() == full_replay(db).state()


def test_a_prefetch_reads_the_forgotten_transactions_of_a_burst_at_once(
        funded: LedgerDb, monkeypatch: pytest.MonkeyPatch) -> None:
    _history(funded, 0, 30)
    funded.checkpoint()
    one_by_one: list[str] = []
    real = JS.load_transaction
    monkeypatch.setattr(JS, "load_transaction",
                        lambda conn, key: one_by_one.append(key) or real(conn, key))
    with funded.write() as s:
        keys = [f"hold:w{i}" for i in range(30)]
        s.prefetch([*keys, "hold:never"])
        found = [s.journal.get(k) for k in keys]
        assert [tx.key for tx in found if tx is not None] == keys and one_by_one == []
        assert s.journal.get("hold:never") is None and one_by_one == []  # not a key it had
    with funded.write() as s:  # what was read lives for one session
        assert s.journal.get("hold:w0") is not None and one_by_one == ["hold:w0"]


def test_memos_are_read_from_memory_and_from_before_the_checkpoint(store: Store) -> None:
    _queues(store, "research")
    db = LedgerDb(store, checkpoint_every=0, checkpoint_min_s=0.0)
    with db.write() as s:
        place_hold(s.journal, workload="old@0", queue="research", amount=0, at=1, memo="a")
    db.checkpoint()  # "hold:old@0" is now in the database only
    with store.read() as c:
        assert c.execute(select(func.count()).select_from(LedgerCheckpoint)).scalar_one() == 1
    with db.write() as s:
        place_hold(s.journal, workload="new@0", queue="research", amount=0, at=2, memo="b")
        assert s.memos(["hold:old@0", "hold:new@0", "hold:none@0"]) == {
            "hold:old@0": "a", "hold:new@0": "b"}
