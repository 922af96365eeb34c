"""The SQL that a piece of code sends to a store's database, for tests that bound what a step,
a pass or a request reads or writes (`from sql_trace import statements`)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event

from corral.store import Store

__all__ = ["statements"]


def statements(store: Store, run: Callable[[], object]) -> list[tuple[str, bool]]:
    """The SQL `run` sends to the database, each with whether it was an executemany."""
    seen: list[tuple[str, bool]] = []

    def count(conn, cursor, sql, params, context, many):  # type: ignore[no-untyped-def]
        seen.append((sql, many))

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        run()
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    return seen
