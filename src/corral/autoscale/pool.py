"""The pool autoscaler: what to rent and what to return. A pure policy beside the core.

    PoolView (waiting work + reasons, offers, instances, node use, limits, budget), state, now
        │  scale-up   waiting work the core could not place *for lack of capacity* (CAPACITY_CODES)
        │             packs onto instances already on their way, then onto new instances of the
        │             offer that costs least for it (packing.py), within per-provider max nodes,
        │             max spend per hour (per provider and overall) and credits
        │  min nodes  providers under their minimum get their cheapest offer
        │  in flight  an instance on its way that no waiting work packs onto any more (its work
        │             started elsewhere) is returned after `cancel_unneeded_after_s` (60 s)
        │  replace    one node at a time whose preemptible work all fits one instance of a
        │             cheaper offer: the replacement is launched, the node drained once it
        │             joined (Karpenter's consolidation; replace.py)
        │  empty      one node at a time whose preemptible work all fits the free room of the
        │             other nodes: drained, its work requeued for the core to place there, the
        │             node returned once idle (Karpenter's consolidation "delete"; consolidate.py)
        │  scale-down instances that never joined are returned; idle nodes past the idle timeout
        │             drain (most expensive first, never below min nodes), drained idle ones are
        │             terminated; never a node with running non-preemptible work
        │  retiring   a provider being removed (`corral providers rm`) rents nothing more: its
        │             joined nodes drain at once, each is returned once nothing runs on it,
        │             the ones that never joined are returned at once
        ▼
    Decisions (launches, drains, terminations, a sentence per waiting workload, the new state)

It reads no clock (`now` is an argument), does no I/O and keeps its memory (backoff, spot
interruptions) in the `AutoscalerState` passed in and returned. The control plane
(`corral.control.autoscale`) and the simulator (`corral.sim.autoscaled`) both call `decide`.

After a spot interruption the work stays on spot while spot, its interruptions counted, costs
less than on-demand (spot.py), and another (provider, zone) is preferred while it costs at most
`move_premium` (25%) more than the place that interrupted (SkyPilot's `FAILOVER` /
`EAGER_NEXT_REGION`; bench/README, issue 11).

Why waiting work is packed greedily, in the core's order (priority, then age), onto the offer
with the least cost for that workload alone: the exact cheapest cover is a bin-packing problem,
and the greedy choice rents what the highest-priority work needs first, as a user expects when
the budget runs out half-way; small work fills what large work leaves on instances it plans.
Room on instances already on their way is taken by smaller work only when no dearer per GPU-hour
than what it would rent itself (else small jobs took an 8-GPU node rented for an 8-GPU job and
held it for weeks: bench/README, issue 11, the Alibaba trace, 1.089 -> 0.969 on that seed).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from corral.autoscale import consolidate as CN
from corral.autoscale import packing as PK
from corral.autoscale import replace as RP
from corral.autoscale import sentences as S
from corral.autoscale import spot as SP
from corral.autoscale.packing import Bin, eligible, offer_key, pack, workers_per_instance
from corral.autoscale.state import AutoscalerState, Interruptions
from corral.core import reasons as R
from corral.core.model import CapacityKind, Workload, pending_order
from corral.providers.base import CapacityState, Instance, Offer
from corral.providers.errors import ProviderReason

__all__ = [
    "CAPACITY_CODES",
    "AutoscalerConfig",
    "Budget",
    "Decisions",
    "Drain",
    "Launch",
    "NodeUse",
    "PoolView",
    "ProviderLimits",
    "Terminate",
    "Waiting",
    "decide",
]

#: pending reasons that more capacity would end. Never OverQuota (borrowing is only allowed on
#: idle capacity: renting for it would buy GPUs its queue may not keep), QueueLimit, a price cap
#: on the free room, the ledger's BudgetExceeded. The pool-shape codes (no node large enough,
#: a GPU model no node has, a price cap under every node's price, no node of a capacity kind it
#: may use, none carrying the labels it selects or running images, no GPU with its memory,
#: or none meeting these together) are "unresolvable" for the nodes the pool has, not for what
#: can be rented: with an empty autoscaled pool every workload is NoNodeLargeEnough, and with
#: spot nodes only, work that may not be preempted is CapacityUnavailable. An offer serves such
#: work only when `eligible` (model, size, kind, price cap, GPU memory, the labels an instance
#: joins with, declared image support) says it may, so these rent nothing that could not run
#: it; when no offer may, the note says so and what to change (sentences.no_offer).
#: RoomNominated: the only room that fits it is held for a nominee (a workload an earlier plan
#: moved, `corral.core.nominations`), which takes that room once it waits: the pool is full for
#: it as much as with InsufficientCapacity. The nominee itself is never rented for while its room
#: is held (`PoolView.nominated`). If the nominee never comes (cancelled, ended), the work takes
#: the freed room and what was rented for it is returned on its way (`cancel_unneeded_after_s`).
CAPACITY_CODES = frozenset(
    {R.INSUFFICIENT_CAPACITY, R.TOPOLOGY_FRAGMENTED, R.RECLAIM_BLOCKED, R.RESERVED_FOR_GANG,
     R.ROOM_NOMINATED, R.NO_NODE_LARGE_ENOUGH, R.GPU_MODEL_UNAVAILABLE, R.PRICE_CAP_TOO_LOW,
     R.CAPACITY_UNAVAILABLE, R.NO_NODE_SELECTED, R.GPU_MEMORY_TOO_SMALL,
     R.CONSTRAINTS_DISJOINT})

_IN_FLIGHT = frozenset({CapacityState.REQUESTED, CapacityState.PROVISIONING,
                        CapacityState.JOINING})
_COUNTED = _IN_FLIGHT | {CapacityState.READY, CapacityState.DRAINING}


@dataclass(frozen=True)
class Waiting:
    workload: Workload
    reason: str  # the core's pending reason code


@dataclass(frozen=True)
class ProviderLimits:
    min_nodes: int = 0
    max_nodes: int | None = None
    max_spend_per_hour: Decimal | None = None
    #: this provider's idle timeout (None: `AutoscalerConfig.idle_timeout_s`), and per instance
    #: type ((type, seconds) pairs, which win): dstack's per-fleet `idle_duration`
    idle_timeout_s: float | None = None
    idle_timeouts: tuple[tuple[str, float], ...] = ()

    def idle_timeout(self, offer: Offer, default: float) -> float:
        """How long a node of `offer` may stay idle (since it joined or its work ended)."""
        for itype, seconds in self.idle_timeouts:
            if itype == offer.instance_type:
                return seconds
        return default if self.idle_timeout_s is None else self.idle_timeout_s


@dataclass(frozen=True)
class Budget:
    """Overall limits: a max spend per hour, and credits that must cover the rate for a while."""

    max_spend_per_hour: Decimal | None = None
    credits: Decimal | None = None  # spendable balance; None: not credit-funded
    credit_horizon_h: Decimal = Decimal(1)  # new spend must be covered this many hours


@dataclass(frozen=True)
class NodeUse:
    """What runs on a node that joined: counts, and since when it holds nothing (None: busy)."""

    running: int = 0
    non_preemptible: int = 0
    idle_since: float | None = None
    #: the workloads running only on this node (a gang spread over nodes is not here): what
    #: a replacement of the node would have to hold (replace.py)
    work: tuple[Workload, ...] = ()
    #: its free room: (free milli-GPUs per device, free CPU milli, free MiB); None: not known
    #: (the node is then never a target of consolidation, consolidate.py)
    free: tuple[tuple[int, ...], int, int] | None = None


@dataclass(frozen=True)
class AutoscalerConfig:
    idle_timeout_s: float = 600.0
    join_timeout_s: float = 900.0
    backoff_base_s: float = 60.0
    backoff_max_s: float = 3600.0
    spot_fallback_after: int = 2  # interruptions before on-demand only, if spot.py cannot weigh
    spot_risk: Mapping[str, SP.SpotRisk] = field(default_factory=dict)  # by provider name
    #: after an interruption, a place (provider, zone) that interrupted the work counts as this
    #: much dearer: another place is taken when it costs at most (1 + premium) x as much
    move_premium: float = 0.25
    #: an instance still on its way that no waiting work packs onto (the work it was rented for
    #: started elsewhere) is returned once it has been on its way this long; None: kept until
    #: it joins and idles out. Saves its idle timeout; costs a launch if work comes back.
    cancel_unneeded_after_s: float | None = 60.0
    max_instances_per_decision: int = 32
    #: replace a node whose work (all preemptible, all on it) fits one instance of an offer
    #: that costs at most (1 - this) of its price (replace.py); None: never
    replace_min_saving: float | None = 0.3
    replace_min_age_s: float = 1800.0  # a node launched less long ago is not replaced
    #: empty a node whose work (all preemptible, all on it) fits the other nodes' free room,
    #: launched at least this long ago (consolidate.py); None: never
    consolidate_min_age_s: float | None = 1800.0
    max_waiting_considered: int = 2000  # of the oldest/highest-priority capacity-waiting work


@dataclass(frozen=True)
class PoolView:
    waiting: Sequence[Waiting]
    offers: Sequence[Offer]
    instances: Sequence[Instance]
    nodes: Mapping[str, NodeUse] = field(default_factory=dict)  # by node id
    limits: Mapping[str, ProviderLimits] = field(default_factory=dict)  # by provider name
    budget: Budget = Budget()
    retiring: frozenset[str] = frozenset()  # providers being removed: drain, return, rent none
    #: workloads with room held for them (nominations in force): that room is theirs once they
    #: wait, so whatever reason a plan gave them, they need no new capacity
    nominated: frozenset[str] = frozenset()
    #: how waiting workloads checkpoint (by id; absent: not known, spot.py's count rule)
    checkpoints: Mapping[str, SP.Checkpointing] = field(default_factory=dict)
    #: instance id -> the workloads an instance on its way was rented for (the control plane's
    #: join holds): that work keeps its room there whatever the room-price rule says of others
    rented_for: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    offer: Offer
    count: int
    reason: str
    workloads: tuple[str, ...]
    #: the instance this one replaces (count 1): the caller tells the state which instance it
    #: launched (`AutoscalerState.replacement_launched`)
    replaces: str | None = None


@dataclass(frozen=True)
class Drain:
    instance_id: str
    node_id: str
    reason: str
    #: stop the node's work with this stop reason (preemption contract, requeued); None: the
    #: work there runs to its end (idle drains, and retiring providers: the caller decides)
    stop_reason: str | None = None


@dataclass(frozen=True)
class Terminate:
    instance_id: str
    reason: str
    failed_offer: Offer | None = None  # set when the instance counts as a failed launch


@dataclass(frozen=True)
class Decisions:
    launches: tuple[Launch, ...]
    drains: tuple[Drain, ...]
    terminations: tuple[Terminate, ...]
    waiting: Mapping[str, S.WaitNote]  # workload id -> what it did or could not do for it
    on_demand_only: tuple[str, ...]  # workloads past the spot-interruption limit
    state: AutoscalerState


def decide(view: PoolView, state: AutoscalerState, config: AutoscalerConfig,
           now: float) -> Decisions:
    """One decision. Pure: the same view, state, config and `now` give the same Decisions."""
    terminations, state = _not_joined(view, state, config, now)
    retire_drains, retired = _retire(view, {t.instance_id for t in terminations})
    terminations += retired
    gone = {t.instance_id for t in terminations}
    live = [i for i in view.instances if i.state in _COUNTED and i.id not in gone]
    if view.retiring:  # what is leaving serves no waiting work and holds no min nodes
        view = replace(view, offers=[o for o in view.offers if o.provider not in view.retiring],
                       limits={k: v for k, v in view.limits.items() if k not in view.retiring})
        staying = [i for i in live if i.provider not in view.retiring]
    else:
        staying = live
    state = SP.weigh_interrupted(state, [*(x.workload for x in view.waiting), *(
        w for u in view.nodes.values() for w in u.work)], view.offers, view.checkpoints, config, now)
    moving = RP.progress(state, staying, now)
    state = moving.state.settle_emptying((i.id for i in staying), now)
    plan = _ScaleUp(view, state, config, now, staying, aside=moving.aside)
    plan.run()
    plan.min_nodes()
    swap, state = _replacement(view, state, config, now, staying, plan)
    drains, more = _scale_down(view, config, now, staying)
    if moving.drain is not None:
        drains = (Drain(*moving.drain, stop_reason=RP.NODE_REPLACED), *drains)
    emptied, state = _consolidation(view, state, config, now, staying, plan, drains)
    drains = (*drains, *emptied)
    more += plan.unneeded()
    return Decisions((*plan.launches(), *swap), (*retire_drains, *drains),
                     (*terminations, *more), plan.notes, tuple(sorted(plan.on_demand_only)),
                     state)


def _replacement(view: PoolView, state: AutoscalerState, config: AutoscalerConfig, now: float,
                 live: list[Instance], plan: _ScaleUp) -> tuple[tuple[Launch, ...],
                                                                AutoscalerState]:
    """At most one node replaced by a cheaper one, when none is being replaced (replace.py)."""
    if config.replace_min_saving is None or state.replacement is not None \
            or state.emptying is not None:
        return (), state

    def use(node: str) -> tuple[int, int, tuple[Workload, ...]] | None:
        u = view.nodes.get(node)
        return None if u is None else (u.running, u.non_preemptible, u.work)

    found = RP.choose(use, view.offers, sorted(live, key=lambda i: i.id),
                      min_saving=config.replace_min_saving, min_age_s=config.replace_min_age_s,
                      now=now, kinds=plan.kinds, refusal=plan.refusal)
    if found is None:
        return (), state
    old, offer, work = found
    plan.charge(offer, 1)
    reason = (f"launch 1 x {S.describe_offer(offer)}: to replace {old.id} "
              f"({S.describe_offer(old.offer)}), whose work ({len(work)} workload"
              f"{'s' if len(work) > 1 else ''}, all preemptible) it holds")
    return ((Launch(offer, 1, reason, tuple(w.id for w in work), replaces=old.id),),
            RP.started(state, old, offer, now))


def _consolidation(view: PoolView, state: AutoscalerState, config: AutoscalerConfig,
                   now: float, live: list[Instance], plan: _ScaleUp,
                   drains: Sequence[Drain]) -> tuple[tuple[Drain, ...], AutoscalerState]:
    """At most one node emptied into the others' free room, when no node is being replaced
    or emptied (consolidate.py)."""
    if config.consolidate_min_age_s is None or state.replacement is not None \
            or state.emptying is not None:
        return (), state
    rooms: dict[str, CN.Room] = {}
    for node, u in view.nodes.items():
        if u.free is not None:
            rooms[node] = CN.Room(u.running, u.non_preemptible, u.work, *u.free)
    waiting = [x.workload for x in sorted(view.waiting, key=lambda x: pending_order(x.workload))
               if x.reason in CAPACITY_CODES][: config.max_waiting_considered]
    keep = frozenset({d.instance_id for d in drains})
    found = CN.choose(live, rooms.get, waiting, min_age_s=config.consolidate_min_age_s,
                      now=now, kinds=plan.kinds, keep=keep)
    if found is None:
        return (), state
    i, work = found
    until = now + config.idle_timeout_s
    reason = (f"drain {i.node_id} ({S.describe_offer(i.offer)}): its work ({len(work)} "
              f"workload{'s' if len(work) > 1 else ''}, all preemptible) fits the free room "
              "of the other nodes; it is moved there and the node returned")
    return ((Drain(i.id, i.node_id or "", reason, stop_reason=CN.NODE_CONSOLIDATED),),
            state.emptied_now(i.id, (w.id for w in work), until))


# -- scale-up ------------------------------------------------------------------------------------
class _ScaleUp:
    def __init__(self, view: PoolView, state: AutoscalerState, config: AutoscalerConfig,
                 now: float, live: list[Instance], aside: str | None = None) -> None:
        self.view, self.state, self.config, self.now = view, state, config, now
        # a replacement on its way (`aside`) is not for waiting work, nor cancelled as unneeded
        flying = [i for i in live if i.state in _IN_FLIGHT and i.node_id is None
                  and i.id != aside]
        self.bins = [Bin.empty(i.offer, new=False) for i in flying]
        self.flying = dict(zip((id(b) for b in self.bins), flying, strict=True))
        # what each of them was rented for (`PoolView.rented_for`), by bin
        self.for_work = {id(b): view.rented_for.get(i.id, frozenset())
                         for b, i in zip(self.bins, flying, strict=True)}
        self.needed: set[str] = set()  # in-flight instances some waiting work packs onto
        self.count: dict[str, int] = dict(Counter(i.provider for i in live))
        self.spend: dict[str, Decimal] = {}
        for i in live:
            self.spend[i.provider] = self.spend.get(i.provider, Decimal(0)) + i.offer.price_per_hour
        self.new_spend = Decimal(0)
        self.planned: dict[str, list[Bin]] = {}
        self.served: dict[str, list[Waiting]] = {}
        self.notes: dict[str, S.WaitNote] = {}
        self.on_demand_only: set[str] = set()

    def run(self) -> None:
        wanted = []
        for x in self.view.waiting:
            if x.workload.id in self.view.nominated:
                self.notes[x.workload.id] = S.not_renting("room is held for it (nominated): "
                                                          "no capacity rented for it")
            elif (until := self.state.emptied.get(x.workload.id)) is not None and until > self.now:
                self.notes[x.workload.id] = S.not_renting(
                    "moved off a node emptied into free room (consolidation): nothing is "
                    f"rented for it before t={until:g}")
            elif x.reason in CAPACITY_CODES:
                wanted.append(x)
        wanted.sort(key=lambda x: pending_order(x.workload))
        for x in wanted[: self.config.max_waiting_considered]:
            self._serve(x)

    def kinds(self, w: Workload) -> tuple[CapacityKind, ...]:
        kinds = w.allowed_capacity
        seen = self.state.interruptions.get(w.id)
        if not seen or CapacityKind.SPOT not in kinds:
            return kinds
        if seen.keeps_spot is None:  # not weighed yet (spot.weigh_interrupted): once here
            self.state = SP.weigh_interrupted(self.state, [w], self.view.offers,
                                              self.view.checkpoints, self.config, self.now)
            seen = self.state.interruptions[w.id]
        if seen.keeps_spot:
            return kinds
        self.on_demand_only.add(w.id)
        return tuple(k for k in kinds if k != CapacityKind.SPOT)

    def _serve(self, x: Waiting) -> None:
        w, kinds = x.workload, self.kinds(x.workload)
        own, need = self._own_rate(w, kinds), PK.gpus_needed(w)
        # work smaller than an instance on its way was not what it was rented for: it takes
        # that room only when no dearer per GPU-hour than what it would rent for itself (else
        # small jobs took an 8-GPU node rented for an 8-GPU job, the job got another, and the
        # small jobs held the dear node for weeks: bench/README, issue 11, the Alibaba trace).
        # Work the instance was rented for keeps it: it was packed there when it was rented
        # (else the next pass rented it a node of its own while its room was on its way)
        usable = [b for b in self.bins if eligible(w, b.offer, kinds) is None
                  and (b.new or own is None or need >= b.offer.gpus
                       or b.offer.price_per_gpu_hour <= own
                       or w.id in self.for_work.get(id(b), ()))]
        used = pack(w, usable)
        if used is not None:
            names = sorted({S.describe_offer(b.offer) for b in used})
            state = "planned now" if all(b.new for b in used) else "launching"
            self.needed.update(self.flying[id(b)].id for b in used if id(b) in self.flying)
            self.notes[w.id] = S.renting(f"capacity {state} for it: {', '.join(names)}")
            for b in used:
                if b.new:
                    self.served.setdefault(offer_key(b.offer), []).append(x)
            return
        choice, refusals = self._cheapest(w, kinds)
        if choice is None:
            self.notes[w.id] = S.no_offer(x, refusals, self.view.offers)
            return
        offer, n = choice
        new = [Bin.empty(offer) for _ in range(n)]
        pack(w, new)  # fits by construction (n = ceil(workers / workers per instance))
        self.bins.extend(new)
        self.planned.setdefault(offer_key(offer), []).extend(new)
        self.served.setdefault(offer_key(offer), []).append(x)
        self.charge(offer, n)
        self.notes[w.id] = S.renting(
            f"capacity planned now for it: {n} x {S.describe_offer(offer)}")

    def _own_rate(self, w: Workload, kinds: tuple[CapacityKind, ...]) -> Decimal | None:
        """The least price per GPU-hour of an offer `w` may rent now (None: none may)."""
        rates = [o.price_per_gpu_hour for o in self.view.offers
                 if eligible(w, o, kinds) is None and self.state.in_backoff(o, self.now) is None]
        return min(rates, default=None)

    def _cheapest(self, w: Workload, kinds: tuple[CapacityKind, ...]
                  ) -> tuple[tuple[Offer, int] | None, list[str]]:
        """The offer with the least hourly cost for all of `w`'s workers, or why each offer
        may not serve it."""
        avoid = set(self.state.interruptions.get(w.id, Interruptions()).places)
        best: tuple[tuple[object, ...], Offer, int] | None = None
        refusals: list[str] = []
        for offer in self.view.offers:
            if (why := eligible(w, offer, kinds)) is not None:
                refusals.append(f"{S.describe_offer(offer)}: {why}")
                continue
            n = math.ceil(max(w.workers, 1) / workers_per_instance(w, offer))
            if (why := self.refusal(offer, n)) is not None:
                refusals.append(f"{S.describe_offer(offer)}: {why}")
                continue
            # after an interruption, another zone or provider first unless it costs more than
            # the premium over the place that interrupted (then the least cost)
            cost = offer.price_per_hour * n
            if (offer.provider, offer.zone) in avoid:
                cost *= Decimal(1 + self.config.move_premium).quantize(Decimal("0.0001"))
            key = (cost, (offer.provider, offer.zone) in avoid, offer.price_per_gpu_hour,
                   offer_key(offer))
            if best is None or key < best[0]:
                best = (key, offer, n)
        if best is not None:
            return (best[1], best[2]), []
        return None, refusals

    def refusal(self, offer: Offer, n: int) -> str | None:
        """Why `n` new instances of `offer` may not be rented now (None: they may)."""
        if (b := self.state.in_backoff(offer, self.now)) is not None:
            return f"failed {b.failures}x ({b.last_reason}), next try at t={b.retry_at:g}"
        limits = self.view.limits.get(offer.provider, ProviderLimits())
        if self.planned_count() + n > self.config.max_instances_per_decision:
            return f"more than {self.config.max_instances_per_decision} instances this decision"
        count = self.count.get(offer.provider, 0)
        if limits.max_nodes is not None and count + n > limits.max_nodes:
            return f"provider {offer.provider} at {count} of its max {limits.max_nodes} nodes"
        cost = offer.price_per_hour * n
        spend = self.spend.get(offer.provider, Decimal(0))
        if limits.max_spend_per_hour is not None and spend + cost > limits.max_spend_per_hour:
            return (f"provider {offer.provider} would spend {spend + cost:.2f}/h, over its "
                    f"max of {limits.max_spend_per_hour}/h")
        budget = self.view.budget
        total = sum(self.spend.values(), Decimal(0))
        if budget.max_spend_per_hour is not None and total + cost > budget.max_spend_per_hour:
            return f"would spend {total + cost:.2f}/h, over the max of {budget.max_spend_per_hour}/h"
        if budget.credits is not None and \
                (total + cost) * budget.credit_horizon_h > budget.credits:
            return (f"credits {budget.credits} do not cover {total + cost:.2f}/h for "
                    f"{budget.credit_horizon_h} h")
        return None

    def charge(self, offer: Offer, n: int) -> None:
        self.count[offer.provider] = self.count.get(offer.provider, 0) + n
        self.spend[offer.provider] = (self.spend.get(offer.provider, Decimal(0))
                                      + offer.price_per_hour * n)

    def unneeded(self) -> list[Terminate]:
        """In-flight instances no waiting work packs onto, past `cancel_unneeded_after_s`
        (never under a provider's min nodes)."""
        after = self.config.cancel_unneeded_after_s
        if after is None:
            return []
        out = []
        for i in sorted(self.flying.values(), key=lambda i: i.id):
            floor = self.view.limits.get(i.provider, ProviderLimits()).min_nodes
            if i.id in self.needed or self.now - i.launched_at < after or floor:
                continue
            out.append(Terminate(i.id, f"terminate {i.id} ({S.describe_offer(i.offer)}): on its "
                                 "way, and no waiting work needs it any more"))
        return out

    def planned_count(self) -> int:
        return sum(len(b) for b in self.planned.values())

    def min_nodes(self) -> None:
        """Providers under their min nodes get their cheapest offer that the limits allow."""
        for provider, limits in sorted(self.view.limits.items()):
            missing = limits.min_nodes - self.count.get(provider, 0)
            offers = sorted((o for o in self.view.offers if o.provider == provider),
                            key=lambda o: (o.price_per_hour, offer_key(o)))
            for offer in offers:
                if missing <= 0:
                    break
                if self.refusal(offer, missing) is None:
                    self.planned.setdefault(offer_key(offer), []).extend(
                        Bin.empty(offer) for _ in range(missing))
                    self.charge(offer, missing)
                    missing = 0

    def launches(self) -> tuple[Launch, ...]:
        out = []
        for key, bins in self.planned.items():
            offer, served = bins[0].offer, self.served.get(key, [])
            why = (S.describe_waiting(served) if served
                   else f"provider {offer.provider} is under its min nodes")
            out.append(Launch(offer, len(bins), f"launch {len(bins)} x "
                              f"{S.describe_offer(offer)}: {why}",
                              tuple(dict.fromkeys(x.workload.id for x in served))))
        return tuple(out)


# -- scale-down ----------------------------------------------------------------------------------
def _not_joined(view: PoolView, state: AutoscalerState, config: AutoscalerConfig,
                now: float) -> tuple[list[Terminate], AutoscalerState]:
    """Instances that did not join in time are returned, and count as a failed launch."""
    out = []
    for i in sorted(view.instances, key=lambda i: i.id):
        if i.state in _IN_FLIGHT and i.node_id is None and now - i.launched_at > config.join_timeout_s:
            out.append(Terminate(i.id, f"terminate {i.id} ({S.describe_offer(i.offer)}): it did "
                                 f"not join within {config.join_timeout_s:g} s", i.offer))
            state = state.launch_failed(i.offer, ProviderReason.TIMEOUT, now,
                                        base_s=config.backoff_base_s, max_s=config.backoff_max_s)
    return out, state


def _retire(view: PoolView, gone: set[str]) -> tuple[list[Drain], list[Terminate]]:
    """The instances of retiring providers: drained at once, returned once nothing runs there.

    Never a node with running work: draining only stops new work landing there (the control
    plane stops its preemptible work with the preemption contract; the rest runs to its end).
    """
    drains: list[Drain] = []
    terminations: list[Terminate] = []
    for i in sorted(view.instances, key=lambda i: i.id):
        if i.provider not in view.retiring or i.id in gone or i.state not in _COUNTED:
            continue
        what = f"{i.id} ({S.describe_offer(i.offer)}): its provider is being removed"
        use = view.nodes.get(i.node_id) if i.node_id else None
        if i.node_id is None or (use is None and i.state in _IN_FLIGHT):
            terminations.append(Terminate(i.id, f"terminate {what}; it never joined"))
        elif i.state == CapacityState.DRAINING and (use is None or not use.running):
            terminations.append(Terminate(i.id, f"terminate {what}; drained and idle"))
        elif i.state != CapacityState.DRAINING:
            drains.append(Drain(i.id, i.node_id, f"drain {i.node_id}: {what}"))
    return drains, terminations


def _scale_down(view: PoolView, config: AutoscalerConfig, now: float, live: list[Instance]
                ) -> tuple[tuple[Drain, ...], list[Terminate]]:
    count = Counter(i.provider for i in live)
    drains, terminations = [], []
    # the most expensive first, so a min-nodes floor keeps the cheapest
    for i in sorted(live, key=lambda i: (-i.offer.price_per_hour, i.id)):
        use = view.nodes.get(i.node_id) if i.node_id else None
        if use is None or use.non_preemptible or use.running:
            continue
        limits = view.limits.get(i.provider, ProviderLimits())
        timeout = limits.idle_timeout(i.offer, config.idle_timeout_s)
        if i.state == CapacityState.DRAINING:
            terminations.append(Terminate(i.id, f"terminate {i.id} ({S.describe_offer(i.offer)}): "
                                          "drained and idle"))
            count[i.provider] -= 1
        elif (i.state == CapacityState.READY and use.idle_since is not None
              and now - use.idle_since >= timeout and count[i.provider] > limits.min_nodes):
            # an idle node is one the core could not use for any waiting work (else it would
            # have placed it there), so renting for that work does not keep it. Idle counts
            # from the join (the caller's idle_since), never from the launch: provisioning
            # does not eat a node's idle time
            drains.append(Drain(i.id, i.node_id or "", f"drain {i.node_id} "
                                f"({S.describe_offer(i.offer)}): idle for "
                                f"{now - use.idle_since:g} s (idle timeout {timeout:g} s)"))
            count[i.provider] -= 1
    return tuple(drains), terminations
