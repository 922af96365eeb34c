"""The pool autoscaler in the control loop, on a fake backend, an in-memory provider and a
manual clock: it rents for work that waits for capacity, never twice for the same work, returns
what never joins and what stays idle, and writes every decision to the audit log.

The provider here is in-memory (the aws one runs against moto in tests/providers). A "join" is
simulated by registering the node in the store directly and telling the autoscaler which node
the instance became (`joined`), as the agents' registration does through `instance_id`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

import pytest
from tests.control.rig import Rig

from corral.autoscale.pool import AutoscalerConfig
from corral.control.autoscale import PoolAutoscaler
from corral.control.node_return import stopping_on
from corral.core import reasons as R
from corral.core.model import CapacityKind, Node, Nomination, WorkerAssignment
from corral.core.plan import Plan
from corral.core.reasons import Reason
from corral.providers.base import TAG_CLUSTER, CapacityState, Instance, Offer
from corral.providers.bootstrap import parse_user_data
from corral.store import Store, audit
from corral.store import pool as P
from corral.store import workloads as W

pytestmark = pytest.mark.slow  # 12 tests, 26 s (-n 2 whole run, 2026-12-05, load 8-32)

OFFER = Offer("cloud", "h100x4", "H100", 4, 81_920, 64_000, 262_144, Decimal("8.00"),
              CapacityKind.ON_DEMAND, "r1", "r1a", "catalog:test@2026-01-01", "2026-01-01")


class MemoryProvider:
    kind = "memory"

    def __init__(self, name: str = "cloud") -> None:
        self.name = name
        self.live: dict[str, Instance] = {}
        self.launches: list[tuple[int, Mapping[str, str], str]] = []
        self.terminated: list[str] = []

    def offers(self) -> list[Offer]:
        return [OFFER]

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        self.launches.append((count, dict(tags), user_data))
        out = []
        for _ in range(count):
            iid = f"i-{len(self.live) + 1}"
            self.live[iid] = Instance(iid, self.name, offer, CapacityState.PROVISIONING, "", 0.0,
                                      None)
            out.append(self.live[iid])
        return out

    def terminate(self, instance_ids: Sequence[str]) -> None:
        for iid in instance_ids:
            if iid in self.live:
                self.live[iid] = replace(self.live[iid], state=CapacityState.TERMINATED)
                self.terminated.append(iid)

    def instances(self) -> list[Instance]:
        return list(self.live.values())


def _setup(store: Store, *, launched_at: float = 0.0):
    rig = Rig(store)
    provider = MemoryProvider()
    joined: dict[str, str] = {}
    scaler = PoolAutoscaler(store, {"cloud": provider}, "c1", "https://corral.test",
                            lambda n: "cjt_test", AutoscalerConfig(idle_timeout_s=120,
                                                                 join_timeout_s=300),
                            every_s=10.0, joined=lambda ids: {i: joined[i] for i in ids
                                                              if i in joined})
    rig.loop.autoscaler = scaler
    return rig, provider, scaler, joined


def _audit(store: Store) -> list[tuple[str, str]]:
    with store.read() as c:
        return [(e.action, e.target) for e in audit.list_audit(c, actor="autoscaler")]


def test_rents_once_for_work_that_waits_for_capacity(store: Store) -> None:
    rig, provider, _, _ = _setup(store)
    ids = [rig.submit(gpus=4) for _ in range(3)]  # two nodes of 4 GPUs: the third waits
    rig.step(n=30, dt=1.0)  # three autoscaler passes (every 10 s)
    assert sorted(rig.state(w) for w in ids).count("pending") == 1
    assert len(provider.launches) == 1  # the instance on its way covers it: not rented again
    count, tags, user_data = provider.launches[0]
    assert count == 1 and tags[TAG_CLUSTER] == "c1"
    boot = parse_user_data(user_data)
    assert (boot.server, boot.join_token) == ("https://corral.test", "cjt_test")
    assert boot.args["--provider"] == "cloud" and boot.args["--capacity-kind"] == "on-demand"
    launch = [a for a in _audit(store) if a[0] == "autoscale.launch"]
    assert launch == [("autoscale.launch", "i-1")]


def test_an_instance_that_never_joins_is_terminated_and_replaced(store: Store) -> None:
    rig, provider, _, _ = _setup(store)
    [rig.submit(gpus=4) for _ in range(3)]
    rig.step(n=320, dt=1.0)  # past the join timeout of 300 s
    assert "i-1" in provider.terminated
    assert ("autoscale.terminate", "i-1") in _audit(store)
    assert all(i.state == CapacityState.TERMINATED or i.node_id is None
               for i in provider.instances())


def test_a_joined_node_left_idle_is_drained_then_terminated(store: Store) -> None:
    rig, provider, _, joined = _setup(store)
    (instance,) = provider.launch(OFFER, 1, user_data="", tags={})
    # its agent joins: the node enters the pool (registered in the store directly)
    node = Node("cloud-i-1", "cloud", "H100", 4, 81_920, 64_000, 262_144,
                price_per_gpu_hour=2.0, capacity_kind=CapacityKind.ON_DEMAND)
    with store.write() as c:
        P.sync_nodes(c, [{"name": "local"}, {"name": "cloud"}], [*rig.nodes, node])
    joined[instance.id] = node.id
    rig.step(n=100, dt=1.0)  # idle for less than the idle timeout (120 s)
    assert _audit(store) == []
    rig.step(n=60, dt=1.0)
    assert ("autoscale.drain", node.id) in _audit(store)
    assert ("autoscale.terminate", instance.id) in _audit(store)
    assert provider.terminated == [instance.id]
    with store.read() as c:
        assert next(n for n in P.list_nodes(c, include_inactive=True) if n.id == node.id).cordoned


def test_a_node_with_running_work_is_never_returned(store: Store) -> None:
    rig, provider, _, joined = _setup(store)
    (instance,) = provider.launch(OFFER, 1, user_data="", tags={})
    joined[instance.id] = "n0"  # say the instance is the rig's node n0, which runs work
    ids = [rig.submit(gpus=4, preemptible=False) for _ in range(2)]  # both nodes busy
    rig.step(n=300, dt=1.0)
    assert {rig.state(w) for w in ids} <= {"starting", "running"}
    assert provider.terminated == [] and _audit(store) == []


def test_rents_for_work_behind_a_nomination_not_for_the_nominee(store: Store) -> None:
    """A plan that holds room for a moved workload (a nomination) and tells another that the
    only room for it is that held room (`RoomNominated`): the autoscaler rents for the second
    (the nominee takes the room) and nothing for the nominee."""
    rig, provider, scaler, _ = _setup(store)
    rig.loop.autoscaler = None  # driven by hand with the plan below
    ids = [rig.submit(gpus=4) for _ in range(4)]  # two nodes of 4 GPUs: two wait
    rig.step(n=3)
    nominee, behind = sorted(w for w in ids if rig.state(w) == "pending")
    held = Nomination(nominee, (WorkerAssignment(0, "n0", (0, 1, 2, 3), 1000, 81_920),))
    plan = Plan(rig.clock.now(), pending={
        nominee: Reason(R.INSUFFICIENT_CAPACITY, "stale: read before its room was held"),
        behind: Reason(R.ROOM_NOMINATED, "the room that fits it is held")},
        nominations=(held,))
    live = rig.loop.live
    decisions = scaler.step(rig.clock.now(), plan, lambda: live.snapshot(rig.clock.now()).state,
                            lambda: stopping_on(live.stopping, live.assignments))
    assert decisions is not None
    assert [(x.count, x.workloads) for x in decisions.launches] == [(1, (behind,))]
    assert decisions.waiting[nominee].sentence.startswith("room is held for it")
    assert len(provider.launches) == 1


CHEAP = Offer("cloud", "h100x1", "H100", 1, 81_920, 16_000, 65_536, Decimal("1.00"),
              CapacityKind.ON_DEMAND, "r1", "r1a", "catalog:test@2026-01-01", "2026-01-01")


class TwoOffers(MemoryProvider):
    """Two offers; instances launched at the rig's clock (the join timeout counts from it)."""

    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__()
        self.now = now

    def offers(self) -> list[Offer]:
        return [OFFER, CHEAP]

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        out = [replace(i, launched_at=self.now()) for i in
               super().launch(offer, count, user_data=user_data, tags=tags)]
        self.live.update((i.id, i) for i in out)
        return out


