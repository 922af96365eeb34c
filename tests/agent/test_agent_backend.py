"""The agent backend and its store mailbox, without processes: a SQLite store, a test clock,
and reports written as the API writes them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.agent.protocol import HostFacts
from corral.backends.agent import AgentBackend, WorkerReport
from corral.backends.base import LaunchSpec, WorkerState
from corral.backends.errors import AttemptStillRunning, InvalidLaunchSpec, LaunchConflict
from corral.core.model import Health, WorkerAssignment
from corral.store import Store
from corral.store import agents as AG
from corral.store.agents import JoinRefused, StoreMailbox
from corral.store.database import sqlite_url


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (sqlite_url(tmp_path / "corral.db") if request.param == "sqlite"
           else request.getfixturevalue("postgres_database_url"))
    s = Store(url)
    s.upgrade()
    yield s
    s.close()


def _join(store: Store, node: str, now: float, gpus: int = 4) -> str:
    with store.write() as c:
        _, token = AG.create_join_token(c, "admin", now)
        return AG.join(c, token, node, HostFacts(gpus=gpus, gpu_model="h100", zone="z1",
                                                 address=f"10.0.0.{len(node)}",
                                                 instance_id=f"i-{node}").model_dump(),
                       now, live_for_s=30)


def _spec(*nodes: str, attempt: int = 0) -> LaunchSpec:
    return LaunchSpec(workload_id="job-1", attempt=attempt, queue="q", command=("true",),
                      assignments=tuple(WorkerAssignment(i, n, (0, 1), 1000, 81920) for i, n in
                                        enumerate(nodes)))


def _report(store: Store, node: str, now: float, state: str, worker: int = 0,
            attempt: int = 0, code: int | None = None) -> None:
    with store.write() as c:
        AG.record_heartbeat(c, node, now, [WorkerReport("job-1", attempt, worker, state,
                                                        state.title(), code, 0.0)])


def test_launch_assigns_a_gang_once_with_one_rendezvous(store: Store) -> None:
    clock = Clock()
    _join(store, "a", clock.t)
    _join(store, "b", clock.t)
    backend = AgentBackend(StoreMailbox(store), heartbeat_timeout_s=30, restart_grace_s=0,
                           clock=clock)
    spec = _spec("a", "b")
    backend.launch(spec)
    backend.launch(spec)  # idempotent
    with pytest.raises(LaunchConflict):
        backend.launch(LaunchSpec(**{**spec.as_record(), "assignments": spec.assignments,
                                     "command": ("false",)}))
    with store.read() as c:
        seq_a, on_a = AG.assignments_for(c, "a")
        _, on_b = AG.assignments_for(c, "b")
    assert [w.worker for w in on_a] == [0] and [w.worker for w in on_b] == [1]
    assert {(w.master_addr, w.master_port) for w in on_a + on_b} == {
        (on_a[0].master_addr, on_a[0].master_port)}  # worker 0's host, one port
    assert on_a[0].master_addr == "10.0.0.1" and seq_a == 1
    statuses = backend.poll(clock.t)
    assert [(s.worker, s.state) for s in statuses] == [(0, WorkerState.STARTING),
                                                        (1, WorkerState.STARTING)]


def test_launch_refuses_unknown_lost_and_too_small_nodes(store: Store) -> None:
    clock = Clock()
    _join(store, "a", clock.t, gpus=1)
    backend = AgentBackend(StoreMailbox(store), heartbeat_timeout_s=30, restart_grace_s=0,
                           clock=clock)
    with pytest.raises(InvalidLaunchSpec, match="has no agent"):
        backend.launch(_spec("nope"))
    with pytest.raises(InvalidLaunchSpec, match="has 1 GPUs"):
        backend.launch(_spec("a"))
    clock.t += 31
    with pytest.raises(InvalidLaunchSpec, match="lost"):
        backend.launch(LaunchSpec(workload_id="j", attempt=0, queue="q", command=("true",),
                                  assignments=(WorkerAssignment(0, "a", (0,), 1000, 81920),)))


def test_reports_become_statuses_and_only_the_first_end_counts(store: Store) -> None:
    clock = Clock()
    _join(store, "a", clock.t)
    backend = AgentBackend(StoreMailbox(store), heartbeat_timeout_s=30, restart_grace_s=0,
                           clock=clock)
    backend.launch(_spec("a"))
    _report(store, "a", clock.t, "running")
    assert backend.poll(clock.t)[0].state == WorkerState.RUNNING
    with pytest.raises(AttemptStillRunning):
        backend.release("job-1", 0)
    _report(store, "a", clock.t + 1, "failed", code=3)
    _report(store, "a", clock.t + 2, "succeeded", code=0)  # a late, different end: ignored
    status = backend.poll(clock.t + 3)[0]
    assert (status.state, status.exit_code, status.finished_at) == (WorkerState.FAILED, 3,
                                                                    clock.t + 1)
    backend.release("job-1", 0)
    assert backend.poll(clock.t + 3) == []
    with store.read() as c:
        assert AG.assignments_for(c, "a")[1] == []  # the agent is told to forget it


def test_a_silent_node_is_fenced_for_good_and_comes_back_healthy(store: Store) -> None:
    clock = Clock()
    _join(store, "a", clock.t)
    backend = AgentBackend(StoreMailbox(store), heartbeat_timeout_s=30, restart_grace_s=0,
                           clock=clock)
    backend.launch(_spec("a"))
    _report(store, "a", clock.t, "running")
    clock.t += 29
    assert backend.poll(clock.t)[0].state == WorkerState.RUNNING
    assert backend.inventory()[0].health == Health.HEALTHY
    clock.t += 2
    lost = backend.poll(clock.t)[0]
    assert (lost.state, lost.reason) == (WorkerState.LOST, "NodeLost")
    assert backend.inventory()[0].health == Health.UNHEALTHY
    _report(store, "a", clock.t + 1, "running")  # the agent is back: its report changes nothing
    assert backend.poll(clock.t + 1)[0].state == WorkerState.LOST
    assert backend.inventory()[0].health == Health.HEALTHY
    with store.read() as c:
        _, workers = AG.assignments_for(c, "a")
    assert [w.fenced for w in workers] == [True]  # what the agent reads: kill it


def test_a_restarted_server_does_not_count_its_own_downtime(store: Store) -> None:
    clock = Clock()
    _join(store, "a", clock.t)
    clock.t += 600  # the control plane was down for ten minutes
    backend = AgentBackend(StoreMailbox(store), heartbeat_timeout_s=30, restart_grace_s=15,
                           clock=clock)
    assert backend.inventory()[0].health == Health.HEALTHY
    clock.t += 44  # the timeout plus the grace for agents backing off: still not lost
    assert backend.inventory()[0].health == Health.HEALTHY
    clock.t += 2
    assert backend.inventory()[0].health == Health.UNHEALTHY


def test_stop_keeps_the_earliest_deadline_and_the_first_reason(store: Store) -> None:
    clock = Clock()
    _join(store, "a", clock.t)
    backend = AgentBackend(StoreMailbox(store), heartbeat_timeout_s=30, restart_grace_s=0,
                           clock=clock)
    backend.launch(_spec("a"))
    backend.stop("job-1", 0, 10, "Preempted")
    backend.stop("job-1", 0, 20, "Cancelled")  # never extends
    backend.stop("job-1", 0, 5, "Cancelled")  # brought forward, first reason kept
    with store.read() as c:
        w = AG.assignments_for(c, "a")[1][0]
    assert (w.stop_deadline, w.stop_reason) == (clock.t + 5, "Preempted")


def test_join_tokens_are_spent_and_live_nodes_are_not_taken_over(store: Store) -> None:
    facts = HostFacts(gpus=1).model_dump()
    with store.write() as c:
        _, token = AG.create_join_token(c, "admin", 0.0, uses=1)
        credential = AG.join(c, token, "a", facts, 0.0, live_for_s=30)
        assert AG.node_by_credential(c, credential).node_id == "a"  # type: ignore[union-attr]
        with pytest.raises(JoinRefused, match="used up"):
            AG.join(c, token, "b", facts, 0.0, live_for_s=30)
        record, second = AG.create_join_token(c, "admin", 0.0, uses=5)
        with pytest.raises(JoinRefused, match="alive") as e:
            AG.join(c, second, "a", facts, 10.0, live_for_s=30)
        assert e.value.status == 409
        again = AG.join(c, second, "a", facts, 100.0, live_for_s=30)  # silent: a new host
        assert AG.node_by_credential(c, credential) is None  # the old credential is dead
        assert AG.node_by_credential(c, again) is not None
        AG.revoke_join_token(c, record.id)
        with pytest.raises(JoinRefused, match="revoked"):
            AG.join(c, second, "c", facts, 100.0, live_for_s=30)


def test_shipped_logs_are_idempotent_by_offset(store: Store) -> None:
    with store.write() as c:
        assert AG.append_log(c, "w", 0, 0, 0, b"") == 0
        assert AG.append_log(c, "w", 0, 0, 0, b"hello ") == 6
        assert AG.append_log(c, "w", 0, 0, 3, b"lo world") == 11  # resent overlap trimmed
        assert AG.append_log(c, "w", 0, 0, 20, b"gap") == 11  # a hole: resend from 11
        assert AG.read_log(c, "w", 0, 0, 0, 100) == b"hello world"
        assert AG.read_log(c, "w", 0, 0, 4, 3) == b"o w"


def test_shipped_log_times_date_each_line_on_the_server_clock(store: Store) -> None:
    """Issue 13: `corral logs --timestamps` on agents. The samples (size, server time) are kept
    beyond the largest size already kept (a resent batch adds nothing); a line is dated by the
    first sample covering its last byte, which may lie past the chunk read; a line no sample
    covers yet has no time."""
    now = Clock()
    _join(store, "a", now())
    backend = AgentBackend(StoreMailbox(store), clock=now)
    backend.launch(_spec("a"))
    with store.write() as c:
        AG.append_log(c, "job-1", 0, 0, 0, b"one\ntwo\nthree\nfour")
        AG.append_log_times(c, "job-1", 0, 0, [(4, 10.0), (8, 11.0)])
        AG.append_log_times(c, "job-1", 0, 0, [(4, 99.0), (8, 99.0), (14, 12.0)])  # resent
    assert backend.log_line_times("job-1", 0, 0, b"one\ntwo\nthree\nfour") == [
        10.0, 11.0, 12.0, None]
    assert backend.log_line_times("job-1", 0, 4, b"two\n") == [11.0]
    assert backend.log_line_times("job-1", 0, 8, b"th") == [12.0]  # the sample after the read


def test_the_agent_backs_off_exponentially_with_jitter_up_to_a_cap() -> None:
    import random

    from corral.agent.client import Backoff

    b = Backoff(base_s=0.5, cap_s=10.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    for n, d in enumerate(delays):
        full = min(10.0, 0.5 * 2**n)
        assert full / 2 <= d <= full  # jittered in [half, whole] of the exponential step
    assert max(delays) <= 10.0
    b.reset()
    assert b.next_delay() <= 0.5


def test_the_lease_stays_fresh_through_a_backoff_longer_than_the_lease(tmp_path: Path) -> None:
    """A control-plane restart grows the agent's backoff past its lease; the workers of a live
    agent must not be killed for it (found as a flaky chaos test: a 4 s backoff, a 4 s lease)."""
    import random
    import threading

    from corral.agent.client import Backoff, Unreachable
    from corral.agent.runtime import Agent, AgentSettings

    settings = AgentSettings(server="http://127.0.0.1:9", data_dir=tmp_path / "agent",
                             node_id="host-x", lease_s=0.4,
                             backoff=Backoff(base_s=2.0, cap_s=2.0, rng=random.Random(1)))
    agent = Agent(settings, HostFacts(gpus=1))
    ages: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            ages.append(time.time() - agent.lease.stat().st_mtime)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        agent._wait(Unreachable("connection refused"))  # one backoff of 1-2 s, 3-5 leases
    finally:
        done.set()
        watcher.join()
    assert len(ages) > 20
    assert max(ages) < settings.lease_s, max(ages)
