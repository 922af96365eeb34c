"""corral.core: the pure scheduling core. Snapshot in, Plan out; no I/O, no clock, no globals."""

from typing import TYPE_CHECKING

from corral.core.config import DEFAULT_SCORING, SchedulerConfig
from corral.core.model import (
    MILLI_PER_GPU,
    CapacityKind,
    ClusterState,
    Health,
    Node,
    Queue,
    QueueUsage,
    TopologyLevel,
    WorkerAssignment,
    WorkerResources,
    Workload,
    WorkloadKind,
    WorkloadState,
)
from corral.core.plan import Eviction, Placement, Plan, Reservation
from corral.core.reasons import Reason

if TYPE_CHECKING:
    from corral.core.cycle import schedule

__all__ = [
    "DEFAULT_SCORING",
    "MILLI_PER_GPU",
    "CapacityKind",
    "ClusterState",
    "Eviction",
    "Health",
    "Node",
    "Placement",
    "Plan",
    "Queue",
    "QueueUsage",
    "Reason",
    "Reservation",
    "SchedulerConfig",
    "TopologyLevel",
    "WorkerAssignment",
    "WorkerResources",
    "Workload",
    "WorkloadKind",
    "WorkloadState",
    "schedule",
]


def __getattr__(name: str) -> object:
    """`schedule` is loaded on first use (PEP 562): the cycle needs numpy, and a client that reads
    only the model (the pool and workload files' validation, `corral schema`) must not."""
    if name == "schedule":
        from corral.core.cycle import schedule

        return schedule
    raise AttributeError(f"module 'corral.core' has no attribute {name!r}")
