"""Alembic migrations of the control-plane store, shipped in the package (see store.database)."""
