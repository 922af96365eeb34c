"""Launches off the loop's thread (issue 16): a slow engine never holds the next cycle's
decision, an attempt in the pool is never handed over twice (reconcile asks to relaunch a
`starting` row the backend does not report yet), back-pressure keeps work `scheduled` while
the pool is full, and launch errors come back to the loop's thread and are handled as in the
synchronous path. The engine is a fake whose launches wait at a gate the test opens.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace
from typing import cast

import pytest

from corral.backends.base import Backend, LaunchSpec, WorkerStatus
from corral.backends.errors import InvalidLaunchSpec
from corral.backends.fake import FakeBackend
from corral.control import lifecycle as L
from corral.control.launch_pool import LaunchPool, _Batch
from corral.store import Store

from .rig import Rig


class GatedBackend(FakeBackend):
    """Launches wait at `gate`; counts each attempt handed to it; refuses names "bad*"."""

    concurrent_launch = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.handed: Counter[tuple[str, int]] = Counter()
        self.calls: list[list[str]] = []  # the workloads of each launch_many call
        self.polls = 0

    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        with self.lock:
            self.handed.update((s.workload_id, s.attempt) for s in specs)
            self.calls.append([s.workload_id for s in specs])
        assert self.gate.wait(timeout=30), "the test never opened the gate"
        out: list[Exception | None] = []
        for spec in specs:
            if spec.workload_id.startswith("bad"):
                out.append(InvalidLaunchSpec("command", "refused by the test"))
                continue
            with self.lock:
                self.launch(spec)
            out.append(None)
        return out

    def poll(self, now: float) -> list[WorkerStatus]:
        self.polls += 1
        with self.lock:
            return super().poll(now)


@pytest.fixture
def rig(store: Store) -> Rig:
    r = Rig(store)
    r.backend = GatedBackend(r.nodes, world=r.world, check_capacity=True)
    r.loop = r.new_loop(r.backend)
    return r


def gated(rig: Rig) -> GatedBackend:
    assert isinstance(rig.backend, GatedBackend)
    return rig.backend


def settle(rig: Rig, steps: int = 3) -> None:
    """Let the pool finish what it holds, then step so the loop harvests and observes it."""
    rig.loop.launches.drain(timeout=30)
    rig.step(steps)


def test_a_slow_launch_holds_no_cycle_and_is_never_handed_over_twice(rig: Rig) -> None:
    backend = gated(rig)
    ids = [rig.submit(name=f"w{i}") for i in range(2)]
    rig.step()  # returns although the engine has not answered
    assert [rig.state(w) for w in ids] == ["starting"] * 2
    polls = backend.polls
    rig.step(4)  # the loop keeps observing and deciding; the backend reports nothing yet
    assert backend.polls == polls + 4
    assert sorted(backend.handed.elements()) == [(w, 0) for w in sorted(ids)]
    backend.gate.set()
    settle(rig)
    assert [rig.state(w) for w in ids] == ["running"] * 2
    assert set(backend.handed.values()) == {1}  # each attempt launched once
    assert [rig.get(w).attempt for w in ids] == [0, 0]


def test_back_pressure_keeps_work_scheduled_until_the_pool_has_room(rig: Rig) -> None:
    backend = gated(rig)
    rig.loop.launches = LaunchPool(max_in_flight=1)
    ids = [rig.submit(name=f"w{i}") for i in range(3)]
    rig.step(3)
    assert sorted(rig.state(w) for w in ids) == ["scheduled", "scheduled", "starting"]
    assert sum(backend.handed.values()) == 1
    backend.gate.set()
    for _ in range(6):
        settle(rig, 1)
    assert [rig.state(w) for w in ids] == ["running"] * 3
    assert set(backend.handed.values()) == {1} and len(backend.handed) == 3


def test_launch_errors_come_back_to_the_loop_and_fail_only_their_workload(rig: Rig) -> None:
    backend = gated(rig)
    bad, good = rig.submit(name="bad"), rig.submit(name="good")
    rig.step()
    backend.gate.set()
    settle(rig)
    rec = rig.get(bad)
    assert (rec.state, rec.reason_code) == ("failed", L.LAUNCH_FAILED)
    assert "refused by the test" in rec.reason_message
    assert rig.state(good) == "running"


def test_batches_waiting_for_a_thread_go_to_the_engine_as_one_call(rig: Rig) -> None:
    """Group commit: while the engine is busy with one batch, the batches the next steps hand
    over wait, and the thread that comes free launches them in one `launch_many` (for Slurm:
    one sbatch per node and shape instead of one per batch), each with its own errors."""
    backend = gated(rig)
    rig.loop.launches = LaunchPool(threads=1)
    first = rig.submit(name="first")
    rig.step()  # the one thread is now held at the gate with [first]
    later = [rig.submit(name="later"), rig.submit(name="bad")]
    rig.step()
    last = rig.submit(name="last")
    rig.step()  # two batches wait for the thread: [later, bad], [last]
    assert [rig.state(w) for w in (*later, last)] == ["starting"] * 3
    backend.gate.set()
    settle(rig)
    # (a refused launch may be retried as a new attempt later: a call of its own)
    assert [sorted(c) for c in backend.calls[:2]] == [[first], sorted([*later, last])]
    assert [rig.state(w) for w in (first, later[0], last)] == ["running"] * 3
    rec = rig.get(later[1])  # the refused one fails alone, as in a batch of its own
    assert (rec.state, rec.reason_code) == ("failed", L.LAUNCH_FAILED)
    assert [backend.handed[(w, 0)] for w in (first, later[0], last)] == [1, 1, 1]


def test_a_backend_that_does_not_allow_it_launches_inside_the_step(rig: Rig) -> None:
    rig.backend = FakeBackend(rig.nodes, world=rig.world, check_capacity=True)
    rig.loop = rig.new_loop(rig.backend)
    wid = rig.submit()
    rig.step()
    assert rig.backend.live_attempts() == [(wid, 0)]  # launched before step returned


class RaisingBackend(GatedBackend):
    """A `launch_many` given a "boom*" workload raises as a whole (an engine the call lost)."""

    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        if any(s.workload_id.startswith("boom") for s in specs):
            with self.lock:
                self.calls.append([s.workload_id for s in specs])
            assert self.gate.wait(timeout=30), "the test never opened the gate"
            raise RuntimeError("the engine lost the call")
        return super().launch_many(specs)


def test_a_merged_call_that_raises_fails_only_the_batch_that_raises_alone(rig: Rig) -> None:
    """Merging is the pool's choice: a batch waiting beside one whose call raises as a whole
    keeps its own outcome (launched in a call of its own), not the other's exception."""
    backend = RaisingBackend(rig.nodes, world=rig.world, check_capacity=True)
    rig.backend, rig.loop = backend, rig.new_loop(backend)
    rig.loop.launches = LaunchPool(threads=1)
    first = rig.submit(name="first")
    rig.step()  # the one thread is held at the gate with [first]
    boom = rig.submit(name="boom")
    rig.step()
    last = rig.submit(name="last")
    rig.step()  # two batches wait for the thread: [boom], [last]
    backend.gate.set()
    rig.loop.launches.drain(timeout=30)
    outcomes = {spec.workload_id: error for _, spec, error in rig.loop.launches.harvest()}
    assert backend.calls[:4] == [[first], [boom, last], [boom], [last]]
    assert outcomes[first] is None and outcomes[last] is None
    assert isinstance(outcomes[boom], RuntimeError)
    assert backend.handed[(last, 0)] == 1 and backend.handed[(first, 0)] == 1



