"""Rolling updates on the control loop (fake backend, manual clock): the new spec's replicas
start beside the old ones; old ones are drained only as new ones become ready (never fewer ready
than desired); a new spec whose replicas do not become ready in time is rolled back."""

from __future__ import annotations

from typing import Any

import pytest

from corral.control import lifecycle as L
from corral.control.probes import ReadinessProber
from corral.control.rollout import update
from corral.control.scaling import ScaleRefused, scale
from corral.control.services import service_status
from corral.control.submission import stored_form
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import workloads as W

from .rig import Rig

BASE = {"name": "svc", "queue": "q", "kind": "service", "gpus": 1, "cpu": 0.1, "memory": 64,
        "command": ["serve", "v1"], "replicas": 2, "restart_backoff": 1}


@pytest.fixture
def rig(store: Store) -> Rig:
    rig = Rig(store)
    rig.loop.rollout_deadline_s = 30.0
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
    rig.step(2)  # one new ready: one old drained
    assert (ready(rig, sid, "v1"), ready(rig, sid, "v2")) == (1, 1)
    rig.backend.start(f"{sid}-r3")
    rig.step(3)
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
