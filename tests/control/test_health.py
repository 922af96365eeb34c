"""Node health: engine liveness and GPU verdicts become cordons, drains, uncordons and joins,
each with an event; drained and lost gangs restart whole, from their checkpoint, elsewhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends.health import DeviceHealth, FakeGpuHealthProbe
from corral.control import ControlLoop, ControlSettings, Leadership
from corral.control.health import (
    DEVICE_CORDONED,
    DEVICE_UNCORDONED,
    NODE_CORDONED,
    NODE_DRAINED,
    NODE_JOINED,
    NODE_UNCORDONED,
    Cordon,
    Drain,
    HealthMonitor,
    Holding,
    Observation,
    Uncordon,
    decide,
    observe,
    probe_verdicts,
)
from corral.core.model import CapacityKind, Health, Node
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W

from .rig import Rig

H, D, U = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY


def node(node_id: str, health: Health = H, provider: str = "local") -> Node:
    return Node(node_id, provider, "H100", 4, 81920, 64_000, 262_144, health=health,
                capacity_kind=CapacityKind.OWNED)


# --- the pure decision ---------------------------------------------------------------------------

DECIDE_CASES = [
    pytest.param([node("a")], {"a": Observation(U, "xid 79")}, [Holding("j", 0, 3, "a")],
                 [Cordon("a", U, "xid 79"), Drain("j", 0, 3, "a", "xid 79")],
                 id="unhealthy-cordons-and-drains"),
    pytest.param([node("a")], {"a": Observation(D, "85 C")}, [Holding("j", 0, 3, "a")],
                 [Cordon("a", D, "85 C")], id="degraded-cordons-keeps-work"),
    pytest.param([node("a", U)], {"a": Observation(U, "still bad")}, [], [],
                 id="already-cordoned-nothing-to-do"),
    pytest.param([node("a", U)], {"a": Observation(H, "alive")}, [],
                 [Uncordon("a", "alive")], id="healthy-again-uncordons"),
    pytest.param([node("a", D)], {"a": Observation(U, "lost")}, [],
                 [Cordon("a", U, "lost")], id="degraded-to-unhealthy"),
    pytest.param([node("a")], {}, [Holding("j", 0, 1, "a")], [], id="no-news-no-action"),
    pytest.param([node("a"), node("b")], {"a": Observation(U, "x"), "b": Observation(U, "y")},
                 [Holding("j", 0, 1, "a"), Holding("j", 0, 1, "b")],
                 [Cordon("a", U, "x"), Cordon("b", U, "y"), Drain("j", 0, 1, "a", "x")],
                 id="a-gang-on-two-sick-nodes-drains-once"),
]


@pytest.mark.parametrize(("known", "observed", "holding", "expected"), DECIDE_CASES)
def test_decide(known, observed, holding, expected) -> None:
    assert decide(known, observed, holding) == expected


def test_uncordon_waits_for_recover_after() -> None:
    known, seen = [node("a", U)], {"a": Observation(H, "alive")}
    assert decide(known, seen, [], healthy_since={"a": 100.0}, now=105.0,
                  recover_after_s=10) == []
    assert decide(known, seen, [], healthy_since={"a": 100.0}, now=110.0,
                  recover_after_s=10) == [Uncordon("a", "alive")]


OBSERVE_CASES = [
    pytest.param([node("a")], {}, [node("a"), node("b")], {"a": H, "b": U},
                 id="known-node-missing-from-inventory-is-unhealthy"),
    pytest.param([node("a", U)], {}, [node("a")], {"a": U}, id="engine-reports-lost"),
    pytest.param([node("a")], {"a": "xid"}, [node("a")], {"a": U}, id="gpu-verdict-wins"),
    pytest.param(None, {"a": "xid"}, [node("a")], {"a": U}, id="gpu-only"),
    pytest.param([node("a")], {}, [node("a"), node("z", provider="other")], {"a": H},
                 id="other-providers-untouched"),
]


@pytest.mark.parametrize(("inventory", "gpu", "known", "expected"), OBSERVE_CASES)
def test_observe(inventory, gpu, known, expected) -> None:
    from corral.backends.health import NodeVerdict

    verdicts = {k: NodeVerdict(U, v) for k, v in gpu.items()}
    seen = observe(inventory, verdicts, known, {"local"})
    assert {k: o.health for k, o in seen.items()} == expected


healths = st.sampled_from([H, D, U])


@given(st.dictionaries(st.sampled_from("abcd"), st.tuples(healths, healths), min_size=1),
       st.lists(st.tuples(st.sampled_from("wxyz"), st.sampled_from("abcd")), max_size=8))
def test_decide_converges_and_never_drains_work_on_usable_nodes(states, placed) -> None:
    known = [node(n, stored) for n, (stored, _) in sorted(states.items())]
    observed = {n: Observation(seen, "r") for n, (_, seen) in states.items()}
    holding = [Holding(w, 0, 1, n) for w, n in placed if n in states]
    actions = decide(known, observed, holding)
    drained = [a for a in actions if isinstance(a, Drain)]
    assert all(observed[a.node_id].health == U for a in drained)
    assert len({a.workload_id for a in drained}) == len(drained)
    # Apply the cordons/uncordons and drop drained work: deciding again changes nothing.
    after = {a.node_id: a.health for a in actions if isinstance(a, Cordon)}
    after.update({a.node_id: H for a in actions if isinstance(a, Uncordon)})
    known2 = [dataclasses.replace(n, health=after.get(n.id, n.health)) for n in known]
    left = [h for h in holding if h.workload_id not in {a.workload_id for a in drained}]
    assert [a for a in decide(known2, observed, left) if not isinstance(a, Drain)] == []


# --- in the control loop (fake backend, manual clock) --------------------------------------------


def loop_with(rig: Rig, monitor: HealthMonitor) -> ControlLoop:
    return ControlLoop(rig.store, rig.backend, clock=rig.clock,
                       settings=ControlSettings(stop_grace_s=5.0),
                       leadership=Leadership(rig.store, ttl_s=15.0), health=monitor)


def node_events(store: Store) -> list[tuple[str, str, str | None]]:
    with store.read() as c:
        return [(e.reason, e.subject, e.workload_id) for e in W.list_events(c) if e.kind == "node"]


def health_of(store: Store, node_id: str) -> Health:
    with store.read() as c:
        return next(n.health for n in P.list_nodes(c) if n.id == node_id)


def where(rig: Rig, wid: str) -> set[str]:
    rec = rig.get(wid)
    with rig.store.read() as c:
        return {a.node_id for a in W.assignments_of(c, [(wid, rec.attempt)])[(wid, rec.attempt)]}


def test_a_lost_node_is_cordoned_and_the_gang_restarts_elsewhere(store: Store,
                                                                  tmp_path: Path) -> None:
    rig = Rig(store)
    rig.loop = loop_with(rig, HealthMonitor(store, rig.backend))
    ckpt = tmp_path / "j"
    wid = rig.submit(workers=2, gpus=1, max_restarts=2, restart_backoff=0,
                     checkpoint_dir=str(ckpt))
    rig.step(2)
    ckpt.mkdir()
    (ckpt / "ckpt-00000040").write_text("saved by the gang before its node was lost")
    victim = sorted(where(rig, wid))[0]
    rig.backend.lose_node(victim)
    rig.step(4)
    rec = rig.get(wid)
    assert (rec.state, rec.attempt, rec.restart_count) == ("running", 1, 1)
    assert victim not in where(rig, wid)
    relaunch = rig.backend.launches[-1]
    assert (relaunch.resume_from, relaunch.restart_count, relaunch.workers) == (
        str(ckpt / "ckpt-00000040"), 1, 2)
    assert health_of(store, victim) == U
    assert (NODE_CORDONED, victim, None) in node_events(store)


def test_an_unhealthy_gpu_drains_with_the_contract_then_the_node_returns(store: Store) -> None:
    rig = Rig(store)
    probes = {"n0": FakeGpuHealthProbe([DeviceHealth(i, 0.0) for i in range(4)]),
              "n1": FakeGpuHealthProbe([DeviceHealth(i, 0.0) for i in range(4)])}
    rig.loop = loop_with(rig, HealthMonitor(store, rig.backend,
                                            gpu_verdicts=probe_verdicts(probes)))
    wid = rig.submit(gpus=4, max_restarts=2, restart_backoff=0)
    rig.step(2)
    sick = next(iter(where(rig, wid)))
    probes[sick].devices[1] = DeviceHealth(1, 0.0, xids=(79,))
    rig.step()
    assert rig.get(wid).stop_reason == "NodeUnhealthy"
    assert rig.backend.stops[-1].grace_seconds == 5.0  # the preemption contract, not a kill
    assert (NODE_DRAINED, sick, wid) in node_events(store)
    rig.step(3)
    rec = rig.get(wid)
    # a drain is the node's failure, not the workload's: a new attempt, no restart used up
    assert (rec.state, rec.attempt, rec.restart_count) == ("running", 1, 0)
    # only GPU 1 is out (`test_device_cordons.py`): 3 left there, so the 4-GPU job moved
    assert where(rig, wid) == {"n0", "n1"} - {sick}
    assert health_of(store, sick) == H
    probes[sick].devices[1] = DeviceHealth(1, 0.0)
    rig.step()
    reasons = [r for r, subject, _ in node_events(store) if subject == sick]
    assert reasons == [DEVICE_CORDONED, NODE_DRAINED, DEVICE_UNCORDONED]


def test_a_check_for_the_whole_node_cordons_the_node(store: Store) -> None:
    rig = Rig(store)
    probes = {"n0": FakeGpuHealthProbe([DeviceHealth(i, 0.0) for i in range(4)]),
              "n1": FakeGpuHealthProbe([DeviceHealth(i, 0.0) for i in range(4)])}
    rig.loop = loop_with(rig, HealthMonitor(store, rig.backend, gpu_verdicts=probe_verdicts(
        probes, expected={"n0": 4, "n1": 4})))
    wid = rig.submit(gpus=1, max_restarts=2, restart_backoff=0)
    rig.step(2)
    sick = next(iter(where(rig, wid)))
    del probes[sick].devices[3]  # the driver no longer sees a GPU: which one is unknown
    rig.step()
    assert health_of(store, sick) == U and rig.get(wid).stop_reason == "NodeUnhealthy"
    probes[sick].devices.append(DeviceHealth(3, 0.0))
    rig.step()
    assert health_of(store, sick) == H
    reasons = [r for r, subject, _ in node_events(store) if subject == sick]
    assert reasons == [NODE_CORDONED, NODE_DRAINED, NODE_UNCORDONED]


def test_a_new_node_offered_by_the_backend_joins_the_pool(store: Store) -> None:
    rig = Rig(store)
    rig.loop = loop_with(rig, HealthMonitor(store, rig.backend))
    rig.backend.world.nodes["n9"] = node("n9")
    rig.step()
    with store.read() as c:
        assert "n9" in {n.id for n in P.list_nodes(c)}
    assert node_events(store) == [(NODE_JOINED, "n9", None)]
    rig.step()
    assert node_events(store) == [(NODE_JOINED, "n9", None)]  # once


def test_an_operator_cordon_survives_recovery(store: Store) -> None:
    rig = Rig(store)
    monitor = HealthMonitor(store, rig.backend)
    rig.loop = loop_with(rig, monitor)
    with store.write() as c:
        P.set_cordoned(c, "n1", True)
    rig.backend.set_node_health("n1", U)
    rig.step()
    rig.backend.set_node_health("n1", H)
    rig.step()
    with store.read() as c:
        n1 = next(n for n in P.list_nodes(c) if n.id == "n1")
    assert (n1.health, n1.cordoned) == (H, True)


def test_an_unreachable_engine_is_not_a_node_failure(store: Store) -> None:
    from corral.backends.errors import BackendUnavailable

    rig = Rig(store)

    class Down(type(rig.backend)):  # type: ignore[misc]
        def inventory(self):
            raise BackendUnavailable("GCS away")

    backend = Down(rig.nodes, world=rig.world)
    assert HealthMonitor(store, backend).step(0.0) == []
    assert {health_of(store, n.id) for n in rig.nodes} == {H}

