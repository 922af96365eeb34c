"""Stable reason codes for every decision the core makes.

"Why pending" and "why evicted" are part of corral's interface: users grep for them, dashboards
group by them, tests assert them. Codes never change meaning; sentences may improve.

Pending codes fall into two classes, after the Kubernetes scheduling framework's statuses:
*unschedulable* (it may fit later, when something finishes or is evicted) and *unresolvable*
(it can never fit this pool as it is: no node is big enough, no node has the model, the price cap
is below every offer). The control plane may reject unresolvable work at submission.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# --- pending: may fit later -------------------------------------------------------------------
QUEUE_LIMIT: Final = "QueueLimit"  # the queue (or an ancestor) would exceed its GPU limit
INSUFFICIENT_CAPACITY: Final = "InsufficientCapacity"  # no free room now
TOPOLOGY_FRAGMENTED: Final = "TopologyFragmented"  # enough GPUs, but not inside one domain
RESERVED_FOR_GANG: Final = "ReservedForGang"  # room exists only on capacity held for a gang
ROOM_NOMINATED: Final = "RoomNominated"  # room exists only where work was evicted for another
PROTECTED_BY_MIN_RUNTIME: Final = "ProtectedByMinRuntime"  # fits only by evicting young work
PRICE_CAP_BLOCKS: Final = "PriceCapBlocks"  # free room exists only above its price cap
OVER_QUOTA: Final = "OverQuota"  # its queue would borrow: only idle capacity, never reclaim
RECLAIM_BLOCKED: Final = "ReclaimBlocked"  # owed by quota, but nothing reclaimable makes room
BUDGET_EXCEEDED: Final = "BudgetExceeded"  # the ledger cannot cover its hold (set by control)
NOT_CONSIDERED: Final = "NotConsidered"  # the cycle's work limit ran out before it

# --- pending: can never fit this pool -----------------------------------------------------------
NO_NODE_LARGE_ENOUGH: Final = "NoNodeLargeEnough"
GPU_MODEL_UNAVAILABLE: Final = "GpuModelUnavailable"
PRICE_CAP_TOO_LOW: Final = "PriceCapTooLow"
GANG_TOO_LARGE: Final = "GangTooLarge"  # more workers than any allowed domain could ever hold
QUEUE_LIMIT_TOO_LOW: Final = "QueueLimitTooLow"  # larger than the queue's limit itself
UNKNOWN_QUEUE: Final = "UnknownQueue"
CAPACITY_UNAVAILABLE: Final = "CapacityUnavailable"  # no node of a capacity kind it may use
NO_NODE_SELECTED: Final = "NoNodeSelected"  # no node carries the labels it selects
GPU_MEMORY_TOO_SMALL: Final = "GpuMemoryTooSmall"  # no GPU has its least memory
CONSTRAINTS_DISJOINT: Final = "ConstraintsDisjoint"  # each constraint met, never all at once

UNRESOLVABLE: Final = frozenset(
    {
        NO_NODE_LARGE_ENOUGH,
        GPU_MODEL_UNAVAILABLE,
        PRICE_CAP_TOO_LOW,
        GANG_TOO_LARGE,
        QUEUE_LIMIT_TOO_LOW,
        UNKNOWN_QUEUE,
        CAPACITY_UNAVAILABLE,
        NO_NODE_SELECTED,
        GPU_MEMORY_TOO_SMALL,
        CONSTRAINTS_DISJOINT,
    }
)

#: the core's pending codes for work that may fit later (BudgetExceeded is the control plane's)
MAY_FIT: Final = frozenset({QUEUE_LIMIT, INSUFFICIENT_CAPACITY, TOPOLOGY_FRAGMENTED,
                            RESERVED_FOR_GANG, ROOM_NOMINATED, PROTECTED_BY_MIN_RUNTIME,
                            PRICE_CAP_BLOCKS, OVER_QUOTA, RECLAIM_BLOCKED, NOT_CONSIDERED})

#: pending codes whose sentence may name a queue's quota or limit (and so its use)
NAMES_QUEUES: Final = frozenset({OVER_QUOTA, RECLAIM_BLOCKED, NOT_CONSIDERED, QUEUE_LIMIT})

# --- details a reader completes the stored sentence from (`stored_refs`) ---------------------
QUEUES_NAMED: Final = "queues_named"  # the queues the sentence names, in its chain's order
YIELDS_TO_RESERVATIONS: Final = "yields_to_reservations"  # big: reserved nodes are not its
RESERVATION_HELD_BY: Final = "reservation_held_by"  # a holder of this cycle's reservations

# --- evictions ----------------------------------------------------------------------------------
RULE_PREEMPT: Final = "Preempt"  # higher priority in the same queue
RULE_RECLAIM: Final = "Reclaim"  # a queue below its quota takes back borrowed GPUs
RULE_CONSOLIDATE: Final = "Consolidate"  # moved so that a pending gang can start


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a workload stays pending: a stable code, a sentence, and structured details."""

    code: str
    message: str
    details: tuple[tuple[str, object], ...] = field(default=())

    @property
    def unresolvable(self) -> bool:
        return self.code in UNRESOLVABLE


