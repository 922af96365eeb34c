"""The fill experiment's protocol (Weng et al., ATC 2023): arrival sequence, the 130% rule, one
task at a time with no departures, the allocation curve at each 1% of arrived demand."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from corral.sim.fill import arrivals, mean_and_spread, run_fill
from corral.sim.policies import PolicyError, fill_scoring, placement_weights
from corral.sim.trace import Trace

POLICIES = ["random", "bestfit", "fgd", "fgd-published", "corral"]


def test_arrivals_are_a_shuffle_then_copies_up_to_the_target(openb: Trace) -> None:
    seq = arrivals(openb, seed=42)
    n = len(openb.tasks)
    assert sorted(t.name for t in seq[:n]) == sorted(t.name for t in openb.tasks)
    assert [t.name for t in seq[:n]] != [t.name for t in openb.tasks]  # shuffled
    target = 1.3 * openb.gpu_capacity_milli
    total = sum(t.total_milli for t in seq)
    assert total <= target
    # Only copies were appended, and the sequence stopped at the first one that would overflow:
    # the demand is close to the target (within the largest single task).
    assert total > target - max(t.total_milli for t in openb.tasks)
    assert set(t.name for t in seq[n:]) <= set(t.name for t in openb.tasks)


def test_arrivals_depend_only_on_the_seed(openb: Trace) -> None:
    assert [t.name for t in arrivals(openb, 7)] == [t.name for t in arrivals(openb, 7)]
    assert [t.name for t in arrivals(openb, 7)] != [t.name for t in arrivals(openb, 8)]


def test_a_trace_above_the_target_loses_random_tasks(openb: Trace) -> None:
    big = openb.with_tasks(openb.tasks * 4)  # about 4x the demand, well above 130%
    big = big.with_tasks(tuple(replace(t, name=f"{t.name}-{i}") for i, t in enumerate(big.tasks)))
    seq = arrivals(big, seed=1)
    assert sum(t.total_milli for t in seq) <= 1.3 * big.gpu_capacity_milli
    assert len(seq) < len(big.tasks) and len({t.name for t in seq}) == len(seq)


@pytest.mark.parametrize("policy", POLICIES)
def test_curve_has_every_percent_and_never_gives_back(openb: Trace, policy: str) -> None:
    r = run_fill(openb, fill_scoring(policy, openb, 42), 42, policy)
    steps = [a for a, _ in r.curve]
    assert steps == list(range(1, int(r.requested_pct) + 1))
    allocations = [v for _, v in r.curve]
    assert allocations == sorted(allocations)  # no departures: allocation never drops
    # Never more than what arrived: a step is recorded by the task that crossed it, which may
    # overshoot it by at most its own size.
    largest = 100.0 * max(t.total_milli for t in openb.tasks) / openb.gpu_capacity_milli
    assert all(v <= a + largest for a, v in r.curve)
    assert r.curve[-1][1] <= r.final_allocation_pct <= 100.0
    assert r.placed + r.failed == r.tasks


def test_placed_tasks_add_up_to_the_allocation(openb: Trace) -> None:
    r = run_fill(openb, fill_scoring("bestfit", openb, 42), 42)
    seq = arrivals(openb, 42)
    # Every placed task holds exactly its request: allocation is a sum of some task demands.
    assert r.final_allocation_pct * openb.gpu_capacity_milli / 100 <= sum(t.total_milli for t in seq)
    assert r.tasks == len(seq)


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_numbers(openb: Trace, policy: str) -> None:
    a = run_fill(openb, fill_scoring(policy, openb, 5), 5, policy).to_json()
    b = run_fill(openb, fill_scoring(policy, openb, 5), 5, policy).to_json()
    a.pop("wall_seconds"), b.pop("wall_seconds")
    assert a == b


def test_random_differs_by_seed(openb: Trace) -> None:
    finals = {run_fill(openb, fill_scoring("random", openb, s), s).final_allocation_pct for s in range(42, 46)}
    assert len(finals) > 1


def test_model_constraints_are_respected(openb: Trace) -> None:
    """Tasks with a gpu_spec only ever land on nodes of an allowed model."""
    from corral.core.placement import Placer
    from corral.core.snapshot import Capacity, NodeTable
    from corral.sim.fill import _shape

    cap = Capacity(NodeTable.build(openb.nodes))
    placer, scoring = Placer(cap), fill_scoring("corral", openb, 1)
    model = {n.id: n.gpu_model for n in openb.nodes}
    seen = Counter[str]()
    for t in arrivals(openb, 1):
        shape = _shape(t, {})
        got = placer.place(shape, scoring, t.name)
        if got is None:
            continue
        for a in got:
            cap.take(cap.table.index[a.node_id], a, t.cpu_milli, t.memory_mib)
            if t.gpu_models and t.gpus:
                assert model[a.node_id] in t.gpu_models
                seen[t.name] += 1
    assert seen and cap.consistent()


def test_unknown_policy_lists_the_known_ones() -> None:
    with pytest.raises(PolicyError, match="bestfit"):
        placement_weights("first-fit-decreasing")
    with pytest.raises(PolicyError, match="unknown score plugin 'nope'"):
        placement_weights("nope=1,bestfit=1")
    assert placement_weights("fgd=1,bestfit=0.5")[0] == {"fgd": 1.0, "bestfit": 0.5}
    assert placement_weights("default") == placement_weights("corral")


def test_mean_and_spread() -> None:
    assert mean_and_spread([1.0, 3.0]) == (2.0, pytest.approx(1.41421356))
    assert mean_and_spread([5.0]) == (5.0, 0.0)
