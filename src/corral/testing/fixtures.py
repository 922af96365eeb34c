"""Pytest fixtures for the real-parts harnesses; import them into a conftest.py with

    from corral.testing.fixtures import *  # noqa: F403

Expensive servers are session-scoped: one PostgreSQL, one Slurm, one Ray cluster per test run.
A fixture skips (naming what to install) only when the harness is *unavailable* (binaries or a
package absent); a harness that is present but fails to start raises, so the tests fail loudly.

Tests that break a shared server on purpose (kill a node) must put it back before they end
(``restart_node`` for Slurm, ``add_node`` for Ray) so later tests see the documented shape.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from corral.testing.chromium import find_chromium, playwright_launch_kwargs, require_playwright
from corral.testing.errors import HarnessUnavailable
from corral.testing.postgres import PostgresServer
from corral.testing.raycluster import RayTestCluster
from corral.testing.slurm import SlurmCluster

if TYPE_CHECKING:  # imported when first used: the store stack is not cheap to import
    from corral.testing.store_templates import PostgresStoreTemplate, SqliteStoreTemplate

__all__ = [
    "chromium_executable",
    "chromium_launch_kwargs",
    "postgres_database_url",
    "postgres_server",
    "postgres_store_template",
    "postgres_store_url",
    "postgres_url",
    "ray_cluster",
    "ray_driver",
    "slurm_cluster",
    "sqlite_store_template",
    "sqlite_store_url",
]

_db_counter = itertools.count(1)


def _skip_unavailable(exc: HarnessUnavailable) -> NoReturn:
    pytest.skip(f"harness unavailable: {exc}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL for the whole run (see corral.testing.postgres)."""
    try:
        server = PostgresServer()
    except HarnessUnavailable as exc:
        _skip_unavailable(exc)
    with server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL (postgresql+psycopg://...) of the session's shared database."""
    return postgres_server.url


@pytest.fixture
def postgres_database_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """URL of a fresh, empty database for this one test (same server, new database)."""
    return postgres_server.create_database(_database_name(request))


def _database_name(request: pytest.FixtureRequest) -> str:
    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return f"t{next(_db_counter)}_{stem}"


@pytest.fixture(scope="session")
def postgres_store_template(postgres_server: PostgresServer) -> PostgresStoreTemplate:
    """A database migrated to head once per run, which ``postgres_store_url`` copies."""
    from corral.testing.store_templates import PostgresStoreTemplate

    return PostgresStoreTemplate(postgres_server)


@pytest.fixture
def postgres_store_url(postgres_store_template: PostgresStoreTemplate,
                       request: pytest.FixtureRequest) -> str:
    """URL of a new database for this one test, already at the migrations' head (a copy of the
    template: no migration runs per test; see corral.testing.store_templates)."""
    return postgres_store_template.copy(_database_name(request))


@pytest.fixture(scope="session")
def sqlite_store_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteStoreTemplate:
    """A SQLite file migrated to head once per run, which ``sqlite_store_url`` copies."""
    from corral.testing.store_templates import SqliteStoreTemplate

    return SqliteStoreTemplate(tmp_path_factory.mktemp("store-template"))


@pytest.fixture
def sqlite_store_url(sqlite_store_template: SqliteStoreTemplate, tmp_path: Path) -> str:
    """URL of this test's own SQLite store, ``tmp_path / "corral.db"``, already at the
    migrations' head (a copy of the template)."""
    return sqlite_store_template.copy_to(tmp_path / "corral.db")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Real Slurm: slurmctld + slurmd gpu1..gpu3 (4 CPUs, 4 GPUs, 8 shards each), all idle."""
    try:
        cluster = SlurmCluster()
    except HarnessUnavailable as exc:
        _skip_unavailable(exc)
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayTestCluster]:
    """Real Ray: a GPU-less head plus worker-1, worker-2 (2 CPUs, 4 GPUs, accelerator_type:H100
    each). Not connected; use ``ray_driver`` or ``ray.init(address=ray_cluster.address)``."""
    try:
        cluster = RayTestCluster()
    except HarnessUnavailable as exc:
        _skip_unavailable(exc)
    with cluster:
        yield cluster


@pytest.fixture(scope="module")
def ray_driver(ray_cluster: RayTestCluster) -> Iterator[RayTestCluster]:
    """The session cluster with this process attached as a Ray driver for one test module."""
    ray_cluster.connect()
    try:
        yield ray_cluster
    finally:
        ray_cluster.disconnect()


@pytest.fixture(scope="session")
def chromium_launch_kwargs() -> dict[str, Any]:
    """kwargs for ``playwright.chromium.launch(**...)`` using Debian's /usr/bin/chromium."""
    try:
        require_playwright()
        return playwright_launch_kwargs()
    except HarnessUnavailable as exc:
        _skip_unavailable(exc)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path of the system Chromium, for launching it without Playwright."""
    try:
        return find_chromium()
    except HarnessUnavailable as exc:
        _skip_unavailable(exc)
