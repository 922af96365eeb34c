"""corral.core stays pure: no I/O layer imports, no clock, no unseeded randomness; its public
surface is pinned so that a change to it is a deliberate one."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import corral.core

CORE = Path(corral.core.__file__).parent
ALLOWED_TOP = {"numpy", "scipy", "corral"} | set(sys.stdlib_module_names)
FORBIDDEN_STDLIB = {"os", "subprocess", "socket", "sqlite3", "threading", "asyncio", "shutil", "pathlib", "io"}
FORBIDDEN_CALLS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("datetime", "now"),
                   ("datetime", "utcnow"), ("random", "random"), ("random", "randint"), ("random", "choice"),
                   ("random", "shuffle")}
# numpy's global generator; a seeded np.random.default_rng(seed) is fine
FORBIDDEN_NP_RANDOM = {"rand", "random", "randint", "choice", "shuffle", "permutation", "seed", "normal", "uniform"}

FILES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORE)) for p in FILES])
def test_core_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top in ALLOWED_TOP, f"{path.name} imports {name}"
                assert top not in FORBIDDEN_STDLIB, f"{path.name} imports {name} (I/O)"
                if top == "corral":
                    assert name.startswith("corral.core"), f"{path.name} imports upward: {name}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in FORBIDDEN_CALLS, (
                f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}: pass time or a seeded generator in")
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "random" and node.attr in FORBIDDEN_NP_RANDOM):
            raise AssertionError(f"{path.name}:{node.lineno} uses numpy's global generator")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "default_rng":
            assert node.args or node.keywords, f"{path.name}:{node.lineno}: default_rng() without a seed"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "print", "input"}, f"{path.name}:{node.lineno} calls {node.func.id}"


def test_public_surface_is_pinned() -> None:
    assert sorted(corral.core.__all__) == sorted([
        "DEFAULT_SCORING", "MILLI_PER_GPU", "CapacityKind", "ClusterState", "Eviction", "Health", "Node",
        "Placement", "Plan", "Queue", "QueueUsage", "Reason", "Reservation", "SchedulerConfig",
        "TopologyLevel", "WorkerAssignment", "WorkerResources", "Workload", "WorkloadKind",
        "WorkloadState", "schedule"])
    for name in corral.core.__all__:
        assert hasattr(corral.core, name)


def test_fairshare_doc_examples_hold() -> None:
    import doctest

    from corral.core import fairshare

    result = doctest.testmod(fairshare)
    assert result.attempted >= 5 and result.failed == 0
