"""Time-decayed fair share in the simulator: the replay feeds each cycle every queue's decayed
GPU-seconds (the core's own integral), so `usage_weight` changes who goes first, the same way
the control plane's snapshot does."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builders import job, node, queue
from corral.core import ClusterState, QueueUsage, SchedulerConfig, schedule
from corral.core.fairshare import decayed_gpu_seconds
from corral.core.model import Node
from corral.sim.policies import ReplayPolicy
from corral.sim.replay import DecayedUsage, ReplayOptions, run_replay
from corral.sim.session import CoreSession
from corral.sim.trace import Trace, TraceTask

HOUR = 3600.0
#: nothing but queue order at play: no reclaim (`b` is under quota while `a` borrows)
ORDER_ONLY = SchedulerConfig(consolidate=False, reclaim=False, preempt=False,
                             usage_half_life_s=1000.0)


def _task(name: str, queue: str, at: float, duration: float) -> TraceTask:
    return TraceTask(name, 1000, 1024, 8, 1000, qos="BE", submitted=at, duration=duration,
                     queue=queue)


#: `a` holds the whole pool (8 GPUs) for 1000 s; meanwhile `a2` (100 s) and `b2` (300 s) wait,
#: 8 GPUs each: at t=1000 only one of them fits.
HOG = Trace("hog", (Node("n0", "p", "H100", 8, 81920, 128_000, 1_000_000),), (
    _task("a-hog", "a", 0, 1000), _task("a2", "a", 10, 100), _task("b2", "b", 20, 300)))


def _waits(weight: float) -> dict[str, object]:
    policy = ReplayPolicy("corral", replace(ORDER_ONLY, usage_weight=weight), shared_queue=False)
    return run_replay(HOG, policy, 7, ReplayOptions(queues="trace")).report["wait_s"]  # type: ignore[return-value]


def test_usage_weight_lets_the_queue_that_used_less_go_first() -> None:
    """Without usage, `a` and `b` tie (equal quota, demand, nothing running) and `a` goes first by
    name: a2 waits 990 s, b2 1080 s. With usage, `a`'s 8 GPUs x 1000 s (one half-life) put it
    behind `b`: b2 waits 980 s, a2 1290 s. The same each run."""
    off, on = _waits(0.0), _waits(1.0)
    assert off["avg"] == pytest.approx((0 + 990 + 1080) / 3)
    assert on["avg"] == pytest.approx((0 + 1290 + 980) / 3)
    assert _waits(1.0) == on and _waits(0.0) == off


runs = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 8_000),
                          st.floats(0, 5_000), st.floats(0, 5_000)), max_size=12)


@given(runs=runs, now_after=st.floats(0, 5_000), half_life=st.sampled_from([60.0, 1000.0, HOUR]))
def test_running_total_equals_the_sum_of_every_runs_integral(
    runs: list[tuple[str, int, float, float]], now_after: float, half_life: float
) -> None:
    """`DecayedUsage` (O(1) per start/stop) gives what summing the core's integral over every
    run gives, with runs overlapping in any way."""
    usage = DecayedUsage(half_life)
    events = sorted([(start, q, milli) for q, milli, start, _ in runs]
                    + [(start + length, q, -milli) for q, milli, start, length in runs],
                    key=lambda e: (e[0], e[2]))
    for at, q, milli in events:
        usage.change(q, at, milli)
    now = max((e[0] for e in events), default=0.0) + now_after
    got = usage.at(now)
    for q in ("a", "b"):
        expected = sum(decayed_gpu_seconds(milli / 1000, start, start + length, now, half_life)
                       for rq, milli, start, length in runs if rq == q)
        assert got.get(q, 0.0) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_running_work_counts_until_now() -> None:
    usage = DecayedUsage(HOUR)
    usage.change("a", 0.0, 4000)
    assert usage.at(HOUR)["a"] == pytest.approx(decayed_gpu_seconds(4, 0.0, None, HOUR, HOUR))
    assert usage.at(2 * HOUR)["a"] == pytest.approx(decayed_gpu_seconds(4, 0.0, None, 2 * HOUR, HOUR))
    usage.change("a", 2 * HOUR, -4000)
    assert usage.at(3 * HOUR)["a"] == pytest.approx(
        decayed_gpu_seconds(4, 0.0, 2 * HOUR, 3 * HOUR, HOUR))


def test_a_session_with_usage_decides_as_schedule_does() -> None:
    """The session hands usage to the core's QueueBook as `schedule` does with ClusterState.usage."""
    nodes = [node("n").gpus(8).build()]
    queues = [queue("a", quota=4), queue("b", quota=4)]
    work = [job("a-job").queue("a").gpus(8).submitted(1).build(),
            job("b-job").queue("b").gpus(8).submitted(1).build()]
    demand = {"a": 8000, "b": 8000}
    for weight, first in ((0.0, "a-job"), (1.0, "b-job")):
        config = replace(ORDER_ONLY, usage_weight=weight)
        used = {"a": 8 * 1000.0}
        plan = schedule(ClusterState(tuple(nodes), tuple(queues), tuple(work),
                                     (QueueUsage("a", used["a"]),)), 100.0, config)
        got = CoreSession(nodes, queues, config).cycle(100.0, work, demand, used)
        assert set(got.placed) == {p.workload_id for p in plan.placements} == {first}
