"""Fair-share math, table-driven, plus properties of water-filling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.core.fairshare import (
    Claim,
    QueueNode,
    decay,
    divide,
    dominant_share,
    hierarchical_shares,
    jain_index,
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


@pytest.mark.parametrize("values,expected", [([2, 2], 1.0), ([1, 0], 0.5), ([], 1.0), ([0, 0], 1.0)],
                         ids=["equal", "one-takes-all", "empty", "all-zero"])
def test_jain(values: list[float], expected: float) -> None:
    assert jain_index(values) == pytest.approx(expected)
