"""What a pass of the pool autoscaler reads (issue 11): work whose stop was asked keeps its node
busy (a drained node is returned only once that work ended), and where that work is comes from
the loop's LiveState, kept current from the change feed: a pass reads no placements from the
store, and what it reads does not grow with the pool's idle nodes. A quiet pass reads no audit
record either: a host's spot notice, taken by whichever API replica, cordons its node in the same
transaction, and the node feed the loop reads tells the next pass to read it."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from decimal import Decimal

from tests.control.rig import Rig, nodes

from corral.autoscale.pool import AutoscalerConfig
from corral.control.autoscale import PoolAutoscaler, act_on_host_notice, watch_feed
from corral.control.node_return import node_use, stopping_on
from corral.core.model import CapacityKind, Node
from corral.providers.base import CapacityState, Instance, Offer
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


OFFER = Offer("cloud", "h100x4", "H100", 4, 81_920, 64_000, 262_144, Decimal("8.00"),
              CapacityKind.SPOT, "r1", "r1a", "catalog:test", "2026-01-01")


class OneOnN1(NoCapacity):
    """One spot instance, joined as the rig's node n1, until it is returned."""

    def __init__(self) -> None:
        self.returned: list[str] = []

    def instances(self) -> list[Instance]:
        state = CapacityState.TERMINATED if self.returned else CapacityState.READY
        return [Instance("i-1", "cloud", OFFER, state, "", 0.0, "n1")]

    def terminate(self, ids: list[str]) -> None:
        self.returned += ids


def _by_hand(rig: Rig, provider: NoCapacity | None = None,
             feed: bool = True) -> tuple[PoolAutoscaler, Callable[[], object]]:
    scaler = PoolAutoscaler(rig.store, {"cloud": provider or NoCapacity()},  # type: ignore[dict-item]
                            "c1", "https://corral.test", lambda n: "cjt_test",
                            AutoscalerConfig(idle_timeout_s=600), every_s=10.0,
                            joined=lambda ids: {})
    if feed:  # as `corral up` wires it
        watch_feed(scaler, rig.loop.leadership, rig.loop.live)
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
    one_pass()  # the node feed moved: this pass reads the audit log
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


def _audit(sql: list[str]) -> list[str]:
    return [s for s in sql if "audit_log" in s.lower()]


def test_a_quiet_pass_runs_no_statement(store: Store) -> None:
    """Nothing written since the last pass: no audit read (it ran 2: hosts' notices, spot
    records), no statement at all with nothing rented."""
    rig = Rig(store)
    _, one_pass = _by_hand(rig)
    rig.step()
    first = [s for s, _ in statements(store, one_pass)]
    assert _audit(first), first  # a new autoscaler reads what a predecessor left
    for _ in range(3):
        rig.step(n=10)
        quiet = [s for s, _ in statements(store, one_pass)]
        assert quiet == [], quiet


def test_a_host_notice_taken_by_another_api_replica_is_read_at_the_next_pass(
        store: Store) -> None:
    """Another replica's API (here another Store on the same database, as another process)
    takes an agent's spot notice: it cordons n1 and records `agent.spot_notice` in one
    transaction. The loop's next refresh sees n1's new node-feed number, so the next pass reads
    the audit log, drains the instance and remembers it as interrupted; then quiet again."""
    rig = Rig(store)
    provider = OneOnN1()
    scaler, one_pass = _by_hand(rig, provider)
    rig.step()
    one_pass()
    rig.step(n=10)
    assert _audit([s for s, _ in statements(store, one_pass)]) == []
    assert "n1" not in scaler.draining and "i-1" not in scaler.interrupted
    other = Store(store.url)  # another API replica
    try:
        with other.write() as c:
            act_on_host_notice(c, rig.clock.now(), "n1", instance_id="i-1",
                               action="terminate", seconds_left=120)
    finally:
        other.close()
    rig.step(n=10)  # the loop's refresh reads n1's cordon from the node feed
    seen = [s for s, _ in statements(store, one_pass)]
    assert len(_audit(seen)) == 2, seen
    assert "n1" in scaler.draining and "i-1" in scaler.interrupted
    rig.step(n=10)
    one_pass()
    assert provider.returned == ["i-1"]  # drained, idle: returned
    rig.step(n=10)  # the return's own record is read back (spot_rates), once
    assert len(_audit([s for s, _ in statements(store, one_pass)])) == 2
    rig.step(n=10)
    assert _audit([s for s, _ in statements(store, one_pass)]) == []


def test_a_new_lease_or_a_record_of_its_own_makes_the_next_pass_read(store: Store) -> None:
    """A new lease (a predecessor may have recorded launches, returns, interruptions) and a
    record this autoscaler wrote each make the next pass read the log once; without a feed
    (an autoscaler driven by hand) every pass reads it, as before."""
    rig = Rig(store)
    epoch: list[Hashable] = [1]
    scaler, one_pass = _by_hand(rig)
    scaler.feed = lambda: (epoch[0], rig.loop.live.nodes_version)
    rig.step()
    one_pass()
    rig.step(n=10)
    assert _audit([s for s, _ in statements(store, one_pass)]) == []
    epoch[0] = 2
    rig.step(n=10)
    assert len(_audit([s for s, _ in statements(store, one_pass)])) == 2
    rig.step(n=10)
    assert _audit([s for s, _ in statements(store, one_pass)]) == []
    scaler.wrote = True  # as a launch, a return or an interruption acted on sets it
    rig.step(n=10)
    assert len(_audit([s for s, _ in statements(store, one_pass)])) == 2
    _, by_hand = _by_hand(rig, feed=False)
    assert _audit([s for s, _ in statements(store, by_hand)])  # the first reads (and resumes)
    for _ in range(2):  # then two passes in a row, nothing written between: each reads
        rig.step(n=10)
        assert len(_audit([s for s, _ in statements(store, by_hand)])) == 2


def test_host_notices_past_a_full_page_are_read_at_the_next_passes(store: Store) -> None:
    """A burst of host notices larger than a pass's page: a full page keeps the next pass due,
    so the rest are read without waiting for an unrelated node change (the feed moved once,
    for the whole burst). Here a page of 2 and 5 notices, n1's the last."""
    rig = Rig(store)
    scaler, one_pass = _by_hand(rig, OneOnN1())
    scaler.host_notice_page = 2
    rig.step()
    one_pass()
    rig.step(n=10)
    assert _audit([s for s, _ in statements(store, one_pass)]) == []
    with store.write() as c:
        for node in ["n0"] * 4 + ["n1"]:
            act_on_host_notice(c, rig.clock.now(), node, instance_id="",
                               action="terminate", seconds_left=120)
    reads = []
    for _ in range(3):
        rig.step(n=10)
        reads.append(len(_audit([s for s, _ in statements(store, one_pass)])))
    assert reads == [2, 2, 2]  # each pass read (hosts' notices, spot records)
    assert scaler.host_notices_seen > 0 and "i-1" in scaler.interrupted
    assert "n1" in scaler.draining
