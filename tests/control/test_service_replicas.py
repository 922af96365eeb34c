"""Service replicas on the control loop (fake backend, manual clock): a replica restarts on any
exit, never succeeds nor runs out of restarts, backs off when it crash-loops, and the service's
status (desired / ready / starting) is derived from its replicas' rows."""

from __future__ import annotations

from typing import Any

import pytest

from corral.control import ControlLoop, ControlSettings, Leadership, cancel
from corral.control import lifecycle as L
from corral.control.endpoints import PORT_BASE, PORT_SPAN, live_routes
from corral.control.health import HealthMonitor
from corral.control.probes import ReadinessProber
from corral.control.replicas import REPLICA_RESTARTING, STABLE_S
from corral.control.services import REPLICA_NOT_READY, REPLICA_READY, service_status
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import workloads as W

from .rig import Rig


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def submit_service(rig: Rig, **fields: Any) -> str:
    spec = {"name": "svc", "queue": "q", "kind": "service", "gpus": 1, "cpu": 0.1,
            "memory": 64, "command": ["serve"], "replicas": 2, "restart_backoff": 5, **fields}
    recs = rig.submissions.submit(WorkloadSpec.model_validate(spec), "ann", rig.clock.now())
    return recs[0].group_id


def status(rig: Rig, sid: str) -> tuple[int, int, int, str]:
    with rig.store.read() as c:
        s = service_status(sid, W.list_workloads(c, group_id=sid, limit=1000))
    return s.desired, s.ready, s.starting, s.state


@pytest.mark.parametrize("exit_code", [0, 1, -9], ids=["exit-0", "exit-1", "killed"])
def test_a_replica_comes_back_after_any_exit(rig: Rig, exit_code: int) -> None:
    sid = submit_service(rig)
    r0 = f"{sid}-r0"
    rig.step(2)
    assert status(rig, sid) == (2, 2, 0, "serving")
    rig.backend.finish(r0, exit_code=exit_code)
    rig.step()
    rec = rig.get(r0)
    assert (rec.state, rec.reason_code, rec.attempt) == ("pending", REPLICA_RESTARTING, 1)
    assert "a service is kept serving" in rec.reason_message
    assert "restarting in 5s" in rec.reason_message
    assert status(rig, sid) == (2, 1, 1, "degraded")
    rig.clock.advance(5)
    rig.step(2)
    assert rig.state(r0) == "running"
    assert status(rig, sid) == (2, 2, 0, "serving")
    assert ("running", "succeeded", "Completed") not in rig.transitions(r0)


def test_a_crash_looping_replica_backs_off_and_never_fails(rig: Rig) -> None:
    sid = submit_service(rig, replicas=1, max_restarts=1)
    r0 = f"{sid}-r0"
    waits = []
    for _ in range(5):  # more crashes than max_restarts: a replica has no such limit
        rig.step(2)
        assert rig.state(r0) == "running"
        rig.backend.fail(r0, exit_code=2)
        rig.step()
        rec = rig.get(r0)
        assert rec.state == "pending"
        waits.append(rec.not_before - rig.clock.now() + 1)  # step() advanced the clock by 1
        rig.clock.advance(rec.not_before - rig.clock.now())
    assert waits == [5, 10, 20, 40, 80]
    assert "crash loop" in rig.get(r0).reason_message


def test_a_replica_that_served_long_starts_its_backoff_over(rig: Rig) -> None:
    sid = submit_service(rig, replicas=1)
    r0 = f"{sid}-r0"
    for _ in range(3):  # a streak of quick crashes
        rig.step(2)
        rig.backend.fail(r0, exit_code=2)
        rig.step()
        rig.clock.advance(rig.get(r0).not_before - rig.clock.now())
    rig.step(2)
    rig.clock.advance(STABLE_S)  # then it serves a long while
    rig.backend.fail(r0, exit_code=2)
    rig.step()
    rec = rig.get(r0)
    assert (rec.restart_count, rec.not_before - rig.clock.now() + 1) == (1, 5)


def test_a_replica_lost_with_its_node_is_replaced_elsewhere(rig: Rig) -> None:
    rig.loop = ControlLoop(rig.store, rig.backend, clock=rig.clock,
                           settings=ControlSettings(stop_grace_s=5.0),
                           leadership=Leadership(rig.store, ttl_s=15.0),
                           health=HealthMonitor(rig.store, rig.backend))
    sid = submit_service(rig, replicas=2)
    rig.step(2)
    on = {ls.workload_id: ls.assignments[0].node_id for ls in rig.backend.launches}
    victim = on[f"{sid}-r0"]
    rig.backend.lose_node(victim)
    rig.step()
    lost = [rid for rid, node in on.items() if node == victim]
    assert {rig.get(rid).reason_code for rid in lost} == {REPLICA_RESTARTING}
    rig.clock.advance(5)
    rig.step(3)
    assert status(rig, sid) == (2, 2, 0, "serving")
    assert all(ls.assignments[0].node_id != victim for ls in rig.backend.launches[2:])


def test_cancelling_every_replica_ends_the_service(rig: Rig) -> None:
    sid = submit_service(rig)
    rig.step(2)
    for rid in (f"{sid}-r0", f"{sid}-r1"):
        cancel(rig.store, rid, rig.clock.now(), "ann")
    assert status(rig, sid) == (0, 0, 0, "stopping")
    rig.step(2)
    assert status(rig, sid) == (0, 0, 0, "ended")
    assert {rig.state(f"{sid}-r{i}") for i in range(2)} == {"cancelled"}


