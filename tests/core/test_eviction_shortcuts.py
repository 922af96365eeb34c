"""The eviction attempts' shortcuts decide exactly what the plain attempts decide (issue 10).

- `evict._FitGate`: after the placer found no room for the requester, a trial eviction skips
  the search after each further victim until what the evictions freed could hold it (a node
  of it with a free slot for one worker; a domain of the gang's level with slots for every
  worker). It must never skip a search that would have succeeded.
- `evict._loss`'s memo per (node, donor queues), kept until what is on the node changes.

Plans with and without them must be identical on the benchmark's own snapshots
(bench/schedule_cycle.py: reclaim, preemption and gangs' reclaim all fire), and the gate must
really skip searches there (or the comparison proves nothing).
"""

from __future__ import annotations

import pytest
from tests.core.bench_snapshots import plan_facts, schedule_cycle_bench

from corral.core import SchedulerConfig, placement, schedule
from corral.core.actions import evict


def _searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the placer's searches made for trial evictions (one count per workers > 1)."""
    counts = [0, 0]
    place = placement.Placer.place

    def counted(self: placement.Placer, shape: object, *args: object, **kw: object) -> object:
        counts[int(getattr(shape, "workers", 1) > 1)] += 1
        return place(self, shape, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(placement.Placer, "place", counted)
    return counts


@pytest.mark.parametrize(("nodes", "pending", "seed"),
                         [(400, 4000, 2), (400, 4000, 3), (400, 4000, 5)])
def test_shortcuts_leave_the_plans_unchanged(monkeypatch: pytest.MonkeyPatch, nodes: int,
                                             pending: int, seed: int) -> None:
    state = schedule_cycle_bench().REGIMES["contended"](nodes, pending, seed)
    with monkeypatch.context() as m:
        gated = _searches(m)
        fast = schedule(state, now=schedule_cycle_bench().NOW, config=SchedulerConfig(), seed=seed)
    assert {e.rule for e in fast.evictions} >= {"Reclaim", "Preempt"}
    monkeypatch.setattr(evict, "_GATED", False)
    monkeypatch.setattr(evict, "_LOSS_MEMO", False)
    plain_counts = _searches(monkeypatch)
    plain = schedule(state, now=schedule_cycle_bench().NOW, config=SchedulerConfig(), seed=seed)
    assert plan_facts(fast) == plan_facts(plain)
    # the gate skipped searches here, gangs' too: the comparison above covers skipped ones
    assert gated[0] < plain_counts[0] and gated[1] < plain_counts[1]
