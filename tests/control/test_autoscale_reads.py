"""What a pass of the pool autoscaler reads (issue 11): work whose stop was asked keeps its node
busy (a drained node is returned only once that work ended), and where that work is comes from
the loop's LiveState, kept current from the change feed: a pass reads no placements from the
store, and what it reads does not grow with the pool's idle nodes."""

from __future__ import annotations

from collections.abc import Callable

from tests.control.rig import Rig, nodes

from corral.autoscale.pool import AutoscalerConfig
from corral.control.autoscale import PoolAutoscaler
from corral.control.node_return import node_use, stopping_on
from corral.core.model import Node
from corral.providers.base import Instance, Offer
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from sql_trace import statements


class NoCapacity:
    """A renting provider with nothing to offer and nothing rented: a pass still runs."""

    kind = "memory"

    def offers(self) -> list[Offer]:
        return []

    def instances(self) -> list[Instance]:
        return []


def _by_hand(rig: Rig) -> tuple[PoolAutoscaler, Callable[[], object]]:
    scaler = PoolAutoscaler(rig.store, {"cloud": NoCapacity()}, "c1",  # type: ignore[dict-item]
                            "https://corral.test", lambda n: "cjt_test",
                            AutoscalerConfig(idle_timeout_s=600), every_s=10.0,
                            joined=lambda ids: {})
    live = rig.loop.live

    def one_pass() -> object:
        now = rig.clock.now()
        decisions = scaler.step(now, None, lambda: live.snapshot(now).state,
                                lambda: stopping_on(live.stopping, live.assignments))
        assert decisions is not None, "a pass ran"
        return decisions

    return scaler, one_pass


def test_a_pass_reads_no_placements_and_no_more_with_more_idle_nodes(store: Store) -> None:
    rig = Rig(store)
    _, one_pass = _by_hand(rig)
    rig.step()
    one_pass()  # the first pass reads back what a predecessor left (audit records)
    rig.step(n=10)
    quiet = [s for s, _ in statements(store, one_pass)]
    assert not [s for s in quiet if "placements" in s.lower()], quiet
    more = [*rig.nodes, *(Node(f"x{i}", "local", "H100", 4, 81920, 64_000, 262_144)
                          for i in range(40))]
    with store.write() as c:  # 40 more idle nodes join the pool
        P.sync_nodes(c, [{"name": "local"}], more)
    rig.step(n=10)
    assert len(rig.loop.live.snapshot(rig.clock.now()).state.nodes) == 42
    after = [s for s, _ in statements(store, one_pass)]
    assert not [s for s in after if "placements" in s.lower()], after
    assert len(after) == len(quiet), (quiet, after)


def test_work_whose_stop_was_asked_keeps_its_node_busy_until_it_ends(store: Store) -> None:
    """Out of the core's snapshot (its stop was asked) yet on its node through its grace:
    counted there, from LiveState, until its attempt stops holding."""
    rig = Rig(store)
    wid = rig.submit(gpus=4)
    rig.step(n=3)
    assert rig.state(wid) == "running"
    live = rig.loop.live
    (node,) = {a.node_id for a in live.assignments[wid]}
    rig.backend.ignore_stop(wid)  # runs through its grace (5 s), then killed
    rec = rig.get(wid)
    with store.write() as c:  # a drain asks it to stop (NodeReplaced: requeued)
        assert W.update_versioned(c, wid, rec.version, stop_reason="NodeReplaced",
                                  stop_message="replaced")
    rig.step(n=3)  # within the grace
    now = rig.clock.now()
    state = live.snapshot(now).state
    assert wid not in {w.id for w in state.workloads}  # out of the core's view
    assert stopping_on(live.stopping, live.assignments) == {node: {wid}}
    idle_since: dict[str, float] = {}
    use = node_use(state, now, idle_since, stopping_on(live.stopping, live.assignments))
    assert use[node].running == 1 and use[node].idle_since is None
    assert node not in idle_since
    other = next(n.id for n in nodes() if n.id != node)
    assert use[other].running == 0 and idle_since[other] == now
    rig.step(n=10)  # killed after the grace, requeued: a new attempt
    assert rig.get(wid).attempt == rec.attempt + 1
    assert stopping_on(live.stopping, live.assignments) == {}