def stored_refs(reason: Reason) -> str:
    """What a reader needs, beside the stored sentence, to add what moves at read time, as
    compact JSON stored with it (`corral.api.views.reason_now`): "queues", the queues the
    sentence names (`QUEUES_NAMED`, else a QueueLimit's "queue"), and "reserved": true when
    it yields to reservations held for other work (`YIELDS_TO_RESERVATIONS`: whether any are
    held, by whom and until when moves, so the reader takes the reservations in force). ""
    when there is nothing to add. It changes only with what the sentence says or the
    workload's shape, so a writer compares it as it compares the sentence."""
    refs: dict[str, Any] = {}
    details = dict(reason.details)
    if reason.code in NAMES_QUEUES:
        named = details.get(QUEUES_NAMED)
        if named is None and "queue" in details:
            named = (details["queue"],)
        if named:
            refs["queues"] = [str(q) for q in named]  # type: ignore[attr-defined]
    if details.get(YIELDS_TO_RESERVATIONS):
        refs["reserved"] = True
    return json.dumps(refs, separators=(",", ":"), sort_keys=True) if refs else ""


def read_refs(text: str) -> dict[str, Any]:
    """`stored_refs` read back: {} for "" (nothing to add, or a row written before them)."""
    if not text:
        return {}
    refs = json.loads(text)
    return refs if isinstance(refs, dict) else {}


# --- what a reader adds after the sentence (never stored: it moves) --------------------------
def waits_behind(code: str, yields: bool, held: Iterable[tuple[str, float | None]],
                 own: str) -> str | None:
    """The words that say which reservations a workload waits behind, or None when it waits
    behind none: "it waits behind nodes reserved for g1 until t=1000". `yields`: its reason
    says it yields to reservations (`YIELDS_TO_RESERVATIONS`, or "reserved" in its stored
    refs); `held`: the reservations in force, (holder, until when; None: not said); `own`: its
    id (its own reservation is not in its way). Only the core's may-fit codes: another
    writer's code (a workflow hold, BudgetExceeded) is not about capacity. One definition for
    the API's view of a stored sentence (`corral.api.views.reason_now`), `corral plan` and the
    dry run (`reason_with_reservations`)."""
    others = [(h, until) for h, until in held if h != own]
    if not (yields and others and code in MAY_FIT):
        return None
    return "it waits behind nodes reserved for " + ", ".join(
        h if until is None else f"{h} until t={until:.0f}" for h, until in others)


def with_now(message: str, now: Sequence[str]) -> str:
    """`message` with what is true now added after it: "... (now: a uses 3 GPUs; ...)"."""
    return f"{message} (now: {'; '.join(now)})" if now else message


def reason_with_reservations(reason: Reason, own: str,
                             held: Iterable[tuple[str, float | None]]) -> Reason:
    """`reason` of workload `own` in a plan whose reservations are `held` (holder, until),
    its sentence told which it waits behind, in the words the API adds to a stored one
    (`waits_behind`): for a plan shown before anything is stored (`corral plan`, the dry run)."""
    behind = waits_behind(reason.code, bool(dict(reason.details).get(YIELDS_TO_RESERVATIONS)),
                          held, own)
    if behind is None:
        return reason
    return Reason(reason.code, with_now(reason.message, [behind]), reason.details)


def eviction_message(rule: str, for_workload: str) -> str:
    what = {
        RULE_PREEMPT: "preempted by higher-priority work in its queue",
        RULE_RECLAIM: "reclaimed: its queue was borrowing GPUs another queue is owed",
        RULE_CONSOLIDATE: "moved to defragment the pool",
    }.get(rule, rule)
    return f"{what}, to make room for {for_workload}"
