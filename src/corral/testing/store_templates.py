"""Fresh stores already at the migrations' head, copied from a template migrated once a session.

Hundreds of tests each want a store of their own: empty of rows, schema at head. Running every
Alembic migration for each costs ~0.15 s on SQLite and ~0.4-0.9 s on PostgreSQL (2-core CI box
under load), minutes over the suite. So the migrations run once into a template, and each test
gets a copy that `Store.upgrade()` then finds at head (a no-op check):

* SQLite: the template file is copied (its engine is disposed first, so the WAL is checkpointed
  into the main file and the copy is whole);
* PostgreSQL: ``CREATE DATABASE <new> TEMPLATE <template>`` (a copy made by the server). The
  template has no open connection while it is copied, which PostgreSQL requires.

The idea is Django's test-database cloning (``CREATE DATABASE ... TEMPLATE`` for PostgreSQL, a
file copy for SQLite; ``django.db.backends.*.creation._clone_test_db``) and pytest-postgresql's
template databases. The migrations add no rows, so a copy is exactly what a fresh upgrade gives.
A test that needs an empty database (a migration test) keeps using ``postgres_database_url``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from corral.store import Store
from corral.store.database import sqlite_url
from corral.testing.postgres import PostgresServer

__all__ = ["PostgresStoreTemplate", "SqliteStoreTemplate"]


class SqliteStoreTemplate:
    """A SQLite file at the migrations' head; `copy_to(path)` gives a test its own store."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        store = Store(sqlite_url(self.path))
        try:
            store.upgrade()
        finally:
            store.close()  # the last connection closed: WAL checkpointed into the file

    def copy_to(self, path: Path) -> str:
        """Copy the template to `path` (which must not exist yet); its SQLAlchemy URL."""
        if path.exists():
            raise FileExistsError(f"{path} exists: a store copy needs a path of its own")
        shutil.copyfile(self.path, path)
        return sqlite_url(path)


class PostgresStoreTemplate:
    """A database at the migrations' head on `server`; `copy(name)` creates a test's own."""

    def __init__(self, server: PostgresServer, name: str = "corral_template_head") -> None:
        self.server, self.name = server, name
        store = Store(server.create_database(name))
        try:
            store.upgrade()
        finally:
            store.close()  # no connection may stay open on a template while it is copied

    def copy(self, name: str) -> str:
        """Create database `name` as a copy of the template; its SQLAlchemy URL."""
        return self.server.create_database(name, template=self.name)
