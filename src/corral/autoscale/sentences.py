"""The pool autoscaler's sentences: offers, waiting work, and what to change when no offer
serves a workload.

Work the core finds it can never run *on the nodes the pool has* (no node of a capacity kind it
may use, none carrying its labels or running images, no GPU with its memory) is rented for when
an offer may serve it (`packing.eligible`). When none may, the core's own sentence names a fix
for a static pool ("add on-demand to capacity"); in an autoscaled pool the fix may as well be an
offer, so the autoscaler's sentence names both, in the words of the pool file and the spec.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from corral.core import reasons as R
from corral.core.model import LABEL_RUNS_IMAGES, Workload
from corral.providers.base import Offer

if TYPE_CHECKING:
    from corral.autoscale.pool import Waiting

__all__ = ["WaitKind", "WaitNote", "describe_offer", "describe_waiting", "no_offer",
           "not_renting", "offer_detail", "renting", "shape"]

#: the built-in labels an instance joins with (`packing._selector_unmet`)
_CARRIED = "corral.dev/provider, region, zone, capacity, gpu-model and vendor"


class WaitKind(enum.StrEnum):
    """What the autoscaler did for a waiting workload; the value is the event's reason that
    `corral.control.waiting_notes` writes (so no one reads a kind back from a sentence)."""

    RENTING = "Renting"  # capacity planned or launching for it (the offer named)
    NO_OFFER_SERVES = "NoOfferServes"  # no offer may serve it (why, and what to change)
    NOT_RENTING = "NotRenting"  # nothing rented on purpose: its room is held, or was emptied


@dataclass(frozen=True)
class WaitNote:
    """One waiting workload's line of a decision: its kind and its sentence."""

    kind: WaitKind
    sentence: str


def renting(sentence: str) -> WaitNote:
    return WaitNote(WaitKind.RENTING, sentence)


def not_renting(sentence: str) -> WaitNote:
    return WaitNote(WaitKind.NOT_RENTING, sentence)


def describe_offer(o: Offer) -> str:
    return (f"{o.instance_type} {o.capacity_kind} in {o.zone} ({o.provider}, "
            f"{o.price_per_hour:.2f}/h)")


def offer_detail(o: Offer) -> dict[str, Any]:
    """An offer as the audit records of launches name it."""
    return {"provider": o.provider, "instance_type": o.instance_type, "zone": o.zone,
            "capacity_kind": str(o.capacity_kind), "price_per_hour": str(o.price_per_hour),
            "source": o.source, "as_of": o.as_of}


def no_offer(x: Waiting, refusals: Sequence[str], offers: Sequence[Offer]) -> WaitNote:
    """'no offer may serve it: <why, per offer>', and for work the pool's nodes can never run,
    what to change: an offer (a provider's settings) or the workload."""
    shown = "; ".join(refusals[:4]) + (f"; and {len(refusals) - 4} more"
                                       if len(refusals) > 4 else "")
    text = f"no offer may serve it: {shown or 'no provider offers anything'}"
    fix = _fix(x.workload, x.reason, offers)
    return WaitNote(WaitKind.NO_OFFER_SERVES, f"{text}. To run it, {fix}" if fix else text)


def _fix(w: Workload, code: str, offers: Sequence[Offer]) -> str:
    if code == R.CAPACITY_UNAVAILABLE:
        kinds = "/".join(str(k) for k in w.allowed_capacity)
        rented = sorted({str(o.capacity_kind) for o in offers}) or ["nothing"]
        return (f"let a provider rent {kinds} capacity (an aws provider's "
                f"settings.capacity_kinds; offered now: {', '.join(rented)}), or list "
                f"{', '.join(rented)} in the workload's capacity")
    if code == R.NO_NODE_SELECTED and (LABEL_RUNS_IMAGES, "true") in w.node_selector \
            and not any(o.runs_images for o in offers):
        return ("declare runs_images: true in the settings of a provider whose machine image "
                "has podman, or remove image")
    if code == R.NO_NODE_SELECTED:
        return (f"select only labels a rented instance carries ({_CARRIED}, and its "
                "provider's labels) in node_selector, give a provider the others in its "
                "labels, or add nodes that carry them to the pool file")
    if code == R.GPU_MEMORY_TOO_SMALL:
        return (f"add an instance type with GPUs of at least {w.min_gpu_memory_mib / 1024:g} "
                "GiB to a provider's instance_types, or lower min_gpu_memory")
    return ""


def describe_waiting(served: Sequence[Waiting]) -> str:
    """'3 gangs of 8 x 8 H100 wait (InsufficientCapacity)', shapes in the order first seen."""
    groups: dict[str, int] = {}
    codes: dict[str, None] = {}
    for x in dict((x.workload.id, x) for x in served).values():
        groups[shape(x.workload)] = groups.get(shape(x.workload), 0) + 1
        codes[x.reason] = None
    parts = []
    for what, n in groups.items():
        gang = " x " in what
        noun = ("gang" if gang else "job") + ("s" if n > 1 else "")
        parts.append(f"{n} {noun} of {what}")
    verb = "waits" if len(served) == 1 else "wait"
    return f"{', '.join(parts)} {verb} ({', '.join(codes)})"


def shape(w: Workload) -> str:
    r = w.resources
    what = (f"{r.gpus} GPU" if r.gpus else f"{r.nominal_milli() / 1000:g} GPU" if r.fractional
            else f"{r.cpu_milli / 1000:g} CPU")
    if w.gpu_models:
        what = what.replace("GPU", "/".join(w.gpu_models))
    return f"{w.workers} x {what}" if w.workers > 1 else what
