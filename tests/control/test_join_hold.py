"""A node rented for waiting work is held for it once it joins (Karpenter's nominated node):
smaller work of higher priority that arrives meanwhile does not take it, and the hold ends
by its bound. The control loop on a fake backend, an in-memory provider, a manual clock; the
joining node is the rig's n1, cordoned until it "joins" (as test_autoscale does)."""

from __future__ import annotations

from tests.control.rig import Rig
from tests.control.test_autoscale import MemoryProvider

from corral.autoscale.pool import AutoscalerConfig
from corral.control.autoscale import PoolAutoscaler
from corral.control.join_hold import JoinHolds
from corral.store import Store
from corral.store import pool as P
from corral.store.nominations import load_nominations


def _setup(store: Store, hold_s: float) -> tuple[Rig, MemoryProvider, dict[str, str]]:
    rig, provider, joined = Rig(store), MemoryProvider(), {}
    rig.loop.autoscaler = PoolAutoscaler(
        store, {"cloud": provider}, "c1", "https://corral.test", lambda n: "cjt_test",
        AutoscalerConfig(idle_timeout_s=600, join_timeout_s=600), every_s=10.0,
        joined=lambda ids: {i: joined[i] for i in ids if i in joined},
        join_holds=JoinHolds(hold_s=hold_s))
    with store.write() as c:
        P.set_cordoned(c, "n1", True)  # not in service until "its" instance joins
    return rig, provider, joined


def _on(rig: Rig, wid: str) -> set[str]:
    state = rig.loop.live.snapshot(rig.clock.now()).state
    return {a.node_id for w in state.workloads if w.id == wid for a in w.assignments}


def _scenario(store: Store, hold_s: float) -> tuple[Rig, str, list[str]]:
    rig, provider, joined = _setup(store, hold_s)
    rig.submit(gpus=4, preemptible=False)  # takes n0 for the whole test
    rig.step(n=1)
    big = rig.submit(gpus=4, preemptible=False)  # (else the small work would preempt it)
    rig.step(n=10)  # the autoscaler's next pass
    assert rig.state(big) == "pending" and len(provider.launches) == 1  # rented for `big`
    small = [rig.submit(gpus=1, priority=10) for _ in range(4)]  # ahead of it in the order
    joined["i-1"] = "n1"  # its agent registered; the loop adds the node a moment later
    rig.step(n=1)
    with store.write() as c:
        P.set_cordoned(c, "n1", False)
    rig.step(n=3)
    return rig, big, small


def test_the_node_rented_for_a_workload_is_held_for_it(store: Store) -> None:
    rig, big, small = _scenario(store, hold_s=120.0)
    assert rig.state(big) in ("starting", "running") and _on(rig, big) == {"n1"}
    assert all(rig.state(w) == "pending" for w in small)


def test_without_the_hold_smaller_work_takes_it(store: Store) -> None:
    rig, big, small = _scenario(store, hold_s=0.0)
    assert rig.state(big) == "pending"
    assert all(_on(rig, w) == {"n1"} for w in small)


def test_the_hold_ends_by_its_bound(store: Store) -> None:
    """A nominee that never takes its room (here the node stays out of service): the stored
    hold is gone once its bound passed, and nothing writes it again."""
    rig, _provider, joined = _setup(store, hold_s=30.0)
    rig.submit(gpus=4, preemptible=False)
    rig.step(n=1)
    big = rig.submit(gpus=4)
    rig.step(n=10)
    joined["i-1"] = "n1"
    rig.step(n=2)
    with store.read() as c:
        assert [n.workload_id for n in load_nominations(c, rig.clock.now())] == [big]
    rig.step(n=31)
    with store.read() as c:
        assert load_nominations(c, rig.clock.now()) == ()
    assert rig.loop.autoscaler is not None and rig.loop.autoscaler.join_holds.holds == {}
