"""Metric math: percentiles, time averages, shares against deserved shares, Jain's index."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.sim.failures import FailureModel
from corral.sim.metrics import TimeWeighted, share_report, summary


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([5.0], {"avg": 5.0, "median": 5.0, "p95": 5.0, "p99": 5.0, "count": 1}),
        ([1, 2, 3, 4], {"avg": 2.5, "median": 2.5, "p95": 3.85, "p99": 3.97, "count": 4}),
        (list(range(101)), {"avg": 50.0, "median": 50.0, "p95": 95.0, "p99": 99.0, "count": 101}),
    ],
    ids=["one", "four", "hundred-and-one"],
)
def test_summary(values: list[float], expected: dict[str, float]) -> None:
    assert summary(values) == expected


def test_summary_of_nothing_is_nan() -> None:
    s = summary([])
    assert s["count"] == 0 and math.isnan(s["avg"]) and math.isnan(s["p99"])


def test_time_weighted_average() -> None:
    tw = TimeWeighted(start=100.0)
    tw.set(100.0, 2.0)   # 2 from 100 to 150
    tw.set(150.0, 6.0)   # 6 from 150 to 200
    tw.advance(200.0)
    assert tw.integral == 2 * 50 + 6 * 50
    assert tw.average(100.0, 200.0) == 4.0


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 1000)), min_size=1, max_size=20))
def test_time_weighted_is_between_min_and_max(steps: list[tuple[float, float]]) -> None:
    tw = TimeWeighted(start=0.0)
    t = 0.0
    for dt, value in steps:
        tw.set(t, value)
        t += dt
    tw.advance(t)
    if t > 0:
        values = [v for _, v in steps]
        assert min(values) - 1e-6 <= tw.average(0.0, t) <= max(values) + 1e-6


@pytest.mark.parametrize(
    ("used", "deserved", "jain"),
    [
        ({"a": 4.0, "b": 4.0}, {"a": 4.0, "b": 4.0}, 1.0),
        ({"a": 2.0, "b": 1.0}, {"a": 2.0, "b": 2.0}, 0.9),
        ({"a": 8.0, "b": 0.0}, {"a": 4.0, "b": 4.0}, 0.5),
    ],
    ids=["everyone-gets-its-share", "one-at-half", "one-takes-all"],
)
def test_share_report(used: dict[str, float], deserved: dict[str, float], jain: float) -> None:
    per, j = share_report(used, deserved)
    assert j == pytest.approx(jain)
    assert per["a"]["ratio"] == pytest.approx(used["a"] / deserved["a"])


def test_queue_without_deserved_share_is_left_out_of_jain() -> None:
    per, j = share_report({"a": 1.0, "idle": 0.0}, {"a": 1.0, "idle": 0.0})
    assert math.isnan(per["idle"]["ratio"]) and j == 1.0


@pytest.mark.parametrize(
    ("interval", "ran", "notice", "kept"),
    [(None, 1500, None, 0.0), (600, 1500, None, 1200.0), (600, 1500, 10, 1200.0),
     (600, 1500, 30, 1500.0), (None, 1500, 120, 1500.0)],
    ids=["no-checkpoints-crash", "periodic", "notice-too-short", "notice-enough", "notice-only"],
)
def test_checkpoint_rules(interval: float | None, ran: float, notice: float | None, kept: float) -> None:
    assert FailureModel(checkpoint_interval_s=interval, checkpoint_write_s=30).saved(ran, notice) == kept


def test_failure_model_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="node_mtbf_s must be positive"):
        FailureModel(node_mtbf_s=0)
    with pytest.raises(ValueError, match="spot_fraction"):
        FailureModel(spot_fraction=2)


def test_public_surface_is_pinned() -> None:
    import corral.sim as sim

    assert sorted(sim.__all__) == sorted(
        ["CORRAL_SCORING", "REPLAY_POLICIES", "CoreSession", "FailureModel", "FillResult",
         "PolicyError", "QueueMap", "ReplayOptions", "ReplayPolicy", "ReplayResult",
         "SyntheticSpec", "Trace", "TraceFormatError", "TraceTask", "arrivals", "fill_scoring",
         "load_trace", "map_queues", "replay_policy", "run_fill", "run_replay", "synthetic_trace"])
    assert all(hasattr(sim, name) for name in sim.__all__)
