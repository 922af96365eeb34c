"""Rolling updates on the control loop (fake backend, manual clock): the new spec's replicas
start beside the old ones; old ones are drained only as new ones become ready (never fewer ready
than desired); a new spec whose replicas do not become ready in time is rolled back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from corral.control import lifecycle as L
from corral.control.endpoints import port_of
from corral.control.probes import ReadinessProber
from corral.control.rollout import update
from corral.control.scaling import ScaleRefused, scale
from corral.control.services import service_status
from corral.control.submission import stored_form
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import workloads as W
from corral.testing.replica_ports import ReplicaListeners

from .rig import Rig

# probes reach 127.0.0.1:20000+seq, where another module's real replicas (test_service_e2e, the
# browser service pages) listen: with them on one worker
pytestmark = pytest.mark.xdist_group("replica-ports")

BASE = {"name": "svc", "queue": "q", "kind": "service", "gpus": 1, "cpu": 0.1, "memory": 64,
        "command": ["serve", "v1"], "replicas": 2, "restart_backoff": 1}


class Ports(ReplicaListeners):
    """Real TCP listeners for replicas' ports (the fake backend's replicas open none): without a
    readiness probe, a new replica counts for a rollout once its port accepts a connection. Each
    stands in on a kernel-given port (corral.testing.replica_ports): the replica ports
    themselves are the same in every test store, so other runs on the machine held them too."""

    def open_replicas(self, rig: Rig, *replica_ids: str) -> None:
        self.open(*(port_of(rig.get(rid)) for rid in replica_ids))

    def open_all(self, rig: Rig, sid: str) -> None:
        with rig.store.read() as c:
            self.open_replicas(rig, *(r.id for r in W.list_workloads(c, group_id=sid, limit=100)))


@pytest.fixture
def ports() -> Iterator[Ports]:
    p = Ports()
    yield p
    p.close()


@pytest.fixture
def rig(store: Store, ports: Ports) -> Rig:
    rig = Rig(store)
    rig.loop.rollout_deadline_s = 30.0
    rig.loop.probes.connect = ports.connect
    step = rig.step

    def listening_step(n: int = 1, dt: float = 1.0) -> None:  # every replica serves its port
        for _ in range(n):
            with rig.store.read() as c:
                ids = [r.id for r in W.list_workloads(c, limit=1000) if r.kind == "service"]
            ports.open_replicas(rig, *ids)
            step(1, dt)
    rig.step = listening_step  # type: ignore[method-assign]
    return rig


def submit(rig: Rig, **fields: Any) -> str:
    spec = WorkloadSpec.model_validate({**BASE, **fields})
    return rig.submissions.submit(spec, "ann", rig.clock.now())[0].group_id


def roll(rig: Rig, sid: str, **fields: Any) -> None:
    spec = WorkloadSpec.model_validate({**BASE, **fields})
    update(rig.store, sid, spec, stored_form(spec), rig.clock.now(), "ann")


def replicas(rig: Rig, sid: str) -> dict[int, tuple[str, str, str]]:
    """index -> (workload state, replica state, its command's version)."""
    from corral.control.services import replica_state

    with rig.store.read() as c:
        s = service_status(sid, W.list_workloads(c, group_id=sid, limit=100))
    return {i: (r.state, replica_state(r), r.spec["command"][1]) for i, r in s.replicas}


def ready(rig: Rig, sid: str, version: str) -> int:
    return sum(1 for _, state, v in replicas(rig, sid).values()
               if state == "ready" and v == version)


def test_an_update_replaces_old_replicas_only_as_new_ones_become_ready(rig: Rig) -> None:
    rig.backend.auto_start = False
    sid = submit(rig)
    rig.step(2)
    for i in range(2):
        rig.backend.start(f"{sid}-r{i}")
    rig.step()
    assert ready(rig, sid, "v1") == 2
    roll(rig, sid, command=["serve", "v2"])
    rig.step(2)  # new replicas launched, not running yet: both old ones keep serving
    assert (ready(rig, sid, "v1"), ready(rig, sid, "v2")) == (2, 0)
    rig.backend.start(f"{sid}-r2")
    rig.step(3)  # running, its port accepts (ReplicaReady), then one old drained
    assert (ready(rig, sid, "v1"), ready(rig, sid, "v2")) == (1, 1)
    rig.backend.start(f"{sid}-r3")
    rig.step(4)
    assert (ready(rig, sid, "v1"), ready(rig, sid, "v2")) == (0, 2)
    states = replicas(rig, sid)
    assert {states[0][0], states[1][0]} == {"cancelled"}
    assert rig.get(f"{sid}-r0").reason_code == L.REPLACED
    with rig.store.read() as c:
        s = service_status(sid, W.list_workloads(c, group_id=sid, limit=100))
    assert (s.desired, s.ready, s.state) == (2, 2, "serving")


def test_a_new_spec_that_never_becomes_ready_is_rolled_back(rig: Rig) -> None:
    rig.loop.probes = ReadinessProber(rig.store, "local", get=lambda url, timeout: False)
    sid = submit(rig)
    rig.step(2)
    # the new spec's replicas run but never pass their probe (a broken model, a wrong port)
    roll(rig, sid, command=["serve", "broken"], readiness={"path": "/healthz", "period_s": 1})
    rig.step(10)
    assert ready(rig, sid, "v1") == 2  # the old ones keep serving meanwhile
    assert {replicas(rig, sid)[i][:2] for i in (2, 3)} == {("running", "starting")}
    rig.clock.advance(30)
    rig.step(3)
    states = replicas(rig, sid)
    assert {states[i][0] for i in (2, 3)} == {"cancelled"}
    assert rig.get(f"{sid}-r2").reason_code == L.ROLLED_BACK
    assert "rolled back: 0 of 2" in rig.get(f"{sid}-r2").reason_message
    assert ready(rig, sid, "v1") == 2
    scale(rig.store, sid, 3, rig.clock.now(), "ann")  # scaling after a rollback: the old spec
    rig.step(3)
    assert ready(rig, sid, "v1") == 3


def test_a_rollback_restores_old_replicas_already_replaced(rig: Rig) -> None:
    sid = submit(rig)
    rig.step(2)
    roll(rig, sid, command=["serve", "flaky"])
    rig.step(3)
    assert (ready(rig, sid, "v1"), ready(rig, sid, "flaky")) == (0, 2)  # all new ready: done
    roll(rig, sid, command=["serve", "v3"])
    rig.backend.auto_start = False
    rig.step(3)
    rig.backend.start(f"{sid}-r4")
    rig.step(2)
    assert (ready(rig, sid, "flaky"), ready(rig, sid, "v3")) == (1, 1)  # one replaced
    rig.backend.auto_start = True  # what launches from now on starts; r5 never does
    rig.clock.advance(30)
    rig.step(4)
    assert (ready(rig, sid, "flaky"), ready(rig, sid, "v3")) == (2, 0)


@pytest.mark.parametrize(("fields", "field"), [
    ({"queue": "other"}, "queue"),
    ({"name": "renamed"}, "name"),
    ({}, "spec"),
], ids=["queue", "name", "unchanged"])
def test_an_update_that_is_not_one_is_refused_naming_the_field(
        rig: Rig, fields: dict[str, Any], field: str) -> None:
    sid = submit(rig)
    with pytest.raises(ScaleRefused) as e:
        roll(rig, sid, **fields)
    assert e.value.field == field


def test_no_second_update_or_scale_while_one_rolls_out(rig: Rig) -> None:
    rig.backend.auto_start = False
    sid = submit(rig)
    roll(rig, sid, command=["serve", "v2"])
    with pytest.raises(ScaleRefused) as e:
        roll(rig, sid, command=["serve", "v3"])
    assert e.value.conflict
    with pytest.raises(ScaleRefused) as e:
        scale(rig.store, sid, 3, rig.clock.now(), "ann")
    assert e.value.conflict


def test_without_a_probe_a_new_replica_counts_once_its_port_accepts_tcp(
        store: Store, ports: Ports) -> None:
    rig = Rig(store)  # no listeners opened for it: the test opens them one by one
    rig.loop.rollout_deadline_s = 30.0
    rig.loop.probes.connect = ports.connect
    sid = submit(rig)
    rig.step(2)
    ports.open_replicas(rig, f"{sid}-r0", f"{sid}-r1")
    rig.step(2)
    assert rig.get(f"{sid}-r0").reason_code == "ReplicaReady"
    assert "accepts TCP connections" in rig.get(f"{sid}-r0").reason_message
    roll(rig, sid, command=["serve", "v2"])
    rig.step(4)  # the new processes run but open no port: no old replica is drained
    assert {replicas(rig, sid)[i][0] for i in (2, 3)} == {"running"}
    assert (ready(rig, sid, "v1"), ready(rig, sid, "v2")) == (2, 2)
    assert {replicas(rig, sid)[i][0] for i in (0, 1)} == {"running"}
    ports.open_replicas(rig, f"{sid}-r2")  # one new replica's port accepts: one old one goes
    rig.step(3)
    assert rig.get(f"{sid}-r2").reason_code == "ReplicaReady", replicas(rig, sid)
    assert sorted(replicas(rig, sid)[i][1] for i in (0, 1)) in (
        ["draining", "ready"], ["ended", "ready"]), replicas(rig, sid)
