"""Opening the store: engines for SQLite (the embedded default) and PostgreSQL, and migrations.

SQLite runs in WAL mode with a busy timeout, so the API threads and the scheduler loop of one
`corral up` can read while one of them writes. PostgreSQL URLs use psycopg 3
(`postgresql://...` is rewritten to `postgresql+psycopg://...`).

Migrations are Alembic scripts shipped inside the package and run programmatically on startup
(`upgrade(engine)`), so an installed wheel needs no alembic.ini.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

__all__ = ["current_revision", "head_revision", "make_engine", "normalize_url", "sqlite_url", "upgrade",
           "writer"]

BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "corral_write"


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def normalize_url(url: str) -> str:
    """Accept the URL forms people paste: postgres://, postgresql://, or a SQLite file path."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if "://" not in url:
        return sqlite_url(url)
    return url


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    """An engine for `url`, tuned for the control plane. Does not connect yet."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, pool_size)
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_engine(url: str, pool_size: int) -> Engine:
    memory = url in ("sqlite://", "sqlite:///:memory:")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared connection, or each would see its own DB
    else:
        # SQLAlchemy's default (5 kept, 10 overflow) is below the API's threadpool: overflow
        # connections were opened (file, WAL, pragmas) and closed again on every busy request.
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at WAL checkpoints; safe with WAL
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # A writer takes the write lock up front (BEGIN IMMEDIATE) so it waits its turn under
        # the busy timeout; a deferred transaction that reads and then writes would instead
        # fail at once with "database is locked" when another writer got in between.
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine, for transactions that write (see `_begin`)."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent; safe to run on every start)."""
    cfg = _config()
    with writer(engine).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
