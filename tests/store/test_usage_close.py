"""Closing the usage rows of many attempts at once (`ledger_rows.close_attempt_rows`).

On PostgreSQL the statement must find the attempts through the primary key even when the table's
statistics predate its rows (a step inserts thousands of usage rows and closes them before
autovacuum's ANALYZE): with the pairs' IN alone, PostgreSQL 15 walked the whole key testing
every entry against every pair (issue 16: 7.5 s of the 10,000 x 100,000 place step).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text

from corral.ledger import EndReason
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store.ledger_tables import LedgerUsage

ROWS = 60_000  # open attempts in the table (fewer, and a scan of it is the cheaper plan)
CLOSED = 1500  # attempts closed in one call (500 per end: a step closes thousands)


def _usage(workload: str, attempt: int, worker: int) -> dict[str, Any]:
    return {"workload_id": workload, "attempt": attempt, "worker": worker, "queue": "q",
            "user": "u", "provider": "p", "region": "r", "node": "n", "gpu_model": "H100",
            "capacity_kind": "on_demand", "milli": 1000, "start": "100", "end": None,
            "end_reason": "", "start_s": 100.0}


@pytest.fixture
def pg_store(postgres_store_url: str) -> Iterator[Store]:
    store = Store(postgres_store_url)
    store.upgrade()
    yield store
    store.close()


def _scanned(plan: dict[str, Any]) -> list[str]:
    """The scan nodes of a plan that read ledger_usage, by kind."""
    own = [plan["Node Type"]] if plan.get("Relation Name") == "ledger_usage" else []
    return own + [kind for p in plan.get("Plans", []) for kind in _scanned(p)]


def _removed_by_filter(plan: dict[str, Any]) -> int:
    own = int(plan.get("Rows Removed by Filter", 0)) + int(plan.get("Rows Removed by Index Recheck", 0))
    return own + sum(_removed_by_filter(p) for p in plan.get("Plans", []))


@pytest.mark.postgres
def test_close_finds_attempts_by_key_without_statistics(pg_store: Store) -> None:
    with pg_store.write() as c:
        # no ANALYZE may run while the test does: the planner sees the table as the loop's
        # step does, its rows newer than its statistics
        c.execute(text("ALTER TABLE ledger_usage SET (autovacuum_enabled = false)"))
        c.execute(insert(LedgerUsage), [_usage(f"w{i:05d}", 0, k) for i in range(ROWS)
                                        for k in range(2 if i % 10 == 0 else 1)])
        c.execute(insert(LedgerUsage), [_usage("w00000", 1, 0), _usage("w00003", 1, 0)])
    closing = [(f"w{i:05d}", 0, Decimal(150 + i // (ROWS // CLOSED) % 3), EndReason.STOPPED)
               for i in range(0, ROWS, ROWS // CLOSED)]
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        # the updates, and the planner settings sent around them (replayed below)
        if sql.startswith(("UPDATE ledger_usage", "SELECT current_setting", "SELECT set_config")):
            statements.append((sql, params))

    event.listen(pg_store.engine, "before_cursor_execute", seen)
    try:
        with pg_store.write() as c:
            LR.close_attempt_rows(c, closing)
    finally:
        event.remove(pg_store.engine, "before_cursor_execute", seen)

    # what it did: each named attempt's rows closed at its end, nothing else touched
    with pg_store.read() as c:
        rows = {(r.workload_id, r.attempt, r.worker): (r.end, r.end_reason)
                for r in c.execute(select(LedgerUsage))}
    want = {(w, a): (str(end), reason.value) for w, a, end, reason in closing}
    for (w, a, _k), got in rows.items():
        assert got == want.get((w, a), (None, "")), (w, a)
    assert rows[("w00000", 1, 0)] == (None, "")  # same workload, another attempt: still open

    # how: run again as it was sent, settings included (every row it names is closed now),
    # each statement reads about the rows it names, not the table (the old statement removed
    # ~ROWS rows by its filter)
    assert len([s for s, _ in statements if s.startswith("UPDATE")]) == 3  # one per end
    with pg_store.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        for sql, params in statements:
            if not sql.startswith("UPDATE"):
                cursor.execute(sql, params)
                continue
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            assert _removed_by_filter(plan[0]["Plan"]) <= 2 * CLOSED, plan
            # through the key's index (an UPDATE ... FROM may join by hash: not over a
            # sequential scan of every usage row ever written)
            assert "Seq Scan" not in _scanned(plan[0]["Plan"]), plan
        conn.rollback()
