"""`insert_rows` (the driver's own executemany on SQLite) stores what SQLAlchemy's insert
stores: JSON converted, constant Python-side defaults filled in, the rest as given."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert, select

from corral.store import Store
from corral.store.driver_bulk import insert_rows
from corral.store.ledger_tables import LedgerTransaction


def _rows(prefix: str) -> list[dict[str, Any]]:
    # memo, workload and counterparty left out: their defaults ("") must be filled in
    return [{"key": f"{prefix}{i}", "at": "1.5", "kind": "grant", "queue": "q",
             "amount": "2.25", "expires_at": None if i % 2 else "9.75",
             "opens": [["credits", "q", f"lot{i}", None]] if i % 2 else [], "at_s": 1.5}
            for i in range(3)]


def test_rows_stored_by_the_driver_equal_sqlalchemys(store: Store) -> None:
    table = LedgerTransaction.__table__
    assert isinstance(table, Table)
    with store.write() as c:
        insert_rows(c, table, _rows("a"))
        c.execute(insert(table), _rows("b"))
    with store.read() as c:
        got = {r.key: r for r in c.execute(select(LedgerTransaction))}

    def fields(r: Any) -> tuple[Any, ...]:
        return (r.at, r.kind, r.queue, r.amount, r.workload, r.counterparty, r.expires_at,
                r.memo, r.opens, r.at_s)

    assert [fields(got[f"a{i}"]) for i in range(3)] == [fields(got[f"b{i}"]) for i in range(3)]
    assert got["a1"].opens == [["credits", "q", "lot1", None]] and got["a0"].memo == ""
