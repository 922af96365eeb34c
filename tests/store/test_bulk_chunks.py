"""The bulk writes of a step build their parameters one chunk at a time (`W.BULK_CHUNK`).

At 10,000 nodes x 100,000 workloads the step that sees the first step's 47,913 launches running
set the loop's peak RSS: its reconcile's updates and events for every one of them, and the
drivers' parameters made of them, were alive together (+69 MiB). Chunked, they are written as
before (same rows, same order, one transaction), a chunk's parameters at a time.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select

from corral.store import Store
from corral.store import pg_workloads as PG
from corral.store import workloads as W
from corral.store.schema import Event, WorkloadRow

ROWS = 10  # written with a chunk of 4: three statements


def _row(wid: str) -> dict[str, Any]:
    return {"id": wid, "group_id": wid, "name": wid, "queue": "q", "user": "u", "kind": "job",
            "spec": {"name": wid}, "state": "pending", "submitted_at": 1.0}


def _sent(store: Store, table: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], Any]:
    """Rows per statement that writes `table`: an executemany counts its rows, an UPDATE of
    arrays (PostgreSQL, `corral.store.pg_bulk`) the length of its arrays, a COPY
    (`driver_bulk.insert_tuples`, which statement listeners do not see) its rows."""
    sizes: list[int] = []

    def seen(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.startswith(("INSERT INTO " + table, "UPDATE " + table)):
            arrays = isinstance(params, tuple) and params and isinstance(params[0], list)
            sizes.append(len(params) if many else len(params[0]) if arrays else 1)

    copy = PG.insert_tuples

    def copied(conn: Any, into: Any, columns: Any, rows: Any) -> None:
        if into.name == table:
            sizes.append(len(rows))
        copy(conn, into, columns, rows)

    monkeypatch.setattr(PG, "insert_tuples", copied)
    event.listen(store.engine, "before_cursor_execute", seen)
    return sizes, lambda: event.remove(store.engine, "before_cursor_execute", seen)


def test_events_are_written_a_chunk_at_a_time_in_order(store: Store,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(W, "BULK_CHUNK", 4)
    sizes, stop = _sent(store, "events", monkeypatch)
    try:
        with store.write() as c:
            W.append_events(c, [{"at": float(i), "kind": "info", "reason": f"r{i}"}
                                for i in range(ROWS)])
    finally:
        stop()
    assert sizes == [4, 4, 2]
    with store.read() as c:
        rows = c.execute(select(Event.reason, Event.message, Event.data).order_by(Event.id)).all()
    assert [tuple(r) for r in rows] == [(f"r{i}", "", {}) for i in range(ROWS)]


def test_versioned_updates_are_written_a_chunk_at_a_time(store: Store,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with store.write() as c:
        W.insert_workloads(c, [_row(f"w{i}") for i in range(ROWS)])
        version = dict(c.execute(select(WorkloadRow.id, WorkloadRow.version)).all())
    monkeypatch.setattr(W, "BULK_CHUNK", 4)
    sizes, stop = _sent(store, "workloads", monkeypatch)
    try:
        with store.write() as c:
            rows = [{"id": f"w{i}", "version": version[f"w{i}"] + (i == 7),
                     "reason_message": f"m{i}"}
                    for i in range(ROWS)]
            written = W.update_many_versioned(c, rows)  # w7's version is stale: not written
    finally:
        stop()
    # SQLite: the driver's one executemany of tuples; PostgreSQL: one UPDATE of arrays a chunk
    assert sizes == ([ROWS] if store.engine.dialect.name == "sqlite" else [4, 4, 2])
    assert written == ROWS - 1
    with store.read() as c:
        got = dict(c.execute(select(WorkloadRow.id, WorkloadRow.reason_message)).all())
    assert got == {f"w{i}": "" if i == 7 else f"m{i}" for i in range(ROWS)}
