"""The benchmark's own snapshots for the equivalence tests of the placer's and the evictions'
speed-ups (test_shared_scores, test_eviction_shortcuts): bench/schedule_cycle.py is a script,
not a package module, so it is loaded from its file once per run, and what of a plan those
tests compare."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from corral.core import Plan

BENCH = Path(__file__).resolve().parents[2] / "bench" / "schedule_cycle.py"
_NAME = "corral_bench_schedule_cycle"


def schedule_cycle_bench() -> ModuleType:
    """bench/schedule_cycle.py as a module (its REGIMES builders and its NOW)."""
    if _NAME not in sys.modules:
        if str(BENCH.parent) not in sys.path:  # it imports its sibling full_regime.py
            sys.path.append(str(BENCH.parent))
        spec = importlib.util.spec_from_file_location(_NAME, BENCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


def plan_facts(plan: Plan) -> tuple[object, ...]:
    """Every decision of a plan, comparable between a fast and a plain computation."""
    return (plan.placements, plan.evictions, sorted(plan.pending.items()), plan.reservations,
            plan.nominations)
