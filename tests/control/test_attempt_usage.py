"""Usage rows of ended attempts are closed in bulk, keyed by the attempts (not a row update per
worker): on PostgreSQL one UPDATE per end and reason, on SQLite one executemany that finds each
attempt through the primary key (never a scan of every attempt ever run), with the same ends and
reasons as row by row (gangs too), and a replay moves none."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import event, insert, select

from corral.backends.base import WorkerState
from corral.control.accounting import Accounting
from corral.control.attempt_usage import close_attempts, record_starts
from corral.ledger import WorkerStarted
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store import workloads as W
from corral.store.ledger_tables import LedgerUsage
from corral.store.schema import Event
from sql_trace import statements

from .rig import Rig


def _usage(store: Store) -> dict[tuple[str, int, int], tuple[str | None, str]]:
    with store.read() as c:
        return {(r.workload_id, r.attempt, r.worker): (r.end, r.end_reason)
                for r in c.execute(select(LedgerUsage))}


def test_a_step_closes_its_ended_attempts_in_one_statement(store: Store) -> None:
    rig = Rig(store, admission=Accounting(store))
    ids = [rig.submit(name="gang", gpus=1, workers=2), rig.submit(name="a", gpus=1),
           rig.submit(name="b", gpus=2)]
    rig.step(3)
    assert [rig.state(w) for w in ids] == ["running"] * 3
    assert len(_usage(store)) == 4 and all(e is None for e, _ in _usage(store).values())
    for key, workers in rig.world.workers.items():  # all three end, one of them failing
        for w in workers:
            failed = key[0] == ids[1]
            w.state = WorkerState.FAILED if failed else WorkerState.SUCCEEDED
            w.exit_code = 1 if failed else 0
        rig.world.touch(key)
    # per UPDATE of the usage rows: whether it was an executemany
    updates = [many for sql, many in statements(store, rig.step)
               if sql.lstrip().upper().startswith("UPDATE LEDGER_USAGE")]
    if store.engine.dialect.name == "sqlite":
        assert updates == [True]  # one executemany, one parameter set per attempt
    else:
        assert updates == [False, False]  # one statement per end and reason (stopped, failed)
    usage = _usage(store)
    ended = {w: rig.get(w).finished_at for w in ids}
    assert {k: (Decimal(e), r) for k, (e, r) in usage.items() if e is not None} == {
        (ids[0], 0, 0): (Decimal(repr(ended[ids[0]])), "stopped"),
        (ids[0], 0, 1): (Decimal(repr(ended[ids[0]])), "stopped"),
        (ids[1], 0, 0): (Decimal(repr(ended[ids[1]])), "failed"),
        (ids[2], 0, 0): (Decimal(repr(ended[ids[2]])), "stopped"),
    }
    # a replay (a restart that settles again) moves no end
    with store.write() as c:
        again = close_attempts(c, [(w, 0) for w in ids], {}, Decimal(10**10))
    assert _usage(store) == usage
    assert {k: v.span.end for k, v in again.items()} == {
        (w, 0): Decimal(repr(ended[w])) for w in ids}


def test_sqlite_closes_attempts_through_the_primary_key(store: Store) -> None:
    """The cost of closing a step's attempts is what ended, not what the table holds: SQLite
    plans `(workload_id, attempt) IN (VALUES ...)` as a scan of ledger_usage per statement,
    the statement used here as a search of its primary key."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL keeps the IN form; its plan is the database's own")
    with store.read() as c:
        plan = c.exec_driver_sql("EXPLAIN QUERY PLAN " + LR._CLOSE_SQLITE,
                                 ("1.0", "stopped", "w", 0)).all()
    details = " ".join(str(row[-1]) for row in plan)
    assert "SEARCH ledger_usage USING INDEX" in details and "SCAN" not in details


def test_settling_reads_back_no_usage_row_this_process_wrote(store: Store) -> None:
    """The rows of attempts this Accounting launched are kept in memory until they settle:
    the step that ends them reads none of them back, and closes and charges them as the rows
    say (a fresh Accounting, as after a restart, reads them: the other tests of this module)."""
    accounting = Accounting(store)
    rig = Rig(store, admission=accounting)
    ids = [rig.submit(name="gang", gpus=1, workers=2), rig.submit(name="a", gpus=1)]
    rig.step(3)
    assert len(accounting._rows) == 2  # both attempts' rows, the gang's two workers in one
    for key, workers in rig.world.workers.items():
        for w in workers:
            w.state, w.exit_code = WorkerState.SUCCEEDED, 0
        rig.world.touch(key)
    reads = [sql for sql, _ in statements(store, rig.step)
             if sql.lstrip().upper().startswith("SELECT") and "FROM LEDGER_USAGE" in sql.upper()]
    assert reads == [] and accounting._rows == {}
    ended = {w: Decimal(repr(rig.get(w).finished_at)) for w in ids}
    assert {k: (Decimal(e), r) for k, (e, r) in _usage(store).items()} == {
        (ids[0], 0, 0): (ended[ids[0]], "stopped"), (ids[0], 0, 1): (ended[ids[0]], "stopped"),
        (ids[1], 0, 0): (ended[ids[1]], "stopped")}


