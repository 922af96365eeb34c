"""The fake backend's semantics, which control-plane tests rely on."""

from __future__ import annotations

import pytest

from corral.backends import (
    AttemptStillRunning,
    FakeBackend,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchConflict,
    LaunchError,
    UnknownAttempt,
    WorkerState,
    WorkerStatus,
    base,
)
from corral.backends.local import virtual_nodes
from corral.core.model import Health

from .conftest import make_spec


def states(statuses: list[WorkerStatus]) -> list[tuple[str, int, int, WorkerState, str]]:
    return [(s.workload_id, s.attempt, s.worker, s.state, s.reason) for s in statuses]


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(virtual_nodes(2, 4))


def test_launch_runs_every_worker(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").workers(2).build())
    assert states(fake.poll(1.0)) == [
        ("a", 0, 0, WorkerState.RUNNING, base.RUNNING),
        ("a", 0, 1, WorkerState.RUNNING, base.RUNNING),
    ]
    assert [s.node_id for s in fake.poll(2.0)] == ["local-0", "local-1"]
    assert all(s.observed_at == 2.0 for s in fake.poll(2.0))


def test_launch_is_idempotent_per_attempt(fake: FakeBackend) -> None:
    spec = make_spec("a").build()
    fake.launch(spec)
    fake.launch(spec)
    assert len(fake.launches) == 1
    assert len(fake.poll(0.0)) == 1
    with pytest.raises(LaunchConflict, match="new attempt"):
        fake.launch(make_spec("a").command("other").build())
    fake.launch(make_spec("a").attempt(1).build())  # a new attempt is a new launch
    assert len(fake.launches) == 2


def test_without_auto_start_workers_wait_for_start() -> None:
    fake = FakeBackend(auto_start=False)
    fake.launch(make_spec("a").build())
    assert states(fake.poll(0.0)) == [("a", 0, 0, WorkerState.STARTING, base.STARTING)]
    fake.start("a")
    assert states(fake.poll(1.0)) == [("a", 0, 0, WorkerState.RUNNING, base.RUNNING)]


@pytest.mark.parametrize(
    ("exit_code", "state", "reason"),
    [
        pytest.param(0, WorkerState.SUCCEEDED, base.EXITED, id="exit-0"),
        pytest.param(3, WorkerState.FAILED, base.EXITED, id="exit-3"),
        pytest.param(-9, WorkerState.FAILED, base.KILLED_BY_SIGNAL, id="sigkill-by-someone"),
    ],
)
def test_finishing_workers(fake: FakeBackend, exit_code: int, state: WorkerState,
                           reason: str) -> None:
    fake.launch(make_spec("a").workers(2).build())
    fake.finish("a", worker=1, exit_code=exit_code, at=5.0)
    got = fake.poll(7.0)
    assert states(got)[1] == ("a", 0, 1, state, reason)
    assert (got[1].exit_code, got[1].finished_at) == (exit_code, 5.0)
    assert got[0].state == WorkerState.RUNNING


def test_finished_at_defaults_to_the_poll_that_sees_it_and_stays(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").build())
    fake.fail("a", exit_code=2, message="boom")
    assert fake.poll(10.0)[0].finished_at == 10.0
    later = fake.poll(20.0)[0]
    assert (later.finished_at, later.message, later.state) == (10.0, "boom", WorkerState.FAILED)


def test_fail_refuses_exit_zero(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").build())
    with pytest.raises(ValueError, match="finish"):
        fake.fail("a", exit_code=0)


def test_stop_honoured_at_the_next_poll(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").workers(2).build())
    fake.stop("a", 0, 30.0, "preempted by b")
    got = fake.poll(3.0)
    assert states(got) == [("a", 0, 0, WorkerState.STOPPED, base.STOPPED_IN_TIME),
                           ("a", 0, 1, WorkerState.STOPPED, base.STOPPED_IN_TIME)]
    assert {(s.exit_code, s.message, s.finished_at) for s in got} == {(0, "preempted by b", 3.0)}


def test_a_worker_ignoring_sigterm_is_killed_after_its_grace(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").build())
    fake.ignore_stop("a")
    fake.stop("a", 0, 10.0, "preempted")
    assert fake.poll(100.0)[0].state == WorkerState.RUNNING  # grace starts here
    assert fake.poll(109.0)[0].state == WorkerState.RUNNING
    killed = fake.poll(110.0)[0]
    assert (killed.state, killed.reason, killed.exit_code) == (
        WorkerState.STOPPED, base.KILLED_AFTER_GRACE, -9)


def test_stop_is_idempotent_and_only_brings_the_deadline_forward(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").build())
    fake.ignore_stop("a")
    fake.stop("a", 0, 10.0, "first")
    fake.stop("a", 0, 10.0, "again")
    fake.stop("a", 0, 60.0, "longer")
    assert [c.reason for c in fake.stops] == ["first"]
    fake.poll(0.0)
    fake.stop("a", 0, 1.0, "hurry")
    killed = fake.poll(1.0)[0]
    assert (killed.state, killed.reason, killed.message) == (
        WorkerState.STOPPED, base.KILLED_AFTER_GRACE, "first")


def test_stop_before_start(fake: FakeBackend) -> None:
    fake.auto_start = False
    fake.launch(make_spec("a").build())
    fake.stop("a", 0, 5.0, "never mind")
    got = fake.poll(1.0)[0]
    assert (got.state, got.reason, got.exit_code) == (
        WorkerState.STOPPED, base.STOPPED_BEFORE_START, None)


def test_stop_of_unknown_or_ended_attempt_is_a_no_op(fake: FakeBackend) -> None:
    fake.stop("nobody", 0, 1.0, "x")
    fake.launch(make_spec("a").build())
    fake.finish("a")
    fake.stop("a", 0, 1.0, "late")
    assert fake.stops == []
    assert fake.poll(1.0)[0].state == WorkerState.SUCCEEDED
    with pytest.raises(InvalidRequest, match="grace_seconds"):
        fake.stop("a", 0, -1.0, "x")


def test_a_worker_that_ends_during_its_grace_is_stopped_not_succeeded(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").build())
    fake.ignore_stop("a")
    fake.stop("a", 0, 10.0, "preempted")
    fake.finish("a", exit_code=0)
    got = fake.poll(1.0)[0]
    assert (got.state, got.exit_code) == (WorkerState.STOPPED, 0)


def test_losing_a_node(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").workers(2).build())
    fake.lose_node("local-1", at=4.0)
    got = fake.poll(5.0)
    assert states(got)[1] == ("a", 0, 1, WorkerState.LOST, base.NODE_LOST)
    assert got[1].finished_at == 4.0 and got[0].state == WorkerState.RUNNING
    assert [n.id for n in fake.inventory()] == ["local-0"]


def test_node_health_shows_in_inventory(fake: FakeBackend) -> None:
    fake.set_node_health("local-0", Health.DEGRADED)
    assert fake.inventory()[0].health == Health.DEGRADED


def test_release_forgets_ended_attempts_only(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").build())
    with pytest.raises(AttemptStillRunning, match="stop first"):
        fake.release("a", 0)
    fake.finish("a")
    fake.release("a", 0)
    fake.release("a", 0)
    fake.release("never", 3)
    assert fake.poll(1.0) == []
    assert fake.live_attempts() == []


def test_a_new_backend_over_the_same_world_readopts(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").build())
    fake.launch(make_spec("b").build())
    fake.finish("b", exit_code=4)  # ends while "the control plane is down"
    restarted = FakeBackend(world=fake.world)
    assert states(restarted.poll(9.0)) == [("a", 0, 0, WorkerState.RUNNING, base.RUNNING),
                                           ("b", 0, 0, WorkerState.FAILED, base.EXITED)]
    restarted.launch(make_spec("a").build())
    assert restarted.launches == []  # idempotent across the restart too


def test_logs_read_incrementally(fake: FakeBackend) -> None:
    fake.launch(make_spec("a").build())
    fake.write_log("a", 0, b"hello ")
    chunk, offset = fake.read_logs("a", 0)
    fake.write_log("a", 0, b"world")
    more, offset = fake.read_logs("a", 0, offset)
    assert (chunk, more, offset) == (b"hello ", b"world", 11)
    assert fake.read_logs("a", 0, offset) == (b"", 11)
    with pytest.raises(UnknownAttempt):
        fake.read_logs("a", 7)
    with pytest.raises(UnknownAttempt):
        fake.read_logs("nobody", 0)


def test_injected_launch_failure_starts_nothing(fake: FakeBackend) -> None:
    fake.fail_next_launch("no capacity in zone")
    with pytest.raises(LaunchError, match="no capacity"):
        fake.launch(make_spec("a").build())
    assert fake.poll(0.0) == []
    fake.launch(make_spec("a").build())
    assert len(fake.poll(0.0)) == 1


@pytest.mark.parametrize(
    ("first", "second", "error"),
    [
        pytest.param((0,), (0,), LaunchError, id="whole-gpu-twice"),
        pytest.param((9,), (0,), InvalidLaunchSpec, id="device-out-of-range"),
    ],
)
def test_capacity_checks_catch_double_booking(first: tuple[int, ...], second: tuple[int, ...],
                                              error: type[Exception]) -> None:
    fake = FakeBackend(virtual_nodes(1, 4), check_capacity=True)
    with pytest.raises(error):
        fake.launch(make_spec("a").on("local-0").devices(*first).build())
        fake.launch(make_spec("b").on("local-0").devices(*second).build())


def test_capacity_checks_allow_fractions_that_fit() -> None:
    fake = FakeBackend(virtual_nodes(1, 4), check_capacity=True)
    fake.launch(make_spec("a").on("local-0").devices(0).share(500, 1000).build())
    fake.launch(make_spec("b").on("local-0").devices(0).share(500, 1000).build())
    with pytest.raises(LaunchError, match="over-committed"):
        fake.launch(make_spec("c").on("local-0").devices(0).share(1, 1).build())
    fake.finish("a")
    fake.launch(make_spec("c").on("local-0").devices(0).share(1, 1).build())
    with pytest.raises(InvalidLaunchSpec, match="unknown node"):
        fake.launch(make_spec("d").on("elsewhere").build())
