"""A replacement (a cheaper node rented for the work of a dearer one, make before break) survives
a control-plane restart: the control loop and the autoscaler are built anew on the same store,
with a new EC2 client, against the same moto server (real EC2 API). Whenever the restart comes,
the old node is drained only once the replacement joined, the work moves, and every instance
rented ends terminated in moto: nothing leaks, nothing is forgotten."""

from __future__ import annotations

import boto3
import pytest
from tests.control.rig import Rig
from tests.providers.clocked_ec2 import ClockedAws, moto_image

from corral.autoscale.pool import AutoscalerConfig
from corral.backends.fake import FakeBackend
from corral.control import ManualClock
from corral.control.autoscale import PoolAutoscaler
from corral.providers.aws import AwsSettings
from corral.providers.base import CapacityState, required_tags
from corral.store import audit
from corral.store import pool as P
from corral.store import workloads as W

pytestmark = pytest.mark.slow  # moto, a control plane restarted mid-replacement: ~14 s

#: launch times per rig (the "cloud's" memory, which outlives a control plane)
LAUNCHED: dict[int, dict[str, float]] = {}
CONFIG = AutoscalerConfig(idle_timeout_s=20, join_timeout_s=600, replace_min_age_s=5,
                          cancel_unneeded_after_s=10)


class RigTimedAws(ClockedAws):
    """EC2 on moto, its launch times read on the rig's clock (moto stamps the wall clock,
    which the manual clock does not follow): `launched` is kept by the test, as EC2 keeps
    LaunchTime across the server's restart."""

    def __init__(self, env: dict[str, str], clock: ManualClock, launched: dict[str, float]):
        client = boto3.client("ec2", region_name="us-east-1",
                              endpoint_url=env["AWS_ENDPOINT_URL"])
        super().__init__("aws", "c1", AwsSettings(
            "us-east-1", moto_image(client), ("g6.xlarge", "p5.48xlarge"), zones=("us-east-1a",),
            endpoint_url=env["AWS_ENDPOINT_URL"]))
        self.clock, self.launched = clock, launched


class Plane:
    """One control plane's memory: a loop and an autoscaler; a restart builds a new one."""

    def __init__(self, rig: Rig, env: dict[str, str], joined: dict[str, str], holder: str,
                 config: AutoscalerConfig = CONFIG):
        self.rig = rig
        self.aws = RigTimedAws(env, rig.clock, LAUNCHED.setdefault(id(rig), {}))
        # a new process: its own backend object over the same running workers (the world)
        self.backend = FakeBackend(rig.nodes, world=rig.world, check_capacity=True)
        self.loop = rig.new_loop(self.backend, holder=holder)
        self.loop.autoscaler = PoolAutoscaler(
            rig.store, {"aws": self.aws}, "c1", "https://corral.test", lambda n: "cjt_test",
            config, every_s=5.0, joined=lambda ids: {i: joined[i] for i in ids if i in joined})

    def step(self, n: int) -> None:
        for _ in range(n):
            self.loop.step()
            self.rig.clock.advance(1.0)

    def live(self) -> list[str]:
        return [i.id for i in self.aws.instances() if i.state != CapacityState.TERMINATED]


def _start(rig: Rig, env: dict[str, str], **job: object
           ) -> tuple[Plane, str, str, dict[str, str]]:
    """A p5.48xlarge (node n0) runs one preemptible 1-GPU job; n1 is the replacement's node
    once it joins (cordoned until then)."""
    joined: dict[str, str] = {}
    plane = Plane(rig, env, joined, "first")
    p5 = next(o for o in plane.aws.offers() if o.instance_type == "p5.48xlarge")
    (old,) = plane.aws.launch(p5, 1, user_data="", tags=required_tags("c1", "req-0", "aws"))
    joined[old.id] = "n0"
    with rig.store.write() as c:
        P.set_cordoned(c, "n1", True)
    wid = rig.submit(gpus=1, **job)
    plane.step(3)
    assert rig.state(wid) == "running"
    return plane, old.id, wid, joined


def _restart(rig: Rig, env: dict[str, str], joined: dict[str, str]) -> Plane:
    """The server dies (no resignation) and a new one leads once the old lease expired."""
    rig.clock.advance(20.0)
    return Plane(rig, env, joined, "second")


def _join(plane: Plane, joined: dict[str, str], instance: str) -> None:
    joined[instance] = "n1"
    with plane.rig.store.write() as c:
        P.set_cordoned(c, "n1", False)
    # the rig's n1 sat in the pool (cordoned) before it "joined"; a real node's idle time
    # starts at its join
    assert plane.loop.autoscaler is not None
    plane.loop.autoscaler.idle_since.pop("n1", None)


