"""A spread group (a service's replicas) is kept apart: node first, then zone, then provider;
a preference among the nodes a replica fits on, never a filter (`corral.core.spread`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.builders import job, node, queue, state
from tests.core.test_churn import history, run_history
from tests.core.test_contention import SeededChooser
from tests.core.test_invariants import check_placements

from corral.core import DEFAULT_SCORING, ClusterState, Plan, WorkerAssignment, Workload, schedule
from corral.core.fit import Shape
from corral.core.model import WorkloadKind
from corral.core.placement import Placer, Scoring
from corral.core.snapshot import Capacity, NodeTable
from corral.core.spread import SpreadIndex


def replica(group: str, i: int, gpus: int = 1, **kw: object) -> Workload:
    w = job(f"{group}/r{i}").gpus(gpus).build()
    return replace(w, kind=WorkloadKind.SERVICE, spread_group=group, **kw)  # type: ignore[arg-type]


def nodes_of(plan: Plan) -> dict[str, str]:
    return {p.workload_id: p.assignments[0].node_id for p in plan.placements}


def zone_of(s: ClusterState) -> dict[str, str]:
    return {n.id: n.zone for n in s.nodes}


def test_two_replicas_land_on_two_nodes() -> None:
    """Bin-packing alone puts both on one 4-GPU node; the group keeps them apart."""
    s = state([node("a").gpus(4), node("b").gpus(4)], [queue("default")],
              [replica("svc", 0), replica("svc", 1)])
    plan = schedule(s, 0.0)
    check_placements(s, plan, 0.0)
    assert sorted(nodes_of(plan).values()) == ["a", "b"]
    assert plan.pending == {}


def test_without_a_group_the_same_work_packs_on_one_node() -> None:
    """The control case: the spread comes from the group, not from the scores."""
    s = state([node("a").gpus(4), node("b").gpus(4)], [queue("default")],
              [replace(replica("svc", i), spread_group=None) for i in range(2)])
    assert len(set(nodes_of(schedule(s, 0.0)).values())) == 1


def test_three_replicas_take_three_zones() -> None:
    """Zone a has two nodes: after the first replica lands there, a fresh node in zone a ties
    with the nodes of b and c on the node count; the zone count sends it to b or c."""
    pool = [node("a1").gpus(4).at(zone="a"), node("a2").gpus(4).at(zone="a"),
            node("b1").gpus(4).at(zone="b"), node("c1").gpus(4).at(zone="c")]
    s = state(pool, [queue("default")], [replica("svc", i) for i in range(3)])
    plan = schedule(s, 0.0)
    zones = zone_of(s)
    assert sorted(zones[n] for n in nodes_of(plan).values()) == ["a", "b", "c"]


def test_providers_are_spread_when_nodes_and_zones_tie() -> None:
    pool = [node("p1").gpus(4).at(provider="aws", zone="z1"),
            node("p2").gpus(4).at(provider="aws", zone="z2"),
            node("q1").gpus(4).at(provider="gcp", zone="z1")]
    s = state(pool, [queue("default")], [replica("svc", i) for i in range(2)])
    placed = nodes_of(schedule(s, 0.0))
    providers = {n.id: n.provider for n in s.nodes}
    assert {providers[n] for n in placed.values()} == {"aws", "gcp"}


def test_one_node_still_starts_every_replica() -> None:
    s = state([node("only").gpus(4)], [queue("default")], [replica("svc", i) for i in range(3)])
    plan = schedule(s, 0.0)
    check_placements(s, plan, 0.0)
    assert set(nodes_of(plan)) == {"svc/r0", "svc/r1", "svc/r2"}
    assert plan.pending == {}


def test_hard_constraints_win_over_the_spread() -> None:
    """Only node a has the model asked for: both replicas go there, none waits."""
    pool = [node("a").gpus(4).model("H100"), node("b").gpus(4).model("A100")]
    s = state(pool, [queue("default")],
              [replica("svc", i, gpu_models=("H100",)) for i in range(2)])
    assert set(nodes_of(schedule(s, 0.0)).values()) == {"a"}


def test_running_replicas_count_and_so_do_those_placed_in_the_same_cycle() -> None:
    """r0 runs on a; r1 and r2 arrive together: r1 avoids a, r2 avoids a and r1's node."""
    on_a = job("x").running(("a", (0,))).build()
    running = replace(replica("svc", 0), state=on_a.state, started_at=on_a.started_at,
                      assignments=on_a.assignments)
    pool = [node("a").gpus(4), node("b").gpus(4), node("c").gpus(4)]
    s = state(pool, [queue("default")], [running, replica("svc", 1), replica("svc", 2)])
    placed = nodes_of(schedule(s, 0.0))
    assert sorted(placed.values()) == ["b", "c"]


def test_groups_are_independent() -> None:
    """Two services of two replicas each on two nodes: each service spans both nodes."""
    s = state([node("a").gpus(4), node("b").gpus(4)], [queue("default")],
              [replica(g, i) for g in ("one", "two") for i in range(2)])
    placed = nodes_of(schedule(s, 0.0))
    for g in ("one", "two"):
        assert {placed[f"{g}/r0"], placed[f"{g}/r1"]} == {"a", "b"}


