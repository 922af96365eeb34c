"""Replacing an under-used node with a cheaper one (Karpenter's consolidation, "replace"):
which nodes, for which offer, one at a time, make before break."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscale_builders import A100_1, G6, G6_4, LAMBDA_H100, P5, instance, job
from corral.autoscale.pool import AutoscalerConfig, Decisions, NodeUse, PoolView, decide
from corral.autoscale.replace import NODE_REPLACED
from corral.autoscale.state import AutoscalerState, Replacement
from corral.core.model import Workload
from corral.providers.base import CapacityState, Instance, Offer

CONFIG = AutoscalerConfig(idle_timeout_s=600, replace_min_saving=0.3, replace_min_age_s=1800)
OFFERS = (P5, LAMBDA_H100, G6, G6_4, A100_1)
OLD = instance("i-old", P5, launched_at=0.0)  # 8 x H100 at 98.32/h


def one_gpu(wid: str = "j1", *, stable: bool = False) -> Workload:
    b = job(wid).gpus(1)
    return (b.stable() if stable else b).build().workload


def running(*work: Workload, others: int = 0) -> NodeUse:
    """A node running `work` only there, and `others` workloads spread over other nodes too."""
    return NodeUse(len(work) + others, sum(not w.preemptible for w in work), None, tuple(work))


def run(instances: tuple[Instance, ...] = (OLD,), nodes: dict[str, NodeUse] | None = None, *,
        state: AutoscalerState | None = None, now: float = 2000.0,
        config: AutoscalerConfig = CONFIG, waiting: tuple = (),
        offers: tuple[Offer, ...] = OFFERS) -> Decisions:
    use = {"node-i-old": running(one_gpu())} if nodes is None else nodes
    view = PoolView(list(waiting), offers, instances, use)
    return decide(view, state or AutoscalerState(), config, now)


def test_a_big_node_running_one_small_preemptible_job_is_replaced_by_the_cheapest_that_holds_it(
) -> None:
    d = run()
    (x,) = d.launches
    assert (x.offer.instance_type, x.count, x.replaces, x.workloads) == (
        "g6.xlarge", 1, "i-old", ("j1",))
    assert "to replace i-old" in x.reason
    assert d.state.replacement == Replacement("i-old", "aws/g6.xlarge/on-demand/us-east-1a",
                                              2000.0)
    assert d.drains == () and d.terminations == ()  # make before break: nothing stopped yet


@pytest.mark.parametrize("case, nodes, now, config", [
    ("non-preemptible work", {"node-i-old": running(one_gpu(stable=True))}, 2000.0, CONFIG),
    ("a node younger than the min age", None, 1000.0, CONFIG),
    ("a gang spread over this node and another", {"node-i-old": running(one_gpu(), others=1)},
     2000.0, CONFIG),
    ("an empty node: the idle timeout's", {"node-i-old": NodeUse(0, 0, 1500.0)}, 2000.0, CONFIG),
    ("replacement off", None, 2000.0, replace(CONFIG, replace_min_saving=None)),
    ("8 one-GPU jobs: no single cheaper instance holds them",
     {"node-i-old": running(*(one_gpu(f"j{k}") for k in range(8)))}, 2000.0,
     replace(CONFIG, replace_min_saving=0.8)),
])
def test_not_replaced(case: str, nodes, now: float, config: AutoscalerConfig) -> None:
    d = run(nodes=nodes, now=now, config=config)
    assert d.launches == () and d.state.replacement is None, case


def test_the_saving_must_reach_the_margin() -> None:
    # a 4 x L4 (4.60/h) running one 1-GPU job: a 1 x L4 (0.80/h) saves 83%
    four = instance("i-4", G6_4, launched_at=0.0)
    d = run((four,), {"node-i-4": running(one_gpu())})
    assert [(x.offer.instance_type, x.replaces) for x in d.launches] == [("g6.xlarge", "i-4")]
    # ... but not if the margin asks more than that
    d = run((four,), {"node-i-4": running(one_gpu())}, config=replace(CONFIG,
                                                                      replace_min_saving=0.9))
    assert d.launches == ()


def test_the_largest_saving_wins_and_only_one_at_a_time() -> None:
    four = instance("i-4", G6_4, launched_at=0.0)
    d = run((four, OLD), {"node-i-4": running(one_gpu("a")), "node-i-old": running(one_gpu("b"))})
    assert [x.replaces for x in d.launches] == ["i-old"]  # 97.52/h saved beats 3.80/h


def test_while_one_is_in_progress_no_other_starts() -> None:
    state = AutoscalerState(replacement=Replacement("i-old", "x", 1990.0, "i-new"))
    new = instance("i-new", G6, CapacityState.PROVISIONING, launched_at=1990.0)
    four = instance("i-4", G6_4, launched_at=0.0)
    d = run((OLD, new, four), {"node-i-old": running(one_gpu("b")),
                               "node-i-4": running(one_gpu("a"))}, state=state)
    assert d.launches == () and d.state.replacement == state.replacement


def test_the_replacement_on_its_way_is_neither_packed_onto_nor_cancelled() -> None:
    state = AutoscalerState(replacement=Replacement("i-old", "x", 1500.0, "i-new"))
    new = instance("i-new", G6, CapacityState.PROVISIONING, launched_at=1500.0)
    d = run((OLD, new), waiting=(job("w").gpus(1).build(),), state=state, now=2000.0)
    # the waiting 1-GPU job gets an instance of its own; i-new (500 s on its way: past the
    # 60 s cancel of unneeded instances, within the join timeout) is kept for the node it
    # replaces
    assert [(x.offer.instance_type, x.count, x.replaces) for x in d.launches] == [
        ("g6.xlarge", 1, None)]
    assert d.terminations == () and d.drains == ()


def test_once_the_replacement_joined_the_old_node_is_drained_and_its_work_stopped() -> None:
    state = AutoscalerState(replacement=Replacement("i-old", "x", 1000.0, "i-new"))
    new = instance("i-new", G6, launched_at=1000.0)  # joined: READY with a node
    d = run((OLD, new), {"node-i-old": running(one_gpu()), "node-i-new": NodeUse(0, 0, 1900.0)},
            state=state)
    assert [(x.instance_id, x.node_id, x.stop_reason) for x in d.drains] == [
        ("i-old", "node-i-old", NODE_REPLACED)]
    assert "replaced by i-new" in d.drains[0].reason
    # drained: not drained again; returned once idle, and then the replacement is over
    draining = replace(OLD, state=CapacityState.DRAINING)
    d = run((draining, new), {"node-i-old": running(one_gpu()), "node-i-new": running(one_gpu())},
            state=d.state)
    assert d.drains == () and d.terminations == () and d.state.replacement is not None
    d = run((draining, new), {"node-i-old": NodeUse(0, 0, 2000.0),
                              "node-i-new": running(one_gpu())}, state=d.state)
    assert [t.instance_id for t in d.terminations] == ["i-old"]
    d = run((new,), {"node-i-new": running(one_gpu())}, state=d.state, now=2100.0)
    assert d.state.replacement is None


@pytest.mark.parametrize("case, new_id, instances", [
    ("the launch failed (no instance reported)", None, (OLD,)),
    ("the replacement was returned before it joined", "i-new", (OLD,)),
    ("the old node is gone", "i-new",
     (instance("i-new", G6, CapacityState.PROVISIONING, launched_at=1000.0),)),
])
def test_a_replacement_that_cannot_finish_is_forgotten(case: str, new_id: str | None,
                                                       instances: tuple[Instance, ...]) -> None:
    state = AutoscalerState(replacement=Replacement("i-old", "x", 1000.0, new_id))
    d = run(instances, {"node-i-old": running(one_gpu())}, state=state,
            config=replace(CONFIG, replace_min_saving=None))
    assert d.state.replacement is None, case
    assert d.drains == ()


def test_the_caller_names_the_instance_it_launched() -> None:
    state = AutoscalerState(replacement=Replacement("i-old", "x", 1000.0))
    assert state.replacement_launched("i-9").replacement == Replacement("i-old", "x", 1000.0,
                                                                        "i-9")
    assert AutoscalerState().replacement_launched("i-9") == AutoscalerState()
