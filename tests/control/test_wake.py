"""`ControlLoop.run` steps on events, coalesced (issue 16, `corral.control.wake`): ends that
arrive together are planned once, a lone end is acted on without waiting the interval, and a
workload written by another thread (a cancel) wakes the loop. Driven on a manual clock:
the loop's waits advance it, so the tests count steps and plans, never wall time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from corral.backends.base import WorkerStatus
from corral.backends.fake import FakeBackend
from corral.control.cancellation import cancel
from corral.control.launch_pool import LaunchPool
from corral.control.loop import StepReport
from corral.control.wake import Wake
from corral.store import Store

from .rig import Rig, admin_api

INTERVAL_S, COALESCE_S = 1.0, 0.05


class EndsBackend(FakeBackend):
    """A fake that, like Slurm's runners' exit records, can say that a worker ended since the
    last poll without one (`changed_since_poll`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.unseen = False

    def finish(self, workload_id: str, *args: object, **kwargs: object) -> None:
        super().finish(workload_id, *args, **kwargs)  # type: ignore[arg-type]
        self.unseen = True

    def poll_changes(self, now: float) -> tuple[list[WorkerStatus], list[tuple[str, int]], bool]:
        self.unseen = False
        return super().poll_changes(now)

    def changed_since_poll(self) -> bool:
        return self.unseen


class Driven:
    """The loop's `run` on the rig's manual clock: each wait advances it (to the next thing the
    test scheduled at most, as a wait on an event ends when it is set, however the loop then
    checks) and fires what the test scheduled by then; `stop` is set once the clock passes
    `until`."""

    def __init__(self, rig: Rig, coalesce_s: float = COALESCE_S, *, news: bool = True) -> None:
        self.rig, self.start = rig, rig.clock.now()
        self.stop = threading.Event()
        self.events: list[tuple[float, Callable[[], None]]] = []
        self.until = self.start
        self.plans: list[float] = []  # when each step that planned began, from the start
        self.steps: list[float] = []
        backend = rig.backend
        assert isinstance(backend, EndsBackend)
        # news=False: a backend with no `changed_since_poll` (local, agent, Ray, Kubernetes)
        rig.loop.wake = Wake(INTERVAL_S, coalesce_s,
                             news=backend.changed_since_poll if news else None,
                             now=rig.clock.now, pause=self.pause)
        rig.loop.observers.append(self.observe)
        self.pauses = 0

    def at(self, t: float, event: Callable[[], None]) -> None:
        self.events.append((self.start + t, event))
        self.events.sort(key=lambda e: e[0])

    def pause(self, event: threading.Event, seconds: float) -> None:
        self.pauses += 1
        assert self.pauses < 10_000, "the loop's wait spins without the clock moving"
        if event.is_set():
            return
        until = self.rig.clock.now() + seconds
        if event is not self.stop and self.events:  # the wait ends at what may wake it
            until = min(until, self.events[0][0])
        self.rig.clock.advance(until - self.rig.clock.now())
        now = self.rig.clock.now()
        while self.events and self.events[0][0] <= now + 1e-9:
            self.events.pop(0)[1]()
        if now >= self.until:
            self.stop.set()

    def observe(self, report: StepReport) -> None:
        began = round(self.rig.clock.now() - self.start, 3)
        self.steps.append(began)
        if report.plan is not None:
            self.plans.append(began)

    def run(self, until: float) -> None:
        self.until = self.start + until
        self.rig.loop.run(self.stop)


@pytest.fixture
def rig(store: Store) -> Rig:
    r = Rig(store)
    r.backend = EndsBackend(r.nodes, world=r.world, check_capacity=True)
    r.loop = r.new_loop(r.backend)
    return r


def _fill(rig: Rig, waiting: int) -> tuple[list[str], list[str]]:
    """8 one-GPU workloads that the first step places on the rig's 8 GPUs, `waiting` more."""
    first = [rig.submit(name=f"a{i}") for i in range(8)]
    rest = [rig.submit(name=f"b{i}") for i in range(waiting)]
    return first, rest


def test_ends_that_arrive_together_are_planned_once_and_at_once(rig: Rig) -> None:
    first, rest = _fill(rig, 8)
    run = Driven(rig)
    run.at(0.3, lambda: [rig.backend.finish(w) for w in first])  # type: ignore[func-returns-value]
    run.run(until=0.9)
    # one plan for the 8 ends, made as soon as the loop's check saw them, not at the interval
    assert [t for t in run.plans if t > 0] == [0.3]
    assert [rig.state(w) for w in rest] == ["starting"] * 8  # launched in that step
    assert [rig.state(w) for w in first] == ["succeeded"] * 8


@pytest.mark.parametrize(("coalesce_s", "most_plans"), [(COALESCE_S, 2), (0.0, 8)])
def test_ends_that_keep_arriving_are_planned_at_most_once_a_window(
        rig: Rig, coalesce_s: float, most_plans: int) -> None:
    """8 ends 5 ms apart: with the window, 2 plans (the first end, then the 7 that came during
    the window); with no window (0) a plan for every end, as stepping back to back did."""
    first, rest = _fill(rig, 8)
    run = Driven(rig, coalesce_s)
    for i, w in enumerate(first):
        run.at(0.3 + 0.005 * i, lambda w=w: rig.backend.finish(w))  # type: ignore[misc]
    run.run(until=0.9)
    plans = [t for t in run.plans if t > 0]
    assert len(plans) == most_plans  # the window is what coalesces
    assert plans[0] == 0.3 and plans[-1] < 0.3 + 0.04 + COALESCE_S
    assert "queued" not in [rig.state(w) for w in rest]  # each placed and launched


def test_a_quiet_loop_steps_once_an_interval(rig: Rig) -> None:
    _fill(rig, 0)
    run = Driven(rig)
    run.run(until=3.5)
    assert run.steps == [0.0, 1.0, 2.0, 3.0]
    assert rig.loop.wake.by_event == 0


@pytest.mark.parametrize(("news", "pauses"), [(False, 4), (True, round(3.5 / COALESCE_S))])
def test_an_idle_loop_without_news_waits_on_its_event_to_the_interval(
        rig: Rig, news: bool, pauses: int) -> None:
    """A backend without news (local, agent, Ray, Kubernetes): only another thread's write or a
    launch's return can wake the loop, so an idle one pauses once an interval, not once every
    `coalesce_s` (it woke 20 times a second for nothing). With news it must ask every window."""
    _fill(rig, 0)
    run = Driven(rig, news=news)
    run.run(until=3.5)
    assert run.steps == [0.0, 1.0, 2.0, 3.0]
    assert run.pauses == pauses


def test_a_submission_through_the_api_wakes_the_loop(rig: Rig) -> None:
    """A workload submitted through this process's API (`POST /v1/workloads`, stored by the
    submission writer's group commit on a thread of its own) wakes the loop, which places it
    then, not at the next interval: the store passes committed inserts to its subscribers."""
    client, admin = admin_api(rig)
    run = Driven(rig, news=False)
    new: list[str] = []

    def submit_through_the_api() -> None:
        spec = {"name": "late", "queue": "q", "gpus": 1, "cpu": 0.1, "memory": 64,
                "command": ["run"]}
        r = client.post("/v1/workloads", json=spec, headers=admin)
        assert r.status_code == 201, r.text
        new.extend(w["id"] for w in r.json()["workloads"])

    run.at(0.4, submit_through_the_api)
    run.run(until=0.9)
    assert run.steps == [0.0, 0.4]
    assert rig.loop.wake.by_event == 1
    assert rig.state(new[0]) == "starting"  # placed and launched in the step it woke


def test_a_cancel_from_another_thread_wakes_the_loop(rig: Rig) -> None:
    """A workload written by another thread of this process (the API's) wakes the loop; what
    the loop writes itself does not (it steps once an interval when nothing else happens)."""
    first, _ = _fill(rig, 0)
    run = Driven(rig)

    def cancel_elsewhere() -> None:  # as the API's threads do
        t = threading.Thread(target=cancel, args=(rig.store, first[0], rig.clock.now(), "ann"))
        t.start()
        t.join()

    run.at(0.4, cancel_elsewhere)
    run.run(until=0.9)
    assert run.steps == [0.0, 0.4]
    assert [s.workload_id for s in rig.backend.stops] == [first[0]]  # stopped at once


def test_a_standby_is_not_woken_by_writes_of_its_other_threads(rig: Rig) -> None:
    """A standby's step only retries the lease, a write transaction: the API threads of a
    standby replica serving cancels must not make it step on each one, only once an interval
    (review R30 should-fix 1: 8 cancels 60 ms apart made a standby step 9 times)."""
    from corral.control import Leadership

    first, _ = _fill(rig, 0)
    assert Leadership(rig.store, holder="elsewhere", ttl_s=15.0).ensure(rig.clock.now())
    run = Driven(rig)

    def cancel_elsewhere(wid: str) -> None:  # as the standby's API threads do
        t = threading.Thread(target=cancel, args=(rig.store, wid, rig.clock.now(), "ann"))
        t.start()
        t.join()

    for i, w in enumerate(first):
        run.at(0.1 + 0.06 * i, lambda w=w: cancel_elsewhere(w))  # type: ignore[misc]
    run.run(until=1.5)
    assert run.steps == [0.0, 1.0]  # once an interval, none of the 8 cancels woke it
    assert not rig.loop.leadership.leading
    assert rig.loop.wake.by_event == 0


def test_a_window_or_interval_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="coalesce_s"):
        Wake(1.0, -0.1)


