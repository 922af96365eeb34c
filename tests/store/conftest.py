"""The `store` fixture: every store test runs on SQLite and on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.store import Store
from corral.store.database import sqlite_url

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "corral.db")
    else:
        url = request.getfixturevalue("postgres_database_url")
    s = Store(url)
    s.upgrade()
    yield s
    s.close()