def test_each_replica_is_told_its_port_and_has_a_route(rig: Rig) -> None:
    sid = submit_service(rig, env={"MODEL": "tiny"})
    rig.step(2)
    env = {ls.workload_id: ls.env for ls in rig.backend.launches}
    ports = {wid: e["PORT"] for wid, e in env.items()}
    assert all(e["CORRAL_PORT"] == e["PORT"] and e["MODEL"] == "tiny" for e in env.values())
    assert len(set(ports.values())) == 2
    found = live_routes(rig.loop.live, "local")
    assert [(r.replica, r.url, r.state) for r in found] == [
        (f"{sid}-r{i}", f"http://127.0.0.1:{ports[f'{sid}-r{i}']}", "ready") for i in range(2)]
    assert all(PORT_BASE <= int(p) < PORT_BASE + PORT_SPAN for p in ports.values())
    rig.backend.fail(f"{sid}-r0", exit_code=1)  # a restarted replica keeps its address
    rig.step()
    rig.clock.advance(5)
    rig.step(2)
    assert rig.backend.launches[-1].env["PORT"] == ports[f"{sid}-r0"]


def test_a_job_is_told_no_port(rig: Rig) -> None:
    rig.submit()
    rig.step(2)
    assert "PORT" not in rig.backend.launches[-1].env


class FakeProbe:
    """Answers readiness probes: the URLs that pass, and every URL asked."""

    def __init__(self) -> None:
        self.passing: set[str] = set()
        self.asked: list[str] = []

    def __call__(self, url: str, timeout_s: float) -> bool:
        self.asked.append(url)
        return url in self.passing


def test_a_replica_takes_traffic_only_once_its_readiness_probe_passes(rig: Rig) -> None:
    probe = FakeProbe()
    rig.loop.probes = ReadinessProber(rig.store, "local", get=probe)
    sid = submit_service(rig, replicas=1, readiness={
        "path": "/health", "period_s": 2, "failure_threshold": 2, "success_threshold": 2})
    r0 = f"{sid}-r0"
    rig.step(3)
    assert rig.state(r0) == "running"
    assert status(rig, sid) == (1, 0, 1, "starting")  # running, probe failing: no traffic
    url = probe.asked[-1]
    assert url == f"http://127.0.0.1:{rig.backend.launches[-1].env['PORT']}/health"
    probe.passing.add(url)
    rig.step(4)  # two passes, 2 s apart
    assert status(rig, sid) == (1, 1, 0, "serving")
    assert rig.get(r0).reason_code == REPLICA_READY
    assert [r.state for r in live_routes(rig.loop.live, "local")] == ["ready"]
    probe.passing.clear()
    rig.step(2)  # one failure: still ready (failure_threshold 2)
    assert status(rig, sid)[1] == 1
    rig.step(2)
    assert status(rig, sid) == (1, 0, 1, "starting")
    assert rig.get(r0).reason_code == REPLICA_NOT_READY
    assert rig.state(r0) == "running"  # not ready is not dead: the process keeps running


def test_a_replica_failing_its_liveness_probe_is_restarted_after_its_initial_delay(
        rig: Rig) -> None:
    probe = FakeProbe()
    rig.loop.probes = ReadinessProber(rig.store, "local", get=probe)
    sid = submit_service(rig, replicas=1, liveness={
        "path": "/alive", "period_s": 1, "failure_threshold": 2, "initial_delay_s": 10})
    r0 = f"{sid}-r0"
    rig.step(8)  # within its initial delay: never probed, whatever it would answer
    assert probe.asked == [] and rig.get(r0).attempt == 0
    rig.step(6)  # two failures a second apart: the stop is asked
    assert rig.get(r0).stop_reason == "LivenessFailed"
    rig.step(2)  # stopped, then back to pending
    rec = rig.get(r0)
    assert rec.attempt == 1 and rec.reason_code == REPLICA_RESTARTING
    assert "liveness probe GET /alive failed 2 times in a row" in rec.reason_message
    assert rig.backend.stops[-1].workload_id == r0


def test_a_replica_given_an_older_ones_port_is_replaced_on_another_port(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.control import endpoints
    from corral.control.replicas import PORT_IN_USE

    a = submit_service(rig, name="a", replicas=1)
    for i in range(2):  # two jobs between the services: their rows are 3 apart
        rig.submissions.submit(WorkloadSpec.model_validate(
            {"name": f"j{i}", "queue": "q", "gpus": 0, "command": ["x"]}), "ann", 0.0)
    b = submit_service(rig, name="b", replicas=1)
    # ports repeat every 3 rows instead of 12,768: b-r0 gets a-r0's port on this one host
    monkeypatch.setattr(endpoints, "PORT_SPAN", rig.get(f"{b}-r0").seq - rig.get(f"{a}-r0").seq)
    assert endpoints.port_of(rig.get(f"{a}-r0")) == endpoints.port_of(rig.get(f"{b}-r0"))
    rig.step(3)
    old = rig.get(f"{b}-r0")
    assert (old.stop_reason or old.reason_code) == L.REPLACED
    with rig.store.read() as c:
        [said] = [e for e in W.list_events(c, workload_id=b) if e.reason == PORT_IN_USE]
    assert f"is also given to {a}-r0" in said.message and "another port" in said.message
    rig.step(3)
    assert status(rig, a)[:2] == (1, 1) and status(rig, b)[:2] == (1, 1)  # both serve
    urls = {r.url for r in live_routes(rig.loop.live, rig.backend.name)}
    assert len(urls) == 2  # on two ports now
