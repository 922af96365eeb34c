"""Shared fixtures of the simulator tests: small trace files shipped in tests/sim/fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.sim.load import load_trace
from corral.sim.trace import Trace

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def openb() -> Trace:
    """24 openb nodes (105 GPUs, every model) and 58 tasks with times."""
    return load_trace(FIXTURES / "openb_nodes_small.csv", FIXTURES / "openb_pods_small.csv")


@pytest.fixture(scope="session")
def generic() -> Trace:
    """4 nodes (24 GPUs) and 8 tasks in corral's generic format, a gang among them."""
    return load_trace(FIXTURES / "generic_nodes.csv", FIXTURES / "generic_tasks.csv")