def _moved(plane: Plane, rig: Rig, wid: str) -> None:
    rec = rig.get(wid)
    assert rec.state == "running" and rec.restart_count == 0
    with rig.store.read() as c:
        assert [e for e in W.list_events(c, workload_id=wid) if e.reason == "NodeReplaced"]
    state = plane.loop.live.snapshot(rig.clock.now()).state
    assert {a.node_id for w in state.workloads if w.id == wid for a in w.assignments} == {"n1"}


def _ends_clean(plane: Plane, rig: Rig, wid: str, joined: dict[str, str]) -> None:
    """The job ends; the replacement idles out: every instance rented is terminated in moto."""
    plane.backend.finish(wid)
    plane.step(40)
    listed = plane.aws.instances()
    assert {i.state for i in listed} == {CapacityState.TERMINATED}
    assert {i.id for i in listed} == set(joined)  # each launched one joined, then ended


def test_restart_between_rent_and_join_keeps_the_replacement_and_drains_later(
        ec2_env: dict[str, str], rig: Rig) -> None:
    plane, old, wid, joined = _start(rig, ec2_env)
    plane.step(12)  # past the min age: the replacement is rented, nothing stopped yet
    (new,) = [i for i in plane.live() if i != old]
    assert rig.state(wid) == "running" and rig.get(wid).restart_count == 0

    plane = _restart(rig, ec2_env, joined)
    plane.step(30)  # three times `cancel_unneeded_after_s`: it is kept aside, not cancelled
    assert sorted(plane.live()) == sorted([old, new])
    assert rig.state(wid) == "running"  # the old node keeps its work until the new one joined

    _join(plane, joined, new)
    plane.step(30)
    _moved(plane, rig, wid)
    assert plane.live() == [new]
    _ends_clean(plane, rig, wid, joined)


def test_restart_after_the_drain_still_returns_the_old_node(ec2_env: dict[str, str],
                                                           rig: Rig) -> None:
    plane, old, wid, joined = _start(rig, ec2_env)
    plane.step(12)
    (new,) = [i for i in plane.live() if i != old]
    _join(plane, joined, new)
    for _ in range(30):  # until the drain is asked; the restart comes before the return
        plane.step(1)
        with rig.store.read() as c:
            if [e for e in W.list_events(c, workload_id=wid) if e.reason == "NodeReplaced"]:
                break
    assert old in plane.live()

    plane = _restart(rig, ec2_env, joined)
    plane.step(30)
    _moved(plane, rig, wid)
    assert plane.live() == [new]
    with rig.store.read() as c:
        ended = audit.list_audit(c, actor="autoscaler", action="autoscale.replacement_ended")
    assert ended, "the finished replacement is recorded as ended (no resume of it later)"
    _ends_clean(plane, rig, wid, joined)


def test_the_old_node_is_returned_only_once_its_work_has_stopped(ec2_env: dict[str, str],
                                                                 rig: Rig) -> None:
    """The race of test_replace_restart_up.py's failures under load: a workload whose stop is
    asked (its worker in its grace) is out of the core's view, so the drained old node looked
    idle and was returned at the next pass with the worker still on it; the work then stayed
    "running" on no node, the new node idled out and a third was rented. Here the worker takes
    its whole grace (60 s) to stop and the control plane restarts in the middle of it: at no
    step is the old instance returned while the work holds it, and it is once the work left."""
    plane, old, wid = _restart_mid_grace(rig, ec2_env)
    for _ in range(60):
        if "n0" in _held_on(rig, wid):
            assert old in plane.live(), "the old node was returned under its running work"
        plane.step(1)
    _moved(plane, rig, wid)
    assert old not in plane.live()


def _restart_mid_grace(rig: Rig, env: dict[str, str]) -> tuple[Plane, str, str]:
    plane, old, wid, joined = _start(rig, env, preemption_grace=60)
    plane.step(12)
    (new,) = [i for i in plane.live() if i != old]
    plane.backend.ignore_stop(wid)  # the worker takes its whole grace to stop
    _join(plane, joined, new)
    for _ in range(30):  # until the drain is asked
        plane.step(1)
        if rig.get(wid).stop_reason is not None:
            break
    assert rig.get(wid).stop_reason == "NodeReplaced"
    for _ in range(10):  # two passes into the grace, before the restart
        assert "n0" in _held_on(rig, wid) and old in plane.live()
        plane.step(1)
    return _restart(rig, env, joined), old, wid


def _held_on(rig: Rig, wid: str) -> set[str]:
    """The nodes the workload's current attempt holds (stopping or not)."""
    rec = rig.get(wid)
    if rec.state not in W.HOLDING_STATES:
        return set()
    with rig.store.read() as c:
        return {a.node_id for a in W.current_assignments(c, [wid]).get((wid, rec.attempt), ())}
