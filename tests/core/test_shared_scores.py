"""The placer's speed-ups decide exactly what the plain computation decides (issue 10).

- Scores and free slots shared between shapes (`placement._DynamicScores`, `Placer.slots`):
  every shape with the same worker resources reads one array of the changing part of node
  scores, memoised by node state, and a gang one array of free worker slots. The plain way
  keeps scores per shape, re-scores each changed node with numpy and counts a gang's slots on
  every call. Plans must be
  identical, on the benchmark's own snapshots (bench/schedule_cycle.py, every action firing) in
  both regimes at a small size, and on the scenario tests' clusters.
- Score memo misses scored one node at a time in plain Python (`placement._ONE_NODE`) give
  the plans of numpy's scores.
- A snapshot's running work added to the queue book once per queue (`QueueBook.add_totals`)
  leaves the book exactly as one `add` per workload, with and without share units.
"""

from __future__ import annotations

import pytest
from tests.core.bench_snapshots import plan_facts, schedule_cycle_bench

from corral.core import SchedulerConfig, WorkloadState, placement, schedule
from corral.core.queues import QueueBook, Totals
from corral.core.snapshot import Capacity, NodeTable
from corral.core.statement import Statement


def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "_SHARE_ACROSS_SHAPES", False)


@pytest.mark.parametrize(
    ("regime", "nodes", "pending", "seed"),
    [("contended", 200, 2000, 1), ("contended", 200, 2000, 2), ("contended", 400, 4000, 3),
     ("full", 150, 1500, 1)],
    ids=["contended-200-s1", "contended-200-s2", "contended-400-s3", "full-150-s1"],
)
def test_bench_plans_identical(monkeypatch: pytest.MonkeyPatch, regime: str, nodes: int,
                               pending: int, seed: int) -> None:
    state = schedule_cycle_bench().REGIMES[regime](nodes, pending, seed)
    shared = schedule(state, now=schedule_cycle_bench().NOW, config=SchedulerConfig(), seed=seed)
    if regime == "contended":  # the snapshot must exercise the disruptive actions
        assert {e.rule for e in shared.evictions} >= {"Reclaim", "Preempt"}
    assert shared.placements
    _plain(monkeypatch)
    plain = schedule(state, now=schedule_cycle_bench().NOW, config=SchedulerConfig(), seed=seed)
    assert plan_facts(shared) == plan_facts(plain)


def test_bench_plans_identical_under_other_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """bestfit alone: a different scoring key, a different set of shared arrays."""
    state = schedule_cycle_bench().REGIMES["contended"](200, 2000, 4)
    config = SchedulerConfig(scoring={"bestfit": 1.0, "gpu-model": 2.0})
    shared = schedule(state, now=schedule_cycle_bench().NOW, config=config, seed=4)
    _plain(monkeypatch)
    assert plan_facts(shared) == plan_facts(schedule(state, now=schedule_cycle_bench().NOW, config=config, seed=4))


@pytest.mark.parametrize("units", [{}, {"H100": 2.0, "A100": 1.3, "L40S": 0.7}],
                         ids=["plain", "share-units"])
def test_adopt_all_books_like_one_add_each(units: dict[str, float]) -> None:
    state = schedule_cycle_bench().REGIMES["contended"](100, 10, 2)
    running = sorted((w for w in state.workloads if w.state is WorkloadState.RUNNING),
                     key=lambda w: w.id)
    assert len({w.queue for w in running}) > 5

    def book() -> QueueBook:
        return QueueBook(state.queues, Totals(800_000, 10**9, 10**9), {}, share_units=units)

    table = NodeTable.build(state.nodes)
    batched = Statement(Capacity(table), book())
    assert batched.adopt_all(running) == running
    one_by_one = Statement(Capacity(table), book())
    for w in running:
        assert one_by_one.adopt(w)
    for attr in ("milli", "cpu", "ram", "by_model", "units_used"):
        assert getattr(batched.book, attr) == getattr(one_by_one.book, attr), attr
    assert (batched.cap.free_milli == one_by_one.cap.free_milli).all()


@pytest.mark.parametrize(("regime", "nodes", "pending", "seed"),
                         [("contended", 200, 2000, 1), ("contended", 400, 4000, 3),
                          ("full", 150, 1500, 1)],
                         ids=["contended-200-s1", "contended-400-s3", "full-150-s1"])
def test_bench_plans_identical_with_numpy_scores(monkeypatch: pytest.MonkeyPatch, regime: str,
                                                 nodes: int, pending: int, seed: int) -> None:
    """Memo misses scored one node at a time in plain Python (`placement._ONE_NODE`, the
    plugins' `score_one`) decide what numpy's scores decide (`test_one_node_scores.py` pins the
    scores themselves)."""
    state = schedule_cycle_bench().REGIMES[regime](nodes, pending, seed)
    plain = schedule(state, now=schedule_cycle_bench().NOW, config=SchedulerConfig(), seed=seed)
    monkeypatch.setattr(placement, "_ONE_NODE", False)
    numpy_only = schedule(state, now=schedule_cycle_bench().NOW, config=SchedulerConfig(), seed=seed)
    assert plain.placements  # the snapshot places work: the comparison is not empty
    assert plan_facts(plain) == plan_facts(numpy_only)
