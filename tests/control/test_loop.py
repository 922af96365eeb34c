"""The control loop on a fake backend and a manual clock: lifecycle, restarts, preemption,
cancellation, stale plans, leadership, crash recovery and the admission seam."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.control import StalePlan, apply_plan, cancel
from corral.control.snapshot import SpecCache, load_snapshot
from corral.core import schedule
from corral.core.reasons import BUDGET_EXCEEDED, Reason
from corral.store import Store
from corral.store import workloads as W

from .rig import Rig

RUN = [("", "pending", "Submitted"), ("pending", "scheduled", "Scheduled"),
       ("scheduled", "starting", "Launched"), ("starting", "running", "Started")]


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def test_a_job_runs_to_success_with_an_event_per_transition(rig: Rig) -> None:
    wid = rig.submit(workers=2, gpus=2)
    rig.step(2)
    assert rig.state(wid) == "running"
    rig.backend.finish(wid)
    rig.step()
    assert rig.transitions(wid) == [*RUN, ("running", "succeeded", "Completed")]
    assert rig.world.released == {(wid, 0)}


def test_a_failed_worker_stops_the_gang_and_restarts_it_from_the_checkpoint(
    rig: Rig, tmp_path: Path
) -> None:
    ckpt = tmp_path / "w"
    wid = rig.submit(workers=2, gpus=1, max_restarts=1, restart_backoff=30,
                     checkpoint_dir=str(ckpt), restart_on=[{"exit_code": [1, 3]}])
    rig.step(2)
    ckpt.mkdir()
    (ckpt / "ckpt-00000010").write_text("saved before the failure")
    rig.backend.fail(wid, worker=0, exit_code=3)
    rig.step()  # worker 0 failed: the gang is told to stop
    assert rig.get(wid).stop_reason == "WorkerFailed"
    assert rig.backend.stops[-1].grace_seconds == 0.0
    rig.step()  # the other worker stopped: restart after the backoff
    rec = rig.get(wid)
    assert (rec.state, rec.attempt, rec.restart_count) == ("pending", 1, 1)
    rig.step(5)
    assert rig.state(wid) == "pending"  # still backing off (30 s)
    rig.clock.advance(30)
    rig.step(2)
    assert rig.state(wid) == "running"
    relaunch = rig.backend.launches[-1]
    assert (relaunch.attempt, relaunch.restart_count, relaunch.resume_from) == (
        1, 1, str(ckpt / "ckpt-00000010"))
    rig.backend.fail(wid, exit_code=1)
    rig.step(2)
    rec = rig.get(wid)
    assert (rec.state, rec.reason_code) == ("failed", "RestartsExhausted")


def test_cancel_pending_ends_at_once_and_running_after_its_workers_stop(rig: Rig) -> None:
    waiting = rig.submit(gpus=1, gpu_models=["H100"], workers=1, priority=-5)
    assert cancel(rig.store, waiting, rig.clock.now(), "ann").state == "cancelled"
    wid = rig.submit(gpus=4)
    rig.step(2)
    rec = cancel(rig.store, wid, rig.clock.now(), "ann")
    assert rec is not None and (rec.state, rec.stop_reason) == ("running", "Cancelled")
    rig.step(2)
    assert rig.state(wid) == "cancelled"
    assert [s.workload_id for s in rig.backend.stops] == [wid]


def test_preemption_waits_for_the_victim_before_launching(rig: Rig) -> None:
    low = [rig.submit(name=f"low{i}", gpus=4, priority=0) for i in range(2)]
    rig.step(2)
    rig.backend.ignore_stop(low[0])
    rig.backend.ignore_stop(low[1])
    high = rig.submit(name="high", gpus=4, priority=10)
    rig.step()  # plan: evict one low job, schedule high onto its GPUs
    victims = [w for w in low if rig.get(w).stop_reason == "Preempt"]
    assert len(victims) == 1 and rig.state(high) == "scheduled"
    rig.step()  # the victim ignores SIGTERM: high must not launch on its GPUs yet
    assert rig.state(high) == "scheduled"
    assert rig.get(high).reason_code == "WaitingForDevices"
    rig.clock.advance(10)  # past the grace: the fake SIGKILLs it
    rig.step(2)
    assert rig.state(high) == "running"
    victim = rig.get(victims[0])
    assert (victim.state, victim.attempt) == ("pending", 1)
    assert ("running", "preempted", "Preempt") in rig.transitions(victim.id)


def test_a_stale_plan_is_rejected_whole(rig: Rig) -> None:
    a, b = rig.submit(name="a"), rig.submit(name="b")
    now = rig.clock.now()
    with rig.store.read() as c:
        snap = load_snapshot(c, now, SpecCache())
    plan = schedule(snap.state, now)
    assert {p.workload_id for p in plan.placements} == {a, b}
    cancel(rig.store, b, now, "ann")  # the store moves on under the plan
    rig.loop.leadership.ensure(now)
    with pytest.raises(StalePlan), rig.store.write() as c:
        apply_plan(c, snap, plan, now, lambda c: rig.loop.leadership.fence(c, now))
    assert rig.state(a) == "pending"  # nothing of the plan was written


def test_one_leader_and_a_deposed_leader_cannot_apply(rig: Rig) -> None:
    other = rig.new_loop(rig.backend, holder="standby")
    rig.submit()
    assert rig.loop.step().leader
    assert not other.step().leader
    rig.clock.advance(60)  # the leader stalls past its lease: the standby takes over
    assert other.step().leader
    report = rig.loop.step()
    assert not report.leader


def test_a_crash_between_recording_and_launching_launches_once(rig: Rig) -> None:
    class Crash(BaseException):  # the process dies: not an error the loop could handle
        pass

    wid = rig.submit()

    def crash(spec: object) -> None:
        raise Crash

    rig.backend.launch = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        rig.loop.step()
    assert rig.state(wid) == "starting"
    from corral.backends.fake import FakeBackend

    revived = rig.new_loop(FakeBackend(rig.nodes, world=rig.world, check_capacity=True),
                           holder=rig.loop.leadership.holder)
    for _ in range(3):
        revived.step()
        rig.clock.advance(1)
    assert rig.state(wid) == "running"
    assert list(rig.world.attempts) == [(wid, 0)]


def test_admission_keeps_work_pending_with_a_budget_reason(store: Store) -> None:
    class NoBudget:
        def refuse(self, pending, now):
            return {w.id: Reason(BUDGET_EXCEEDED, "queue q has no credits left") for w in pending}

    rig = Rig(store, admission=NoBudget())
    wid = rig.submit()
    rig.step(2)
    rec = rig.get(wid)
    assert (rec.state, rec.reason_code) == ("pending", BUDGET_EXCEEDED)


def test_max_runtime_stops_and_fails_the_job(rig: Rig) -> None:
    wid = rig.submit(max_runtime=10)
    rig.step(2)
    rig.clock.advance(20)
    rig.step(2)
    rec = rig.get(wid)
    assert (rec.state, rec.reason_code) == ("failed", "MaxRuntimeExceeded")


def test_services_are_one_workload_per_replica(rig: Rig) -> None:
    rig.submissions.submit(
        __import__("corral.spec", fromlist=["WorkloadSpec"]).WorkloadSpec.model_validate(
            {"name": "svc", "queue": "q", "kind": "service", "replicas": 3, "gpus": 1,
             "command": ["serve"]}), "ann", rig.clock.now())
    rig.step(2)
    with rig.store.read() as c:
        rows = W.list_workloads(c)
    assert sorted(r.id.rsplit("-", 1)[1] for r in rows) == ["r0", "r1", "r2"]
    assert {r.state for r in rows} == {"running"}


def test_the_last_plans_reservation_holders_go_into_the_next_cycle(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blocked gang that holds a reservation keeps its claim on the next cycle
    (`ClusterState.reserved_for`): the loop passes the last plan's holders back."""
    import corral.control.loop as loop_module

    seen: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    real = loop_module.schedule

    def spy(state, *args, **kwargs):  # type: ignore[no-untyped-def]
        plan = real(state, *args, **kwargs)
        seen.append((state.reserved_for, tuple(r.workload_id for r in plan.reservations)))
        return plan

    monkeypatch.setattr(loop_module, "schedule", spy)
    for i in range(2):
        rig.submit(name=f"small{i}", gpus=1)
    rig.step(2)
    gang = rig.submit(name="gang", workers=2, gpus=4)
    rig.clock.advance(400)  # past reserve_after_s: the blocked gang may reserve
    rig.step(1)
    rig.clock.advance(60)  # past replan_s: the loop plans again with nothing changed
    rig.step(1)
    assert ((), (gang,)) in seen
    assert ((gang,), (gang,)) in seen
