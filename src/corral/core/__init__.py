"""corral.core: the pure scheduling core. Snapshot in, Plan out; no I/O, no clock, no globals."""

from corral.core.config import DEFAULT_SCORING, SchedulerConfig
from corral.core.cycle import schedule
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
