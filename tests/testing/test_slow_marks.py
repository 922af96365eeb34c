"""`-m "not slow"` leaves out every test that starts a real engine (corral.testing.slow_marks):
the rule on fake items, and a real collection of an engine module through the root conftest."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corral.testing.slow_marks import ENGINE_MARKERS, mark_engine_tests_slow

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeItem:
    markers: set[str] = field(default_factory=set)
    added: list[Any] = field(default_factory=list)

    def get_closest_marker(self, name: str) -> Any:
        return object() if name in self.markers else None

    def add_marker(self, marker: Any) -> None:
        self.added.append(marker)


@pytest.mark.parametrize("engine", ENGINE_MARKERS)
def test_an_engine_test_is_slow(engine: str) -> None:
    item = FakeItem({engine})
    assert mark_engine_tests_slow(item, "slow") and item.added == ["slow"]


@pytest.mark.parametrize("markers", [set(), {"postgres"}, {"slow", "ray"}],
                         ids=["plain", "postgres", "already-slow"])
def test_other_tests_are_left_as_they_are(markers: set[str]) -> None:
    item = FakeItem(markers)
    assert not mark_engine_tests_slow(item, "slow") and item.added == []


@pytest.mark.slow  # a pytest collection in a child process: 18 s (-n 2 whole run, load 8-32)
def test_the_fast_part_collects_no_engine_test() -> None:
    """tests/testing/test_ray_cluster.py is marked `ray` only: the root conftest's hook makes its
    tests slow before `-m` deselects them (without it, all of them would be collected)."""
    module = "tests/testing/test_ray_cluster.py"
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          "--collect-only", "-m", "not slow", module],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "::" not in out.stdout, out.stdout[-2000:]  # no test id listed
    assert "deselected" in out.stdout, out.stdout[-2000:]
