"""corral.store: persistence of the pool, queues, workloads, events, users and the leader lease.

`Store` owns the engine and hands out short transactions; the modules `workloads`, `pool`,
`auth` and `lease` are small functions over one Connection. SQLite (WAL) is the embedded default,
PostgreSQL (psycopg 3) the production store; migrations run programmatically (`Store.upgrade`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

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
        """A transaction that commits when the block ends without an exception."""
        with self._writer.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()
