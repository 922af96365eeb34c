"""Migration on heterogeneity in the control loop (`corral.control.migration`): a preemptible,
checkpointing job on a slow accelerator is moved to a faster free one when the rule says so
(`corral.core.migration`), without spending a restart, and lands on the devices held for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from corral.backends.fake import FakeBackend, FakeWorld
from corral.backends.progress import Progress
from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock, Submissions, retry
from corral.control.migration import free_devices, without_reserved
from corral.control.progress import ProgressRecorder
from corral.core.migration import (
    MIGRATED,
    MigrationCandidate,
    MigrationRule,
    choose,
    migration_gain,
)
from corral.core.model import (
    CapacityKind,
    ClusterState,
    Node,
    Nomination,
    Queue,
    WorkerAssignment,
)
from corral.core.plan import Reservation
from corral.spec import WorkloadSpec
from corral.spec.pool import PoolSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.nominations import load_nominations
from corral.store.workloads import WorkloadRecord

ON = MigrationRule(enabled=True, restart_s=60.0, max_per_step=1, min_interval_s=1800.0)
SLOW_FAST = {"K80": 1.0, "V100": 3.0}
MOVABLE: dict[str, Any] = {"throughput": SLOW_FAST, "checkpoint_dir": "/ckpt/x"}


def _node(name: str, model: str, gpus: int) -> Node:
    return Node(name, "local", model, gpus, 16384, 64_000, 262_144,
                capacity_kind=CapacityKind.OWNED)


@dataclass
class Pool:
    """A K80 node and a V100 node, on a fake backend driven by a manual clock."""

    store: Store
    rule: MigrationRule = ON
    k80s: int = 2
    v100s: int = 2
    a100s: int = 0
    world: FakeWorld = field(default_factory=FakeWorld)
    clock: ManualClock = field(default_factory=ManualClock)

    def __post_init__(self) -> None:
        nodes = [_node("k80", "K80", self.k80s), _node("v100", "V100", self.v100s)]
        if self.a100s:
            nodes.append(_node("a100", "A100", self.a100s))
        with self.store.write() as c:
            P.sync_nodes(c, [{"name": "local"}], nodes)
            P.upsert_queue(c, Queue("q", quota_gpus=8))
            P.upsert_queue(c, Queue("r", quota_gpus=8))  # uses nothing: ordered first
        self.nodes = nodes
        self.loop = self.new_leader("first")
        self.submissions = Submissions(self.store)
        self.recorder = ProgressRecorder(every_s=0.0)

    def new_leader(self, holder: str) -> ControlLoop:
        """A scheduler process of its own (a restarted one, or another replica): its own loop
        and backend client, on the same store and the same running workers."""
        self.backend = FakeBackend(self.nodes, world=self.world, check_capacity=True)
        return ControlLoop(self.store, self.backend, clock=self.clock,
                           settings=ControlSettings(stop_grace_s=5.0, migration=self.rule),
                           leadership=Leadership(self.store, holder=holder, ttl_s=15.0))

    def submit(self, name: str, **fields: Any) -> str:
        spec = {"name": name, "queue": "q", "gpus": 1, "cpu": 0.1, "memory": 64,
                "command": ["run"], **fields}
        return self.submissions.submit(WorkloadSpec.model_validate(spec), "ann",
                                       self.clock.now())[0].id

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.loop.step()
            self.clock.advance(1.0)

    def get(self, wid: str) -> WorkloadRecord:
        with self.store.read() as c:
            rec = W.get_workload(c, wid)
        assert rec is not None
        return rec

    def node_of(self, wid: str) -> str:
        rec = self.get(wid)
        with self.store.read() as c:
            (placed,) = W.assignments_of(c, [(wid, rec.attempt)]).values()
        return placed[0].node_id

    def progress(self, wid: str, steps: int, total: int, rate: float) -> None:
        """The worker's progress report (the CORRAL_PROGRESS_FILE contract, as an agent's sync
        or the local backend hands it over)."""
        rec = self.get(wid)
        with self.store.write() as c:
            self.recorder.record(c, self.clock.now(), {(wid, rec.attempt, 0): Progress(
                steps, rate, total)}, node_id=self.node_of(wid))

    def on_k80_with_v100_busy(self, **fields: Any) -> tuple[str, list[str]]:
        """Every V100 held by blockers, then a job that can only start on a K80."""
        blockers = [self.submit(f"b{i}", gpu_models=["V100"], preemptible=False)
                    for i in range(self.v100s)]
        self.step(2)
        job = self.submit("x", **{**MOVABLE, **fields})
        self.step(2)
        assert self.get(job).state == "running" and self.node_of(job) == "k80"
        return job, blockers

    def migrated(self, wid: str) -> bool:
        with self.store.read() as c:
            return any(e.reason == MIGRATED for e in W.list_events(c, workload_id=wid))


@pytest.fixture
def pool(store: Store) -> Pool:
    return Pool(store)


def test_a_job_on_a_k80_moves_to_a_v100_that_frees_without_spending_a_restart(pool: Pool) -> None:
    job, blockers = pool.on_k80_with_v100_busy()
    pool.progress(job, steps=1_000, total=100_000, rate=1.0)  # 27 h left on the K80, 9 h there
    for w in pool.world.workers[(job, 0)]:
        w.honours_stop = False  # it checkpoints for its whole grace: plans run while it stops
    pool.backend.finish(blockers[0])
    pool.step()
    rec = pool.get(job)
    assert rec.stop_reason == MIGRATED and pool.migrated(job)
    # arrives while the job stops, in a queue ordered before the job's: it would take the V100
    rival = pool.submit("rival", queue="r", gpu_models=["V100"])
    for _ in range(20):
        pool.step()
        if pool.get(job).state == "running" and pool.get(job).attempt == 1:
            break
    rec = pool.get(job)
    assert (rec.state, rec.attempt, rec.restart_count) == ("running", 1, 0)
    assert pool.node_of(job) == "v100"
    # the V100 was held for it: the rival, which would have taken it, still waits
    pool.step(3)
    assert pool.get(rival).state == "pending" and pool.get(job).attempt == 1


def test_a_job_with_little_work_left_stays(pool: Pool) -> None:
    job, blockers = pool.on_k80_with_v100_busy()
    pool.progress(job, steps=99_900, total=100_000, rate=1.0)  # 100 s left: 67 s to save
    pool.backend.finish(blockers[0])
    pool.step(3)
    assert pool.get(job).stop_reason is None and not pool.migrated(job)
    assert pool.node_of(job) == "k80"


@pytest.mark.parametrize("fields", [
    pytest.param({"preemptible": False}, id="not-preemptible"),
    pytest.param({"checkpoint_dir": None}, id="no-checkpoint"),
    pytest.param({"throughput": {}}, id="no-throughput"),
])
def test_work_that_may_not_or_cannot_gain_never_moves(pool: Pool, fields: dict[str, Any]) -> None:
    job, blockers = pool.on_k80_with_v100_busy(**fields)
    pool.progress(job, steps=0, total=100_000, rate=1.0)
    pool.backend.finish(blockers[0])
    pool.step(3)
    assert pool.get(job).stop_reason is None and not pool.migrated(job)


def test_a_job_without_throughput_moves_by_what_its_kind_measured(pool: Pool) -> None:
    """Rates from the per (kind, model) estimates earlier runs of its name reported."""
    job, blockers = pool.on_k80_with_v100_busy(throughput={})
    pool.progress(job, steps=0, total=100_000, rate=1.0)  # K80: 1 step/s (kind "x")
    with pool.store.write() as c:  # an earlier "x" reported 3 steps/s on a V100
        pool.recorder.record(c, pool.clock.now(), {(job, 99, 0): Progress(10, 3.0, None)},
                             node_id="v100")
    pool.backend.finish(blockers[0])
    pool.step()
    assert pool.get(job).stop_reason == MIGRATED


def test_off_unless_enabled(store: Store) -> None:
    pool = Pool(store, rule=MigrationRule())
    job, blockers = pool.on_k80_with_v100_busy()
    pool.progress(job, steps=0, total=100_000, rate=1.0)
    pool.backend.finish(blockers[0])
    pool.step(3)
    assert pool.loop.migration is None and not pool.migrated(job)


def test_at_most_max_per_step_moves_per_step(store: Store) -> None:
    pool = Pool(store)  # max_per_step 1
    blockers = [pool.submit(f"b{i}", gpu_models=["V100"]) for i in range(2)]
    pool.step(2)
    jobs = [pool.submit(f"x{i}", **MOVABLE) for i in range(2)]
    pool.step(2)
    for j in jobs:
        pool.progress(j, steps=0, total=100_000, rate=1.0)
    for b in blockers:
        pool.backend.finish(b)
    pool.step()
    assert sum(pool.get(j).stop_reason == MIGRATED for j in jobs) == 1


def test_two_moves_in_one_step_go_to_different_devices(store: Store) -> None:
    pool = Pool(store, rule=MigrationRule(enabled=True, max_per_step=2))
    blockers = [pool.submit(f"b{i}", gpu_models=["V100"], preemptible=False) for i in range(2)]
    pool.step(2)
    jobs = [pool.submit(f"x{i}", **MOVABLE) for i in range(2)]
    pool.step(2)
    for j in jobs:
        pool.progress(j, steps=0, total=100_000, rate=1.0)
    for b in blockers:
        pool.backend.finish(b)
    pool.step()
    assert all(pool.get(j).stop_reason == MIGRATED for j in jobs)
    with pool.store.read() as c:
        held = {(a.node_id, a.devices) for n in load_nominations(c, pool.clock.now())
                for a in n.assignments}
    assert held == {("v100", (0,)), ("v100", (1,))}
    pool.step(4)  # the fake backend refuses a launch onto a device already taken
    assert {(pool.get(j).state, pool.node_of(j)) for j in jobs} == {("running", "v100")}


@pytest.mark.parametrize(("restart_on", "moves"), [
    pytest.param(["preemption"], True, id="node-failure-left-out"),
    pytest.param(["node_failure"], False, id="preemption-left-out"),
])
def test_a_move_is_a_preemption_to_the_retry_policy(pool: Pool, restart_on: list[str],
                                                    moves: bool) -> None:
    """A move is corral's choice, never a node failure: a job whose restart_on leaves out
    node_failure is still moved and requeued without spending a restart, and one that does
    not accept preemptions is not moved (it would be failed, not requeued)."""
    assert retry.cause_of_stop(MIGRATED) == retry.PREEMPTION
    job, blockers = pool.on_k80_with_v100_busy(restart_on=restart_on, max_restarts=1)
    pool.progress(job, steps=0, total=100_000, rate=1.0)
    pool.backend.finish(blockers[0])
    pool.step(6)
    rec = pool.get(job)
    assert pool.migrated(job) is moves
    if moves:
        assert (rec.state, rec.attempt, rec.restart_count) == ("running", 1, 0)
        assert pool.node_of(job) == "v100"
        with pool.store.read() as c:
            requeued = [e for e in W.list_events(c, workload_id=job) if e.reason == "Requeued"]
        assert requeued and "node failure" not in requeued[0].message
    else:
        assert (rec.state, rec.attempt, pool.node_of(job)) == ("running", 0, "k80")


def test_a_move_never_takes_a_node_reserved_for_a_blocked_gang(pool: Pool) -> None:
    """The V100 that frees is on the node reserved for a waiting 2-GPU job: the K80 job stays
    (it would otherwise take the slot and starve the reservation's holder)."""
    job, blockers = pool.on_k80_with_v100_busy()
    big = pool.submit("big", queue="r", gpus=2, gpu_models=["V100"])
    pool.clock.advance(400.0)  # past reserve_after_s (300 s): it may hold a reservation
    pool.step()
    pool.progress(job, steps=0, total=100_000, rate=1.0)
    pool.backend.finish(blockers[0])
    pool.step()
    assert pool.get(job).stop_reason is None and not pool.migrated(job)
    pool.backend.finish(blockers[1])
    pool.step(3)
    assert pool.get(big).state == "running" and pool.node_of(job) == "k80"


def test_free_devices_leave_out_nominated_and_reserved_room() -> None:
    nodes = (_node("k80", "K80", 2), _node("v100", "V100", 2), _node("v100b", "V100", 2))
    held = Nomination("other", (WorkerAssignment(0, "v100", (1,), 1000, 16384),))
    state = ClusterState(nodes, (Queue("q"),), (), nominations=(held,))
    assert free_devices(state) == {"K80": 2, "V100": 3}
    reserved = without_reserved(state, [Reservation("gang", ("v100b",))])
    assert free_devices(reserved) == {"K80": 2, "V100": 1}


def test_a_new_leader_does_not_move_a_job_its_predecessor_just_moved(store: Store) -> None:
    """min_interval_s holds across a leader change: the last move is read from the store."""
    pool = Pool(store, k80s=1, v100s=1, a100s=1)
    three = {"throughput": {"K80": 1.0, "V100": 3.0, "A100": 6.0}}
    slow = pool.submit("b-a100", gpu_models=["A100"], preemptible=False)
    blocker = pool.submit("b-v100", gpu_models=["V100"], preemptible=False)
    pool.step(2)
    job = pool.submit("x", **{**MOVABLE, **three})
    pool.step(2)
    assert pool.node_of(job) == "k80"
    pool.progress(job, steps=0, total=1_000_000, rate=1.0)
    pool.backend.finish(blocker)
    for _ in range(20):
        pool.step()
        if pool.get(job).state == "running" and pool.get(job).attempt == 1:
            break
    assert pool.node_of(job) == "v100"  # moved once, by the first leader
    pool.loop.leadership.resign()
    pool.loop = pool.new_leader("second")  # a restart: nothing of the first one's memory
    pool.progress(job, steps=0, total=1_000_000, rate=3.0)
    pool.backend.finish(slow)  # an A100 frees: twice as fast again, but it was just moved
    pool.step(3)
    assert pool.get(job).stop_reason is None and pool.node_of(job) == "v100"
    pool.clock.advance(ON.min_interval_s)
    pool.progress(job, steps=0, total=1_000_000, rate=3.0)
    pool.step()
    assert pool.get(job).stop_reason == MIGRATED  # once min_interval_s has passed, it may


# -- the rule (pure) -------------------------------------------------------------------------

def _c(wid: str, left: float, moved: float | None = None, devices: int = 1
       ) -> MigrationCandidate:
    return MigrationCandidate(wid, "K80", devices, left, SLOW_FAST, moved)


@pytest.mark.parametrize(("candidates", "free", "now", "expected"), [
    pytest.param([_c("a", 36_000)], {"V100": 1}, 0.0, ["a"], id="gain"),
    pytest.param([_c("a", 100)], {"V100": 1}, 0.0, [], id="too-little-left"),
    pytest.param([_c("a", 36_000, devices=2)], {"V100": 1}, 0.0, [], id="does-not-fit"),
    pytest.param([_c("a", 10_000), _c("b", 36_000)], {"V100": 1}, 0.0, ["b"],
                 id="largest-gain-first"),
    pytest.param([_c("a", 36_000, moved=0.0)], {"V100": 1}, 600.0, [], id="moved-recently"),
    pytest.param([_c("a", 36_000, moved=0.0)], {"V100": 1}, 1800.0, ["a"], id="moved-long-ago"),
])
def test_choose(candidates: list[MigrationCandidate], free: dict[str, int], now: float,
                expected: list[str]) -> None:
    assert [m.workload_id for m in choose(candidates, free, ON, now)] == expected


def test_choose_counts_devices_once_and_keeps_the_bound() -> None:
    two = MigrationRule(enabled=True, max_per_step=2)
    jobs = [_c(f"j{i}", 36_000 + i) for i in range(3)]
    assert [m.workload_id for m in choose(jobs, {"V100": 1}, two, 0.0)] == ["j2"]
    assert [m.workload_id for m in choose(jobs, {"V100": 5}, two, 0.0)] == ["j2", "j1"]
    assert choose(jobs, {"V100": 5}, MigrationRule(), 0.0) == []  # off


def test_gain_is_the_simulators_rule() -> None:
    assert migration_gain(36_000, 1.0, 3.0, 60.0) == pytest.approx(24_000 - 60)
    assert migration_gain(100, 1.0, 3.0, 60.0) == 0.0
    assert migration_gain(36_000, 3.0, 1.0, 60.0) == 0.0


# -- the pool file's knob ---------------------------------------------------------------------

def test_pool_file_knob() -> None:
    spec = PoolSpec.model_validate({"scheduler": {"migration": {
        "enabled": True, "restart_cost": "2m", "max_per_step": 3, "min_interval": "1h"}}})
    assert spec.scheduler.migration.to_core() == MigrationRule(True, 120.0, 3, 3600.0)
    assert PoolSpec.model_validate({}).scheduler.migration.to_core() == MigrationRule()


@pytest.mark.parametrize(("migration", "field_name"), [
    ({"enabled": True, "max_per_step": 0}, "max_per_step"),
    ({"max_per_step": -1}, "max_per_step"),
    ({"restart_cost": -5}, "restart_cost"),
    ({"enable": True}, "enable"),
])
def test_pool_file_knob_errors_name_the_field(migration: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ValidationError) as e:
        PoolSpec.model_validate({"scheduler": {"migration": migration}})
    assert field_name in str(e.value)
