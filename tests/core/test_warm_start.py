"""A cycle opened from state kept between cycles (`corral.core.warm_start.WarmStart`) plans
exactly what a cold cycle plans on the same state: over histories of arrivals, ends, applied
plans and node changes (seeded and Hypothesis), and when the kept state must be rebuilt."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from tests.core.test_churn import (
    CONFIG,
    DT,
    Cycle,
    apply_like_control_plane,
    between_cycles,
    histories,
    history,
    unexpired,
)
from tests.core.test_contention import SeededChooser

from corral.core import ClusterState, Plan, Queue, WorkerResources, Workload, schedule
from corral.core.cycle import _close, _open, decide
from corral.core.warm_start import WarmStart


def same(warm: Plan, cold: Plan) -> None:
    """Equal plans, the reasons in the same order too (a dict compares without order)."""
    assert warm == cold
    assert list(warm.pending.items()) == list(cold.pending.items())


def _node_change(state: ClusterState, k: int) -> ClusterState:
    """Every third cycle one node is cordoned, or uncordoned if it was."""
    if k % 3 or not state.nodes:
        return state
    i = k % len(state.nodes)
    nodes = list(state.nodes)
    nodes[i] = replace(nodes[i], cordoned=not nodes[i].cordoned)
    return replace(state, nodes=tuple(nodes))


def warm_plan(state: ClusterState, now: float, seed: int, warm: WarmStart) -> Plan:
    """`schedule(state, now, CONFIG, seed, warm)`, checking on the way that the warm opening
    is the cold one: the same waiting order, per-queue lists, shapes, shares and mix."""
    hot, orphans = _open(state, now, CONFIG, seed, warm)
    cold, _ = _open(state, now, CONFIG, seed)
    assert hot.order == cold.order
    assert list(hot.pending.items()) == list(cold.pending.items())
    assert list(hot.waiting.items()) == list(cold.waiting.items())
    assert hot.shapes == cold.shapes
    assert hot.book.deserved == cold.book.deserved
    assert hot.workload_mix == cold.workload_mix
    assert list(hot.running) == list(cold.running)
    decide(hot)
    return _close(hot, orphans)


def run_warm_and_cold(start: ClusterState, cycles: tuple[Cycle, ...],
                      warm: WarmStart) -> int:
    """The churn history of `test_churn`, with a node change every third cycle: each cycle
    planned cold and warm on the same state. Returns the cycles planned."""
    state, now = start, 10_000.0
    for k, c in enumerate(cycles):
        now += DT
        state = _node_change(unexpired(between_cycles(state, c, now), now), k)
        cold = schedule(state, now, CONFIG, seed=k)
        same(warm_plan(state, now, k, warm), cold)
        state = apply_like_control_plane(state, cold, now)
    return len(cycles)


def test_seeded_histories_plan_the_same_warm_and_cold() -> None:
    planned = 0
    for seed in range(120):
        warm = WarmStart(rebuild_share=1e9)  # every change through the update
        planned += run_warm_and_cold(*history(SeededChooser(seed)), warm)
        assert warm.rebuilds == 1, seed  # the first cycle only: the kept state was used
    assert planned > 500


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_histories_plan_the_same_warm_and_cold(h: tuple[ClusterState, tuple[Cycle, ...]]) -> None:
    run_warm_and_cold(*h, WarmStart(rebuild_share=1e9))


def test_the_default_rebuilds_after_a_large_change_and_plans_the_same() -> None:
    start, cycles = history(SeededChooser(7))
    warm = WarmStart()
    run_warm_and_cold(start, cycles, warm)
    assert warm.rebuilds > 1  # a handful of workloads: most cycles change more than a quarter


def _work(i: int, queue: str = "a", priority: int = 0) -> Workload:
    return Workload(id=f"w{i}", queue=queue, resources=WorkerResources(gpus=1, cpu_milli=1000),
                    priority=priority, submitted_at=float(i % 3))


def test_what_the_kept_state_cannot_account_for_is_rebuilt() -> None:
    """Other queues, an unknown queue, a workload id twice: rebuilt (or planned cold), and
    the plan is still the cold one."""
    start, _ = history(SeededChooser(3))
    leaf = next(q.name for q in start.queues if q.parent is not None)
    base = replace(start, workloads=tuple(_work(i, leaf, i % 2) for i in range(40)))
    warm = WarmStart(rebuild_share=1e9)
    same(schedule(base, 1.0, CONFIG, warm=warm), schedule(base, 1.0, CONFIG))
    variants = [
        replace(base, queues=(*base.queues, Queue("extra", quota_gpus=1.0))),
        replace(base, workloads=(*base.workloads, _work(99, "nowhere"))),
        replace(base, workloads=(*base.workloads, replace(_work(5, leaf), priority=9))),
        base,
    ]
    for state in variants:
        rebuilds = warm.rebuilds
        same(schedule(state, 1.0, CONFIG, warm=warm), schedule(state, 1.0, CONFIG))
        assert warm.rebuilds == rebuilds + 1, state.workloads[-1]
    # and from a good state on, updated again without a rebuild
    more = replace(base, workloads=(*base.workloads[3:], _work(50, leaf, 1)))
    rebuilds = warm.rebuilds
    same(schedule(more, 1.0, CONFIG, warm=warm), schedule(more, 1.0, CONFIG))
    assert warm.rebuilds == rebuilds
