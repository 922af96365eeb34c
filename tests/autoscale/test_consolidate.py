"""Emptying a node whose work fits the other nodes' free room (Karpenter's consolidation,
"delete"): which node, when not, one at a time, and the guard that keeps it from flapping."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from autoscale_builders import G6, G6_4, LAMBDA_H100, P5, instance, job
from corral.autoscale.consolidate import NODE_CONSOLIDATED, free_room
from corral.autoscale.pool import AutoscalerConfig, Decisions, NodeUse, PoolView, decide
from corral.autoscale.state import AutoscalerState, Replacement
from corral.core.model import WorkerAssignment, Workload
from corral.providers.base import CapacityState, Instance

# replacement off: these tests are about emptying alone
CONFIG = AutoscalerConfig(idle_timeout_s=600, replace_min_saving=None,
                          consolidate_min_age_s=1800)
# 4 x L4 at 3.00/h: 0.75/GPU-h, cheaper per GPU-hour than SMALL (moved work runs no dearer)
BIG = instance("i-big", replace(G6_4, price_per_hour=Decimal("3.00")), launched_at=0.0)
SMALL = instance("i-small", G6, launched_at=0.0)  # 1 x L4, 0.80/h
NOW = 2000.0


def one_gpu(wid: str, *, stable: bool = False, started: float = 0.0,
            min_runtime: float = 0.0) -> Workload:
    b = job(wid).gpus(1)
    w = (b.stable() if stable else b).build().workload
    return replace(w, started_at=started, min_runtime_s=min_runtime)


def on(node: str, i: Instance, *work: Workload, used: int | None = None,
       others: int = 0) -> NodeUse:
    """`work` runs only on `node` (one GPU each); `others` more workloads span it and others."""
    taken = len(work) + others if used is None else used
    free = tuple([0] * taken + [1000] * (i.offer.gpus - taken))
    return NodeUse(len(work) + others, sum(not w.preemptible for w in work), None, tuple(work),
                   (free, i.offer.cpu_milli, i.offer.memory_mib))


def run(nodes: dict[str, NodeUse], *, instances: tuple[Instance, ...] = (BIG, SMALL),
        state: AutoscalerState | None = None, now: float = NOW, waiting: tuple = (),
        config: AutoscalerConfig = CONFIG) -> Decisions:
    view = PoolView(list(waiting), (G6, G6_4), instances, nodes)
    return decide(view, state or AutoscalerState(), config, now)


def test_a_node_whose_work_fits_the_others_free_room_is_drained_and_its_work_remembered(
) -> None:
    d = run({"node-i-big": on("node-i-big", BIG, one_gpu("a")),
             "node-i-small": on("node-i-small", SMALL, one_gpu("b"))})
    # the big node's job fits nowhere else (the small node is full); the small one's fits the
    # big node's 3 free GPUs: the small node is emptied
    (dr,) = d.drains
    assert (dr.instance_id, dr.node_id, dr.stop_reason) == ("i-small", "node-i-small",
                                                            NODE_CONSOLIDATED)
    assert "fits the free room" in dr.reason
    assert d.launches == () and d.terminations == ()
    assert d.state.emptying == "i-small" and dict(d.state.emptied) == {"b": NOW + 600}


def test_work_never_moves_to_dearer_room() -> None:
    """A 8 x H100 at 23.92/h and one at 98.32/h each run one job: only the dear one is
    emptied (its job fits the cheap one's room); never the cheap one into the dear room."""
    cheap, dear = instance("i-cheap", LAMBDA_H100), instance("i-dear", P5)
    d = run({"node-i-cheap": on("node-i-cheap", cheap, one_gpu("a")),
             "node-i-dear": on("node-i-dear", dear, one_gpu("b"))},
            instances=(cheap, dear))
    assert [(x.instance_id, x.stop_reason) for x in d.drains] == [("i-dear",
                                                                  NODE_CONSOLIDATED)]
    d = run({"node-i-cheap": on("node-i-cheap", cheap, one_gpu("a")),
             "node-i-dear": on("node-i-dear", dear, one_gpu("b", stable=True))},
            instances=(cheap, dear))
    assert d.drains == ()


def test_the_dearest_node_that_can_be_emptied_goes_first() -> None:
    big2 = instance("i-big2", G6_4, launched_at=0.0)
    d = run({"node-i-big": on("node-i-big", BIG, one_gpu("a")),
             "node-i-big2": on("node-i-big2", big2, one_gpu("c")),
             "node-i-small": on("node-i-small", SMALL, used=0)},
            instances=(BIG, big2, SMALL))
    # either fits the other's room (big2 4.60/h is dearer per GPU-hour, so only big2's job may
    # move to big, not the other way): the dearer instance is emptied
    assert [x.instance_id for x in d.drains] == ["i-big2"]


@pytest.mark.parametrize("case, big_work, kw", [
    ("non-preemptible work", (one_gpu("b", stable=True),), {}),
    ("work inside its min runtime", (one_gpu("b", started=1000.0, min_runtime=3600.0),), {}),
    ("a node younger than the min age", (one_gpu("b"),), {"now": 1000.0}),
    ("consolidation off", (one_gpu("b"),),
     {"config": replace(CONFIG, consolidate_min_age_s=None)}),
    ("a replacement in progress", (one_gpu("b"),),
     {"state": AutoscalerState(replacement=Replacement("i-big", "k", NOW))}),
    ("another node being emptied", (one_gpu("b"),),
     {"state": AutoscalerState(emptying="i-small")}),
    ("the free room is taken by waiting work first", (one_gpu("b"),),
     {"waiting": tuple(job(f"w{k}").gpus(1).build()
                       for k in range(3))}),
])
def test_not_emptied(case: str, big_work: tuple[Workload, ...], kw: dict) -> None:
    # the small node runs `big_work`; the big one has 3 free GPUs
    nodes = {"node-i-big": on("node-i-big", BIG, one_gpu("a")),
             "node-i-small": on("node-i-small", SMALL, *big_work)}
    d = run(nodes, **kw)
    assert not [x for x in d.drains if x.stop_reason == NODE_CONSOLIDATED], case


def test_an_idle_node_takes_no_moved_work() -> None:
    """Its room is free but the node is on its way out (idle timeout): filling it would keep
    it rented instead of the node emptied."""
    d = run({"node-i-big": NodeUse(0, 0, NOW - 60, (), ((1000,) * 4, 48_000, 196_608)),
             "node-i-small": on("node-i-small", SMALL, one_gpu("b"))})
    assert not [x for x in d.drains if x.stop_reason == NODE_CONSOLIDATED]


def test_a_gang_spread_over_nodes_is_not_moved() -> None:
    d = run({"node-i-big": on("node-i-big", BIG, one_gpu("a")),
             "node-i-small": on("node-i-small", SMALL, others=1)})
    assert d.drains == ()


def test_no_capacity_is_rented_for_moved_work_until_the_idle_timeout() -> None:
    """The guard: the work moved off waits (its room was taken): nothing rented for it within
    the idle timeout, then it is rented for like any other work (its wait is bounded)."""
    state = AutoscalerState(emptied={"b": NOW + 600})
    moved = job("b").gpus(1).build()
    full = {"node-i-big": on("node-i-big", BIG, used=4)}
    d = run(full, instances=(BIG,), state=state, waiting=(moved,))
    assert d.launches == () and "nothing is rented for it before" in d.waiting["b"].sentence
    d = run(full, instances=(BIG,), state=state, waiting=(moved,), now=NOW + 601)
    assert [x.workloads for x in d.launches] == [("b",)]
    assert dict(d.state.emptied) == {}


def test_the_emptied_node_is_returned_once_idle_and_then_forgotten() -> None:
    state = AutoscalerState(emptying="i-small", emptied={"b": NOW + 600})
    draining = replace(SMALL, state=CapacityState.DRAINING)
    d = run({"node-i-big": on("node-i-big", BIG, one_gpu("a"), one_gpu("b")),
             "node-i-small": NodeUse(0, 0, NOW - 5, (), ((1000,), 4000, 16_384))},
            instances=(BIG, draining), state=state)
    assert [t.instance_id for t in d.terminations] == ["i-small"]
    d = run({"node-i-big": on("node-i-big", BIG, one_gpu("a"), one_gpu("b"))},
            instances=(BIG,), state=d.state, now=NOW + 30)
    assert d.state.emptying is None  # the next node may be emptied


def test_free_room_subtracts_each_worker_on_that_node_only() -> None:
    r = job("x").gpus(1).build().workload.resources
    a = (WorkerAssignment(0, "n1", (0,), 1000, 0), WorkerAssignment(1, "n2", (1,), 1000, 0))
    half = (WorkerAssignment(0, "n1", (2,), 500, 0),)
    milli, cpu, mem = free_room(4, 10_000, 65_536, "n1", [(a, r), (half, r)])
    assert milli == (0, 1000, 500, 1000)
    assert (cpu, mem) == (10_000 - 2 * r.cpu_milli, 65_536 - 2 * r.memory_mib)
