"""Whether interrupted work stays on spot: the expected cost of an interruption against the price gap.

A spot interruption costs a workload two things, both paid and both in its completion time:

- **lost work**: what it ran since its last checkpoint, which must run again. Work that writes
  a checkpoint within the interruption's notice (`write_s <= notice_s`) loses nothing; work that
  checkpoints every `interval_s` but cannot save on notice loses half an interval on average;
  work that does not checkpoint loses *everything* it ran, so the longer it runs the more it
  loses (it may never finish on spot): it falls back to on-demand after its first interruption.
- **the restart**: the time from the interruption to running again (the autoscaler's tick, a new
  instance's provisioning, the checkpoint's load): `restart_s`, paid on the new instance from
  its launch (clouds bill provisioning) while the work does not advance.

With interruptions at rate 1/`mtbi_s` (a Poisson process, as the simulator draws them and as
AWS's spot advisor quotes them), each hour of progress on spot takes on average
`1 + (lost_s + restart_s) / mtbi_s` paid hours, so a spot offer's **effective price** is

    spot price per GPU-hour x (1 + (lost_s + restart_s) / mtbi_s)

and interrupted work stays on spot (another zone or provider first, `pool.py`'s move premium)
while the cheapest spot offer it may use has an effective price *below* the cheapest on-demand
offer it may use; otherwise it gets on-demand only from then on. Worked example (the simulator's
three clouds): gcp spot A100 at 1.101/GPU-h, mean 4 h between interruptions, a checkpoint on
notice (nothing lost) and a 240 s restart: 1.101 x (1 + 240 / 14,400) = 1.119 < 1.79 (lambda
on-demand): it stays on spot. The same work checkpointing every 4 h and never on notice:
1.101 x (1 + (7,200 + 240) / 14,400) = 1.670 < 1.79: still spot; every 5 h: 1.807: on-demand.

After SkyPilot's managed jobs, which recover a preempted job onto spot again (its `FAILOVER` and
`EAGER_NEXT_REGION` strategies) rather than pinning it to on-demand, and which rely on the job's
own checkpoints for what is kept; the expected-cost comparison is the one of "Bamboo" (Thorpe
et al., NSDI 2023) and "Can't Be Late" (Wu et al., NSDI 2024): the price of spot is its rate plus
the expected redo and restart overhead. When the policy does not know how a workload
checkpoints or how often a provider interrupts (`None` here), the plain count of
`spot_fallback_after` interruptions applies, as before.

**A provider's rate when nobody gave it** (`estimated_mtbi`; the live plane's
`corral.control.spot_rates` counts what corral itself recorded): interruptions of one spot
instance as a Poisson process whose rate has a gamma prior worth `PRIOR_INTERRUPTIONS` (1)
interruption in `PRIOR_MTBI_S` (6 h) of spot instance time; after `n` interruptions in `T`
seconds of spot instance time the rate's posterior mean is (1 + n) / (6 h + T), and its inverse
is the mtbi used: (6 h + T) / (1 + n). Nothing seen: 6 h (a pessimistic start: most of AWS's
spot advisor bands are rarer); 2 interruptions in 10 instance-hours: 16 / 3 = 5.3 h; none in
100 instance-hours: 106 h. The prior is a choice, not a measure: `autoscaler.spot_risk` wins.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from corral.autoscale.packing import eligible
from corral.autoscale.state import AutoscalerState
from corral.core.model import CapacityKind, Workload
from corral.providers.base import Offer

__all__ = ["PRIOR_INTERRUPTIONS", "PRIOR_MTBI_S", "Checkpointing", "SpotRisk", "effective_price",
           "estimated_mtbi", "keeps_spot",
           "lost_per_interruption", "stays_on_spot", "usable_now", "verdict",
           "weigh_interrupted"]


@dataclass(frozen=True)
class Checkpointing:
    """How a workload saves its progress. `Checkpointing()` = it does not checkpoint."""

    interval_s: float | None = None  # periodic checkpoints; None: none
    write_s: float | None = None  # time to write one when warned; None: it cannot on notice


@dataclass(frozen=True)
class SpotRisk:
    """How a provider's spot capacity is taken back, and what a restart there costs."""

    mtbi_s: float  # mean time between interruptions of one spot instance
    notice_s: float  # warning before the instance goes (AWS, GCP: 120 s / 30 s)
    restart_s: float  # interruption -> running again: a tick, provisioning, checkpoint load

    def __post_init__(self) -> None:
        if not self.mtbi_s > 0 or self.notice_s < 0 or self.restart_s < 0:
            raise ValueError(f"SpotRisk needs mtbi_s > 0, notice_s >= 0, restart_s >= 0, got "
                             f"{self.mtbi_s}, {self.notice_s}, {self.restart_s}")


#: the prior of `estimated_mtbi`: as if this many interruptions had been seen in
#: PRIOR_INTERRUPTIONS x PRIOR_MTBI_S of spot instance time
PRIOR_MTBI_S = 6 * 3600.0
PRIOR_INTERRUPTIONS = 1.0


def estimated_mtbi(interruptions: int, exposure_s: float) -> float:
    """Mean time between interruptions of one spot instance after `interruptions` were seen in
    `exposure_s` seconds of spot instance time (the module docstring's rule).

    >>> estimated_mtbi(0, 0.0) / 3600
    6.0
    >>> round(estimated_mtbi(2, 10 * 3600.0) / 3600, 2)
    5.33
    """
    return ((PRIOR_INTERRUPTIONS * PRIOR_MTBI_S + max(exposure_s, 0.0))
            / (PRIOR_INTERRUPTIONS + max(interruptions, 0)))