def test_a_node_under_used_by_preemptible_work_is_replaced_make_before_break(
        store: Store) -> None:
    """A 4-GPU instance (8.00/h) runs one preemptible 1-GPU job: a 1-GPU instance (1.00/h) is
    launched for it; once that joined, the big node is drained, the job stopped with
    `NodeReplaced` (requeued, no restart spent) and started on the new node, and the big
    instance returned."""
    rig = Rig(store)
    provider, joined = TwoOffers(rig.clock.now), {}
    scaler = PoolAutoscaler(store, {"cloud": provider}, "c1", "https://corral.test",
                            lambda n: "cjt_test",
                            AutoscalerConfig(idle_timeout_s=600, replace_min_age_s=30),
                            every_s=10.0, joined=lambda ids: {i: joined[i] for i in ids
                                                              if i in joined})
    rig.loop.autoscaler = scaler
    (old,) = MemoryProvider.launch(provider, OFFER, 1, user_data="", tags={})  # at t=0
    joined[old.id] = "n0"  # the instance is the rig's node n0; n1 is not here yet
    with store.write() as c:
        P.set_cordoned(c, "n1", True)
    wid = rig.submit(gpus=1)
    rig.step(n=25)  # past the min age: the replacement is launched, nothing stopped yet
    assert [(count, rig.state(wid)) for count, _, _ in provider.launches[1:]] == [(1, "running")]
    new = next(i for i in provider.live if i != old.id)
    assert provider.live[new].offer == CHEAP
    with store.write() as c:  # the replacement's agent joins as n1
        P.set_cordoned(c, "n1", False)
    joined[new] = "n1"
    rig.step(n=40)
    rec = rig.get(wid)
    assert rec.state == "running" and rec.attempt == 1 and rec.restart_count == 0
    with store.read() as c:
        events = [e for e in W.list_events(c, workload_id=wid) if e.reason == "NodeReplaced"]
    assert events, "the job was stopped with NodeReplaced"
    state = rig.loop.live.snapshot(rig.clock.now()).state
    assert {a.node_id for w in state.workloads if w.id == wid for a in w.assignments} == {"n1"}
    actions = _audit(store)
    assert ("autoscale.drain", "n0") in actions and ("autoscale.terminate", old.id) in actions
    assert provider.terminated == [old.id]
