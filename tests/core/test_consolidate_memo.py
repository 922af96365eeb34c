"""Consolidation's memo of failed tries holds across the rollbacks of other failed tries
(`consolidate`'s `version`): a try rolled back leaves the capacity it started from, so a
shape that failed is not tried again because another shape failed after it. The plan is the
one tried without the memo; the tries are far fewer.

The state: bench/schedule_cycle.py's contended snapshot, small, and the next cycle as the live
loop runs it (bench/live_delta.py: the first plan applied, some ends and arrivals, a node
cordoned), where many shapes fail to consolidate one after another (at 2,000 x 20,000 this
cost 4-5 s of a cycle: 5,204 tries of up to 8 moves)."""

from __future__ import annotations

import importlib

import pytest
from tests.core.bench_snapshots import schedule_cycle_bench

from corral.core import SchedulerConfig, schedule

consolidate_module = importlib.import_module("corral.core.actions.consolidate")


@pytest.mark.parametrize(("nodes", "pending"), [(200, 2000), (400, 4000)])
def test_a_failed_shape_is_not_tried_again_on_the_same_capacity(
        nodes: int, pending: int, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = schedule_cycle_bench()
    from live_delta import next_state  # bench/ is on the path once the bench is loaded

    first = bench.contended_state(nodes, pending, 1)
    plan = schedule(first, bench.NOW, SchedulerConfig(), 1)
    state, now, _ = next_state(first, plan, bench.NOW, 1)
    tries = [0]
    real = consolidate_module._consolidate_for

    def counted(*args: object) -> int:
        tries[0] += 1
        return int(real(*args))

    monkeypatch.setattr(consolidate_module, "_consolidate_for", counted)
    with_memo = schedule(state, now, SchedulerConfig(), 2)
    memo_tries, tries[0] = tries[0], 0
    # no two tries alike: every try made, as before the memo held across rollbacks
    monkeypatch.setattr(consolidate_module, "_alike", lambda *_: object())
    without = schedule(state, now, SchedulerConfig(), 2)
    assert with_memo == without
    assert with_memo.moves  # consolidation did move work here
    assert memo_tries * 5 < tries[0], (memo_tries, tries[0])
