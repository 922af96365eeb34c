"""Which tests `-m "not slow"` (the fast part of the suite) leaves out, beyond those marked
``slow`` by hand.

A test that starts a real engine (marker ``ray``, ``slurm`` or ``browser``: a Ray cluster, a
Slurm controller and daemons, a headless Chromium) is slow whatever it asserts: the engine's
start, its jobs and its polls cost seconds, and a developer who runs the fast part has not
asked for them. Marking each such module by hand would be one more line to forget in every
new engine test, so the root conftest applies this rule to every collected item (pytest's own
``-m`` deselection runs later, in ``pytest_collection_modifyitems``).

PostgreSQL (``postgres``) is not on the list: its server starts once per session and each
test copies a migrated template database (``store_templates``) rather than migrating one, so
most of its tests are as quick as their SQLite twins; the slow ones are marked by hand.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ENGINE_MARKERS", "mark_engine_tests_slow"]

#: markers of tests that start a real engine, which makes them ``slow`` too
ENGINE_MARKERS = ("ray", "slurm", "browser")


def mark_engine_tests_slow(item: Any, slow: Any) -> bool:
    """Add ``slow`` (``pytest.mark.slow``) to ``item`` (a pytest Item) if it carries an engine
    marker and is not ``slow`` already; returns whether it was added."""
    if item.get_closest_marker("slow") is not None:
        return False
    if not any(item.get_closest_marker(name) is not None for name in ENGINE_MARKERS):
        return False
    item.add_marker(slow)
    return True
