"""The benchmarks of issue 10 at a tiny size: they run, print every figure, and the contended
regime exercises every disruptive action. Behaviour only: no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each benchmark run at a tiny size: ~13 s

BENCH = Path(__file__).resolve().parents[2] / "bench"
RULES = ("Reclaim", "Preempt", "Consolidate")


def run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_schedule_cycle_prints_every_figure_and_every_rule_evicts(tmp_path: Path) -> None:
    out = run("schedule_cycle.py", "--regime", "all", "--sizes", "200x2000", "--seeds", "1",
              "--json", str(tmp_path / "r.json"))
    rows = [line for line in out.splitlines() if " 200x2000 seed 1: " in line]
    assert [r.split()[0] for r in rows] == ["contended", "full"]
    for row in rows:
        for figure in ("s CPU", "wall", "build", "peak RSS", "running", "under quota",
                       "placed", *RULES, "re-placed", "reservations", "pending"):
            assert figure in row, (figure, row)
    # every regime prints the first cycle and the two after it as the live loop runs them
    # (the plan applied, ends, arrivals, a node cordoned), warm and cold, with the same plan
    for regime in ("contended", "full"):
        for cycle in ("first cycle (cold)", "next cycle cold", "next cycle warm, as the live loop",
                      "the cycle after cold", "the cycle after warm (live loop)"):
            assert f"summary {regime} 200x2000 {cycle}" in out, (regime, cycle)
    later = [line for line in out.splitlines() if "cycle, as the live loop runs it (" in line]
    assert len(later) == 4 and all("same plan" in line for line in later), later
    results = {r["regime"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    contended = results["contended"]
    assert all(contended["evictions"][rule] > 0 for rule in RULES), contended["evictions"]
    assert "WARNING" not in out
    assert sum(contended["pending_by_reason"].values()) == contended["still_pending"]
    assert contended["running_gpus"] > 0 and results["full"]["running_gpus"] == 0


def test_schedule_cycle_rejects_a_malformed_size() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "schedule_cycle.py"), "--sizes", "200"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "NODESxPENDING" in out.stderr


def test_contention_prints_every_figure_for_every_policy_and_is_deterministic(
    tmp_path: Path,
) -> None:
    args = ("--jobs", "300", "--nodes", "16", "--rerun-every", "5", "--seed", "3")
    first = run("contention.py", *args, "--json", str(tmp_path / "a.json"))
    for policy in ("corral", "fifo", "corral-no-reservations"):
        assert f"\n{policy}: " in first
    for figure in ("cycle CPU ms: p50", "p99", "max", "within guarantee on arrival",
                   "longest wait", "idle reserved GPU-minutes", "evictions: Reclaim",
                   "Preempt", "Consolidate", "rerun evictions", "Jain's index",
                   "teams used/deserved GPUs", "waiting while owed"):
        assert first.count(figure) >= 3, figure
    run("contention.py", *args, "--json", str(tmp_path / "b.json"))
    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    timing = ("cycle_cpu_ms", "wall_seconds", "cpu_seconds", "rerun_cpu_seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in a] == \
        [{k: v for k, v in r.items() if k not in timing} for r in b]
    by = {r["policy"]: r for r in a}
    assert by["fifo"]["evictions"] == dict.fromkeys(RULES, 0)
    assert by["corral-no-reservations"]["idle_reserved_gpu_minutes"] == 0
    assert all(r["completed"] == r["jobs"] == 300 and r["reruns"] > 0 for r in a)


def test_contention_checks_the_session_against_schedule(tmp_path: Path) -> None:
    """`--check-session` compares every cycle of the session with `schedule` from scratch on
    the same state (issue 10): it reports how many it compared, and none may differ."""
    out = run("contention.py", "--jobs", "200", "--nodes", "12", "--rerun-every", "0",
              "--seed", "4", "--policies", "corral", "--check-session", "--quiet",
              "--json", str(tmp_path / "r.json"))
    (r,) = json.loads((tmp_path / "r.json").read_text())
    assert r["session_checked"] == r["cycles"] > 0
    assert r["session_diverged"] == 0 and r["first_divergence_at"] is None
    assert f"session vs schedule from scratch: 0 of {r['cycles']} cycles differ" in out
