"""The memos of older transactions (`journal_sql.load_memos`, read when a settlement burst
names holds placed before the latest checkpoint) are found by the keys' unique index, never by a
scan of every transaction stored: on PostgreSQL, without statistics of the holds the step before
inserted, the planner chose a sequential scan per 500 keys (issue 16). The plan is taken of the
statement as sent, in its own transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import event, insert

from corral.store import Store
from corral.store.journal_sql import load_memos
from corral.store.ledger_tables import LedgerTransaction


def test_memos_are_read_through_the_key_index(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite finds a unique key by its index whatever it knows of the table")
    with store.write() as c:
        c.execute(insert(LedgerTransaction), [
            {"key": f"hold:w{i}", "at": str(i), "kind": "hold", "queue": "q", "amount": "1",
             "workload": f"w{i}", "memo": f"m{i}", "opens": [], "at_s": float(i)}
            for i in range(3000)])
    plans: list[str] = []

    def explain(conn, cursor, sql, params, context, many):  # type: ignore[no-untyped-def]
        if "FROM ledger_transactions" in sql and not plans:
            cursor.execute("EXPLAIN " + sql, params)
            plans.append(" ".join(str(row[0]) for row in cursor.fetchall()))

    event.listen(store.engine, "before_cursor_execute", explain)
    try:
        with store.write() as c:
            memos = load_memos(c, [f"hold:w{i}" for i in range(0, 3000, 150)] + ["hold:none"])
    finally:
        event.remove(store.engine, "before_cursor_execute", explain)
    assert memos == {f"hold:w{i}": f"m{i}" for i in range(0, 3000, 150)}
    assert plans and "Seq Scan" not in plans[0] and "ledger_transactions" in plans[0]
