"""Bulk INSERTs whose generated sequence numbers come back in the order of the rows given.

The journal replays transactions in `seq` order, and submissions hand back each workload's
`seq`, so both need the generated keys matched to their rows. SQLAlchemy's way,
`insert().returning(..., sort_by_parameter_order=True)`, is one batched statement on PostgreSQL,
but on SQLite it falls back to one INSERT per row: SQLite has no INSERT form that ties new
ROWIDs to the order of the parameter sets (SQLAlchemy's "insertmanyvalues" documentation,
"Correlating RETURNING rows with parameter sets"). A step that posts 10,000 holds then ran
10,000 statements (0.2 s per 2,000 rows at 2,000 nodes).

On SQLite every writer holds the database's write lock from its first statement (the store's
writers run `BEGIN IMMEDIATE`), so no other row can be inserted in between: one executemany
(sqlite3's own loop over a prepared statement), then the rows above the previous largest
`seq`, read back in order, are ours. Their unique key is checked against the rows given, so a
surprise (another writer, a trigger) is an error, never a silent mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select

from corral.store.schema import Base

__all__ = ["insert_in_order", "insert_rows"]

_STATEMENTS: dict[tuple[str, bool], Any] = {}  # built once per table: compiled and cached


def insert_in_order(conn: Connection, entity: type[Base], seq: str, key: str,
                    rows: Sequence[dict[str, Any]]) -> list[int]:
    """INSERT `rows` (the same keys in each) into `entity`'s table; return the `seq` column's
    generated value for each, in the order of `rows`. `key` names a UNIQUE column that every
    row carries. A taken key raises IntegrityError."""
    if not rows:
        return []
    table = entity.__table__
    assert isinstance(table, Table)
    seq_col, key_col = table.c[seq], table.c[key]
    if conn.dialect.name != "sqlite":
        returning = _statement(table, seq, returning=True)
        return [int(s) for s in conn.execute(returning, list(rows)).scalars()]
    before = int(conn.execute(select(func.coalesce(func.max(seq_col), 0))).scalar_one())
    insert_rows(conn, table, rows)
    got = conn.execute(select(seq_col, key_col).where(seq_col > before).order_by(seq_col)).all()
    if [k for _, k in got] != [r[key] for r in rows]:
        raise RuntimeError(f"rows inserted into {table.name} by another writer during a bulk "
                           "insert: the store's SQLite writers must run BEGIN IMMEDIATE")
    return [int(s) for s, _ in got]


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (the same keys in each) in one executemany. On SQLite through the driver
    itself: SQLAlchemy's executemany processes every parameter of every row in Python
    (about a third of the CPU of a step's journal insert at 10,000 x 100,000), where only the
    columns whose type converts a value (JSON here) need it; those converters, and the
    columns' constant Python-side defaults, are applied here as SQLAlchemy would. A table
    with a computed Python-side default goes through SQLAlchemy."""
    if not rows:
        return
    names = list(rows[0])
    plan = _driver_insert(conn, table, names) if conn.dialect.name == "sqlite" else None
    if plan is None:
        conn.execute(insert(table), list(rows))
        return
    sql, converters, defaults = plan
    if any(converters):
        params = [tuple(convert(r[n]) if convert else r[n]
                        for n, convert in zip(names, converters, strict=True)) + defaults
                  for r in rows]
    else:
        params = [tuple(r[n] for n in names) + defaults for r in rows]
    conn.exec_driver_sql(sql, params)


_DriverInsert = tuple[str, list[Any], tuple[Any, ...]]
_DRIVER: dict[tuple[str, tuple[str, ...]], _DriverInsert | None] = {}


def _driver_insert(conn: Connection, table: Table, names: list[str]) -> _DriverInsert | None:
    """The driver's INSERT of these columns and of the others' constant defaults (qmark
    parameters), each given column's converter (None: the value goes as it is), and the
    defaults' values; None when a column left out has a computed default."""
    key = (table.name, tuple(names))
    if key in _DRIVER:
        return _DRIVER[key]
    columns, defaults = list(names), []
    found: _DriverInsert | None = None
    for column in table.c:
        if column.name in names or column.default is None:
            continue
        if not column.default.is_scalar:
            break
        columns.append(column.name)
        value = column.default.arg  # type: ignore[attr-defined]
        convert = column.type.bind_processor(conn.dialect)
        defaults.append(convert(value) if convert else value)
    else:
        quote = conn.dialect.identifier_preparer.quote
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in columns)}) "
               f"VALUES ({', '.join('?' for _ in columns)})")
        converters = [table.c[n].type.bind_processor(conn.dialect) for n in names]
        found = (sql, converters, tuple(defaults))
    _DRIVER[key] = found
    return found


def _statement(table: Table, seq: str, *, returning: bool) -> Any:
    found = _STATEMENTS.get((table.name, returning))
    if found is None:
        found = insert(table)
        if returning:
            found = found.returning(table.c[seq], sort_by_parameter_order=True)
        _STATEMENTS[(table.name, returning)] = found
    return found
