"""Bulk writes through SQLite's own executemany, and PostgreSQL's COPY for plain inserts
(`insert_tuples`); other writes on other databases go through SQLAlchemy.

SQLAlchemy's executemany processes every parameter of every row in Python (compiling its
parameters, running each column's bind processor): at 10,000 x 100,000 a step's journal
insert and its placements' and ends' updates paid a third or more of their time there. On
SQLite these hand the driver tuples instead, applying only what SQLAlchemy would have changed:
a column type's converter (JSON here) and a constant Python-side default. A table with a
computed default goes through SQLAlchemy. On PostgreSQL `insert_tuples` COPYs the rows in the
caller's transaction (psycopg's `cursor.copy`, past SQLAlchemy): a failure there is raised
as SQLAlchemy would (`sqlalchemy.exc.DBAPIError`'s subclass for the driver's error:
IntegrityError for a taken key), but SQLAlchemy's `before_cursor_execute` listeners
(statement counters) do not see it. PostgreSQL's bulk updates: `corral.store.pg_bulk`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.exc import DBAPIError

__all__ = ["binder", "insert_rows", "insert_tuples", "update_rows"]


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
    plain = [n for n, convert in zip(names, converters, strict=True) if convert is None]
    converted = [(n, convert) for n, convert in zip(names, converters, strict=True) if convert]
    take = _getter(plain)  # C-level: a tuple of the plain values of a row
    if len(converted) == 1:  # the journal's transactions: one JSON column
        (name, convert), = converted
        params = [(*take(r), convert(r[name]), *defaults) for r in rows]
    elif converted:
        params = [take(r) + tuple(convert(r[n]) for n, convert in converted) + defaults
                  for r in rows]
    else:
        params = [take(r) + defaults for r in rows]
    conn.exec_driver_sql(sql, params)


def insert_tuples(conn: Connection, table: Table, columns: Sequence[str],
                  rows: Sequence[tuple[Any, ...]]) -> None:
    """INSERT rows already in the driver's form (tuples of `columns`, each value as the column
    stores it: plain ints, strings and None, no JSON, no default left out). For rows a caller
    builds as tuples anyway: a dict per row that `insert_rows` turns back into a tuple was most
    of the journal insert's Python time. SQLite: one executemany through the driver.
    PostgreSQL (psycopg): one COPY FROM STDIN in the caller's transaction, where an
    executemany sent one INSERT per row (51,182 for the postings of a 10,000 x 100,000 place
    step). No rows: nothing."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_qmark_insert(conn, table, tuple(columns)), list(rows))
        return
    assert conn.dialect.driver == "psycopg", conn.dialect.driver
    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(n) for n in columns)}) FROM STDIN"
    import psycopg  # PostgreSQL's driver: only where it is the dialect's

    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:  # as SQLAlchemy raises it: a taken key is an IntegrityError
        raise DBAPIError.instance(sql, None, exc, psycopg.Error,
                                  dialect=conn.dialect) from exc


def binder(conn: Connection, column: Any) -> Callable[[Any], Any]:
    """What SQLAlchemy binds for a value of `column` on this connection's dialect (JSON: the
    text on SQLite, psycopg's `Json` wrapper on PostgreSQL; the value itself where the type
    has no bind processor), for rows handed to the driver (`insert_tuples`)."""
    convert = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return convert if convert is not None else (lambda value: value)


_QMARK: dict[tuple[str, tuple[str, ...]], str] = {}


def _qmark_insert(conn: Connection, table: Table, columns: tuple[str, ...]) -> str:
    """`INSERT INTO table (columns) VALUES (?, ...)` with quoted names, built once."""
    key = (table.name, columns)
    if key not in _QMARK:
        quote = conn.dialect.identifier_preparer.quote
        _QMARK[key] = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in columns)})"
                       f" VALUES ({', '.join('?' for _ in columns)})")
    return _QMARK[key]


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values of `names` as a tuple, by `operator.itemgetter` (one C call a row, where
    a generator over the names cost about half of the journal insert's Python time)."""
    if not names:
        return lambda r: ()
    if len(names) == 1:
        name = names[0]
        return lambda r: (r[name],)
    return itemgetter(*names)


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
        converters = [table.c[n].type.bind_processor(conn.dialect) for n in names]
        # the parameters' order (`insert_rows`): the plain columns, the converted ones, the
        # defaults
        ordered = ([n for n, c in zip(names, converters, strict=True) if c is None]
                   + [n for n, c in zip(names, converters, strict=True) if c is not None]
                   + columns[len(names):])
        found = (_qmark_insert(conn, table, tuple(ordered)), converters, tuple(defaults))
    _DRIVER[key] = found
    return found


def update_rows(conn: Connection, table: Table, keys: list[str], rows: Sequence[dict[str, Any]],
                stamp: int, bump: bool) -> Any:
    """SQLite: `UPDATE table SET <keys>, change_seq = stamp[, version + 1] WHERE id = ? AND
    version = ?` for each row (its "id", "version" and `keys`) in one executemany through the
    driver; returns the cursor result (its rowcount: the rows written in all)."""
    quote = conn.dialect.identifier_preparer.quote
    # the change number is one integer for the whole statement: written into it, not bound
    # once per row
    sets = [f"{quote(k)} = ?" for k in keys] + [f"change_seq = {int(stamp)}"]
    if bump:
        sets.append("version = version + 1")
    sql = f"UPDATE {quote(table.name)} SET {', '.join(sets)} WHERE id = ? AND version = ?"
    converters = [table.c[k].type.bind_processor(conn.dialect) for k in keys]
    if any(converters):
        params = [(*(convert(r[k]) if convert else r[k]
                     for k, convert in zip(keys, converters, strict=True)),
                   r["id"], r["version"]) for r in rows]
    else:
        take = _getter([*keys, "id", "version"])
        params = [take(r) for r in rows]
    return conn.exec_driver_sql(sql, params)
