"""`corral up --demo` end to end: the story it tells really happens (issue 14).

A real `corral up --demo` on the default pool (SQLite, local backend, the priced demo pool), with
a short tick (CORRAL_DEMO_STEP_S) so the two-minute story takes seconds. Asserted: team-b's
arrival reclaims GPUs team-a borrowed (an event with the reason), the reclaimed job and the flaky
job resume from their checkpoints (step > 0), the notebook is placed on half a GPU, and
`corral usage` reports cost for both teams.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.sdk import Client

from .server_proc import CorralServer, stop_workers

pytestmark = pytest.mark.slow  # a real `corral up --demo`: ~12 s

TICK = "0.25"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[CorralServer]:
    # started where examples/pool.yaml is (as the README's quick start does): the demo still
    # runs on its own 2 x 4 pool, where a reclaim can happen
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "pool.yaml", tmp_path / "examples" / "pool.yaml")
    srv = CorralServer(tmp_path / "demo", cwd=tmp_path, extra_env={"CORRAL_DEMO_STEP_S": TICK})
    srv.start("--demo")
    yield srv
    srv.stop()
    stop_workers(srv.data_dir)


def _by_name(c: Client) -> dict[str, str]:
    return {w.name: w.id for w in c.iter_workloads()}


def _wait(pred: Callable[[], bool], timeout: float, what: str, srv: CorralServer) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen\n{srv.log()}")


def _log(c: Client, wid: str) -> str:
    """The output of the workload's latest attempt (a resumed attempt says where it resumed)."""
    return c.logs(wid, attempt=c.get(wid).attempt).data


def test_demo_shows_reclaim_restart_fraction_and_cost(demo: CorralServer) -> None:
    with demo.client() as c:
        names = ("a-train-1", "a-train-2", "b-eval", "b-notebook", "b-flaky")
        _wait(lambda: set(names) <= set(_by_name(c)), 60, "the demo's submissions", demo)
        ids = _by_name(c)
        assert {n.id for n in c.nodes()} == {"local-gpu-0", "local-gpu-1"}
        queues = {q.name: q for q in c.queues()}
        assert queues["team-a"].quota_gpus == 4 and queues["team-b"].quota_gpus == 4

        # team-b's arrival reclaims what team-a borrowed: a preemption event on a team-a job
        def reclaimed() -> list[str]:
            return [ids[n] for n in ("a-train-1", "a-train-2")
                    if any("reclaim" in f"{e.reason} {e.message}".lower()
                           for e in c.events(ids[n]).items)]
        _wait(lambda: bool(reclaimed()), 60, "a reclaim", demo)
        victim = reclaimed()[0]
        said = [e.message for e in c.events(victim).items]
        assert any("borrowing GPUs another queue is owed" in m for m in said), said

        # `corral top` in a second terminal is not empty: both teams' work is on it
        top = demo.cli("top", "--once").stdout
        assert "team-a" in top and "team-b" in top and victim in top, top

        # the notebook holds half a GPU
        _wait(lambda: c.get(ids["b-notebook"]).state in ("running", "succeeded"), 60,
              "the notebook's placement", demo)
        placed = c.get(ids["b-notebook"]).placements
        assert [(len(p.devices), p.milli_per_device) for p in placed] == [(1, 500)]

        # the flaky job and the reclaimed job both resume from their checkpoints (step > 0)
        def resumed(wid: str) -> bool:
            m = re.search(r"resumed from checkpoint at step (\d+)", _log(c, wid))
            return m is not None and int(m.group(1)) > 0
        _wait(lambda: resumed(ids["b-flaky"]), 90, "the flaky job's restart", demo)
        _wait(lambda: resumed(victim), 120, "the reclaimed job's resume", demo)

        # usage and cost for both teams
        report = demo.cli_json("usage", "--by", "queue")
        assert isinstance(report, dict)
        cost = {r["group"]["queue"]: float(r["cost"]) for r in report["rows"]}
        assert cost.get("team-a", 0) > 0 and cost.get("team-b", 0) > 0, report
