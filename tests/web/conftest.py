"""Fixtures of the dashboard tests: an in-process rig on SQLite and PostgreSQL, and (for the
browser modules) a real `corral up` per module (or one shared by the modules that say so) driven
through headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from corral.store import Store

from .rig import Dash, build
from .server import CorralUp

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def dash(request: pytest.FixtureRequest) -> Iterator[Dash]:
    # a copy of a store migrated once per run (corral.testing.store_templates); upgrade: a no-op
    store = Store(request.getfixturevalue(f"{request.param}_store_url"))
    store.upgrade()
    yield build(store)
    store.close()


@pytest.fixture
def sqlite_dash(sqlite_store_url: str) -> Iterator[Dash]:
    store = Store(sqlite_store_url)
    store.upgrade()
    yield build(store)
    store.close()


def _corral_up(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralUp]:
    srv = CorralUp(tmp_path_factory.mktemp(f"corral-{name}")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory,
                  chromium_launch_kwargs: dict[str, Any]) -> Iterator[CorralUp]:
    """One `corral up` for the modules that set SHARED_SERVER = True: each only adds work of
    its own and reads it back by its id, so they need not start and stop a server each (~6-8 s
    on the 2-core CI box)."""
    yield from _corral_up("shared", tmp_path_factory)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           chromium_launch_kwargs: dict[str, Any]) -> Iterator[CorralUp]:
    """A real `corral up` for the module (the shared one where the module sets SHARED_SERVER).
    chromium_launch_kwargs first: where Chromium is missing the module skips before a server is
    started."""
    if getattr(request.module, "SHARED_SERVER", False):
        yield request.getfixturevalue("shared_server")
        return
    yield from _corral_up(request.module.__name__.rsplit(".", 1)[-1], tmp_path_factory)


@pytest.fixture(scope="module")
def browser(chromium_launch_kwargs: dict[str, Any]) -> Iterator[Any]:
    # Not one for the session: while Playwright's sync API is open, its event loop counts as
    # running in this thread, so asyncio.run() in a later non-browser test would fail.
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
