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

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, select

from corral.store.driver_bulk import insert_rows, insert_tuples
from corral.store.schema import Base

__all__ = ["insert_in_order", "insert_tuples_in_order"]

_STATEMENTS: dict[tuple[str, bool], Any] = {}  # built once per table: compiled and cached
_READS: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def insert_in_order(conn: Connection, entity: type[Base], seq: str, key: str,
                    rows: Sequence[dict[str, Any]]) -> list[int]:
    """INSERT `rows` (the same keys in each) into `entity`'s table; return the `seq` column's
    generated value for each, in the order of `rows`. `key` names a UNIQUE column that every
    row carries. A taken key raises IntegrityError."""
    if not rows:
        return []
    table = entity.__table__
    assert isinstance(table, Table)
    if conn.dialect.name != "sqlite":
        returning = _statement(table, seq, returning=True)
        return [int(s) for s in conn.execute(returning, list(rows)).scalars()]
    return _seqs_of(conn, table, seq, key, [r[key] for r in rows],
                    lambda: insert_rows(conn, table, rows))


def insert_tuples_in_order(conn: Connection, entity: type[Base], seq: str, key: str,
                           columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """`insert_in_order` for rows already in the driver's form: tuples of `columns`, each
    value as the column's bind processor makes it (no default left out, `seq` not among
    them). The journal hands its transactions over this way: building a dict per row that
    `insert_rows` then turned back into a tuple was most of the insert's Python time.

    PostgreSQL: the rows' `seq`s are drawn from the column's sequence first, in one
    statement, and the rows COPYed with them (`driver_bulk.insert_tuples`). SQLAlchemy's
    ordered RETURNING built multi-row INSERTs whose every parameter it processed and psycopg
    converted to its own placeholders in Python (0.5 s of a 2,000 x 20,000 place step's 3.4
    profiled). Numbers drawn and then not used (a failed COPY) are gaps, as after a failed
    INSERT."""
    if not rows:
        return []
    table = entity.__table__
    assert isinstance(table, Table)
    if conn.dialect.name == "postgresql":
        seqs = _draw(conn, table, seq, len(rows))
        insert_tuples(conn, table, (seq, *columns),
                      [(s, *r) for s, r in zip(seqs, rows, strict=True)])
        return seqs
    at = list(columns).index(key)
    return _seqs_of(conn, table, seq, key, [r[at] for r in rows],
                    lambda: insert_tuples(conn, table, columns, rows))


def _draw(conn: Connection, table: Table, seq: str, count: int) -> list[int]:
    """PostgreSQL: `count` new values of `table.seq`'s sequence, ascending (each `nextval` is
    larger than the one before it in this session; sorted all the same)."""
    name = _SEQUENCES.get((table.name, seq))
    if name is None:
        name = _SEQUENCES[(table.name, seq)] = conn.exec_driver_sql(
            "SELECT pg_get_serial_sequence(%s, %s)", (table.name, seq)).scalar_one()
    drawn = conn.exec_driver_sql(
        "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (name, count))
    return sorted(int(s) for s, in drawn)


_SEQUENCES: dict[tuple[str, str], str] = {}  # (table, column) -> its sequence's name


def _seqs_of(conn: Connection, table: Table, seq: str, key: str, keys: list[Any],
             insert: Callable[[], object]) -> list[int]:
    """SQLite: run `insert` (the rows of `keys`, in that order) and read their `seq`s back:
    the rows above the largest `seq` before it, which must carry `keys` in order."""
    largest, ours = _reads(table, seq, key)
    before = int(conn.execute(largest).scalar_one())
    insert()
    got = conn.execute(ours, {"before": before}).all()
    if [k for _, k in got] != keys:
        raise RuntimeError(f"rows inserted into {table.name} by another writer during a bulk "
                           "insert: the store's SQLite writers must run BEGIN IMMEDIATE")
    return [int(s) for s, _ in got]


def _reads(table: Table, seq: str, key: str) -> tuple[Any, Any]:
    """SQLite's two reads around the insert (the largest `seq` before it, the rows above it),
    built once per table: constructing them cost about a tenth of a small commit's CPU."""
    found = _READS.get((table.name, seq, key))
    if found is None:
        seq_col, key_col = table.c[seq], table.c[key]
        found = (select(func.coalesce(func.max(seq_col), 0)),
                 select(seq_col, key_col).where(seq_col > bindparam("before"))
                 .order_by(seq_col))
        _READS[(table.name, seq, key)] = found
    return found


def _statement(table: Table, seq: str, *, returning: bool) -> Any:
    found = _STATEMENTS.get((table.name, returning))
    if found is None:
        found = insert(table)
        if returning:
            found = found.returning(table.c[seq], sort_by_parameter_order=True)
        _STATEMENTS[(table.name, returning)] = found
    return found
