"""Retry policy (`restart_on`, `preemption_grace`) on the control loop: fake backend, manual clock.

Before restart_on, a job that exited 3 was restarted max_restarts (3) times, each event saying
it "resumes from its checkpoint" when it had none; `test_an_application_error_is_not_retried`
pins the new default."""

from __future__ import annotations

from typing import Any

import pytest

from corral.core.model import CapacityKind, Node
from corral.store import Store
from corral.store import pool as P

from .rig import Rig


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def _running(rig: Rig, **fields: Any) -> str:
    wid = rig.submit(**fields)
    rig.step(2)
    assert rig.state(wid) == "running"
    return wid


def test_an_application_error_is_not_retried(rig: Rig) -> None:
    wid = _running(rig, max_restarts=3)
    rig.backend.fail(wid, exit_code=3)
    rig.step(3)
    rec = rig.get(wid)
    assert (rec.state, rec.reason_code, rec.restart_count, rec.exit_code) == (
        "failed", "NotRetried", 0, 3)
    assert "{exit_code: [3]}" in rec.reason_message  # the fix is named
    assert len(rig.backend.launches) == 1


def test_a_listed_exit_code_is_retried_up_to_max_restarts(rig: Rig) -> None:
    wid = _running(rig, max_restarts=2, restart_backoff=1, restart_on=[{"exit_code": [3]}])
    for attempt in range(2):
        rig.backend.fail(wid, exit_code=3)
        rig.step()
        rec = rig.get(wid)
        assert (rec.state, rec.reason_code, rec.restart_count) == ("pending", "Restarting",
                                                                   attempt + 1)
        assert "resumes from its checkpoint" not in rec.reason_message
        assert "if it saved one" in rec.reason_message
        rig.clock.advance(10)
        rig.step(2)
        assert rig.state(wid) == "running"
    rig.backend.fail(wid, exit_code=3)
    rig.step()
    assert rig.get(wid).reason_code == "RestartsExhausted"


def test_an_unlisted_exit_code_fails_even_when_others_are_listed(rig: Rig) -> None:
    wid = _running(rig, restart_on=[{"exit_code": [3]}])
    rig.backend.fail(wid, exit_code=4)
    rig.step()
    assert (rig.state(wid), rig.get(wid).reason_code) == ("failed", "NotRetried")


def test_a_lost_node_is_retried_by_default(rig: Rig) -> None:
    wid = _running(rig, restart_backoff=1)
    node = rig.backend.launches[0].assignments[0].node_id
    rig.backend.lose_node(node)
    rig.step()
    rec = rig.get(wid)
    assert (rec.state, rec.reason_code, rec.restart_count) == ("pending", "Restarting", 1)
    assert "node failure" in rec.reason_message


def test_a_lost_node_is_not_retried_when_restart_on_leaves_it_out(rig: Rig) -> None:
    wid = _running(rig, restart_on=["preemption"])
    rig.backend.lose_node(rig.backend.launches[0].assignments[0].node_id)
    rig.step()
    rec = rig.get(wid)
    assert (rec.state, rec.reason_code) == ("failed", "NotRetried")
    assert "restart_on does not list node_failure" in rec.reason_message


def test_a_worker_lost_on_spot_is_a_spot_interruption(rig: Rig) -> None:
    spot = Node("s0", "local", "H100", 8, 81920, 64_000, 262_144,
                capacity_kind=CapacityKind.SPOT)
    with rig.store.write() as c:
        P.sync_nodes(c, [{"name": "local"}], [*rig.nodes, spot])
    rig.backend.world.nodes["s0"] = spot
    wid = _running(rig, gpus=8, capacity=["spot"], restart_on=["node_failure"])
    rig.backend.lose_node("s0")
    rig.step()
    rec = rig.get(wid)
    assert (rec.state, rec.reason_code) == ("failed", "NotRetried")
    assert "spot_interruption" in rec.reason_message


@pytest.mark.parametrize(("restart_on", "after"), [
    (None, "pending"),  # default: preemption is retried (and uses no restart)
    (["node_failure"], "failed"),
], ids=["default-requeues", "not-listed-fails"])
def test_preemption_follows_restart_on(rig: Rig, restart_on: list[str] | None,
                                       after: str) -> None:
    fields: dict[str, Any] = {} if restart_on is None else {"restart_on": restart_on}
    low = [_running(rig, name=f"low{i}", gpus=4, **fields) for i in range(2)]
    rig.submit(name="high", gpus=4, priority=10)
    rig.step(3)
    victim = next(rig.get(w) for w in low if rig.get(w).state != "running")
    assert victim.state == after
    assert victim.restart_count == 0
    if after == "failed":
        assert victim.reason_code == "NotRetried"
        assert "restart_on does not list preemption" in victim.reason_message


def test_preemption_grace_is_the_workloads_own(rig: Rig) -> None:
    long_grace = _running(rig, name="slow", gpus=4, preemption_grace=120)
    default = _running(rig, name="fast", gpus=4)
    from corral.control import cancel

    for wid in (long_grace, default):
        cancel(rig.store, wid, rig.clock.now(), "ann")
    rig.step()
    graces = {s.workload_id: s.grace_seconds for s in rig.backend.stops}
    assert graces == {long_grace: 120.0, default: 5.0}


@pytest.mark.parametrize(("stop", "cause"), [
    ("Preempt", "preemption"), ("Reclaim", "preemption"), ("Consolidate", "preemption"),
    ("NodeUnhealthy", "node_failure"), ("ProviderRemoved", "node_failure"),
    ("SpotInterrupted", "spot_interruption"),
])
def test_the_cause_of_a_stop_corral_requested(stop: str, cause: str) -> None:
    from corral.control.retry import cause_of_stop

    assert cause_of_stop(stop) == cause
