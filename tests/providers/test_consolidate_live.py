"""Emptying a rented node into the free room of another (Karpenter's consolidation, "delete")
through the control loop, renting from EC2 on moto: the dear node's job is stopped with
`NodeConsolidated` (requeued, no restart spent), the core places it in the free room, the node
is returned; when the work ends the other idles out: every instance rented ends terminated."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.control.rig import Rig
from tests.providers.test_replace_restart import Plane

from corral.autoscale.consolidate import NODE_CONSOLIDATED
from corral.autoscale.pool import AutoscalerConfig
from corral.providers.base import CapacityState, Instance, required_tags
from corral.store import pool as P
from corral.store import workloads as W

pytestmark = pytest.mark.slow  # 2 tests, 32 s (-n 2 whole run, 2026-12-05, load 8-32)

CONFIG = AutoscalerConfig(idle_timeout_s=20, join_timeout_s=600, replace_min_saving=None,
                          consolidate_min_age_s=5, cancel_unneeded_after_s=10)


def _on(rig: Rig, plane: Plane, node: str) -> str:
    """A 1-GPU job placed on `node` (the other rig node cordoned meanwhile)."""
    other = "n1" if node == "n0" else "n0"
    with rig.store.write() as c:
        P.set_cordoned(c, other, True)
    wid = rig.submit(gpus=1)
    plane.step(3)
    with rig.store.write() as c:
        P.set_cordoned(c, other, False)
    return wid


def _dear_and_cheap(plane: Plane, joined: dict[str, str]) -> tuple[Instance, Instance]:
    """A p5.48xlarge joined as n0 and a g6.xlarge as n1, both on demand."""
    offers = {o.instance_type: o for o in plane.aws.offers()
              if o.capacity_kind == "on-demand"}
    (dear,) = plane.aws.launch(offers["p5.48xlarge"], 1, user_data="",
                               tags=required_tags("c1", "req-a", "aws"))
    (cheap,) = plane.aws.launch(offers["g6.xlarge"], 1, user_data="",
                                tags=required_tags("c1", "req-b", "aws"))
    joined.update({dear.id: "n0", cheap.id: "n1"})
    return dear, cheap


def _nodes_of(plane: Plane, rig: Rig, wid: str) -> set[str]:
    state = plane.loop.live.snapshot(rig.clock.now()).state
    return {a.node_id for w in state.workloads if w.id == wid for a in w.assignments}


def test_a_dear_node_whose_job_fits_another_is_emptied_and_returned(
        ec2_env: dict[str, str], rig: Rig) -> None:
    joined: dict[str, str] = {}
    plane = Plane(rig, ec2_env, joined, "only", CONFIG)
    dear, cheap = _dear_and_cheap(plane, joined)
    a, b = _on(rig, plane, "n0"), _on(rig, plane, "n1")
    assert (_nodes_of(plane, rig, a), _nodes_of(plane, rig, b)) == ({"n0"}, {"n1"})
    plane.step(40)  # past the min age: n0 (98.32/h) is emptied into n1's free room
    rec = rig.get(a)
    assert rec.state == "running" and rec.restart_count == 0 and rec.attempt == 1
    with rig.store.read() as c:
        assert [e for e in W.list_events(c, workload_id=a) if e.reason == NODE_CONSOLIDATED]
    assert _nodes_of(plane, rig, a) == {"n1"} and rig.get(b).attempt == 0  # b never moved
    listed = {i.id: i.state for i in plane.aws.instances()}
    assert listed[dear.id] == CapacityState.TERMINATED
    assert listed[cheap.id] != CapacityState.TERMINATED

    plane.backend.finish(a)
    plane.backend.finish(b)
    plane.step(40)
    assert {i.state for i in plane.aws.instances()} == {CapacityState.TERMINATED}


def test_the_guard_on_moved_work_survives_a_restart(ec2_env: dict[str, str], rig: Rig) -> None:
    """A restart right after a node was emptied: the new autoscaler reads the guard back
    (`autoscale.emptied`), so it rents nothing for the moved work that waits (its room taken
    meanwhile) until the guard ends, then rents for it (the wait stays bounded)."""
    config = replace(CONFIG, idle_timeout_s=40)  # the guard: 40 s from the drain
    joined: dict[str, str] = {}
    plane = Plane(rig, ec2_env, joined, "first", config)
    dear, cheap = _dear_and_cheap(plane, joined)
    a, b = _on(rig, plane, "n0"), _on(rig, plane, "n1")
    for _ in range(40):  # until n0 is emptied; its room on n1 is then taken (cordoned)
        plane.step(1)
        with rig.store.read() as c:
            if [e for e in W.list_events(c, workload_id=a) if e.reason == NODE_CONSOLIDATED]:
                break
    with rig.store.write() as c:
        P.set_cordoned(c, "n1", True)
    emptied_at = rig.clock.now()

    # the server dies; a new one (same store, same cloud) leads once the old lease ran out
    rig.clock.advance(16.0)
    plane = Plane(rig, ec2_env, joined, "second", config)
    while rig.clock.now() < emptied_at + config.idle_timeout_s - 3:
        plane.step(1)
    assert rig.state(a) != "running"
    # the emptied node was returned (its drain read back) and nothing rented for the moved work
    assert plane.live() == [cheap.id], "nothing is rented for the moved work within its guard"

    plane.step(15)  # past the guard: the moved work is rented for like any other
    rented = [i for i in plane.live() if i not in (dear.id, cheap.id)]
    assert rented, "the guard ends: capacity is rented for the work that still waits"
    with rig.store.write() as c:
        P.set_cordoned(c, "n1", False)
    plane.step(15)  # a takes n1's room again; what was rented for it is returned on its way
    assert rig.state(a) == "running" and rig.state(b) == "running"
    plane.backend.finish(a)
    plane.backend.finish(b)
    plane.step(60)
    assert {i.state for i in plane.aws.instances()} == {CapacityState.TERMINATED}
