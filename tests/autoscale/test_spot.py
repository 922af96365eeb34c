"""Whether interrupted work stays on spot: an interruption's expected cost against the price gap."""

from __future__ import annotations

import math

import pytest

from autoscale_builders import P5, P5_SPOT, P5_SPOT_B, job, offer
from corral.autoscale.pool import AutoscalerConfig, PoolView, decide
from corral.autoscale.spot import (
    Checkpointing,
    SpotRisk,
    effective_price,
    lost_per_interruption,
    stays_on_spot,
)
from corral.autoscale.state import AutoscalerState
from corral.core.model import CapacityKind

SPOT = CapacityKind.SPOT
# aws: an interruption every 4 h on average, 120 s of notice, 300 s to run again
AWS = SpotRisk(mtbi_s=4 * 3600.0, notice_s=120.0, restart_s=300.0)
CONFIG = AutoscalerConfig(spot_fallback_after=2, spot_risk={"aws": AWS})
ON_NOTICE = Checkpointing(write_s=30.0)  # saves all it ran when warned


@pytest.mark.parametrize("ck, lost", [
    (Checkpointing(write_s=30.0), 0.0),  # written within the notice: nothing lost
    (Checkpointing(interval_s=3600.0, write_s=30.0), 0.0),
    (Checkpointing(interval_s=3600.0, write_s=600.0), 1800.0),  # notice too short: half an interval
    (Checkpointing(interval_s=3600.0), 1800.0),
    (Checkpointing(write_s=600.0), math.inf),  # cannot save in time, no periodic checkpoint
    (Checkpointing(), math.inf),  # does not checkpoint: all it ran is lost
], ids=["on-notice", "both", "notice-too-short", "periodic", "too-slow-only", "none"])
def test_what_an_interruption_loses(ck: Checkpointing, lost: float) -> None:
    assert lost_per_interruption(ck, 120.0) == lost


def test_effective_price_is_the_spot_price_with_redo_and_restart() -> None:
    # the docstring's worked example: gcp spot A100 at 1.101/GPU-h, 4 h between interruptions
    a100 = offer("gcp", "a2", "A100", 8, "8.808", kind=SPOT)
    gcp = SpotRisk(4 * 3600.0, 30.0, 240.0)
    assert effective_price(a100, gcp, ON_NOTICE) == pytest.approx(1.101 * (1 + 240 / 14400))
    every_4h = Checkpointing(interval_s=4 * 3600.0)
    assert effective_price(a100, gcp, every_4h) == pytest.approx(1.6699, abs=1e-4)
    assert effective_price(a100, gcp, Checkpointing(interval_s=5 * 3600.0)) > 1.79


def usable(o: object) -> bool:
    return True


@pytest.mark.parametrize("ck, stays, why", [
    (ON_NOTICE, True, "spot at aws p5.48xlarge costs 5.104/GPU-h"),
    # a checkpoint every 24 h: 12 h redone per interruption every 4 h: 5 x (1 + 3.02) = 20.1 > 12.29
    (Checkpointing(interval_s=24 * 3600.0), False, "spot costs 20.104/GPU-h"),
    (Checkpointing(), False, "it does not checkpoint: an interruption loses all it ran"),
], ids=["checkpoints-on-notice", "checkpoints-rarely", "no-checkpoints"])
def test_stays_on_spot_while_cheaper(ck: Checkpointing, stays: bool, why: str) -> None:
    w = job().gpus(8).models("H100").build().workload
    got, reason = stays_on_spot(w, ck, (P5_SPOT, P5), lambda o: AWS, usable)
    assert got is stays and why in reason


def test_a_provider_whose_risk_is_unknown_is_not_counted_as_cheaper() -> None:
    w = job().gpus(8).models("H100").build().workload
    got, reason = stays_on_spot(w, ON_NOTICE, (P5_SPOT, P5), lambda o: None, usable)
    assert not got and "no spot offer" in reason


def decide_after(interruptions: int, checkpoints: dict, config: AutoscalerConfig = CONFIG):
    state = AutoscalerState()
    for n in range(interruptions):
        state = state.interrupted("j1", "aws", "us-east-1a" if n % 2 else "us-east-1b")
    view = PoolView([job().gpus(8).models("H100").build()], (P5_SPOT, P5_SPOT_B, P5), (),
                    checkpoints=checkpoints)
    return decide(view, state, config, 1000.0)


def test_checkpointed_work_keeps_spot_after_many_interruptions() -> None:
    d = decide_after(5, {"j1": ON_NOTICE})
    assert d.on_demand_only == ()
    assert [x.offer.capacity_kind for x in d.launches] == [SPOT]


def test_work_without_checkpoints_falls_back_after_its_first_interruption() -> None:
    d = decide_after(1, {"j1": Checkpointing()})
    assert d.on_demand_only == ("j1",)
    assert [x.offer.capacity_kind for x in d.launches] == [CapacityKind.ON_DEMAND]


def test_unknown_checkpointing_or_risk_keeps_the_count_rule() -> None:
    assert decide_after(2, {}).on_demand_only == ("j1",)  # checkpointing not known
    assert decide_after(1, {}).on_demand_only == ()
    no_risk = AutoscalerConfig(spot_fallback_after=2)
    assert decide_after(2, {"j1": ON_NOTICE}, no_risk).on_demand_only == ("j1",)


def test_the_verdict_is_weighed_once_after_each_interruption() -> None:
    d = decide_after(5, {"j1": ON_NOTICE})
    assert d.state.interruptions["j1"].keeps_spot is True
    # kept until the next interruption, which weighs it again
    assert d.state.interrupted("j1", "aws", "us-east-1a").interruptions["j1"].keeps_spot is None
    assert decide_after(1, {"j1": Checkpointing()}).state.interruptions["j1"].keeps_spot is False
