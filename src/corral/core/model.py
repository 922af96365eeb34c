"""The domain model: nodes, queues, workloads and their placements.

Everything here is a frozen dataclass: the scheduling core never mutates its inputs. Units are
integers wherever capacity is counted, so that sums are exact:

- GPU share in *milli-GPU* (1000 = one whole device),
- GPU memory and RAM in MiB, CPU in milli-cores,
- time in seconds (a float passed in by the caller; the core never reads a clock),
- prices in currency units per GPU-hour (float here: the core only compares and ranks prices;
  money that is charged is Decimal, in `corral.ledger`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from corral.core.vendors import vendor_of

MILLI_PER_GPU = 1000


class CapacityKind(enum.StrEnum):
    OWNED = "owned"
    ON_DEMAND = "on-demand"
    SPOT = "spot"


ALL_CAPACITY = (CapacityKind.OWNED, CapacityKind.ON_DEMAND, CapacityKind.SPOT)
STABLE_CAPACITY = (CapacityKind.OWNED, CapacityKind.ON_DEMAND)

#: Labels every node carries without being given them, so selectors can name where work may
#: go across providers (for example `corral.dev/region: us-east` on every provider that has one).
LABEL_PROVIDER = "corral.dev/provider"
LABEL_REGION = "corral.dev/region"
LABEL_ZONE = "corral.dev/zone"
LABEL_RACK = "corral.dev/rack"
LABEL_CAPACITY = "corral.dev/capacity"
LABEL_MODEL = "corral.dev/gpu-model"
#: who makes the node's accelerators (`corral.core.vendors`): the label when a pool file or an
#: agent gave it, else read from the model's name
LABEL_VENDOR = "corral.dev/vendor"
#: the container runtime a host found working (`podman`, or `none`), reported by its agent
#: (`corral.agent.host`); nodes of other backends carry none: their backend says at
#: submission whether it runs `image:` at all (`corral.control.packaging`)
LABEL_CONTAINER_RUNTIME = "corral.dev/container-runtime"
#: built-in: "false" on a node whose container runtime is `none`, else "true"; a workload with
#: an image selects "true" (`WorkloadSpec.to_core`), so it is placed only where it can run
LABEL_RUNS_IMAGES = "corral.dev/runs-images"
NO_CONTAINER_RUNTIME = "none"


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # usable, but not for new work (for example a GPU with ECC errors)
    UNHEALTHY = "unhealthy"


class WorkloadKind(enum.StrEnum):
    JOB = "job"
    SERVICE = "service"
    INTERACTIVE = "interactive"


class WorkloadState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"


class TopologyLevel(enum.IntEnum):
    """How close the workers of one gang must be. Lower is tighter.

    The order matters: a requirement of RACK is met by any placement inside one NVLink domain.
    """

    NVLINK = 0
    RACK = 1
    ZONE = 2
    REGION = 3
    ANY = 4

    @classmethod
    def parse(cls, value: str) -> TopologyLevel:
        return cls[value.strip().upper().replace("-", "_")]


@dataclass(frozen=True, slots=True)
class Node:
    """One machine of the pool.

    `gpu_count` devices, each with `gpu_memory_mib`. The topology path is
    provider > region > zone > rack > nvlink_domain; the names of racks and NVLink domains only
    need to be unique within their parent (the snapshot qualifies them).
    """

    id: str
    provider: str
    gpu_model: str
    gpu_count: int
    gpu_memory_mib: int
    cpu_milli: int
    memory_mib: int
    price_per_gpu_hour: float = 0.0
    capacity_kind: CapacityKind = CapacityKind.ON_DEMAND
    region: str = "default"
    zone: str = "default"
    rack: str = ""
    nvlink_domain: str = ""
    cordoned: bool = False
    health: Health = Health.HEALTHY
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def schedulable(self) -> bool:
        return not self.cordoned and self.health == Health.HEALTHY

    def label(self, key: str) -> str | None:
        """A label's value: a built-in one (provider, region, ...) or one given to the node."""
        builtin = {
            LABEL_PROVIDER: self.provider, LABEL_REGION: self.region, LABEL_ZONE: self.zone,
            LABEL_RACK: self.rack, LABEL_CAPACITY: str(self.capacity_kind),
            LABEL_MODEL: self.gpu_model,
        }.get(key)
        if builtin is not None:
            return builtin
        given = next((v for k, v in self.labels if k == key), None)
        if given is None and key == LABEL_VENDOR:
            return str(vendor_of(self.gpu_model))
        if given is None and key == LABEL_RUNS_IMAGES:
            runtime = next((v for k, v in self.labels if k == LABEL_CONTAINER_RUNTIME), None)
            return "false" if runtime == NO_CONTAINER_RUNTIME else "true"
        return given


