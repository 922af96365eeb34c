"""PostgreSQL's bulk updates: many rows' new values as one array per column, one statement.

psycopg's executemany sends one UPDATE per row (pipelined, each parsed, planned and run on its
own), and SQLAlchemy's executemany first processes every parameter of every row in Python. At
10,000 nodes x 100,000 workloads the step that ends and places 10,000 jobs sent 31,182 UPDATEs
of workloads (0.99 s of server statement time) and 10,000 of placements that way. Here the
rows go as one array per column, and the server joins them to the table by key:

    UPDATE t SET c = v.c, ... FROM unnest($1::k[], ..., $n::c[]) AS v(k, ..., c)
    WHERE t.k = v.k AND ...

one statement (one parse, one plan) per chunk, each list dumped in psycopg's binary format.

An UPDATE ... FROM joins each target row to one source row: a key given twice would be
written once, with either row's values, where the executemany wrote both in order. Callers
therefore pass distinct keys (`distinct`) and keep their executemany for the rest. SQLite has
no arrays: its bulk updates go through the driver's executemany (`corral.store.driver_bulk`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table

__all__ = ["by_index", "delete_keyed", "distinct", "update_keyed"]


def distinct(*keys: Sequence[Any]) -> bool:
    """Whether the rows' keys (one sequence per key column, the rows in order) are all
    different: `update_keyed` writes a repeated key once, not once per row."""
    count = len(keys[0])
    return len(set(zip(*keys, strict=True)) if len(keys) > 1 else set(keys[0])) == count


def update_keyed(conn: Connection, table: Table, keys: Sequence[str], sets: Sequence[str],
                 columns: Sequence[Sequence[Any]], extra: str = "", where: str = "") -> int:
    """One UPDATE of `table`: each row given sets the `sets` columns where the `keys` columns
    equal its own. `columns`: one sequence per name of `keys` then `sets`, each the rows'
    values in order (the keys `distinct`, or rows with equal keys equal throughout). `extra`:
    further assignments in SQL, the target aliased `t` (a constant, `version = t.version +
    1`); `where`: a further condition on `t`. Returns how many rows it wrote."""
    key = ("update", table.name, tuple(keys), tuple(sets), extra, where)
    sql = _STATEMENTS.get(key)
    if sql is None:
        quote = conn.dialect.identifier_preparer.quote
        assigned = [f"{quote(n)} = v.{quote(n)}" for n in sets] + ([extra] if extra else [])
        unnest, conditions = _by_key(conn, table, keys, sets, where)
        sql = _STATEMENTS[key] = (f"UPDATE {quote(table.name)} AS t SET {', '.join(assigned)} "
                                  f"FROM {unnest} WHERE {conditions}")
    return _run(conn, sql, columns)


def delete_keyed(conn: Connection, table: Table, keys: Sequence[str],
                 columns: Sequence[Sequence[Any]]) -> int:
    """One DELETE of the rows of `table` whose `keys` columns equal one of the rows given
    (`columns`: one sequence per key, the rows' values in order). Returns how many it
    deleted."""
    key = ("delete", table.name, tuple(keys), (), "", "")
    sql = _STATEMENTS.get(key)
    if sql is None:
        unnest, conditions = _by_key(conn, table, keys, (), "")
        quote = conn.dialect.identifier_preparer.quote
        sql = _STATEMENTS[key] = (f"DELETE FROM {quote(table.name)} AS t USING {unnest} "
                                  f"WHERE {conditions}")
    return _run(conn, sql, columns)


_STATEMENTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...], str, str], str] = {}


def _by_key(conn: Connection, table: Table, keys: Sequence[str], sets: Sequence[str],
            where: str) -> tuple[str, str]:
    """The source rows (`unnest(...) AS v(...)`, each array cast to its column's type) and
    the conditions that join them to the target `t` by key."""
    quote = conn.dialect.identifier_preparer.quote
    names = [*keys, *sets]
    # %b: psycopg dumps each list in the binary format (5 ms of CPU for six columns of 5,000
    # rows, 21 ms as text)
    casts = [f"%b::{table.c[n].type.compile(dialect=conn.dialect)}[]" for n in names]
    # the first key's values again as `= ANY(...)`: the key's index can find the rows by it
    # whatever the join (see `_run`)
    conditions = [*(f"t.{quote(k)} = v.{quote(k)}" for k in keys),
                  f"t.{quote(keys[0])} = ANY({casts[0]})", *([where] if where else [])]
    return (f"unnest({', '.join(casts)}) AS v({', '.join(quote(n) for n in names)})",
            " AND ".join(conditions))


def _run(conn: Connection, sql: str, columns: Sequence[Sequence[Any]]) -> int:
    """Run a statement of `_by_key`'s form (its arrays, then the first key's again); return
    its row count. The rows are named by key, so the key's index always finds them; but the
    planner, without statistics of rows inserted moments before (ANALYZE has not seen them),
    may price a sequential scan of the whole table cheaper (EXPLAIN: 60,000 usage rows read
    to close 1,500 attempts, 65 ms; through the index 17 ms), work that grows with
    everything ever stored. Sequential scans are priced out for this one statement, then the
    setting is restored after it. Only after it succeeded: a failed statement aborts the
    transaction, which a restore would answer with InFailedSqlTransaction in place of the
    statement's own error (an IntegrityError, a deadlock: review of 47419ff); the setting is
    local to the transaction (`set_config(..., true)`) and ends with its rollback."""
    arrays = [list(c) for c in columns]
    with by_index(conn):
        return int(conn.exec_driver_sql(sql, (*arrays, arrays[0])).rowcount)


@contextmanager
def by_index(conn: Connection) -> Iterator[None]:
    """PostgreSQL: sequential scans priced out for the statements run inside (see `_run` for
    why), the setting restored after them, only if they succeeded (a failed statement aborts
    the transaction, and the setting, local to it, ends with its rollback). Any other
    database: nothing (SQLite has no such setting; its planner takes a unique key's index)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    was = conn.exec_driver_sql("SELECT current_setting('enable_seqscan'), "
                               "set_config('enable_seqscan', 'off', true)").scalar_one()
    yield
    conn.exec_driver_sql("SELECT set_config('enable_seqscan', %s, true)", (was,))
