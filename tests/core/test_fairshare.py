"""Fair-share math, table-driven, plus properties of water-filling."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.core.fairshare import (
    USAGE_HORIZON_HALF_LIVES,
    Claim,
    QueueNode,
    decay,
    decayed_gpu_seconds,
    divide,
    dominant_share,
    hierarchical_shares,
    jain_index,
    usage_horizon,
)

DIVIDE_CASES = [
    ("nobody-wants-anything", 8, [Claim("a", 0), Claim("b", 0)], {"a": 0, "b": 0}),
    ("equal-weights-equal-split", 8, [Claim("a", 10), Claim("b", 10)], {"a": 4, "b": 4}),
    ("small-demand-capped-rest-to-other", 8, [Claim("a", 2), Claim("b", 10)], {"a": 2, "b": 6}),
    ("weights-3-to-1", 8, [Claim("a", 10, weight=3), Claim("b", 10)], {"a": 6, "b": 2}),
    ("quota-first", 8, [Claim("a", 10, quota=6), Claim("b", 10)], {"a": 7, "b": 1}),
    ("limit-caps", 8, [Claim("a", 10, limit=3), Claim("b", 10)], {"a": 3, "b": 5}),
    ("overcommitted-quotas-scale", 6, [Claim("a", 10, quota=6), Claim("b", 10, quota=6)], {"a": 3, "b": 3}),
    ("zero-weight-gets-only-quota", 8, [Claim("a", 10, quota=2, weight=0), Claim("b", 10)], {"a": 2, "b": 6}),
]


@pytest.mark.parametrize("capacity,claims,expected", [c[1:] for c in DIVIDE_CASES], ids=[c[0] for c in DIVIDE_CASES])
def test_divide(capacity: float, claims: list[Claim], expected: dict[str, float]) -> None:
    assert divide(capacity, claims) == pytest.approx(expected)


claims_st = st.lists(st.builds(Claim, name=st.uuids().map(str), demand=st.floats(0, 50),
                               quota=st.floats(0, 10), limit=st.one_of(st.none(), st.floats(0, 60)),
                               weight=st.floats(0.1, 5)), min_size=1, max_size=6)


@given(st.floats(0, 200), claims_st)
def test_divide_never_exceeds_capacity_demand_or_limit(capacity: float, claims: list[Claim]) -> None:
    result = divide(capacity, claims)
    assert sum(result.values()) <= capacity + 1e-6
    for c in claims:
        assert result[c.name] <= c.cap + 1e-6
        assert result[c.name] >= -1e-9


@given(st.floats(0, 200), claims_st)
def test_divide_is_work_conserving(capacity: float, claims: list[Claim]) -> None:
    """Either everyone gets its cap or the capacity is used up (nothing idles while wanted)."""
    result = divide(capacity, claims)
    wanted = sum(c.cap for c in claims if c.weight > 0 or c.quota > 0)
    if sum(min(c.quota, c.cap) for c in claims) <= capacity:
        assert sum(result.values()) >= min(capacity, wanted) - 1e-6 or any(c.weight <= 0 for c in claims)


def test_hierarchy_divides_top_down() -> None:
    shares = hierarchical_shares(16, [QueueNode("p", None, 0), QueueNode("x", None, 16),
                                      QueueNode("c1", "p", 16), QueueNode("c2", "p", 16, weight=3)])
    assert shares["p"] == pytest.approx(8) and shares["x"] == pytest.approx(8)
    assert shares["c1"] == pytest.approx(2) and shares["c2"] == pytest.approx(6)


def test_parent_own_work_competes_with_children() -> None:
    shares = hierarchical_shares(8, [QueueNode("p", None, 8), QueueNode("c", "p", 8)])
    assert shares["p"] == pytest.approx(8) and shares["c"] == pytest.approx(4)


@pytest.mark.parametrize("used,totals,expected", [
    ([1, 0, 0], [4, 4, 4], 0.25), ([1, 3, 0], [4, 4, 4], 0.75), ([0, 0, 0], [0, 0, 0], 0.0)],
    ids=["gpu-binds", "cpu-binds", "empty-pool"])
def test_dominant_share(used: list[float], totals: list[float], expected: float) -> None:
    assert dominant_share(used, totals) == pytest.approx(expected)


def test_decay_halves_per_half_life() -> None:
    assert decay(80.0, 0.0, 7200, 3600) == pytest.approx(20.0)
    assert decay(80.0, 5.0, 0, 3600) == pytest.approx(85.0)


H = 3600.0  # a half-life of one hour
LN2 = math.log(2)

# (id, gpus, start, end, now, half-life, expected decayed GPU-seconds)
INTEGRAL_CASES = [
    ("zero-length", 4, 100.0, 100.0, 500.0, H, 0.0),
    ("end-before-start", 4, 100.0, 50.0, 500.0, H, 0.0),
    ("starts-after-now", 4, 600.0, None, 500.0, H, 0.0),
    ("no-gpus", 0, 0.0, None, 500.0, H, 0.0),
    ("half-life-zero-forgets", 4, 0.0, None, 500.0, 0.0, 0.0),
    # 4 GPUs for an hour that ended an hour ago: 4 * H/ln2 * (1/2 - 1/4) = H/ln2 = 5193.7
    ("worked-example", 4, 0.0, H, 2 * H, H, H / LN2),
    # running since one half-life ago: 8 * H/ln2 * (1 - 1/2)
    ("running-to-now", 8, 0.0, None, H, H, 8 * H / LN2 / 2),
    # an end in the future is cut at now: same as running
    ("end-after-now-is-cut", 8, 0.0, 5 * H, H, H, 8 * H / LN2 / 2),
    # ended ten half-lives ago: 2^-10 of what it weighed when it ended
    ("long-ago", 4, 0.0, H, 11 * H, H, H / LN2 * 2.0 ** -10 * 2),
    # a huge half-life: no decay, plain GPU-seconds
    ("no-decay-limit", 2, 0.0, 100.0, 100.0, 1e12, 200.0),
    # a second that just ended weighs about 1 (expm1 keeps the digits)
    ("one-second-just-now", 1, H - 1, H, H, 7 * 24 * H, 1.0),
]


@pytest.mark.parametrize("gpus,start,end,now,half_life,expected", [c[1:] for c in INTEGRAL_CASES],
                         ids=[c[0] for c in INTEGRAL_CASES])
def test_decayed_gpu_seconds(gpus: float, start: float, end: float | None, now: float,
                             half_life: float, expected: float) -> None:
    assert decayed_gpu_seconds(gpus, start, end, now, half_life) == pytest.approx(expected, rel=1e-6)


def test_decayed_gpu_seconds_worked_example_against_numeric_integral() -> None:
    """The closed form is the integral: a midpoint sum over one-second slices agrees."""
    gpus, start, end, now, h = 3.5, 1000.0, 8200.0, 9000.0, 5400.0
    numeric = sum(gpus * 2 ** (-(now - (t + 0.5)) / h) for t in range(int(start), int(end)))
    assert decayed_gpu_seconds(gpus, start, end, now, h) == pytest.approx(numeric, rel=1e-6)


@given(st.floats(0, 1e5), st.floats(0, 1e5), st.floats(0, 1e5), st.floats(1.0, 1e6),
       st.floats(0, 1e5))
def test_decayed_usage_splits_and_decays_like_decay(
    a: float, b: float, c: float, h: float, later: float
) -> None:
    """Additive over a split run, and moving `now` on only scales it by decay(): what lets the
    simulator carry a running total instead of re-summing every run."""
    t0, t1, t2 = sorted((a, b, c))
    whole = decayed_gpu_seconds(2, t0, t2, t2, h)
    parts = decay(decayed_gpu_seconds(2, t0, t1, t1, h), decayed_gpu_seconds(2, t1, t2, t2, h),
                  t2 - t1, h)
    assert parts == pytest.approx(whole, rel=1e-9, abs=1e-9)
    assert decayed_gpu_seconds(2, t0, t2, t2 + later, h) == pytest.approx(
        decay(whole, 0.0, later, h), rel=1e-9, abs=1e-9)


def test_horizon_leaves_out_less_than_a_thousandth() -> None:
    """A run that ended at the horizon weighs at most 2^-10 of the same GPUs held for ever."""
    now, h = 1e7, H
    cut = usage_horizon(now, h)
    assert cut == now - USAGE_HORIZON_HALF_LIVES * h
    forever = decayed_gpu_seconds(8, -1e12, None, now, h)
    assert forever == pytest.approx(8 * h / LN2)
    assert decayed_gpu_seconds(8, -1e12, cut, now, h) / forever == pytest.approx(2.0 ** -10)
    assert 2.0 ** -10 < 0.001


@pytest.mark.parametrize("values,expected", [([2, 2], 1.0), ([1, 0], 0.5), ([], 1.0), ([0, 0], 1.0)],
                         ids=["equal", "one-takes-all", "empty", "all-zero"])
def test_jain(values: list[float], expected: float) -> None:
    assert jain_index(values) == pytest.approx(expected)
