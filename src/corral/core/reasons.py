"""Stable reason codes for every decision the core makes.

"Why pending" and "why evicted" are part of corral's interface: users grep for them, dashboards
group by them, tests assert them. Codes never change meaning; sentences may improve.

Pending codes fall into two classes, after the Kubernetes scheduling framework's statuses:
*unschedulable* (it may fit later, when something finishes or is evicted) and *unresolvable*
(it can never fit this pool as it is: no node is big enough, no node has the model, the price cap
is below every offer). The control plane may reject unresolvable work at submission.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

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
