"""Shared test configuration. The suite can run on pytest-xdist workers (`-n 3 --dist
loadgroup`); the collection hook below keeps what must share a worker together. Hypothesis runs
a fixed, CI-sized number of examples per property (profile `ci`, derandomized so CI is
reproducible); `HYPOTHESIS_PROFILE=dev` explores more."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The real-parts fixtures (session-scoped PostgreSQL, Slurm, Ray, Chromium) are registered once
# here, so every folder shares one server of each kind per test session.
from corral.testing.fixtures import *  # noqa: E402, F403
from corral.testing.reaper import start_reaper  # noqa: E402
from corral.testing.slow_marks import mark_engine_tests_slow  # noqa: E402
from corral.testing.xdist_groups import prepare_items  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Every process that runs tests (the serial session, or each xdist worker) gets a watcher
    that ends what the session started once it exits, a killed one too (corral.testing.reaper).
    An xdist controller runs no test and starts no server: it gets none."""
    controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput")
    if not controller:
        start_reaper()


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test that starts a real engine (Ray, Slurm, Chromium) is `slow`, so `-m "not slow"`
    leaves it out (corral.testing.slow_marks); this hook runs before `-m` deselects."""
    mark_engine_tests_slow(item, pytest.mark.slow)


@pytest.hookimpl(trylast=True)  # after xdist's own hook, whose id write pytest 9.2 loses
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test gets a node id of its own (Schemathesis' items shared one, and xdist ran one of
    them); tests that must share one xdist worker (Ray; a module's own shared fixture) get an
    `xdist_group` marker and the `@group` node id suffix xdist's scheduler reads: see
    corral.testing.xdist_groups."""
    if config.pluginmanager.hasplugin("xdist"):
        prepare_items(config, items)


@pytest.fixture(autouse=True)
def _umask_restored() -> Iterator[None]:
    """`corral up` run in process sets the process umask to 077 (its files are its own); restored
    after each test so that a later test's harness (Slurm's munge socket dir) is not made 0700."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)
