"""Replacing an under-used node with a cheaper one (Karpenter's consolidation, "replace").

Karpenter's disruption controller replaces a node when every pod on it fits one cheaper
replacement node: it pre-spins the replacement, waits for it to be ready, then drains the old
node, one disruption at a time within the pool's disruption budget
(https://karpenter.sh/docs/concepts/disruption/). corral does the same, bounded:

- only a node whose running work may all be stopped (preemptible: it is stopped with the
  preemption contract, stop reason `NodeReplaced`, and resumes from its checkpoint with no
  restart spent) and runs only there: a gang spread over nodes is left alone (replacing one of
  its nodes would restart all of it); an empty node is the idle timeout's, not this;
- only a node launched at least `replace_min_age_s` ago, so new capacity and the work just
  placed on it are not churned;
- only when one instance of another offer holds all of that work (each workload `eligible` for
  the offer, as when renting for it; every worker packed) and costs at most
  (1 - `replace_min_saving`) of the node's price: the saving has to pay for the stop (a
  checkpoint and a restart) and for the minutes both instances are paid;
- one replacement at a time in the whole pool (a disruption budget of one node);
- make before break: the replacement is launched first and kept out of the waiting work's
  packing (and of the cancel of unneeded instances); the old node is drained, its work stopped,
  only once the replacement has joined. If the replacement fails or never joins, it is
  forgotten and the old node keeps its work.

Among the candidates the largest saving per hour wins (ties: instance id, then offer).

Worked example: a p5.48xlarge (8 x H100, 98.32/h) runs one preemptible 1-GPU job whose 8-GPU
neighbours ended; a g6.xlarge (1 x L4, 0.80/h) may serve it: 0.80 <= (1 - 0.3) x 98.32, so a
g6.xlarge is launched, and once it joined the p5 is drained, its job stopped (requeued, it
starts on the g6) and the p5 returned: 97.52/h saved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from corral.autoscale.packing import Bin, eligible, offer_key
from corral.autoscale.state import AutoscalerState, Replacement
from corral.core.model import CapacityKind, Workload, pending_order
from corral.providers.base import CapacityState, Instance, Offer

__all__ = ["NODE_REPLACED", "Progress", "choose", "progress", "started"]

#: the stop reason of work moved off a node being replaced (requeued, no restart used up)
NODE_REPLACED = "NodeReplaced"


@dataclass(frozen=True)
class Progress:
    """Where the replacement in progress stands at this decision."""

    state: AutoscalerState
    drain: tuple[str, str, str] | None = None  # (instance, node, reason): the old node, now
    aside: str | None = None  # the replacement on its way: no waiting work packs onto it


def progress(state: AutoscalerState, live: Sequence[Instance], now: float) -> Progress:
    """The replacement in progress: forgotten once done or failed; the old node drained once
    the replacement joined."""
    r = state.replacement
    if r is None:
        return Progress(state)
    by_id = {i.id: i for i in live}
    old = by_id.get(r.old)
    done = replace(state, replacement=None)
    if old is None or old.node_id is None:
        return Progress(done)  # the old node was returned (or lost): nothing left to do
    if r.new is None:  # the caller did not say what it launched: the launch failed
        return Progress(state if now <= r.since else done)
    new = by_id.get(r.new)
    if new is None:
        return Progress(done)  # the replacement failed, or was returned before it joined
    if new.node_id is None:
        return Progress(state, aside=new.id)
    if old.state == CapacityState.DRAINING:
        return Progress(state)  # drained: returned once its work has left
    return Progress(state, drain=(old.id, old.node_id,
                                  f"drain {old.node_id}: replaced by {new.id} "
                                  f"({new.offer.instance_type}, {new.offer.price_per_hour:.2f}/h "
                                  f"instead of {old.offer.price_per_hour:.2f}/h), which joined"))


def choose(nodes: Callable[[str], tuple[int, int, tuple[Workload, ...]] | None],
           offers: Sequence[Offer], live: Sequence[Instance], *, min_saving: float,
           min_age_s: float, now: float,
           kinds: Callable[[Workload], tuple[CapacityKind, ...]],
           refusal: Callable[[Offer, int], str | None]
           ) -> tuple[Instance, Offer, tuple[Workload, ...]] | None:
    """The node to replace and its replacement, or None. `nodes(node_id)` gives a node's
    (running, non-preemptible, workloads running only there)."""
    best: tuple[tuple[Decimal, str, str], Instance, Offer, tuple[Workload, ...]] | None = None
    for i in live:
        work = _movable(i, nodes, min_age_s, now)
        if work is None:
            continue
        limit = i.offer.price_per_hour * Decimal(str(1 - min_saving))
        for offer in offers:
            if offer.price_per_hour > limit or offer_key(offer) == offer_key(i.offer):
                continue
            if not _holds(offer, work, kinds) or refusal(offer, 1) is not None:
                continue
            key = (offer.price_per_hour - i.offer.price_per_hour, i.id, offer_key(offer))
            if best is None or key < best[0]:
                best = (key, i, offer, work)
    return None if best is None else (best[1], best[2], best[3])


def started(state: AutoscalerState, old: Instance, offer: Offer, now: float) -> AutoscalerState:
    return replace(state, replacement=Replacement(old.id, offer_key(offer), now))


def _movable(i: Instance, nodes: Callable[[str], tuple[int, int, tuple[Workload, ...]] | None],
             min_age_s: float, now: float) -> tuple[Workload, ...] | None:
    """The work on `i` if all of it may move with the node, else None."""
    if i.state != CapacityState.READY or i.node_id is None or now - i.launched_at < min_age_s:
        return None
    use = nodes(i.node_id)
    if use is None:
        return None
    running, stable, work = use
    if not running or stable or len(work) != running or not all(w.preemptible for w in work):
        return None
    return work


def _holds(offer: Offer, work: tuple[Workload, ...],
           kinds: Callable[[Workload], tuple[CapacityKind, ...]]) -> bool:
    """Whether one empty instance of `offer` holds every worker of `work`."""
    b = Bin.empty(offer)
    for w in sorted(work, key=pending_order):
        if eligible(w, offer, kinds(w)) is not None:
            return False
        for _ in range(max(w.workers, 1)):
            if not b.take(w):
                return False
    return True