def lost_per_interruption(ck: Checkpointing, notice_s: float) -> float:
    """Seconds of progress one interruption loses on average (inf: all of it, no checkpoints).

    >>> lost_per_interruption(Checkpointing(write_s=30), 120)
    0.0
    >>> lost_per_interruption(Checkpointing(interval_s=600), 120)
    300.0
    >>> lost_per_interruption(Checkpointing(), 120)
    inf
    """
    if ck.write_s is not None and ck.write_s <= notice_s:
        return 0.0
    if ck.interval_s is not None:
        return ck.interval_s / 2.0
    return math.inf


def effective_price(offer: Offer, risk: SpotRisk, ck: Checkpointing) -> float:
    """Price per GPU-hour of progress on a spot offer, interruptions included (inf: never)."""
    overhead = (lost_per_interruption(ck, risk.notice_s) + risk.restart_s) / risk.mtbi_s
    return float(offer.price_per_gpu_hour) * (1.0 + overhead)


def stays_on_spot(w: Workload, ck: Checkpointing, offers: Iterable[Offer],
                  risk: Callable[[Offer], SpotRisk | None], usable: Callable[[Offer], bool]
                  ) -> tuple[bool, str]:
    """Whether interrupted `w` should still be given spot, and why (a sentence).

    `usable(offer)`: may `w` rent `offer` now (its kinds, eligible, not backed off). A spot offer
    whose provider's risk is not known (`risk` gives None) is not counted: no claim is made
    that it is cheaper."""
    if ck.interval_s is None and ck.write_s is None:
        return False, "it does not checkpoint: an interruption loses all it ran"
    spot, stable = math.inf, math.inf
    spot_at = ""
    for o in offers:
        if o.capacity_kind == CapacityKind.SPOT:
            r = risk(o)
            if r is None or not usable(o):
                continue
            rate = effective_price(o, r, ck)
            if rate < spot:
                spot, spot_at = rate, f"{o.provider} {o.instance_type}"
        elif usable(o):
            stable = min(stable, float(o.price_per_gpu_hour))
    if math.isinf(spot):
        return False, "no spot offer it may use is known to pay with interruptions counted"
    if spot < stable:
        return True, (f"spot at {spot_at} costs {spot:.3f}/GPU-h with interruptions counted, "
                      f"on-demand {stable:.3f}")
    return False, (f"spot costs {spot:.3f}/GPU-h with interruptions counted (at {spot_at}), "
                   f"on-demand {stable:.3f}")


def risk_by_provider(risks: Mapping[str, SpotRisk]) -> Callable[[Offer], SpotRisk | None]:
    """The risk of an offer's provider (None: not known)."""
    return lambda o: risks.get(o.provider)


class _Rules(Protocol):  # the fields of `pool.AutoscalerConfig` read here
    @property
    def spot_fallback_after(self) -> int: ...
    @property
    def spot_risk(self) -> Mapping[str, SpotRisk]: ...


def verdict(w: Workload, interruptions: int, ck: Checkpointing | None, offers: Iterable[Offer],
            config: _Rules, usable: Callable[[Offer], bool]) -> tuple[bool, str]:
    """Whether `w`, interrupted `interruptions` times, may still be given spot, and why (a
    sentence for its events): the cost rule (`stays_on_spot`) when its checkpointing and the
    providers' risks are known, else the plain count (`spot_fallback_after` interruptions,
    then on-demand only)."""
    if ck is None or not config.spot_risk:
        limit = config.spot_fallback_after
        unknown = ("it does not say how it checkpoints (checkpoint:)" if ck is None
                   else "no provider's interruption rate is known (autoscaler.spot_risk)")
        if interruptions < limit:
            return True, (f"interrupted {interruptions} of at most {limit} times before "
                          f"on-demand only (spot_fallback_after; {unknown})")
        return False, (f"interrupted {interruptions} times, spot_fallback_after is {limit} "
                       f"({unknown})")
    return stays_on_spot(w, ck, offers, risk_by_provider(config.spot_risk), usable)


def keeps_spot(w: Workload, interruptions: int, ck: Checkpointing | None, offers: Iterable[Offer],
               config: _Rules, usable: Callable[[Offer], bool]) -> bool:
    """`verdict` without its sentence."""
    return verdict(w, interruptions, ck, offers, config, usable)[0]


def usable_now(state: AutoscalerState, w: Workload, now: float) -> Callable[[Offer], bool]:
    """May `w` rent the offer now: its capacity kinds, eligible, not backed off."""
    kinds = w.allowed_capacity
    return lambda o: eligible(w, o, kinds) is None and not state.in_backoff(o, now)


def weigh_interrupted(state: AutoscalerState, workloads: Iterable[Workload],
                      offers: Sequence[Offer], checkpoints: Mapping[str, Checkpointing],
                      config: _Rules, now: float) -> AutoscalerState:
    """`state` with a verdict (keeps spot or not) for each of `workloads` interrupted since it
    was last weighed. Weighed once after each interruption, when the work needs capacity
    again, not at every decision: the simulator's long pods, interrupted hundreds of times and
    asked about by consolidation every tick, made it the replay's hot spot."""
    verdicts: dict[str, bool] = {}
    for w in workloads:
        seen = state.interruptions.get(w.id)
        if seen is None or seen.keeps_spot is not None or w.id in verdicts \
                or CapacityKind.SPOT not in w.allowed_capacity:
            continue
        verdicts[w.id] = keeps_spot(w, seen.count, checkpoints.get(w.id), offers, config,
                                    usable_now(state, w, now))
    return state.weighed(verdicts)
