"""Backends: running the work the core placed, for real (local processes; later Ray, Slurm,
Kubernetes) or in memory (the fake). See README.md in this folder for the interface, the
environment contract every worker gets, and the preemption contract.
"""

from corral.backends.base import (
    Backend,
    InventorySource,
    LaunchSpec,
    LogSource,
    WorkerState,
    WorkerStatus,
)
from corral.backends.errors import (
    AttemptStillRunning,
    BackendError,
    BackendUnavailable,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchConflict,
    LaunchError,
    UnknownAttempt,
)
from corral.backends.fake import FakeBackend, FakeWorld
from corral.backends.health import (
    DeviceHealth,
    FakeGpuHealthProbe,
    GpuHealthProbe,
    HealthThresholds,
    NodeVerdict,
    node_verdict,
)
from corral.backends.local import LocalBackend, virtual_nodes
from corral.backends.nvml import NvmlHealthProbe

__all__ = [
    "AttemptStillRunning",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "DeviceHealth",
    "FakeBackend",
    "FakeGpuHealthProbe",
    "FakeWorld",
    "GpuHealthProbe",
    "HealthThresholds",
    "InvalidLaunchSpec",
    "InvalidRequest",
    "InventorySource",
    "LaunchConflict",
    "LaunchError",
    "LaunchSpec",
    "LocalBackend",
    "LogSource",
    "NodeVerdict",
    "NvmlHealthProbe",
    "UnknownAttempt",
    "WorkerState",
    "WorkerStatus",
    "node_verdict",
    "virtual_nodes",
]
