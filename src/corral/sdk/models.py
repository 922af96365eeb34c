"""The wire types of corral's HTTP API, shared by the server (responses) and the SDK (parsing).

Fields are additive across versions: clients ignore fields they do not know.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AuditEntry",
    "AuditPage",
    "DeviceUseInfo",
    "DryRunResult",
    "ElasticWorld",
    "ErrorBody",
    "Event",
    "EventPage",
    "Health",
    "LogChunk",
    "Member",
    "MemberIn",
    "NodeInfo",
    "Problem",
    "ProviderInfo",
    "QueueIn",
    "QueueInfo",
    "Replica",
    "ScaleIn",
    "Service",
    "Submitted",
    "TokenCreated",
    "TokenIn",
    "TokenInfo",
    "TokenOut",
    "UserIn",
    "UserOut",
    "Version",
    "WhyPending",
    "WorkerPlacement",
    "Workload",
    "WorkloadPage",
]


class _Model(BaseModel):
    # built on first use, not at import (every CLI command imports this module); request
    # bodies (the *In models) are built at once: FastAPI cannot take a deferred one as a body
    model_config = ConfigDict(extra="ignore", defer_build=True)


class Problem(_Model):
    field: str
    message: str


class ErrorBody(_Model):
    error: str = Field(description="a stable code: invalid_request, not_found, forbidden, ...")
    message: str
    problems: list[Problem] = Field(default_factory=list)


class WorkerPlacement(_Model):
    worker: int
    node_id: str
    devices: list[int]
    milli_per_device: int
    state: str
    exit_code: int | None = None
    reason: str = ""


class ElasticWorld(_Model):
    """An elastic job's size: its bounds from the spec, its world from the latest world the
    control plane recorded (its ElasticWorld event); read-only, derived on each read."""

    min_workers: int
    max_workers: int
    world_size: int | None = Field(None, description="workers in the current world; null "
                                   "until the first world is recorded (the core gang starts)")
    generation: int | None = Field(None, description="the world's generation: + 1 per resize")


class Workload(_Model):
    id: str
    group_id: str
    name: str
    queue: str
    user: str
    kind: str
    state: str
    reason_code: str
    reason_message: str
    attempt: int
    restart_count: int
    version: int
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    stopping: str | None = Field(None, description="why a stop was requested, while it runs")
    spec: dict[str, Any] = Field(default_factory=dict)
    placements: list[WorkerPlacement] = Field(default_factory=list)
    elastic: ElasticWorld | None = Field(
        None, description="an elastic job's bounds and current world (GET /workloads/{id} "
        "only; null for other work and in lists)")


class Replica(_Model):
    """One replica of a service: its own workload (`id`), and where it serves."""

    id: str
    index: int
    state: str = Field(description="ready, starting, draining or ended (for traffic); "
                                   "`workload_state` is its lifecycle state")
    workload_state: str
    attempt: int
    restart_count: int
    reason_code: str
    reason_message: str
    node_id: str | None = None
    url: str | None = Field(None, description="http://host:port it listens on, once placed")


class Service(_Model):
    """A service: one object over its replicas (their group id is its id)."""

    id: str
    name: str
    queue: str
    user: str
    state: str = Field(description="serving, degraded, starting, stopping, idle (scaled to "
                                   "zero) or ended (cancelled)")
    desired: int
    ready: int
    starting: int
    draining: int
    min_replicas: int
    max_replicas: int
    spec: dict[str, Any] = Field(default_factory=dict)
    replicas: list[Replica] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list, description="the service's own latest "
                                "events, oldest first: scale changes (by hand or by its "
                                "autoscaler, with the reason)")
    replica_hours: float = Field(0.0, description="every replica's attempts, launched to "
                                 "ended (running ones to now)")
    gpu_hours: str = Field("0", description="GPU-hours the ledger metered for its replicas")
    cost: str = Field("", description="their cost at the ledger's prices, in its currency")


class ScaleIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=False)  # a request body

    replicas: int = Field(ge=0, le=1000, strict=True,
                          description="the desired replica count, within the spec's "
                                      "[min_replicas, max_replicas]")


class Submitted(_Model):
    group_id: str
    workloads: list[Workload]


class WorkloadPage(_Model):
    items: list[Workload]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class Event(_Model):
    id: int
    at: float
    kind: str
    workload_id: str | None = None
    subject: str = ""
    from_state: str = ""
    to_state: str = ""
    attempt: int = 0
    reason: str
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class EventPage(_Model):
    items: list[Event]
    next_after: int


class WhyPending(_Model):
    id: str
    state: str
    code: str
    message: str
    unresolvable: bool = False
    stopping: str | None = None


class LogChunk(_Model):
    workload_id: str
    worker: int
    attempt: int | None = None
    offset: int
    next_offset: int
    data: str = Field(description="UTF-8 text (invalid bytes replaced)")
    times: list[float | None] | None = Field(
        None, description="with timestamps=true: when each line of data was written (Unix "
        "seconds; a last line without its newline counts), as its worker's supervisor saw it, "
        "late by at most a second; null for a line not seen yet. Absent where the backend keeps "
        "no times")


class DryRunResult(_Model):
    outcome: str = Field(description="start | pending | rejected")
    placements: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    evictions: list[dict[str, str]] = Field(default_factory=list)
    reason_code: str | None = None
    reason_message: str | None = None
    notes: list[str] = Field(default_factory=list,
                             description="what the spec's service fields will do (port, "
                                         "readiness probe, replica bounds)")


class DeviceUseInfo(_Model):
    """One GPU's latest measured use (its node's vendor library: NVML, amdsmi), beside what
    holds it. Absent for a device no sample came for (no library, a device that errors)."""

    device: int
    utilization: float = Field(description="compute utilisation 0..1 (NVML's gpu rate, "
                               "amdsmi's gfx_activity), over the driver's last sample period")
    memory_used_bytes: int
    memory_total_bytes: int
    age_s: float = Field(description="seconds since the sample was taken")
    workloads: list[str] = Field(default_factory=list, description="what holds the device: "
                                 "admins see all, members the work of their queues")
    idle_held: bool = Field(default=False, description="held by work the caller may see and "
                            "measured under `idle_below` busy in a fresh sample: 'held, barely "
                            "used'")
    before_hold: bool = Field(default=False, description="the sample was taken before a hold "
                              "the caller may see began (or while that work is not running "
                              "yet): it says nothing of that work's use, and idle_held is "
                              "false ('no sample since this hold began')")
    idle_below: float = Field(default=0.1, description="the server's cut-off for idle_held "
                              "(`corral up --gpu-idle-below`)")
    stale_after_s: float = Field(default=300.0, description="a sample older than this says "
                                 "nothing of what the device does now: the server's cut-off "
                                 "(`corral up --gpu-use-stale`)")


class NodeInfo(_Model):
    id: str
    provider: str
    gpu_model: str
    gpu_count: int
    gpu_memory_mib: int
    cpu_milli: int
    memory_mib: int
    price_per_gpu_hour: float
    capacity_kind: str
    region: str
    zone: str
    rack: str = ""
    labels: dict[str, str] = Field(default_factory=dict, description="labels given to the node "
                                   "(workloads select them with node_selector; the built-in "
                                   "corral.dev/ labels are the fields above)")
    cordoned: bool
    health: str
    health_reason: str = Field(default="", description="why the node is not healthy: the "
                               "failed check(s) that cordoned it (empty when healthy)")
    gpus_used: float = Field(description="GPU share held by placed work (1.0 = one device)")
    workloads: list[str] = Field(default_factory=list)
    devices: list[DeviceUseInfo] = Field(default_factory=list, description="measured use "
                                         "per device, where the node's host samples it")


class ProviderInfo(_Model):
    """One provider of the pool, summed over its active nodes.

    gpus_total = gpus_allocated + gpus_idle + gpus_unavailable (fractional shares count their
    fraction): allocated is held by placed work wherever it runs, idle is free where new work
    can start now, unavailable is free on nodes that take no new work (cordoned, degraded or
    unhealthy). The same split as the dashboard's and /metrics'.
    """

    name: str
    capacity_kinds: list[str] = Field(description="owned, on-demand, spot: those of its nodes")
    regions: list[str]
    gpu_models: dict[str, int] = Field(default_factory=dict,
                                       description="GPU model -> number of GPUs of that model")
    nodes: int
    nodes_unavailable: int = Field(0, description="nodes that take no new work")
    gpus_total: int
    gpus_allocated: float
    gpus_idle: float
    gpus_unavailable: float
    price_per_gpu_hour_min: float
    price_per_gpu_hour_max: float


class QueueIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=False)  # a request body

    name: str = Field(min_length=1, max_length=63)
    parent: str | None = None
    quota_gpus: float = Field(0, ge=0, le=1e6, strict=True)
    limit_gpus: float | None = Field(None, ge=0, le=1e6, strict=True)
    weight: float = Field(1.0, gt=0, le=1e6, strict=True)
    priority: int = Field(0, ge=-1000, le=1000, strict=True)
    quota_by_model: dict[Annotated[str, Field(max_length=63)],
                         Annotated[float, Field(ge=0, le=1e6, strict=True)]] = Field(
                             default_factory=dict, max_length=64)


class QueueInfo(_Model):
    name: str
    parent: str | None = None
    quota_gpus: float
    limit_gpus: float | None = None
    weight: float
    priority: int
    quota_by_model: dict[str, float] = Field(default_factory=dict)
    used_gpus: float = Field(0.0, description="GPUs held by this queue and its children (the "
                             "use its quota and limit are checked against)")
    running: int = Field(0, description="this queue's own workloads holding GPUs")
    pending: int = Field(0, description="this queue's own pending workloads")


class UserIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=False)  # a request body

    name: str = Field(min_length=1, max_length=63)
    role: Literal["admin", "user"] = "user"
    queues: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list, max_length=256, description="queues to join as a member")


class UserOut(_Model):
    name: str
    role: str
    queues: list[str]
    memberships: dict[str, str] = Field(
        default_factory=dict, description="queue -> role: queue_admin, member or viewer")


class TokenOut(_Model):
    user: UserOut
    token: str = Field(description="shown once; store it safely")


MemberRole = Literal["queue_admin", "member", "viewer"]


class MemberIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=False)  # a request body

    role: MemberRole = "member"


class Member(_Model):
    user: str
    queue: str
    role: str


class TokenIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=False)  # a request body

    user: str | None = Field(None, min_length=1, max_length=63,
                             description="whose token (admins only; default: the caller)")
    name: str = Field("", max_length=63, description="what it is for, to tell tokens apart")
    expires_in_s: float | None = Field(None, gt=0, le=10 * 366 * 86400, allow_inf_nan=False,
                                       strict=True,
                                       description="seconds until it stops working; none: never")
    rate_per_s: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False, strict=True,
                                     description="requests per second (0: unlimited; admins "
                                                 "only); none: the server's default")
    burst: int | None = Field(None, ge=1, le=1_000_000, strict=True,
                              description="requests at once")


class TokenInfo(_Model):
    id: int
    user: str
    name: str
    hint: str = Field(description="the token's last characters")
    created_at: float
    expires_at: float | None = None
    revoked: bool
    rate_per_s: float | None = None
    burst: int | None = None


class TokenCreated(_Model):
    token: str = Field(description="shown once; store it safely")
    info: TokenInfo


class AuditEntry(_Model):
    id: int
    at: float
    actor: str
    action: str
    target: str
    queue: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditPage(_Model):
    items: list[AuditEntry]
    next_after: int


class Health(_Model):
    status: str
    database: str
    leader: bool
    backend: str | None = None


class Version(_Model):
    version: str
    api: str = "v1"
