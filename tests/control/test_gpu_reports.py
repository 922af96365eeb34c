"""What hosts report of their own GPUs, and workers' progress, in the control plane: a reported
drain check cordons its GPU and drains the work on it, a warn check only cordons its GPU, the
reason reaches `corral nodes`;
progress becomes throttled events and per (kind, model) throughput estimates. The real agent
process end to end is tests/agent/test_agent_accelerators.py."""

from __future__ import annotations

from corral.backends.progress import Progress
from corral.control import ControlLoop, ControlSettings, Leadership
from corral.control.device_cordons import cordoned_devices
from corral.control.gpu_reports import ReportedVerdicts, record_gpu_health
from corral.control.health import NODE_DRAINED, HealthMonitor, device_reasons
from corral.control.progress import ProgressRecorder, throughput_estimates
from corral.core.model import Health
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W

from .rig import Rig

LOST = [{"name": "gpu-lost", "severity": "drain", "device": 1,
         "reason": "GPU has fallen off the bus (NVML: GPU is lost)"}]
HOT = [{"name": "clocks-throttled", "severity": "warn", "device": 0,
        "reason": "clocks slowed down (hw-thermal-slowdown): work here runs slower"}]


def report(store: Store, node_id: str, health: str, reason: str, checks: list[dict],
           at: float = 0.0) -> None:
    with store.write() as c:
        record_gpu_health(c, node_id=node_id, at=at, health=health, reason=reason,
                          checked=True, checks=checks)


def health_of(store: Store, node_id: str) -> Health:
    with store.read() as c:
        return next(n.health for n in P.list_nodes(c) if n.id == node_id)


def test_a_reported_drain_check_cordons_and_drains_a_warn_check_only_cordons(
        store: Store) -> None:
    rig = Rig(store)
    rig.loop = ControlLoop(store, rig.backend, clock=rig.clock,
                           settings=ControlSettings(stop_grace_s=5.0),
                           leadership=Leadership(store, ttl_s=15.0),
                           health=HealthMonitor(store, rig.backend))
    wid = rig.submit(gpus=4, max_restarts=2, restart_backoff=0)
    rig.step(2)
    with store.read() as c:
        [placed] = {a.node_id for a in W.assignments_of(c, [(wid, 0)])[(wid, 0)]}
    other = ({"n0", "n1"} - {placed}).pop()
    report(store, other, "degraded", "gpu 0: clocks slowed down", HOT)
    report(store, placed, "unhealthy", "gpu 1: GPU has fallen off the bus", LOST)
    rig.step()
    # each check names one GPU: that GPU is cordoned, its node keeps its other GPUs in service
    assert (health_of(store, placed), health_of(store, other)) == (Health.HEALTHY,
                                                                   Health.HEALTHY)
    assert (cordoned(store, placed), cordoned(store, other)) == ((1,), (0,))
    assert rig.get(wid).stop_reason == "NodeUnhealthy"  # drained (it held GPU 1), with grace
    with store.read() as c:
        drained = [e for e in W.list_events(c) if e.reason == NODE_DRAINED]
        why = device_reasons(c, P.list_nodes(c))
    assert [e.subject for e in drained] == [placed]
    assert "gpu 1: GPU has fallen off the bus" in why[placed]
    assert "gpu 0: clocks slowed down" in why[other]
    report(store, placed, "healthy", "all 4 GPUs healthy", [])
    rig.step()
    assert (health_of(store, placed), cordoned(store, placed)) == (Health.HEALTHY, ())


def cordoned(store: Store, node_id: str) -> tuple[int, ...]:
    with store.read() as c:
        return cordoned_devices(next(n for n in P.list_nodes(c) if n.id == node_id))