def test_a_full_node_is_never_chosen_for_the_spread() -> None:
    """b is full: the second replica shares a with the first rather than wait."""
    filler = job("fill").gpus(4).running(("b", (0, 1, 2, 3))).build()
    s = state([node("a").gpus(4), node("b").gpus(4)], [queue("default")],
              [filler, replica("svc", 0), replica("svc", 1)])
    plan = schedule(s, 0.0)
    check_placements(s, plan, 0.0)
    assert set(nodes_of(plan).values()) == {"a"}
    assert plan.evictions == ()


def test_the_plan_is_deterministic() -> None:
    pool = [node(f"n{i}").gpus(2).at(zone=f"z{i % 3}") for i in range(6)]
    s = state(pool, [queue("default")], [replica("svc", i) for i in range(5)])
    assert schedule(s, 0.0) == schedule(s, 0.0)


@given(nodes=st.integers(1, 8), replicas=st.integers(1, 8), spare=st.integers(0, 3),
       gpus=st.sampled_from([1, 2]), fractional=st.booleans(), zones=st.integers(1, 3),
       busy=st.integers(0, 3))
def test_with_enough_free_nodes_no_two_replicas_share_a_node(
        nodes: int, replicas: int, spare: int, gpus: int, fractional: bool, zones: int,
        busy: int) -> None:
    """Replicas of one group (whole GPUs or shares), a pool with at least one free node per
    replica and some other work running: every replica starts, each on a node of its own, and
    the zones are used as evenly as the nodes allow."""
    count = max(nodes, replicas) + spare
    pool = [node(f"n{i:02d}").gpus(4).at(zone=f"z{i % zones}") for i in range(count)]
    others = [job(f"other{k}").gpus(1).running((f"n{k % count:02d}", (0,))).build()
              for k in range(busy)]
    work = [replace(replica("svc", i, gpus=gpus),
                    resources=job("x").share(milli=500).build().resources)
            if fractional else replica("svc", i, gpus=gpus) for i in range(replicas)]
    s = state(pool, [queue("default")], [*others, *work])
    plan = schedule(s, 0.0)
    check_placements(s, plan, 0.0)
    placed = nodes_of(plan)
    assert len(placed) == replicas
    assert len(set(placed.values())) == replicas
    # zones differ by at most one node in size (round robin), so they can be levelled
    per_zone = Counter(n.zone for n in s.nodes if n.id in set(placed.values()))
    assert len(per_zone) == min(replicas, zones)
    assert max(per_zone.values()) - min(per_zone.values()) <= 1


@pytest.mark.parametrize("seed", range(40))
def test_churn_with_spread_groups_keeps_every_guarantee(seed: int) -> None:
    """The churn histories of `test_churn` (plans safe, every reason true by the oracle, a
    rerun on the applied result evicts nothing), with one-worker arrivals in spread groups."""
    start, cycles = history(SeededChooser(seed))
    grouped = tuple(replace(c, arrivals=tuple(
        replace(w, spread_group=f"g{k % 2}") if w.workers == 1 else w
        for k, w in enumerate(c.arrivals))) for c in cycles)
    run_history(start, grouped)


def test_a_replica_holding_a_reservation_is_spread_too() -> None:
    """A replica that holds a reservation is placed by the gang path; the group's choice
    applies there too. Nodes a and b are reserved for r1, r0 runs on a: r1 takes b (without
    the group, the lowest index, a, wins the tie)."""
    table = NodeTable.build([node("a").gpus(4).build(), node("b").gpus(4).build()])
    cap = Capacity(table)
    r0 = replace(replica("svc", 0), assignments=(WorkerAssignment(0, "a", (0,), 1000, 80_000),))
    cap.take(0, r0.assignments[0], 0, 0)
    cap.reserve("svc/r1", [0, 1])
    spread = SpreadIndex(table)
    spread.fill([(r0, r0.assignments)])
    shape, scoring = Shape.of(replica("svc", 1)), Scoring.from_weights(DEFAULT_SCORING)
    chooser = spread.chooser("svc")
    assert chooser is not None and spread.chooser("other") is None
    assert _node(Placer(cap).place(shape, scoring, "svc/r1", chooser)) == "b"
    assert _node(Placer(cap).place(shape, scoring, "svc/r1")) == "a"


def _node(assignments: tuple[WorkerAssignment, ...] | None) -> str:
    assert assignments is not None
    return assignments[0].node_id


def test_a_worker_that_leaves_no_longer_counts() -> None:
    """An eviction or an undone placement takes the worker out of its group's counts."""
    table = NodeTable.build([node("a").gpus(4).build(), node("b").gpus(4).build()])
    spread = SpreadIndex(table)
    r0 = replace(replica("svc", 0), assignments=(WorkerAssignment(0, "a", (0,), 1000, 80_000),))
    spread.changed(r0, r0.assignments, +1)
    assert spread.groups["svc"].nodes == {0: 1}
    spread.changed(r0, r0.assignments, -1)
    assert spread.chooser("svc") is None
