"""corral.store: persistence of the pool, queues, workloads, events, users and the leader lease.

`Store` owns the engine and hands out short transactions; the modules `workloads`, `pool`,
`auth` and `lease` are small functions over one Connection. SQLite (WAL) is the embedded default,
PostgreSQL (psycopg 3) the production store; migrations run programmatically (`Store.upgrade`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from corral.store.changes import INSERTS_KEY, WRITES_KEY, RowWrite
from corral.store.database import make_engine, normalize_url, upgrade, writer

if TYPE_CHECKING:
    from corral.store.secrets import SecretBox

__all__ = ["Store"]


class Store:
    """The database behind one control plane. Thread-safe (one connection per transaction)."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = normalize_url(url)
        self.engine = engine or make_engine(self.url)
        self._writer = writer(self.engine)
        #: the key named secrets are sealed with (`corral.store.secrets`); None: no secrets
        self.secret_box: SecretBox | None = None
        #: called with each committed transaction's workload writes (`subscribe`)
        self._subscribers: list[weakref.WeakMethod[Any]] = []

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        upgrade(self.engine)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (rolled back at the end)."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits when the block ends without an exception. Once it has
        committed, what it wrote to workloads (`corral.store.changes.RowWrite`) is handed to
        each subscriber (`subscribe`), and so is an empty list when it only inserted workloads
        (a submission: a reader waiting for work learns of it, and reads the rows from the
        feed); nothing of a transaction that rolled back is."""
        writes: list[RowWrite] = []
        with self._writer.begin() as conn:
            conn.info[WRITES_KEY] = writes
            try:
                yield conn
            finally:
                conn.info.pop(WRITES_KEY, None)
                inserted = conn.info.pop(INSERTS_KEY, False)
        if writes or inserted:
            for ref in list(self._subscribers):
                subscriber = ref()
                if subscriber is None:
                    with contextlib.suppress(ValueError):  # another thread removed it first
                        self._subscribers.remove(ref)
                else:
                    subscriber(writes)

    def subscribe(self, subscriber: Callable[[list[RowWrite]], None]) -> None:
        """Call `subscriber` (a bound method, held weakly: a dropped reader stops being called)
        with the workload writes of each committed write transaction that wrote or inserted
        workloads (the list is empty when it only inserted), on the committing thread. It must
        be quick and must not raise."""
        self._subscribers.append(weakref.WeakMethod(subscriber))  # type: ignore[arg-type]

    def close(self) -> None:
        self.engine.dispose()