def test_a_launch_that_returned_wakes_the_loop(rig: Rig) -> None:
    """With launches off the loop's thread (launch_pool.py), a batch's return is news: the
    next step harvests it and polls what it launched (a short job may have ended already)."""
    assert rig.loop.launches.on_done == rig.loop.wake.set
    woken: list[int] = []
    pool: LaunchPool[str] = LaunchPool(threads=1)
    pool.on_done = lambda: woken.append(1)
    _fill(rig, 0)
    rig.step()
    launched = rig.backend.launches[0]  # launched again: the fake answers as launched
    pool.submit(rig.backend, [("a", launched)])
    pool.submit(rig.backend, [("b", launched)])
    pool.drain(timeout=30)
    pool.close()
    assert woken == [1, 1]  # once per batch


def test_a_stop_set_alone_is_seen_within_the_stop_check_however_long_the_interval() -> None:
    """Nothing sets the wake's event when a caller sets `stop` alone (a signal handler, a
    bench): with no backend news the wait must still look at `stop` at least every
    STOP_CHECK_S, not sleep to a 60 s interval's end (`corral up`'s shutdown joins the loop
    for 30 s, then resigns its lease)."""
    from corral.control.wake import STOP_CHECK_S

    clock = [0.0]
    stop = threading.Event()

    def pause(event: threading.Event, seconds: float) -> None:
        clock[0] += seconds
        if clock[0] >= 0.1:
            stop.set()  # set during the first sleep, by someone who does not know the wake

    wake = Wake(60.0, COALESCE_S, now=lambda: clock[0], pause=pause)
    wake.wait(wake.arm(), stop)
    assert clock[0] <= STOP_CHECK_S < 60.0
    assert wake.by_interval == 0 and wake.by_event == 0