def test_reported_verdicts_are_read_incrementally_and_bad_records_skipped(store: Store) -> None:
    reader = ReportedVerdicts()
    report(store, "n0", "unhealthy", "gpu 1: lost", LOST)
    with store.write() as c:  # a record another version wrote: skipped, never an error
        W.append_event(c, at=0.0, kind="node", reason="GpuHealthReported", subject="n1",
                       data={"health": "sideways"})
    with store.read() as c:
        first = reader.read(c)
    assert set(first) == {"n0"}
    assert [ch.name for ch in first["n0"].checks] == ["gpu-lost"]
    report(store, "n0", "healthy", "all 4 GPUs healthy", [])
    with store.read() as c:
        assert reader.read(c)["n0"].health == Health.HEALTHY


def test_progress_becomes_throttled_events_and_estimates_per_kind_and_model(
        store: Store) -> None:
    rig = Rig(store)
    wid = rig.submit(gpus=1)
    rig.step(2)
    recorder = ProgressRecorder(every_s=30.0)
    key = (wid, 0, 0)
    with store.write() as c:
        assert recorder.record(c, 0.0, {key: Progress(10, 2.0, 100)}, nodes={key: "n0"}) == 1
        assert recorder.record(c, 10.0, {key: Progress(20, 4.0, 100)}, nodes={key: "n0"}) == 0
        assert recorder.record(c, 40.0, {key: Progress(50, 4.0, 100)}, nodes={key: "n0"}) == 1
        assert recorder.record(c, 90.0, {key: Progress(50, 4.0, 100)}, nodes={key: "n0"}) == 0
    with store.read() as c:
        said = [e.message for e in W.list_events(c, workload_id=wid) if e.reason == "Progress"]
        estimates = throughput_estimates(c)
    # the first at once; then one when the steps moved and 30 s passed; none without news
    assert said == ["worker 0: step 10 of 100 (10.0%), 2 steps/s on H100",
                    "worker 0: step 50 of 100 (50.0%), 4 steps/s on H100"]
    name = rig.get(wid).name
    assert estimates.throughput_of(name) == (("H100", 2.6),)  # 2 + 0.3 x (4 - 2)


def test_the_loop_collects_progress_from_a_backend_that_reads_it(store: Store) -> None:
    from corral.backends.base import WorkerState
    from corral.control.progress import ProgressCollector

    rig = Rig(store)
    wid = rig.submit(gpus=1)
    rig.step(2)
    statuses = [s for s in rig.backend.poll(0.0) if s.workload_id == wid]
    assert [s.state for s in statuses] == [WorkerState.RUNNING]

    class Reads:  # what the local backend offers: progress(workload, attempt) -> by worker
        def progress(self, workload_id: str, attempt: int) -> dict[int, Progress]:
            return {0: Progress(7, 1.5)} if workload_id == wid else {}

    collector = ProgressCollector(every_s=10.0)
    assert collector.step(store, Reads(), statuses, 0.0) == 1
    assert collector.step(store, Reads(), statuses, 5.0) == 0  # not due yet
    assert collector.step(store, rig.backend, statuses, 20.0) == 0  # a backend without files
    with store.read() as c:
        [event] = [e for e in W.list_events(c, workload_id=wid) if e.reason == "Progress"]
    assert event.message == "worker 0: step 7, 1.5 steps/s on H100"


def test_a_new_job_of_a_measured_kind_is_given_the_throughput_its_kind_showed(
        store: Store) -> None:
    rig = Rig(store)
    with store.write() as c:  # two earlier `train` runs, on two models
        for model, rate in (("H100", 3.1), ("L4", 0.9)):
            W.append_event(c, at=0.0, kind="info", reason="Progress", workload_id="old",
                           data={"kind": "train", "model": model, "steps_per_s": rate,
                                 "steps": 10, "worker": 0})
    rig.submissions.invalidate()
    learned = rig.get(rig.submit(name="train", gpus=1))
    stated = rig.get(rig.submit(name="train", gpus=1, throughput={"L4": 2.0, "H100": 1.0}))
    other = rig.get(rig.submit(name="eval", gpus=1))
    assert learned.spec["throughput"] == {"H100": 3.1, "L4": 0.9}
    assert stated.spec["throughput"] == {"L4": 2.0, "H100": 1.0}  # a stated one stays
    assert not other.spec.get("throughput")  # nothing measured for its kind
