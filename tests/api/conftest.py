"""The `store` fixture: every store test runs on SQLite and on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.store import Store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    # a copy of a store migrated once per run (corral.testing.store_templates); upgrade: a no-op
    url = request.getfixturevalue(f"{request.param}_store_url")
    s = Store(url)
    s.upgrade()
    yield s
    s.close()
