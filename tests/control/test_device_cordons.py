"""One bad GPU is cordoned, not its node: the node keeps placing work on its other GPUs, work
on the bad one is drained with the GPU in the reason, and the GPU returns once healthy. The
pure parts first, then the control loop on the fake backend with a fake GPU probe."""

from __future__ import annotations

import dataclasses

import pytest

from corral.backends.health import Check, DeviceHealth, FakeGpuHealthProbe, NodeVerdict, Severity
from corral.control import ControlLoop, ControlSettings, Leadership
from corral.control import device_cordons as DC
from corral.control.health import (
    DEVICE_CORDONED,
    DEVICE_UNCORDONED,
    NODE_DRAINED,
    DeviceCordon,
    Drain,
    HealthMonitor,
    Holding,
    decide_devices,
    device_reasons,
    probe_verdicts,
)
from corral.core.model import (
    CapacityKind,
    Health,
    Node,
    Nomination,
    WorkerAssignment,
    WorkerResources,
    Workload,
    WorkloadState,
)
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.nominations import load_nominations

from .rig import Rig

H, D, U = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY
ECC = Check("ecc-uncorrected", Severity.DRAIN, "2 uncorrected ECC errors", 3)
HOT = Check("temperature", Severity.WARN, "88 C >= 85 C", 1)
MISSING = Check("missing", Severity.DRAIN, "expected 8 GPUs, the driver sees 7")
ONLY = Check("ecc-uncorrected", Severity.DRAIN, "e", 0)


def node(labels: dict[str, str] | None = None, gpus: int = 8) -> Node:
    return Node("n1", "local", "H100", gpus, 81920, 64_000, 262_144,
                capacity_kind=CapacityKind.OWNED, labels=tuple(sorted((labels or {}).items())))


SPLIT_CASES = [
    pytest.param(NodeVerdict(U, "gpu 3: ecc", checks=(ECC,)), 8,
                 (NodeVerdict(H, "7 of 8 GPUs healthy; gpu 3 cordoned"),
                  {3: (U, "gpu 3: 2 uncorrected ECC errors")}), id="one-device-of-eight"),
    pytest.param(NodeVerdict(U, "x", checks=(ECC, HOT, MISSING)), 8,
                 (NodeVerdict(U, MISSING.reason, checks=(MISSING,)),
                  {1: (D, "gpu 1: 88 C >= 85 C"), 3: (U, "gpu 3: 2 uncorrected ECC errors")}),
                 id="node-wide-check-stays-with-the-node"),
    pytest.param(NodeVerdict(U, "gpu 0: e", checks=(ONLY,)), 1,
                 (NodeVerdict(U, "gpu 0: e", checks=(ONLY,)), {}),
                 id="the-only-gpu-sick-cordons-the-node"),
    pytest.param(NodeVerdict(H, "all 8 GPUs healthy"), 8,
                 (NodeVerdict(H, "all 8 GPUs healthy"), {}), id="healthy"),
]


@pytest.mark.parametrize(("verdict", "gpus", "expected"), SPLIT_CASES)
def test_split_verdict(verdict: NodeVerdict, gpus: int, expected: object) -> None:
    assert DC.split_verdict(verdict, gpus) == expected