@dataclass(frozen=True, slots=True)
class Queue:
    """A team or project.

    quota: GPUs guaranteed (deserved before anyone borrows). quota_by_model narrows part of it to
    GPU models. limit: the most GPUs it may ever use, borrowing included (None = no limit).
    weight: its share of GPUs left over once every quota is met.
    """

    name: str
    parent: str | None = None
    quota_gpus: float = 0.0
    limit_gpus: float | None = None
    weight: float = 1.0
    priority: int = 0
    quota_by_model: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerResources:
    """What one worker of a workload needs.

    Exactly one of the GPU forms applies: `gpus` whole devices (gpus >= 1), or a share of one
    device: `gpu_milli` (1..999) and/or `gpu_memory_mib`. A share given only as memory is turned
    into milli on the device it lands on (ceil(1000 * mem / device_mem)); a share given only as
    milli reserves the same fraction of the device's memory.
    """

    gpus: int = 0
    gpu_milli: int = 0
    gpu_memory_mib: int = 0
    cpu_milli: int = 0
    memory_mib: int = 0

    @property
    def fractional(self) -> bool:
        return self.gpus == 0 and (self.gpu_milli > 0 or self.gpu_memory_mib > 0)

    @property
    def whole(self) -> bool:
        return self.gpus > 0

    def nominal_milli(self, device_memory_mib: int = 0) -> int:
        """GPU share in milli this worker takes on a device of the given memory."""
        if self.gpus:
            return self.gpus * MILLI_PER_GPU
        if self.gpu_milli:
            return self.gpu_milli
        if self.gpu_memory_mib and device_memory_mib:
            return min(MILLI_PER_GPU, -(-self.gpu_memory_mib * MILLI_PER_GPU // device_memory_mib))
        return 0


@dataclass(frozen=True, slots=True)
class WorkerAssignment:
    """Where one worker runs: a node, its devices, and the share taken on each device."""

    worker: int
    node_id: str
    devices: tuple[int, ...]
    milli_per_device: int
    gpu_memory_mib_per_device: int


@dataclass(frozen=True, slots=True)
class Workload:
    """A job (gang of `workers`), a service replica set, or an interactive session.

    Running workloads carry their assignments and `started_at`; pending ones have neither.
    `min_runtime_s`: once started it may not be preempted or reclaimed before this many seconds.
    """

    id: str
    queue: str
    resources: WorkerResources
    workers: int = 1
    kind: WorkloadKind = WorkloadKind.JOB
    priority: int = 0
    preemptible: bool = True
    min_runtime_s: float = 0.0
    gpu_models: tuple[str, ...] = ()  # allowed models, most preferred first; () = any
    topology: TopologyLevel = TopologyLevel.ANY
    allow_cross_region: bool = False
    max_price_per_gpu_hour: float | None = None
    submitted_at: float = 0.0
    state: WorkloadState = WorkloadState.PENDING
    started_at: float | None = None
    assignments: tuple[WorkerAssignment, ...] = ()
    user: str = ""
    #: capacity kinds it may run on; () = the default (`allowed_capacity`)
    capacity_kinds: tuple[CapacityKind, ...] = ()
    #: node labels a node must carry (key, value), all of them; built-in labels
    #: (`NODE_LABELS`) describe the provider, region, zone, rack and capacity kind
    node_selector: tuple[tuple[str, str], ...] = ()
    #: whole-GPU workers: the least memory per device (an "any model" job that needs 40 GiB
    #: must not land on a 24 GiB L4); 0 = any
    min_gpu_memory_mib: int = 0
    #: relative throughput per accelerator model, (model, rate) sorted by model: how fast this
    #: work runs on each (any unit, only ratios count: steps/s, or 1.0 for a reference model);
    #: () = unknown, every model alike. Read by the `throughput` score plugin.
    throughput: tuple[tuple[str, float], ...] = ()
    #: workloads of one group (a service's replicas name the service) are kept apart: placement
    #: prefers the node, then zone, then provider with the fewest of the group's workers
    #: (`spread.py`). A preference among nodes it fits on, never a filter; None = no group.
    spread_group: str | None = None

    @property
    def allowed_capacity(self) -> tuple[CapacityKind, ...]:
        """The capacity kinds `self` may use: what it asked for, else spot only for work that
        may be preempted anyway (a spot interruption is a preemption nobody chose: work that
        must not be stopped, such as a service's minimum replicas, stays off it)."""
        if self.capacity_kinds:
            return self.capacity_kinds
        return ALL_CAPACITY if self.preemptible else STABLE_CAPACITY

    @property
    def gpus_per_worker_milli(self) -> int:
        return self.resources.nominal_milli()

    def total_milli(self) -> int:
        """GPU share of the whole workload (actual, from assignments, when running)."""
        if self.assignments:
            return sum(a.milli_per_device * len(a.devices) for a in self.assignments)
        return self.resources.nominal_milli() * self.workers

    @property
    def running(self) -> bool:
        return self.state == WorkloadState.RUNNING


def pending_order(w: Workload) -> tuple[int, float, str]:
    """The order waiting work is considered in: higher priority, then earlier, then id."""
    return (-w.priority, w.submitted_at, w.id)


@dataclass(frozen=True, slots=True)
class QueueUsage:
    """Historical use of a queue, for time-decayed fair share: decayed GPU-seconds."""

    queue: str
    decayed_gpu_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Nomination:
    """Room a plan freed for a workload it could not start there at once: held for it.

    After Kubernetes' `nominatedNodeName`: a workload moved by a plan (evicted and placed in the
    same plan) is applied as its eviction only (`corral.control.apply`), so for a while it is
    stopping or waiting, and the room its victims freed looks free. A nomination holds exactly
    `assignments` for it: no other workload may be placed there, and it is placed there first
    once it waits (`corral.core.nominations`). The core drops a nomination when it no longer
    helps (the nominee runs elsewhere, a limit stops it, or the room is no longer free); the
    caller bounds it in time (`until`: it passes only nominations that have not expired, and
    the core only quotes the time in reasons).
    """

    workload_id: str
    assignments: tuple[WorkerAssignment, ...]
    #: CPU and RAM per worker (held with the devices, so the nominee still fits there)
    cpu_milli: int = 0
    memory_mib: int = 0
    until: float | None = None  # set by whoever stores it; None: made by this plan


@dataclass(frozen=True)
class ClusterState:
    """The input of one scheduling cycle: what exists, what runs, what waits, the room
    earlier plans nominated for workloads still on their way to it, and who held a
    reservation after the last plan."""

    nodes: tuple[Node, ...]
    queues: tuple[Queue, ...]
    workloads: tuple[Workload, ...]
    usage: tuple[QueueUsage, ...] = field(default=())
    nominations: tuple[Nomination, ...] = field(default=())
    #: the workloads that held a reservation after the previous plan (`Plan.reservations`):
    #: each keeps one while it may (`actions.allocate.keep_reservations`); () forgets nothing
    #: that matters for correctness, only the holder's claim to the next window's slot
    reserved_for: tuple[str, ...] = field(default=())
