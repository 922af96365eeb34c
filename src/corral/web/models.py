"""Wire types of the dashboard's read-only endpoints (/v1/dashboard/*).

They are views shaped for one page each, so that a page refreshes with one request. A share or
a workload of a queue the caller may not see is reported without its queue or workload id
(`queue: null`): the pool is shared, so its occupancy is visible, but not who occupies it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DeviceCell",
    "GpuTotals",
    "Me",
    "NodeRow",
    "PoolSummary",
    "PoolView",
    "QueueBoard",
    "QueueRow",
    "ReportFile",
    "Share",
    "UsagePoint",
    "UsageSeries",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Me(_Model):
    name: str
    role: str
    queues: list[str] = Field(description="queues the caller may see (admins: every queue)")


class Share(_Model):
    queue: str | None = Field(description="null: a queue the caller may not see")
    gpus: float = Field(description="share of the device, 1.0 = the whole GPU")
    workload_id: str | None = None


class DeviceCell(_Model):
    index: int
    shares: list[Share] = Field(default_factory=list)
    #: measured use (`corral.control.device_use`): None where no sample came (no library)
    utilization: float | None = Field(default=None, description="compute utilisation 0..1")
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    use_age_s: float | None = Field(default=None, description="seconds since the sample")
    idle_held: bool = Field(default=False, description="held by work of a queue the caller "
                            "may see and measured under the server's idle_below busy in a "
                            "fresh sample: 'held, barely used'")
    before_hold: bool = Field(default=False, description="the sample was taken before a hold "
                              "of a queue the caller may see began (or that work is not running "
                              "yet): it judges none ('no sample since this hold began')")


class NodeRow(_Model):
    id: str
    provider: str
    region: str
    zone: str
    gpu_model: str
    gpu_count: int
    gpu_memory_mib: int
    capacity_kind: str
    price_per_gpu_hour: float
    cordoned: bool
    health: str
    gpus_used: float
    devices: list[DeviceCell]


class GpuTotals(_Model):
    """total = allocated + idle + unavailable (free GPUs on cordoned or unhealthy nodes)."""

    total: float
    allocated: float
    idle: float
    unavailable: float


class PoolView(_Model):
    nodes: list[NodeRow]
    totals: GpuTotals
    pending: int = Field(description="pending workloads in the caller's queues")
    running: int = Field(description="workloads holding GPUs in the caller's queues")


class PoolSummary(_Model):
    """The pool's numbers without its nodes: what the strip on every page shows."""

    totals: GpuTotals
    nodes: int = Field(description="active nodes in the pool")
    pending: int = Field(description="pending workloads in the caller's queues")
    running: int = Field(description="workloads holding GPUs in the caller's queues")


class QueueRow(_Model):
    name: str
    parent: str | None = None
    depth: int = Field(description="nesting level among the rows returned (0 = top)")
    quota_gpus: float
    limit_gpus: float | None = None
    weight: float
    priority: int
    used_gpus: float = Field(description="held by this queue and its children")
    borrowed_gpus: float = Field(description="used beyond the quota (may be reclaimed)")
    fair_share_gpus: float = Field(description="deserved share of the pool for current demand")
    demand_gpus: float = Field(description="used plus wanted by pending work, with children")
    running: int
    pending: int
    pending_reasons: dict[str, int] = Field(default_factory=dict)


class QueueBoard(_Model):
    capacity_gpus: float = Field(description="GPUs on schedulable nodes, divided by fair share")
    queues: list[QueueRow]


class UsagePoint(_Model):
    at: float
    by_queue: dict[str, float] = Field(
        description="allocated GPUs per queue; other queues' use is summed under \"\"")
    allocated_by_provider: dict[str, float]
    idle_by_provider: dict[str, float]
    unavailable_by_provider: dict[str, float]


class UsageSeries(_Model):
    interval_s: float
    since: float
    points: list[UsagePoint]


class ReportFile(_Model):
    name: str = Field(description="path relative to the reports directory")
    kind: str = Field(description="png | json")
    size: int
    modified_at: float
