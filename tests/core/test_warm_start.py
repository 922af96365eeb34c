"""A cycle opened from state kept between cycles (`corral.core.warm_start.WarmStart`) plans
exactly what a cold cycle plans on the same state: over histories of arrivals, ends, applied
plans and node changes (seeded and Hypothesis), and when the kept state must be rebuilt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
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
from corral.core.cycle import Cycle as OpenCycle
from corral.core.cycle import _close, _open, decide
from corral.core.warm_start import WarmStart, big_by_age

pytestmark = pytest.mark.slow  # 25 s for its 4 tests in the -n 2 whole run of 2026-12-05 (load 8-44)


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
    assert hot.waiting == cold.waiting  # looked up by id only: the kept dict's order differs
    assert hot.shapes == cold.shapes
    assert hot.book.deserved == cold.book.deserved
    assert hot.workload_mix == cold.workload_mix
    assert list(hot.running) == list(cold.running)
    same_adoption(hot, cold)
    assert hot.big_at_open is not None and cold.big_at_open is None
    assert hot.big_at_open[1] == big_by_age(cold.waiting.values())  # `elders_before` reads it
    decide(hot)
    return _close(hot, orphans)


def same_adoption(hot: OpenCycle, cold: OpenCycle) -> None:
    """The running work adopted alike (`warm_adoption`): who holds what, in the same order,
    free capacity, the change log, queue use (a use per model may be kept at 0 warm)."""
    assert list(hot.stmt.where.items()) == list(cold.stmt.where.items())
    assert list(hot.stmt.live) == list(cold.stmt.live)
    assert hot.stmt.started == cold.stmt.started
    assert hot.stmt.applied == cold.stmt.applied
    for name in ("free_milli", "free_mem", "free_cpu", "free_ram", "whole_free", "free_sum"):
        assert np.array_equal(getattr(hot.cap, name), getattr(cold.cap, name)), name
    assert hot.cap.changes == cold.cap.changes
    for name in ("milli", "cpu", "ram"):
        assert getattr(hot.book, name) == getattr(cold.book, name), name
    assert ({k: v for k, v in hot.book.by_model.items() if v}
            == {k: v for k, v in cold.book.by_model.items() if v})


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


def walk_seeded(seeds: range, step: Callable[[int, int, ClusterState, float, WarmStart],
                                              ClusterState]) -> None:
    """The seeded churn histories of `test_churn`, one `WarmStart` each (every change through
    the update): `step(seed, k, state, now, warm)` plans cycle k and returns the state the next
    cycle starts from."""
    for seed in seeds:
        start, cycles = history(SeededChooser(seed))
        warm = WarmStart(rebuild_share=1e9)
        state, now = start, 10_000.0
        for k, c in enumerate(cycles):
            now += DT
            state = step(seed, k, unexpired(between_cycles(state, c, now), now), now, warm)


def plan_both_and_apply(state: ClusterState, now: float, k: int, warm: WarmStart) -> ClusterState:
    cold = schedule(state, now, CONFIG, seed=k)
    same(warm_plan(state, now, k, warm), cold)
    return apply_like_control_plane(state, cold, now)


def _pool_change(state: ClusterState, seed: int, k: int) -> ClusterState:
    """Every fourth cycle the busiest node is dropped, renamed, or given other memory; else
    `_node_change`'s cordons."""
    if k % 4 != 3:
        return _node_change(state, k)
    busy = max(state.nodes, key=lambda n: sum(
        a.node_id == n.id for w in state.workloads for a in w.assignments))
    other = [replace(busy, id=busy.id + "-new"),
             replace(busy, gpu_memory_mib=busy.gpu_memory_mib + 1)][seed % 2]
    nodes = [n for n in state.nodes if n is not busy]
    return replace(state, nodes=tuple(nodes if k % 8 == 3 else (*nodes, other)))


def test_adoption_is_kept_while_the_pool_stays_and_made_again_when_it_changes() -> None:
    """The running work adopted is carried from cycle to cycle (`warm_adoption`) while the
    pool's nodes and hardware stay (a cordon is no change of hardware); a node gone, or one
    with other hardware, makes the cycle adopt everything again, planning as the cold one."""
    seen = {"kept_over": 0, "remade": 0}

    def step(seed: int, k: int, state: ClusterState, now: float, warm: WarmStart) -> ClusterState:
        state = _pool_change(state, seed, k)
        before = warm.adoption
        state = plan_both_and_apply(state, now, k, warm)
        if before is not None and k % 4 == 3:
            assert warm.adoption is not before  # the pool changed: adopted anew
            seen["remade"] += 1
        elif before is not None:
            assert warm.adoption is before  # carried over, brought up to date
            seen["kept_over"] += 1
        return state

    walk_seeded(range(12), step)
    assert seen["kept_over"] > 40 and seen["remade"] > 5


def test_an_opening_whose_cycle_never_adopted_is_not_built_on() -> None:
    """A cycle that raised between its opening and its adoption (review of 943d7d2): the next
    cycle must not advance the kept adoption by its own starts and stops alone, missing the
    failed cycle's; it adopts afresh and plans as the cold one."""
    skipped = []

    def step(seed: int, k: int, state: ClusterState, now: float, warm: WarmStart) -> ClusterState:
        if k % 5 == 2:
            warm.open(state.queues, state.workloads)  # its cycle raised: no plan applied
            skipped.append(k)
            return state
        return plan_both_and_apply(state, now, k, warm)

    walk_seeded(range(12), step)
    assert len(skipped) > 10
