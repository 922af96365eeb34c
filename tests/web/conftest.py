"""Fixtures of the dashboard tests: an in-process rig on SQLite and PostgreSQL, and (for the
browser modules) a real `corral up` per module driven through headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.store import Store
from corral.store.database import sqlite_url

from .rig import Dash, build
from .server import CorralUp

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


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           chromium_launch_kwargs: dict[str, Any]) -> Iterator[CorralUp]:
    """A real `corral up` for the module. chromium_launch_kwargs first: where Chromium is
    missing the module skips before a server is started."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    srv = CorralUp(tmp_path_factory.mktemp(f"corral-{module}")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser(chromium_launch_kwargs: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(**chromium_launch_kwargs)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Any, server: CorralUp) -> Iterator[Any]:
    """A fresh page signed in as the admin; uncaught page errors fail the test. A module's
    TIMEOUT_MS (default 20 s) bounds each wait."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    errors: list[str] = []
    try:
        p = ctx.new_page()
        p.set_default_timeout(getattr(request.module, "TIMEOUT_MS", 20_000))
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.goto(server.url)
        p.fill("#token", server.token)
        p.click("#login button[type=submit]")
        p.wait_for_selector("[data-testid=who]:has-text('·')")
        yield p
    finally:
        ctx.close()
    assert errors == [], f"uncaught errors in the page: {errors}"
