"""What the pool autoscaler remembers between decisions: offers in backoff, jobs interrupted.

A value passed in and returned (never a global, never read from a clock): the control plane keeps
it in memory (a restart forgets backoff, which only means one more try), the simulator per run.

Backoff: the n-th consecutive failure of an offer keeps it out for
``min(backoff_base_s * 2**(n-1), backoff_max_s)`` seconds, or the provider's `retry_after_s`
when that is longer. A failure that no retry can fix (AuthFailed, InvalidRequest) goes straight
to `backoff_max_s`. So a launch that keeps failing is tried at most log2(max/base) + 1 times in
the first `backoff_max_s`, then once per `backoff_max_s`: it never loops.

Worked example (base 60 s, max 3600 s): failures at t=0, 60, 180, 420 keep the offer out until
60, 180, 420, 900; the seventh and later failures each keep it out 3600 s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from corral.autoscale.packing import offer_key
from corral.providers.base import Offer
from corral.providers.errors import ProviderReason

__all__ = ["AutoscalerState", "Interruptions", "OfferBackoff", "Replacement"]

#: failures that no retry fixes: the offer waits the longest backoff at once
PERMANENT = frozenset({ProviderReason.AUTH_FAILED, ProviderReason.INVALID_REQUEST})


@dataclass(frozen=True)
class OfferBackoff:
    failures: int
    retry_at: float
    last_reason: str


@dataclass(frozen=True)
class Interruptions:
    """Spot interruptions of one workload and where they happened: (provider, zone) pairs."""

    count: int = 0
    places: tuple[tuple[str, str], ...] = ()
    #: whether it keeps spot, weighed once after its latest interruption (None: not yet;
    #: `corral.autoscale.spot.weigh_interrupted`)
    keeps_spot: bool | None = None


@dataclass(frozen=True)
class Replacement:
    """A node being replaced by a cheaper one (`corral.autoscale.replace`): `old` keeps its work
    until `new` (the instance launched for it, None until the caller says which) has joined."""

    old: str  # the instance replaced
    offer: str  # offer_key of the replacement
    since: float  # when it was decided
    new: str | None = None


@dataclass(frozen=True)
class AutoscalerState:
    backoff: Mapping[str, OfferBackoff] = field(default_factory=lambda: MappingProxyType({}))
    interruptions: Mapping[str, Interruptions] = field(
        default_factory=lambda: MappingProxyType({}))
    #: the one replacement in progress (bounded disruption: one at a time), if any
    replacement: Replacement | None = None
    #: the node being emptied into the others' free room (consolidate.py), until it is gone
    emptying: str | None = None
    #: workloads moved off an emptied node -> until when nothing is rented for them (the
    #: guard against flapping: consolidate.py)
    emptied: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def replacement_launched(self, instance_id: str) -> AutoscalerState:
        """The caller launched the replacement decided last as `instance_id`."""
        if self.replacement is None:
            return self
        return replace(self, replacement=replace(self.replacement, new=instance_id))

    def emptied_now(self, instance_id: str, workload_ids: Iterable[str],
                    until: float) -> AutoscalerState:
        """`instance_id` is being emptied; its work is not rented for before `until`."""
        return replace(self, emptying=instance_id, emptied=MappingProxyType(
            {**self.emptied, **{w: until for w in workload_ids}}))

    def settle_emptying(self, live: Iterable[str], now: float) -> AutoscalerState:
        """Forget the node emptied once it is gone, and moved work past its guard."""
        emptying = self.emptying if self.emptying in set(live) else None
        emptied = {k: v for k, v in self.emptied.items() if v > now}
        if emptying == self.emptying and len(emptied) == len(self.emptied):
            return self
        return replace(self, emptying=emptying, emptied=MappingProxyType(emptied))

    def in_backoff(self, offer: Offer, now: float) -> OfferBackoff | None:
        b = self.backoff.get(offer_key(offer))
        return b if b is not None and now < b.retry_at else None

    def launch_failed(self, offer: Offer, reason_code: str, now: float, *, base_s: float,
                      max_s: float, retry_after_s: float | None = None) -> AutoscalerState:
        """The state after a launch of `offer` failed with `reason_code` at `now`."""
        key = offer_key(offer)
        last = self.backoff.get(key)
        n = (last.failures if last else 0) + 1
        wait = max_s if reason_code in PERMANENT else min(base_s * 2 ** (n - 1), max_s)
        wait = max(wait, retry_after_s or 0.0)
        backoff = {**self.backoff, key: OfferBackoff(n, now + wait, reason_code)}
        return replace(self, backoff=MappingProxyType(backoff))

    def launch_succeeded(self, offer: Offer) -> AutoscalerState:
        key = offer_key(offer)
        if key not in self.backoff:
            return self
        return replace(self, backoff=MappingProxyType(
            {k: v for k, v in self.backoff.items() if k != key}))

    def interrupted(self, workload_id: str, provider: str, zone: str) -> AutoscalerState:
        """`workload_id` lost its spot capacity at (`provider`, `zone`)."""
        last = self.interruptions.get(workload_id, Interruptions())
        entry = Interruptions(last.count + 1, (*last.places, (provider, zone)))
        return replace(self, interruptions=MappingProxyType(
            {**self.interruptions, workload_id: entry}))

    def weighed(self, verdicts: Mapping[str, bool]) -> AutoscalerState:
        """Record whether each interrupted workload keeps spot until its next interruption."""
        if not verdicts:
            return self
        return replace(self, interruptions=MappingProxyType({
            **self.interruptions, **{w: replace(self.interruptions[w], keeps_spot=v)
                                     for w, v in verdicts.items()}}))

    def forget(self, workload_ids: Iterable[str]) -> AutoscalerState:
        """Drop what is kept about workloads that ended."""
        gone = set(workload_ids) & set(self.interruptions)
        if not gone:
            return self
        return replace(self, interruptions=MappingProxyType(
            {k: v for k, v in self.interruptions.items() if k not in gone}))
