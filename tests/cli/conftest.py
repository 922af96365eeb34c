"""Real `corral up` servers for the end-to-end tests, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.testing.postgres import PostgresServer

from .server_proc import CorralServer, stop_workers


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[CorralServer]:
    db = None
    if request.param == "postgres":
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        db = pg.create_database(f"e2e_{request.module.__name__.rsplit('.', 1)[-1]}")
    srv = CorralServer(tmp_path_factory.mktemp(f"corral-{request.param}"), db=db).start()
    yield srv
    srv.stop()
    stop_workers(srv.data_dir)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db(request: pytest.FixtureRequest) -> str | None:
    """The store of a test's own `corral up`: None (SQLite in its data dir) or the URL of a
    fresh, empty PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_database_url")
    return url