class ExitingEngine:
    """The merged call raises; going alone, "boom"'s batch raises an interpreter exit."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        self.calls.append([s.workload_id for s in specs])
        if len(specs) > 1:
            raise RuntimeError("the engine lost the call")
        if specs[0].workload_id == "boom":
            raise SystemExit(3)
        return [None]


def test_an_exit_while_going_alone_leaves_no_batch_without_an_outcome() -> None:
    """A batch never waits forever: when an interpreter exit interrupts the batches going
    alone after a merged call raised, each batch not yet tried gets that exit as its outcome
    (the pool's thread then dies with it), so `drain` and `harvest` return every batch."""
    engine = ExitingEngine()
    pool: LaunchPool[str] = LaunchPool(threads=1)
    batches = [_Batch(cast(Backend, engine), [(name, cast(LaunchSpec, SimpleNamespace(
        workload_id=name)))]) for name in ("boom", "last")]
    pool._waiting.extend(batches)  # both wait for the one thread: one merged call
    pool._batches.extend(batches)
    with pytest.raises(SystemExit):
        pool._launch_waiting()
    pool.drain(timeout=5)
    outcomes = {item: error for item, _, error in pool.harvest()}
    assert engine.calls == [["boom", "last"], ["boom"]]
    assert set(outcomes) == {"boom", "last"}
    assert all(isinstance(e, RuntimeError) and str(e) == "3" for e in outcomes.values())
