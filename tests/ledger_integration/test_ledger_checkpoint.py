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

from corral.ledger import Account, Journal, grant, place_hold, settle
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


def _latest_seq(store: Store) -> int | None:
    with store.read() as c:
        return c.execute(select(func.max(LedgerCheckpoint.seq))).scalar_one()


def _last_tx_seq(store: Store) -> int:
    from corral.store.ledger_tables import LedgerTransaction

    with store.read() as c:
        return int(c.execute(select(func.max(LedgerTransaction.seq))).scalar_one())


def test_checkpoint_saves_on_demand_whatever_the_burst_rule_says(funded: LedgerDb) -> None:
    """`checkpoint()` (the loop's planned stop) covers every transaction, even a few after a
    large checkpoint, which the burst rule (half of what the last one covered) would skip."""
    _history(funded, 0, 20)
    funded.checkpoint()
    _history(funded, 20, 23)  # 5 transactions: fewer than half of the 31 covered
    funded.checkpoint()
    assert _latest_seq(funded.store) == _last_tx_seq(funded.store)
    fresh = LedgerDb(funded.store)
    with fresh.read() as s:
        assert fresh._sql is not None and fresh._sql._order == []  # nothing replayed
        assert s.journal.state() == full_replay(funded).state()


def _sections(text: str) -> dict[str, list[object]]:
    """A format-2 checkpoint's sections, their lines joined."""
    import json

    header, *lines = text.split("\n")
    assert json.loads(header)["format"] == 2
    out: dict[str, list[object]] = {}
    for line in lines:
        name, items = json.loads(line)
        out.setdefault(name, []).extend(items)
    return out


def test_a_checkpoint_keeps_settled_holds_as_names_only(
        funded: LedgerDb, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint holds the open holds and the settled ones' names, not the settled holds
    and their zero-balance hold accounts, a few items per line; a rebuild from it still
    answers a settled hold."""
    from corral.ledger import Account
    from corral.store import ledger_checkpoint as LC

    monkeypatch.setattr(LC, "LINE_ITEMS", 2)  # several lines per section
    _history(funded, 0, 6)  # w0, w2, w4 settled
    funded.checkpoint()
    with funded.store.read() as c:
        text = c.execute(select(LedgerCheckpoint.state)).scalar_one()
    data = _sections(text)
    assert len(text.split("\n")) > 6
    assert sorted(h[0] for h in data["holds"]) == ["w1", "w3", "w5"]  # type: ignore[index]
    assert data["settled"] == ["w0", "w2", "w4"]
    written = [b[:3] for b in data["balances"]]  # type: ignore[index]
    assert ["hold", "research", "w0"] not in written  # settled: dropped
    assert ["hold", "research", "w1"] not in written  # open: derived from its draws
    fresh = LedgerDb(funded.store)
    with fresh.read() as s:
        assert fresh._sql is not None and fresh._sql._order == []
        assert s.journal.state() == full_replay(funded).state()
        hold = s.journal.hold("w0")
        assert hold is not None and hold.settled_by == "settle:w0" and hold.amount == 1
        assert s.journal.balance(Account.hold("research", "w0")) == 0
        assert [h.workload for h in s.journal.holds()] == [f"w{i}" for i in range(6)]


def test_a_format_1_checkpoint_is_read_with_its_settled_holds_as_names(funded: LedgerDb) -> None:
    """A checkpoint written before settled holds were dropped (format 1: one JSON object, whole
    settled holds, their zero hold accounts) is still used, read as the journal keeps it now."""
    import json

    from corral.store import ledger_checkpoint as LC

    _history(funded, 0, 4)
    old = full_replay(funded)
    with funded.read() as s:
        state = s.journal.state()

    def acc(a: object) -> list[str]:
        return [a.kind.value, a.queue, a.ref]  # type: ignore[attr-defined]

    holds = old.holds()
    zero = [[*acc(Account.hold(q, h.workload)), "0.00"] for h in holds if not h.open
            for q in h.funders]
    v1 = {"format": 1, "chart": {"research": None},
          "balances": [[*acc(a), str(v)] for a, v in state.balances.items()] + zero,
          "lots": [[*acc(lot.account), None] for lot in state.lots],
          "holds": [[h.workload, h.queue, str(h.placed_at),
                     [[*acc(d.account), str(d.amount)] for d in h.draws],
                     h.settled_by, None if h.charged is None else str(h.charged)]
                    for h in holds],
          "swept": [], "transfers": []}
    assert zero and any(not h.open for h in holds)
    decoded = LC.decode(json.dumps(v1))
    assert decoded is not None and decoded[1] == state


def test_a_planned_stop_saves_a_checkpoint_so_the_next_leader_replays_nothing(
        store: Store) -> None:
    from tests.ledger_integration.test_accounting import _rig

    rig = _rig(store)
    wid = rig.submit(gpus=1, max_runtime="1h")
    rig.step()
    rig.backend.start(wid)
    rig.step()
    assert _latest_seq(store) is None  # two transactions: no checkpoint due
    rig.loop.stop()
    assert not rig.loop.leadership.leading
    assert _latest_seq(store) == _last_tx_seq(store)
    fresh = LedgerDb(store)
    with fresh.read() as s:
        assert fresh._sql is not None and fresh._sql._order == []
        assert s.journal.state() == full_replay(fresh).state()


def test_a_settled_hold_of_an_open_write_is_answered_after_a_nested_read(
        funded: LedgerDb) -> None:
    """A read nested in a write (the lock is reentrant) gives the write its connection back:
    a hold placed and settled in the write, not committed yet, is read back on it."""
    with funded.write() as s:
        place_hold(s.journal, workload="w", queue="research", amount=Decimal("2.00"),
                   at=Decimal(1))
        s.flush()  # the HOLD is in the write's transaction, not committed
        settle(s.journal, workload="w", cost=Decimal("0.5"), at=Decimal(2))
        with funded.read():
            pass
        hold = s.journal.hold("w")
        assert hold is not None and hold.settled_by == "settle:w" and hold.amount == 2


def test_a_checkpoint_round_trips_a_hold_balance_its_draws_do_not_make(funded: LedgerDb) -> None:
    """The open holds' balances are left out only where every one is what the draws make; a
    state where one is not (not one the journal posts) is written whole and read back as is."""
    from dataclasses import replace

    from corral.store import ledger_checkpoint as LC

    _history(funded, 0, 4)
    with funded.read() as s:
        state = s.journal.state()
    assert LC.decode(LC.encode({"research": None}, state)) == ({"research": None}, state)
    odd = replace(state, balances={**state.balances,
                                   Account.hold("research", "w1"): Decimal("0.37")})
    text = LC.encode({"research": None}, odd)
    assert '"held_from_draws":false' in text.split("\n")[0]
    assert LC.decode(text) == ({"research": None}, odd)
