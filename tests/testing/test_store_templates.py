"""The store fixtures hand each test its own store at the migrations' head, copied from a
template: the copy has the schema a fresh upgrade gives, and writes to one copy are not seen by
another or by the template."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from corral.core.model import Queue
from corral.store import Store
from corral.store import pool as P
from corral.store.database import current_revision, head_revision, sqlite_url
from corral.testing.postgres import PostgresServer
from corral.testing.store_templates import PostgresStoreTemplate, SqliteStoreTemplate


def _schema(url: str) -> dict[str, list[str]]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {t: sorted(c["name"] for c in inspector.get_columns(t))
                for t in sorted(inspector.get_table_names())}
    finally:
        engine.dispose()


def _queues(url: str) -> list[str]:
    store = Store(url)
    try:
        with store.read() as c:
            return [q.name for q in P.list_queues(c)]
    finally:
        store.close()


def _add_queue(url: str, name: str) -> None:
    store = Store(url)
    try:
        with store.write() as c:
            P.upsert_queue(c, Queue(name))
    finally:
        store.close()


def test_a_sqlite_copy_is_what_a_fresh_upgrade_gives_and_is_its_own(tmp_path: Path) -> None:
    template = SqliteStoreTemplate(tmp_path)
    first = template.copy_to(tmp_path / "a.db")
    second = template.copy_to(tmp_path / "b.db")
    fresh = Store(sqlite_url(tmp_path / "fresh.db"))
    fresh.upgrade()
    fresh.close()
    assert _schema(first) == _schema(fresh.url)
    store = Store(first)
    assert current_revision(store.engine) == head_revision()
    store.close()
    _add_queue(first, "research")
    assert _queues(first) == ["research"] and _queues(second) == []
    assert _queues(sqlite_url(template.path)) == []
    with pytest.raises(FileExistsError, match="a path of its own"):
        template.copy_to(tmp_path / "a.db")


def test_the_fixture_store_is_at_head_in_the_tests_own_dir(sqlite_store_url: str,
                                                          tmp_path: Path) -> None:
    assert sqlite_store_url == sqlite_url(tmp_path / "corral.db")
    store = Store(sqlite_store_url)
    try:
        assert current_revision(store.engine) == head_revision()
    finally:
        store.close()


@pytest.mark.postgres
def test_a_postgres_copy_is_what_a_fresh_upgrade_gives_and_is_its_own(
        postgres_server: PostgresServer, postgres_database_url: str) -> None:
    template = PostgresStoreTemplate(postgres_server, name="template_selftest")
    first, second = template.copy("copy_selftest_a"), template.copy("copy_selftest_b")
    fresh = Store(postgres_database_url)
    fresh.upgrade()
    fresh.close()
    assert _schema(first) == _schema(postgres_database_url)
    _add_queue(first, "research")
    assert _queues(first) == ["research"] and _queues(second) == []
    assert _queues(postgres_server.url_for("template_selftest")) == []


@pytest.mark.postgres
def test_the_fixture_database_is_at_head(postgres_store_url: str) -> None:
    store = Store(postgres_store_url)
    try:
        assert current_revision(store.engine) == head_revision()
    finally:
        store.close()