def _fake_wake(interval_s: float, step_s: float) -> tuple[Wake, list[float], float]:
    """A wake on a manual clock whose last step began at 0 and took `step_s`."""
    clock = [step_s]
    wake = Wake(interval_s, COALESCE_S, now=lambda: clock[0],
                pause=lambda event, seconds: clock.__setitem__(0, clock[0] + seconds))
    return wake, clock, 0.0


@pytest.mark.parametrize(("step_s", "due"), [(0.002, COALESCE_S), (0.1, 1.0), (0.6, 5.0)])
def test_an_arrival_steps_the_loop_no_sooner_than_its_share_of_the_time(
        step_s: float, due: float) -> None:
    """A submission (new work, no GPU freed) wakes the loop no sooner than ARRIVAL_DUTY (10)
    times the last step's duration after that step began, and never later than the interval:
    a stream of submissions cannot make the loop step every `coalesce_s` over a growing
    backlog (it took ~35% of `corral up`'s submissions/s), and a lone one to a quick loop
    still steps within `coalesce_s`."""
    wake, clock, began = _fake_wake(5.0, step_s)
    wake.set(arrival=True)
    wake.wait(began, threading.Event())
    assert clock[0] == pytest.approx(due)
    assert (wake.by_event, wake.by_interval) == ((1, 0) if due < 5.0 else (0, 1))


def test_an_urgent_event_during_an_arrivals_wait_steps_at_once() -> None:
    """An end or a cancel that comes while the loop waits out an arrival's share is not held
    behind it: the step starts within `coalesce_s` of the step's start, here at once."""
    wake, clock, began = _fake_wake(5.0, 0.1)  # the arrival alone would wait to 1.0
    stop = threading.Event()

    def pause(event: threading.Event, seconds: float) -> None:
        clock[0] += min(seconds, 0.2)
        if clock[0] >= 0.3:
            wake.set()  # an end

    wake._pause = pause
    wake.set(arrival=True)
    wake.wait(began, stop)
    assert clock[0] == pytest.approx(0.3)
    assert wake.by_event == 1
