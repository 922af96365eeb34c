"""The throughput score plugin: work goes where it gains most relative to the others."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from builders import job, node, queue, state
from corral.core import SchedulerConfig, schedule
from corral.core.config import DEFAULT_SCORING
from corral.core.cycle import intern_shape
from corral.core.fit import Shape
from corral.core.model import Workload
from corral.core.plugins import REGISTRY, THROUGHPUT
from corral.core.plugins.throughput import Throughput, market, normalised
from corral.core.snapshot import Capacity, NodeTable

A = (("k80", 1.0), ("v100", 10.0))  # 10x faster on a V100
B = (("k80", 6.0), ("v100", 10.0))  # 1.7x


def fast(w: Workload, rates: tuple[tuple[str, float], ...]) -> Workload:
    return replace(w, throughput=rates)


def scores(plugin: Throughput, rates: tuple[tuple[str, float], ...], digits: int = 3
           ) -> dict[str, float]:
    table = NodeTable.build([node("k").model("k80").build(), node("v").model("v100").build()])
    cap = Capacity(table)
    shape = Shape.of(fast(job("j").gpus(1).build(), rates))
    out = plugin.score(cap, shape, np.arange(len(table)))
    return {table.nodes[i].gpu_model: round(float(s), digits) for i, s in enumerate(out)}


def test_registered_under_its_name() -> None:
    assert REGISTRY[THROUGHPUT] is Throughput


@pytest.mark.parametrize(("rates", "contention", "expected"), [
    pytest.param(A, 1.0, {"k80": 0.333, "v100": 1.0}, id="A-contended-keeps-v100"),
    pytest.param(B, 1.0, {"k80": 1.0, "v100": 0.5}, id="B-contended-leaves-v100-to-A"),
    pytest.param(B, 0.0, {"k80": 0.6, "v100": 1.0}, id="B-alone-takes-the-fastest"),
    pytest.param((), 1.0, {"k80": 1.0, "v100": 1.0}, id="no-throughput-neutral"),
])
def test_worked_example(rates: tuple[tuple[str, float], ...], contention: float,
                        expected: dict[str, float]) -> None:
    plugin = Throughput(reference={"k80": 0.3, "v100": 1.0}, contention=contention)
    assert scores(plugin, rates) == pytest.approx(expected, abs=2e-3)


def test_equal_advantage_ties_go_to_the_faster_model() -> None:
    plugin = Throughput(reference={"k80": 0.6, "v100": 1.0}, contention=1.0)
    got = scores(plugin, B, digits=9)
    assert got["v100"] > got["k80"]


def test_unnamed_model_counts_as_the_slowest_named() -> None:
    assert normalised([("v100", 4.0), ("p100", 2.0), ("k80", 0.0)]) == {"v100": 1.0, "p100": 0.5}
    got = scores(Throughput(contention=0.0), (("v100", 4.0), ("p100", 2.0)))
    assert got == {"k80": 0.5, "v100": 1.0}


def test_contention_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="contention"):
        Throughput(contention=1.5)


def test_market_weights_by_gpus_and_caps_contention() -> None:
    a = fast(job("a").gpus(1).build(), A)
    b = fast(job("b").gpus(3).build(), B)
    blind = job("c").gpus(4).build()
    ref, c = market([a, b, blind], free_gpus=2, models=["k80", "v100"])
    assert ref == pytest.approx({"k80": (0.1 + 3 * 0.6) / 4, "v100": 1.0})
    assert c == 1.0
    assert market([], free_gpus=0, models=["k80"]) == ({"k80": 1.0}, 1.0)


def test_throughput_is_part_of_the_shape() -> None:
    a, b = fast(job("a").gpus(1).build(), A), fast(job("b").gpus(1).build(), B)
    assert Shape.of(a) != Shape.of(b)
    assert Shape.of(a) == Shape.of(fast(job("a2").gpus(1).build(), A))
    assert Shape.of(a).single.throughput == A
    assert Shape.of(a).restricted_to(("spot",)).throughput == A
    shapes: dict[str, Shape] = {}
    interned: dict[tuple[object, ...], Shape] = {}
    assert intern_shape(a, shapes, interned) is not intern_shape(b, shapes, interned)


def test_schedule_leaves_the_fast_device_to_who_gains_most() -> None:
    """One V100 and one K80 free; B (1.7x) was submitted first. Blind, B takes the first node
    by order (the V100) and A gets the K80; with the plugin B takes the K80 and A the V100."""
    nodes = [node("n0").model("v100").gpus(1), node("n1").model("k80").gpus(1)]
    work = [fast(job("b").gpus(1).submitted(1).build(), B),
            fast(job("a").gpus(1).submitted(2).build(), A)]
    cluster = state(nodes, [queue("q")], work)
    cluster = replace(cluster, workloads=tuple(replace(w, queue="q") for w in cluster.workloads))
    aware = SchedulerConfig(
        scoring={**DEFAULT_SCORING, THROUGHPUT: 4.0},
        plugin_params={THROUGHPUT: {"reference": {"k80": 0.35, "v100": 1.0}, "contention": 1.0}})
    where = {p.workload_id: p.assignments[0].node_id for p in schedule(cluster, 10.0, aware).placements}
    assert where == {"a": "n0", "b": "n1"}
    blind = {p.workload_id: p.assignments[0].node_id
             for p in schedule(cluster, 10.0, SchedulerConfig()).placements}
    assert blind == {"b": "n0", "a": "n1"}


def test_a_gang_picks_the_domain_its_throughput_prefers() -> None:
    """Two regions, one per model, each holding the 2-worker gang. Best fit alone picks the
    tighter region (the V100 one, 2 free); the job gains most on the K80s' region here
    (reference R(k80) = 0.3 under full contention: B's advantage is 2 there)."""
    nodes = [node("v0").model("v100").gpus(1).at(region="a-v100"),
             node("v1").model("v100").gpus(1).at(region="a-v100"),
             *[node(f"k{i}").model("k80").gpus(1).at(region="b-k80") for i in range(3)]]
    gang = replace(fast(job("b").gpus(1).gang(2).build(), B), queue="q")
    cluster = state(nodes, [queue("q")], [gang])
    aware = SchedulerConfig(
        scoring={**DEFAULT_SCORING, THROUGHPUT: 4.0},
        plugin_params={THROUGHPUT: {"reference": {"k80": 0.3, "v100": 1.0}, "contention": 1.0}})
    (placed,) = schedule(cluster, 10.0, aware).placements
    assert {a.node_id[0] for a in placed.assignments} == {"k"}
    (blind,) = schedule(cluster, 10.0, SchedulerConfig()).placements
    assert {a.node_id[0] for a in blind.assignments} == {"v"}


@pytest.mark.parametrize(("units", "first"), [
    pytest.param({}, "b", id="raw-gpus-a-holds-more"),
    pytest.param({"v100": 1.0, "k80": 0.3}, "a", id="normalised-a-holds-less"),
])
def test_fair_share_in_normalised_units(units: dict[str, float], first: str) -> None:
    """Queue a runs on 2 K80s, queue b on 1 V100; one GPU is free and both want it. Counted in
    devices a holds more and b goes first; in normalised units a holds 0.6 and goes first."""
    nodes = [node("k").model("k80").gpus(2), node("v").model("v100").gpus(2)]
    work = [
        replace(job("ra").gpus(2).running(("k", (0, 1))).build(), queue="a"),
        replace(job("rb").gpus(1).running(("v", (0,))).build(), queue="b"),
        replace(job("wa").gpus(1).submitted(1).build(), queue="a"),
        replace(job("wb").gpus(1).submitted(1).build(), queue="b"),
    ]
    cluster = state(nodes, [queue("a"), queue("b")], work)
    plan = schedule(cluster, 10.0, SchedulerConfig(share_units=units, preempt=False,
                                                   reclaim=False, consolidate=False))
    assert [p.workload_id for p in plan.placements] == [f"w{first}"]
