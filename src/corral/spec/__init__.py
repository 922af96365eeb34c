"""corral.spec: the documented, validated input formats (pool files, workload specs)."""

from corral.spec.errors import SpecError
from corral.spec.load import load_pool, load_workloads
from corral.spec.pool import NodeGroupSpec, PoolSpec, ProviderSpec, QueueSpec, SchedulerSpec
from corral.spec.workload import WorkloadSpec

__all__ = [
    "NodeGroupSpec",
    "PoolSpec",
    "ProviderSpec",
    "QueueSpec",
    "SchedulerSpec",
    "SpecError",
    "WorkloadSpec",
    "load_pool",
    "load_workloads",
]