def test_an_attempt_with_a_stored_row_is_not_known_whole(store: Store) -> None:
    """`record_starts` hands back an attempt's rows as all it has only when none was stored
    before, even if the stored one's worker is skipped now (its node left `nodes`): else
    `close_attempts`, taking those as all the attempt's rows, neither closes nor bills it."""
    rig = Rig(store)  # no Accounting: the rows are written here, by record_starts alone
    wid = rig.submit(name="gang", gpus=4, workers=2)
    rig.step(3)
    assert rig.state(wid) == "running"
    key, nodes = (wid, 0), {n.id: n for n in rig.nodes}
    with store.read() as c:
        rec, placed = W.get_workload(c, wid), W.assignments_of(c, [key])
    assert rec is not None
    first, second = (a.node_id for a in placed[key])
    assert first != second
    with store.write() as c:  # worker 1 metered while worker 0's node was unknown
        record_starts(c, {key: rec}, placed, {second: nodes[second]})
    written: dict[tuple[str, int], tuple[WorkerStarted, ...]] = {}
    with store.write() as c:  # then worker 0, worker 1's node unknown this time
        record_starts(c, {key: rec}, placed, {first: nodes[first]}, written)
    assert written == {}  # worker 1's row was stored before: not all the attempt has
    for w in rig.world.workers[key]:
        w.state, w.exit_code = WorkerState.SUCCEEDED, 0
    rig.world.touch(key)
    rig.step()
    assert rig.state(wid) == "succeeded"
    with store.write() as c:
        closed = close_attempts(c, [key], nodes, Decimal(10**10), written)
    end = Decimal(repr(rig.get(wid).finished_at))
    assert {k: (e and Decimal(e), r) for k, (e, r) in _usage(store).items()} == {
        (wid, 0, 0): (end, "stopped"), (wid, 0, 1): (end, "stopped")}
    assert sorted((u.worker, u.end) for u in closed[key].usage) == [(0, end), (1, end)]


def test_usage_rows_of_many_launches_are_inserted_a_chunk_at_a_time(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """`record_starts` inserts the rows of many launched attempts a chunk (`W.BULK_CHUNK`) at
    a time, in order, each attempt's rows together: at 10,000 x 100,000 the 48,504 rows of the
    step that saw the first step's launches running were the loop's peak RSS."""
    rig = Rig(store)  # no Accounting: the rows are written here, by record_starts alone
    ids = [rig.submit(name="gang", gpus=1, workers=2)] + [
        rig.submit(name=f"a{i}", gpus=1) for i in range(4)]
    rig.step(3)
    keys = [(w, 0) for w in ids]
    nodes = {n.id: n for n in rig.nodes}
    with store.write() as c:  # as if never metered: record_starts writes them all again
        c.execute(LedgerUsage.__table__.delete())
    with store.read() as c:
        recs = {k: W.get_workload(c, k[0]) for k in keys}
        placed = W.assignments_of(c, keys)
    monkeypatch.setattr(W, "BULK_CHUNK", 2)
    sent = [sql for sql, _ in statements(
        store, lambda: _record(store, recs, placed, nodes))
        if sql.lstrip().upper().startswith("INSERT INTO LEDGER_USAGE")]
    assert len(sent) == 3  # rows 2 (the gang), 2, 2 (4 workers of one each: 2 + 2)
    assert sorted(_usage(store)) == sorted(
        [(ids[0], 0, 0), (ids[0], 0, 1)] + [(w, 0, 0) for w in ids[1:]])


def _record(store: Store, recs: dict, placed: dict, nodes: dict) -> None:
    with store.write() as c:
        record_starts(c, recs, placed, nodes)


def test_postgres_reads_the_ends_transitions_through_the_index(store: Store) -> None:
    """The transitions of the attempts a step settles are found by workload through the index,
    never by a scan of every event ever stored: without statistics of events inserted moments
    before, PostgreSQL's planner chose a sequential scan per 500 workloads (issue 16). The plan
    is taken of the statement as sent, on its own connection and transaction."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's plan is the primary key's (the test above)")
    with store.write() as c:
        c.execute(insert(Event), [
            {"at": float(i), "kind": "transition", "workload_id": f"w{i % 3000}",
             "from_state": "scheduled", "to_state": "starting", "attempt": 0, "reason": "x",
             "message": "", "data": {}} for i in range(6000)])
    plans: list[str] = []

    def explain(conn, cursor, sql, params, context, many):  # type: ignore[no-untyped-def]
        if "FROM events" in sql and "transition" in str(params) and not plans:
            cursor.execute("EXPLAIN " + sql, params)
            plans.append(" ".join(str(row[0]) for row in cursor.fetchall()))

    event.listen(store.engine, "before_cursor_execute", explain)
    try:
        with store.write() as c:
            close_attempts(c, [(f"w{i}", 0) for i in range(20)], {}, Decimal(10**10))
    finally:
        event.remove(store.engine, "before_cursor_execute", explain)
    assert plans and "Seq Scan on events" not in plans[0] and "events" in plans[0]
