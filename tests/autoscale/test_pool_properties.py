"""Invariants of the pool autoscaler on random waiting work, offers and limits (Hypothesis):
limits and budgets are never exceeded, every launch serves waiting work it is eligible for, and
nothing is rented for work that waits for another reason than capacity."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscale_builders import A3, A100_1, G6, G6_4, LAMBDA_H100, P5, P5_SPOT, P5_SPOT_B, job
from corral.autoscale.packing import eligible
from corral.autoscale.pool import (
    CAPACITY_CODES,
    AutoscalerConfig,
    Budget,
    PoolView,
    ProviderLimits,
    decide,
)
from corral.autoscale.state import AutoscalerState
from corral.core import reasons as R

OFFERS = (P5, P5_SPOT, P5_SPOT_B, A3, LAMBDA_H100, G6, G6_4, A100_1)
CODES = sorted(CAPACITY_CODES | {R.OVER_QUOTA, R.QUEUE_LIMIT, R.PRICE_CAP_BLOCKS,
                                 R.NO_NODE_LARGE_ENOUGH})

@st.composite
def work(draw: st.DrawFn):
    b = (job(f"j{draw(st.integers(0, 10_000))}").gpus(draw(st.sampled_from([1, 2, 4, 8])))
         .gang(draw(st.integers(1, 3))).because(draw(st.sampled_from(CODES))))
    if (model := draw(st.sampled_from([None, "H100", "A100", "L4"]))) is not None:
        b = b.models(model)
    if (cap := draw(st.sampled_from([None, 1.0, 3.0, 20.0]))) is not None:
        b = b.cap(cap)
    return b.stable() if draw(st.booleans()) else b


@settings(max_examples=150, deadline=None)
@given(st.lists(work(), max_size=25, unique_by=lambda b: b.w.id),
       st.dictionaries(st.sampled_from(["aws", "gcp", "lambda"]),
                       st.builds(ProviderLimits, st.just(0), st.integers(0, 4),
                                 st.sampled_from([None, Decimal("50"), Decimal("200")])),
                       max_size=3),
       st.sampled_from([None, Decimal("100"), Decimal("500")]))
def test_invariants(builders, limits, cap) -> None:
    waiting = [b.build() for b in builders]
    view = PoolView(waiting, OFFERS, (), {}, limits, Budget(max_spend_per_hour=cap))
    d = decide(view, AutoscalerState(), AutoscalerConfig(), 0.0)
    by_id = {x.workload.id: x for x in waiting}
    spend: dict[str, Decimal] = {}
    count: dict[str, int] = {}
    for launch in d.launches:
        p = launch.offer.provider
        spend[p] = spend.get(p, Decimal(0)) + launch.offer.price_per_hour * launch.count
        count[p] = count.get(p, 0) + launch.count
        assert launch.workloads, "every launch serves waiting work (no min_nodes here)"
        for wid in launch.workloads:
            w = by_id[wid]
            assert w.reason in CAPACITY_CODES
            assert eligible(w.workload, launch.offer, w.workload.allowed_capacity) is None
    for p, limit in limits.items():
        if limit.max_nodes is not None:
            assert count.get(p, 0) <= limit.max_nodes
        if limit.max_spend_per_hour is not None:
            assert spend.get(p, Decimal(0)) <= limit.max_spend_per_hour
    if cap is not None:
        assert sum(spend.values(), Decimal(0)) <= cap
    assert sum(count.values()) <= AutoscalerConfig().max_instances_per_decision
