"""Fixtures of the dashboard tests: an in-process rig on SQLite and PostgreSQL, and (in
test_browser.py) a real `corral up` driven through headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.store import Store
from corral.store.database import sqlite_url

from .rig import Dash, build

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def dash(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dash]:
    url = (sqlite_url(tmp_path / "corral.db") if request.param == "sqlite"
           else request.getfixturevalue("postgres_database_url"))
    store = Store(url)
    store.upgrade()
    yield build(store)
    store.close()


@pytest.fixture
def sqlite_dash(tmp_path: Path) -> Iterator[Dash]:
    store = Store(sqlite_url(tmp_path / "corral.db"))
    store.upgrade()
    yield build(store)
    store.close()
