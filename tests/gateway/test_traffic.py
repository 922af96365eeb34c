"""The gateway's traffic history (the dashboard's Services page): rates and percentiles per
service id from the gateway's own counters, summed over the service's table keys."""

from __future__ import annotations

import math

import pytest

from corral.gateway import RouteTable
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.traffic import TrafficHistory, quantile


@pytest.mark.parametrize(("counts", "q", "expected"), [
    ((50, 40, 10), 0.5, 0.1),         # the docstring's worked example
    ((50, 40, 10), 0.99, 0.95),
    ((0, 10, 0), 0.5, 0.3),           # linear inside (0.1, 0.5]
    ((0, 0, 0), 0.5, None),           # nothing ended
], ids=["p50-at-a-bound", "p99-inside", "inside-second", "none"])
def test_quantile_reads_the_histogram_as_prometheus_does(counts: tuple[int, ...], q: float,
                                                         expected: float | None) -> None:
    got = quantile((0.1, 0.5, 1.0), counts, q)
    assert got == expected if expected is None else math.isclose(got or 0, expected)


def test_a_rank_in_the_overflow_bucket_is_the_last_finite_bound() -> None:
    assert quantile((0.1, math.inf), (1, 9), 0.99) == 0.1


def test_rates_errors_and_percentiles_per_service_over_its_keys() -> None:
    table = RouteTable()
    metrics = GatewayMetrics(table, lambda _: 0)
    history = TrafficHistory(metrics.registry, every_s=2.0)
    keys = {"chat-1a2b": ["chat-1a2b", "chat"], "other-9f": ["other-9f"]}
    assert history.due(0.0)
    history.sample(0.0, keys)
    assert not history.due(1.0) and history.due(2.0)
    for _ in range(6):  # by id: fast successes
        metrics.requests.labels("chat-1a2b", "200").inc()
        metrics.total.labels("chat-1a2b").observe(0.02)
    for _ in range(3):  # by name: one slow success, two 502s
        metrics.total.labels("chat").observe(4.0)
    metrics.requests.labels("chat", "200").inc()
    metrics.requests.labels("chat", "502").inc(2)
    history.sample(10.0, keys)
    [point] = history.series("chat-1a2b")
    assert (point.requests, point.errors) == (9, 2)
    assert math.isclose(point.requests_per_s, 0.9) and math.isclose(point.errors_per_s, 0.2)
    assert point.p50_s is not None and 0.01 < point.p50_s <= 0.025  # 6 of 9 in (10, 25] ms
    assert point.p99_s is not None and 2.5 < point.p99_s <= 5.0
    assert history.series("other-9f")[0].requests == 0
    assert history.series("other-9f")[0].p50_s is None
    history.sample(20.0, keys)  # nothing new: a quiet interval
    assert history.summary("chat-1a2b", 5.0).requests == 0  # type: ignore[union-attr]
    assert history.summary("chat-1a2b", 60.0).requests == 9  # type: ignore[union-attr]


def test_requests_served_before_a_new_services_first_sample_show_as_its_traffic() -> None:
    """A service is routed between two samples and serves its requests before the sampler
    first reads it (the Services page showed 0 requests/s for it in a loaded CI run)."""
    metrics = GatewayMetrics(RouteTable(), lambda _: 0)
    history = TrafficHistory(metrics.registry, every_s=2.0)
    history.sample(0.0, {"old-1": ["old-1"]})
    for _ in range(10):
        metrics.requests.labels("new-2", "200").inc()
        metrics.total.labels("new-2").observe(0.02)
    history.sample(2.0, {"old-1": ["old-1"], "new-2": ["new-2"]})
    [point] = history.series("new-2")
    assert (point.since, point.at, point.requests) == (0.0, 2.0, 10)
    assert point.p50_s is not None and 0.01 < point.p50_s <= 0.025
    summary = history.summary("new-2", 60.0)
    assert summary is not None and math.isclose(summary.requests_per_s, 5.0)
    history.sample(4.0, {"old-1": ["old-1"], "new-2": ["new-2"]})  # seen: no second zero point
    assert [p.requests for p in history.series("new-2")] == [10, 0]


def test_samples_age_out_and_a_gone_service_is_forgotten() -> None:
    metrics = GatewayMetrics(RouteTable(), lambda _: 0)
    history = TrafficHistory(metrics.registry, keep_s=30.0)
    history.sample(0.0, {"a": ["a"]})
    history.sample(10.0, {"a": ["a"], "b": ["b"]})
    history.sample(35.0, {"b": ["b"]})
    assert history.services() == ["a", "b"]  # a's sample at 10 s is still within 30 s
    history.sample(45.0, {"b": ["b"]})
    assert history.services() == ["b"]
    assert [p.at for p in history.series("b")] == [45.0]  # (35, 45]: 10 s is gone
    assert history.summary("a", 60.0) is None
