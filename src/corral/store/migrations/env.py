"""Alembic environment: run against the connection `corral.store.database.upgrade` hands in."""

from __future__ import annotations

from alembic import context

from corral.store import ledger_tables  # noqa: F401  (ledger hook: its tables join Base.metadata)
from corral.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always run through corral.store.database
    raise RuntimeError("run migrations with `corral db upgrade` or corral.store.database.upgrade")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
)
with context.begin_transaction():
    context.run_migrations()
