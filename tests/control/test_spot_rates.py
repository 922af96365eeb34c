"""A provider's interruption rate estimated from what corral recorded (control/spot_rates.py),
for providers the pool file gives no `autoscaler.spot_risk`: the records the autoscaler writes
(launch, interrupted, terminate; the agent's spot notice), read once each, on a real store."""

from __future__ import annotations

from decimal import Decimal

import pytest

from corral.autoscale.pool import AutoscalerConfig
from corral.autoscale.spot import PRIOR_MTBI_S, SpotRisk, estimated_mtbi
from corral.control.spot_rates import NOTICE_S, PROVISIONING_GUESS_S, SpotRates
from corral.core.model import CapacityKind
from corral.providers.base import CapacityState, Instance, Offer
from corral.store import Store, audit

HOUR = 3600.0


def _offer(provider: str, kind: CapacityKind) -> Offer:
    return Offer(provider, "h100x4", "H100", 4, 81_920, 64_000, 262_144, Decimal("4.00"), kind,
                 "r1", "r1a", "catalog:test@2026-01-01", "2026-01-01")


def launched(store: Store, at: float, provider: str, kind: CapacityKind, *ids: str) -> None:
    """The record `PoolAutoscaler._launch` writes."""
    with store.write() as c:
        audit.record(c, at=at, actor="autoscaler", action="autoscale.launch", target=",".join(ids),
                     detail={"offer": {"provider": provider, "capacity_kind": str(kind)},
                             "instances": list(ids)})


def event(store: Store, at: float, action: str, instance: str) -> None:
    actor = "agent" if action == "agent.spot_notice" else "autoscaler"
    with store.write() as c:
        audit.record(c, at=at, actor=actor, action=action,
                     target=instance if action == "autoscale.terminate" else "node",
                     detail={"instance": instance})


def _listed(*ids: str, state: CapacityState = CapacityState.READY) -> list[Instance]:
    return [Instance(i, "aws", _offer("aws", CapacityKind.SPOT), state, "", 0.0, None)
            for i in ids]


def test_interruptions_and_spot_time_are_counted_once_from_the_records(store: Store) -> None:
    rates = SpotRates()
    launched(store, 0.0, "aws", CapacityKind.SPOT, "i-1", "i-2")
    launched(store, 0.0, "aws", CapacityKind.ON_DEMAND, "i-3")  # not spot: not counted
    event(store, 2 * HOUR, "agent.spot_notice", "i-1")  # read on the host first,
    event(store, 2 * HOUR + 60, "autoscale.interrupted", "i-1")  # then the provider's: once
    event(store, 3 * HOUR, "autoscale.terminate", "i-1")  # already closed
    rates.learn(store, _listed("i-2"), (), 4 * HOUR)
    assert rates.interruptions == {"aws": 1}
    assert rates.exposure_s("aws", 4 * HOUR) == 2 * HOUR + 4 * HOUR  # i-1 to 2 h, i-2 open
    assert rates.exposure_s("on-prem", 4 * HOUR) == 0.0
    event(store, 5 * HOUR, "autoscale.terminate", "i-2")  # returned: closed, no interruption
    rates.learn(store, (), (), 6 * HOUR)
    assert (rates.interruptions, rates.exposure_s("aws", 6 * HOUR)) == ({"aws": 1}, 7 * HOUR)


def test_an_instance_gone_without_a_record_is_closed_when_its_provider_lists_it_no_more(
        store: Store) -> None:
    rates = SpotRates()
    launched(store, 0.0, "aws", CapacityKind.SPOT, "i-1")
    rates.learn(store, _listed("i-1"), (), HOUR)
    rates.learn(store, [], ["aws"], 2 * HOUR)  # aws could not list: kept open
    assert rates.exposure_s("aws", 3 * HOUR) == 3 * HOUR
    rates.learn(store, _listed("i-1", state=CapacityState.TERMINATED), (), 3 * HOUR)
    assert rates.exposure_s("aws", 10 * HOUR) == 3 * HOUR
    assert rates.interruptions == {}


def test_a_restart_reads_the_same_history(store: Store) -> None:
    """The estimate is the log's: a new leader's SpotRates, reading it all at once, agrees with
    the one that read it pass by pass."""
    running = SpotRates()
    for k in range(3):
        launched(store, k * HOUR, "aws", CapacityKind.SPOT, f"i-{k}")
        running.learn(store, _listed(*(f"i-{j}" for j in range(k + 1))), (), k * HOUR + 1)
        event(store, k * HOUR + 600, "autoscale.interrupted", f"i-{k}")
        running.learn(store, _listed(*(f"i-{j}" for j in range(k + 1))), (), k * HOUR + 601)
    fresh = SpotRates()
    fresh.learn(store, _listed("i-0", "i-1", "i-2"), (), 4 * HOUR)
    assert fresh.interruptions == running.interruptions == {"aws": 3}
    assert fresh.exposure_s("aws", 4 * HOUR) == running.exposure_s("aws", 4 * HOUR) == 1800.0


@pytest.mark.parametrize("given", [None, SpotRisk(HOUR, 30.0, 60.0)], ids=["estimated", "given"])
def test_weighing_estimates_only_providers_that_offer_spot_and_have_no_risk(
        store: Store, given: SpotRisk | None) -> None:
    rates = SpotRates()
    for k in range(4):  # four instances, each taken back after 30 minutes
        launched(store, k * HOUR, "aws", CapacityKind.SPOT, f"i-{k}")
        event(store, k * HOUR + HOUR / 2, "autoscale.interrupted", f"i-{k}")
    rates.learn(store, (), (), 10 * HOUR)
    config = AutoscalerConfig(spot_risk={} if given is None else {"aws": given})
    offers = [_offer("aws", CapacityKind.SPOT), _offer("onprem", CapacityKind.ON_DEMAND)]
    weighed = rates.weighing(config, offers, 30.0, 10 * HOUR)
    expected = given or SpotRisk(estimated_mtbi(4, 2 * HOUR), NOTICE_S, 15.0 + PROVISIONING_GUESS_S)
    assert dict(weighed.spot_risk) == {"aws": expected}
    if given is None:  # (6 h + 2 h) / (1 + 4) = 1.6 h
        assert expected.mtbi_s == pytest.approx((PRIOR_MTBI_S + 2 * HOUR) / 5)
    assert rates.weighing(config, offers[1:], 30.0, 10 * HOUR) == config  # no spot offered
