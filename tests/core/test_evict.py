"""The optimised eviction path decides as the straightforward one (issue 10's speed work).

`evict._victims_on` reads a candidate's victims lazily, node by node, while evictions on the
nodes before have already happened; it used to build the whole list first. And preemption
reads the failed-request memo in its own loop and stops once its budget is spent, where it
used to call `_attempt` for every pending workload. Both are claimed to decide exactly as
before: here the old procedures run side by side with the new ones on contended clusters
(and on the churn histories' states) and the plans must be equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from tests.core.test_churn import CONFIG, DT, apply_like_control_plane, history
from tests.core.test_contention import CONFIGS, SeededChooser, contended

from corral.core import ClusterState, Plan, SchedulerConfig, Workload, schedule
from corral.core.actions import evict
from corral.core.cycle import Cycle


def _eager_victims_on(cycle: Cycle, nodes: Iterable[int], accept: evict.Accept,
                      young: bool = False) -> Iterator[Workload]:
    """The procedure as it was: every node's victims listed before the first eviction."""
    index, where, out = cycle.victim_index(), cycle.stmt.where, []
    seen: set[str] = set()
    for n in nodes:
        there = [v for v in index.on_node.get(n, {}).values()
                 if v.id in where and v.id not in seen and accept(v)
                 and (young or index.past_min_runtime(v))]
        there.sort(key=lambda v: (v.priority, -cycle.started_at(v), v.id))
        seen.update(v.id for v in there)
        out.extend(there)
    return iter(out)


def _preempt_calling_attempt_for_each(cycle: Cycle) -> None:
    """Preemption as it was: `_attempt` (which reads the memo itself) for every candidate."""
    lowest: dict[str, int] = {}
    for v in cycle.stmt.live.values():
        if v.preemptible:
            lowest[v.queue] = min(lowest.get(v.queue, v.priority), v.priority)
    if not lowest:
        return
    work = (w for w in cycle.still_pending() if w.priority > lowest.get(w.queue, w.priority))
    victims: list[tuple[tuple[int, float, str], str, Workload]] = []
    for w in evict._merged(work, victims):
        if not cycle.is_pending(w):
            continue

        def accept(v: Workload, w: Workload = w) -> bool:
            return v.queue == w.queue and v.priority < w.priority

        before = len(cycle.stmt.ops)
        if evict._attempt(cycle, w, frozenset((w.queue,)), accept, evict.R.RULE_PREEMPT):
            for op in cycle.stmt.ops[before:]:
                if op.kind == "evict":
                    evict.heapq.heappush(victims, (evict.pending_order(op.workload),
                                                   op.workload.id, op.workload))


def _both(cluster: ClusterState, now: float, config: SchedulerConfig,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Plan, Plan]:
    new = schedule(cluster, now, config)
    with monkeypatch.context() as m:
        m.setattr(evict, "_victims_on", _eager_victims_on)
        m.setattr("corral.core.cycle.preempt", _preempt_calling_attempt_for_each)
        old = schedule(cluster, now, config)
    return new, old


@settings(max_examples=80, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cluster=contended())
def test_lazy_victims_and_inline_memo_decide_as_before(cluster: ClusterState,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for config in CONFIGS:
        new, old = _both(cluster, 100_000.0, config, monkeypatch)
        assert new == old


def test_lazy_victims_and_inline_memo_decide_as_before_under_churn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    evicting = 0
    for seed in range(40):
        start, cycles = history(SeededChooser(seed))
        state, now = start, 10_000.0
        for c in cycles:
            now += DT
            state = replace(state, workloads=state.workloads + tuple(
                replace(w, submitted_at=now) for w in c.arrivals))
            new, old = _both(state, now, CONFIG, monkeypatch)
            assert new == old, f"seed {seed} at {now}"
            evicting += bool(new.evictions)
            state = apply_like_control_plane(state, new, now)
    assert evicting  # the histories do evict, so the eviction path was compared