def running(wid: str, devices: tuple[int, ...], milli: int = 1000) -> Workload:
    return Workload(wid, "q", WorkerResources(gpus=1), state=WorkloadState.RUNNING,
                    assignments=(WorkerAssignment(0, "n1", devices, milli, 81920 * milli
                                                  // 1000),))


def test_device_holds_take_what_is_free_of_each_cordoned_gpu() -> None:
    n = node({DC.LABEL: "3,5,9"})  # 9 is past the node's 8 GPUs: ignored
    holds = DC.device_holds([n, dataclasses.replace(node(), id="n2")],
                            [running("a", (3,), 250), running("b", (5,))])
    assert holds == (Nomination("gpu-cordon:n1:3", (WorkerAssignment(0, "n1", (3,), 750,
                                                                     81920 - 20480),)),)
    assert DC.device_holds([node()], [running("a", (3,))]) == ()


def test_decide_devices_cordons_drains_and_returns() -> None:
    sick = {"n1": {3: (U, "gpu 3: ecc"), 1: (D, "gpu 1: hot")}}
    holding = [Holding("on3", 0, 7, "n1", (2, 3)), Holding("on1", 0, 2, "n1", (1,)),
               Holding("on0", 0, 1, "n1", (0,))]
    assert decide_devices([node()], sick, holding) == [
        DeviceCordon("n1", (1, 3), ((1, "gpu 1: hot"), (3, "gpu 3: ecc")), ()),
        Drain("on3", 0, 7, "n1", "gpu 3: ecc", device=3)]  # a warning keeps its work
    cordoned = node({DC.LABEL: "1,3"})
    assert decide_devices([cordoned], sick, []) == []  # idempotent
    assert decide_devices([cordoned], {"n1": {}}, [], healthy_since={"n1": {1: 10, 3: 10}},
                          now=15, recover_after_s=10) == []  # not healthy long enough
    assert decide_devices([cordoned], {"n1": {}}, [], healthy_since={"n1": {1: 10, 3: 12}},
                          now=20, recover_after_s=10) == [DeviceCordon("n1", (3,), (), (1, 3))]
    assert decide_devices([cordoned], {}, holding) == []  # no verdict: nothing changes
    assert decide_devices([node()], sick, holding, drained=["on3"])[1:] == []


# --- in the control loop (fake backend, manual clock) --------------------------------------------


def loop_with(rig: Rig, monitor: HealthMonitor) -> ControlLoop:
    return ControlLoop(rig.store, rig.backend, clock=rig.clock,
                       settings=ControlSettings(stop_grace_s=5.0),
                       leadership=Leadership(rig.store, ttl_s=15.0), health=monitor)


def devices_of(rig: Rig, wid: str) -> set[tuple[str, int]]:
    rec = rig.get(wid)
    with rig.store.read() as c:
        placed = W.assignments_of(c, [(wid, rec.attempt)])[(wid, rec.attempt)]
    return {(a.node_id, d) for a in placed for d in a.devices}


def node_events(store: Store) -> list[tuple[str, str, str | None, str]]:
    with store.read() as c:
        return [(e.reason, e.subject, e.workload_id, e.message) for e in W.list_events(c)
                if e.kind == "node"]


def test_a_bad_gpu_is_taken_out_alone_and_comes_back(store: Store) -> None:
    rig = Rig(store)  # n0 and n1, 4 GPUs each
    probes = {n: FakeGpuHealthProbe([DeviceHealth(i, 0.0) for i in range(4)])
              for n in ("n0", "n1")}
    rig.loop = loop_with(rig, HealthMonitor(store, rig.backend,
                                            gpu_verdicts=probe_verdicts(probes)))
    jobs = [rig.submit(name=f"j{i}", max_restarts=2, restart_backoff=0) for i in range(8)]
    rig.step(2)
    assert all(rig.state(j) == "running" for j in jobs)
    victim = next(j for j in jobs if ("n1", 2) in devices_of(rig, j))
    others = [j for j in jobs if j != victim]

    probes["n1"].devices[2] = DeviceHealth(2, 0.0, ecc_uncorrected_volatile=2)
    rig.step()
    # only the job on n1's GPU 2 leaves, with the preemption contract and the GPU named
    assert rig.get(victim).stop_reason == "NodeUnhealthy"
    assert rig.backend.stops[-1].grace_seconds == 5.0
    assert all(rig.get(j).stop_reason is None for j in others)
    drained = [m for r, s, w, m in node_events(store) if r == NODE_DRAINED and w == victim]
    assert drained and drained[0].startswith("gpu 2 of node n1 is unhealthy (gpu 2: 2 "
                                             "uncorrected ECC errors")
    with store.read() as c:
        n1 = next(n for n in P.list_nodes(c) if n.id == "n1")
        assert (n1.health, DC.cordoned_devices(n1)) == (H, (2,))  # the node stays in service
        assert "gpu 2: 2 uncorrected ECC errors" in device_reasons(c, [n1])["n1"]

    rig.step(3)
    # the drained job waits: the only free GPU is the cordoned one
    assert rig.state(victim) == "pending"
    rig.backend.finish(others[0])  # one GPU frees elsewhere: the victim takes it
    freed = devices_of(rig, others[0])
    rig.step(3)
    assert rig.state(victim) == "running" and devices_of(rig, victim) == freed
    assert ("n1", 2) not in freed

    late = rig.submit(name="late")  # one more one-GPU job: only n1's GPU 2 is free, held
    rig.step(2)
    assert rig.state(late) == "pending"
    said = rig.get(late)  # why it waits names the GPU, not a stand-in nominee
    assert (said.reason_code, said.reason_message) == (DC.GPU_CORDONED, (
        "needs 1 GPU (0.1 CPU, 64 MiB RAM); it would fit on gpu 2 of n1, cordoned for its "
        "health (corral nodes says why)"))
    probes["n1"].devices[2] = DeviceHealth(2, 0.0)  # repaired (reset): it returns
    rig.step(3)
    assert rig.state(late) == "running" and devices_of(rig, late) == {("n1", 2)}
    reasons = [r for r, s, _, _ in node_events(store) if s == "n1"]
    assert reasons == [DEVICE_CORDONED, NODE_DRAINED, DEVICE_UNCORDONED]
    with store.read() as c:
        assert load_nominations(c, rig.clock.now() - 1) == ()  # stand-ins are never stored
