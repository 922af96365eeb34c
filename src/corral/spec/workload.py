"""What a user submits: a job, a service or an interactive session, as YAML or JSON.

The spec is strict (unknown fields are errors, so typos do not pass silently) and converts to
the core's model with `to_core`. A service becomes one core workload per replica, each placed
on its own, kept apart by a spread group (the service's id: node, then zone, then provider);
replicas below `min_replicas` are never preempted.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from corral.core.model import (
    ALL_CAPACITY,
    LABEL_RUNS_IMAGES,
    MILLI_PER_GPU,
    CapacityKind,
    TopologyLevel,
    WorkerResources,
    Workload,
    WorkloadKind,
)
from corral.core.vendors import DEVICE_VARIABLES
from corral.spec import limits as LIM
from corral.spec.autoscale import AutoscaleSpec
from corral.spec.checkpoint import CheckpointSpec
from corral.spec.elastic import (
    ElasticSpec,
    combination_problem,
    range_first,
    workers_json_schema,
)
from corral.spec.errors import LIMIT_ERROR
from corral.spec.labels import MAX_LABELS, check_selector
from corral.spec.notify import MAX_HOOKS, NotifySpec
from corral.spec.packaging import (
    MAX_VOLUMES,
    EnvValue,
    VolumeSpec,
    check_image,
    check_volumes,
    secret_refs,
)
from corral.spec.quantities import CpuMilli, DurationS, SizeMiB
from corral.spec.service import EndpointSpec, ReadinessProbe, ServiceAuthSpec
from corral.spec.workflow import (
    DEFAULT_RESTART_ON,
    MAX_DEPENDENCIES,
    MAX_PREEMPTION_GRACE_S,
    ArraySpec,
    Dependency,
    ExitCodes,
    RestartCause,
)

# fullmatch, never match with `$`: `$` also matches before a trailing newline ("train\n")
_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
_UPLOADED = re.compile(r"sha256:[0-9a-f]{64}")  # an uploaded workdir (corral.backends.workdir)

#: validation context for a spec read back from the store: it was accepted when submitted, so
#: rules added since (launch safety, size limits) are not applied again; a row they refuse must
#: not stop the control loop (which isolates a launch that fails instead)
STORED: Final = {"stored": True}
#: validation context for a spec parsed from JSON bytes that `limits.json_within_limits` passed:
#: the walk for NUL bytes, depth and size could find nothing, so it is not made (every other
#: rule is applied)
WITHIN_LIMITS: Final = {"within_limits": True}

Arg = Annotated[str, Field(max_length=LIM.MAX_ARG_CHARS)]
PathText = Annotated[str, Field(max_length=LIM.MAX_PATH_CHARS)]
Key = Annotated[str, Field(max_length=LIM.MAX_KEY_CHARS)]

Topology = Literal["nvlink", "rack", "zone", "region", "any"]


def check_name(value: str, what: str = "name") -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} must be 1-63 lowercase letters, digits, '-', '_' or '.', starting and "
            "ending with a letter or digit"
        )
    return value


class WorkloadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    queue: str
    kind: WorkloadKind = WorkloadKind.JOB
    # strict numbers: `gpus: true` or `workers: "2"` is a mistake, not 1 and 2
    workers: int = Field(1, ge=1, le=4096, strict=True,
                         description="gang size: all start together or none; a range "
                         "{min, max} is an elastic job (made elastic: at validation)",
                         json_schema_extra=workers_json_schema)
    gpus: float = Field(
        0, ge=0, le=LIM.MAX_GPUS, strict=True, allow_inf_nan=False,
        description="whole GPUs per worker (1, 2, 8) or a share below 1 (0.25)"
    )
    gpu_memory: SizeMiB | None = Field(
        None, description="GPU memory per worker for a share, e.g. 20GiB"
    )
    min_gpu_memory: SizeMiB | None = Field(
        None, description="whole GPUs: the least memory each must have, e.g. 40GiB (keeps an "
        "'any model' job off smaller GPUs)"
    )
    cpu: CpuMilli = Field(1000, description="CPU cores per worker (4, 0.5, '500m')")
    memory: SizeMiB = Field(2048, description="RAM per worker, e.g. 64GiB")
    gpu_models: list[Key] = Field(
        default_factory=list, max_length=LIM.MAX_GPU_MODELS,
        description="allowed models, preferred first"
    )
    throughput: dict[Key, Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False)]] = Field(
        default_factory=dict, max_length=LIM.MAX_GPU_MODELS,
        description="relative throughput per GPU model, e.g. {H100: 3.1, A100: 1.9, L4: 0.4} "
        "(steps/s or any unit: only the ratios count); placement gives the fast devices to the "
        "work that gains most from them (the core's `throughput` plugin)"
    )
    topology: Topology = "any"
    capacity: list[CapacityKind] | None = Field(
        None, min_length=1, max_length=len(CapacityKind),
        description="capacity kinds it may run on (owned, on-demand, spot). Default: spot "
        "only for preemptible work (jobs unless preemptible: false); non-preemptible work, "
        "interactive sessions and a service's first min_replicas replicas stay on owned and "
        "on-demand capacity, replicas above min_replicas may use spot"
    )
    node_selector: dict[Key, Key] = Field(
        default_factory=dict, max_length=MAX_LABELS,
        description="node labels a node must carry, all of them (Kubernetes label syntax); "
        "corral.dev/provider, region, zone, rack, capacity and gpu-model are built in"
    )
    allow_cross_region: bool = False
    priority: int = Field(0, ge=-1000, le=1000, strict=True)
    preemptible: bool | None = None
    min_runtime: DurationS = 0.0
    max_runtime: DurationS | None = None
    max_price_per_gpu_hour: float | None = Field(
        None, gt=0, le=LIM.MAX_PRICE, strict=True, allow_inf_nan=False)
    command: list[Arg] | None = Field(None, max_length=LIM.MAX_ARGS)
    shell: Arg | None = None
    env: dict[Key, EnvValue] = Field(
        default_factory=dict, max_length=LIM.MAX_ENV,
        description="variables for every worker: a value, or {secret: NAME} for a stored "
        "secret (the queue's, else a global one) read at launch and never shown")
    working_dir: PathText | None = None
    # -- packaging fields (corral.spec.packaging; docs/specs.md "Packaging") --
    setup: Arg | None = Field(
        None, description="shell lines run with /bin/sh before the command, on every worker "
        "of every attempt; a non-zero exit ends the worker as SetupFailed")
    workdir: PathText | None = Field(
        None, description="a directory copied into each attempt's directory; the command "
        "runs in the copy (unless working_dir is set); local: an absolute path; agent: "
        "uploaded by `corral submit FILE` (sha256:<hex>)")
    image: str | None = Field(
        None, description="the container image workers run in (Kubernetes: the pod's image; "
        "Slurm: pyxis --container-image where the cluster has it); refused where the backend "
        "cannot honour it")
    volumes: list[VolumeSpec] = Field(
        default_factory=list, max_length=MAX_VOLUMES,
        description="named data at a path in the worker: a node's directory (host_path) or a "
        "Kubernetes PersistentVolumeClaim (claim), read_only in containers; each also in "
        "CORRAL_VOLUME_<NAME>")
    shm_size: SizeMiB | None = Field(
        None, description="Kubernetes: the size of the pod's /dev/shm (a memory-backed "
        "emptyDir), e.g. 16GiB for PyTorch's data loader workers")
    checkpoint_dir: PathText | None = None
    checkpoint: CheckpointSpec | None = Field(
        None, description="how often it checkpoints ({every: 30m, on_notice: 20s}): weighs "
        "whether interrupted work stays on spot (corral.spec.checkpoint)")
    max_restarts: int = Field(3, ge=0, le=1000, strict=True)
    restart_backoff: DurationS = 10.0
    # -- workflow fields (corral.spec.workflow; docs/specs.md "Workflows") --
    restart_on: list[RestartCause | ExitCodes] | None = Field(
        None, max_length=8, description="jobs and sessions: what a failed attempt is "
        "restarted after (up to max_restarts): node_failure, preemption, spot_interruption, "
        "{exit_code: [..]}. Default: the first three; an application error (a non-zero exit) "
        "is not retried unless its code is listed")
    preemption_grace: DurationS | None = Field(
        None, description="SIGTERM to SIGKILL when stopped (preempted, cancelled, drained): "
        "time to checkpoint; default: the control plane's stop_grace_s; at most 1h")
    depends_on: list[Dependency] = Field(
        default_factory=list, max_length=MAX_DEPENDENCIES,
        description="start only once these workloads (ids, or group ids) ended as stated; "
        "held until then, cancelled when one can never be met")
    array: ArraySpec | None = Field(
        None, description="jobs: one task per index of a range or combination of a grid, "
        "at most `parallel` running at once")
    elastic: ElasticSpec | None = Field(
        None, description="jobs: a gang of min_workers that grows to max_workers when GPUs "
        "are free and shrinks first when others are owed them; every resize restarts the "
        "workers from their checkpoint with the new CORRAL_WORLD_SIZE (at most once per "
        "resize_interval when it grows); `workers` is then min_workers")
    notify: list[NotifySpec] = Field(
        default_factory=list, max_length=MAX_HOOKS,
        description="webhooks its state changes are POSTed to (url, events, secret: signed "
        "with HMAC-SHA256), retried with backoff; the delivery log is in `corral describe`")
    replicas: int | None = Field(None, ge=1, le=1000, strict=True,
                                 description="services: replicas to run")
    min_replicas: int | None = Field(None, ge=0, le=1000, strict=True)
    max_replicas: int | None = Field(None, ge=1, le=1000, strict=True)
    target_utilization: float | None = Field(
        None, gt=0, le=1, strict=True, allow_inf_nan=False,
        description="services with autoscale: the share of each target aimed at (default 0.7)")
    autoscale: AutoscaleSpec | None = Field(
        None, description="services: replicas follow the gateway's load within [min_replicas, "
        "max_replicas] (target_in_flight, target_rps, target_latency, scale_to_zero_after, "
        "scale_down_window, stable_window)")
    readiness: ReadinessProbe | None = Field(
        None, description="services: an HTTP probe that gates traffic to a replica "
        "(path, port, period_s, timeout_s, failure_threshold, success_threshold)")
    liveness: ReadinessProbe | None = Field(
        None, description="services: an HTTP probe whose failures restart a replica (path, "
        "port, period_s, timeout_s, failure_threshold, initial_delay_s)")
    auth: ServiceAuthSpec | None = Field(
        None, description="services: a bearer token for the endpoint, by its SHA-256 "
        "(token_sha256); default: public")
    endpoint: EndpointSpec | None = Field(
        None, description="services: the endpoint's limits (max_concurrent, max_queue, "
        "queue_timeout, request_timeout); default: the gateway's")
    ttl: DurationS | None = Field(None, description="interactive: stopped after this long")

    @classmethod
    def from_stored(cls, body: dict[str, Any]) -> WorkloadSpec:
        """A spec as the store keeps it (`corral.control.submission.stored_form`)."""
        return cls.model_validate(body, context=STORED)

    @model_validator(mode="before")
    @classmethod
    def _launchable(cls, data: Any, info: ValidationInfo) -> Any:
        """No NUL byte anywhere (it cannot reach a process, nor PostgreSQL), no spec over
        `limits.MAX_SPEC_BYTES`: checked on the raw input, so fields added later are covered."""
        if _stored(info) or (isinstance(info.context, dict)
                             and info.context.get("within_limits")):
            return data
        problems = list(LIM.walk_problems(data))
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, [
                InitErrorDetails(type=PydanticCustomError(LIMIT_ERROR, msg), loc=loc,
                                 input=None) for loc, msg in problems[:20]])
        return data

    @model_validator(mode="before")
    @classmethod
    def _range_first(cls, data: Any) -> Any:
        """A bad range of workers (`workers: {min, max}` or `elastic:`) is refused first and
        alone; `workers: {min: 2, max: 8}` (issue 13's spelling) is made the elastic job
        `elastic: {min_workers: 2, max_workers: 8}` here, so nothing after sees it; an elastic
        job's gang is its min_workers, so `workers` may be left out. Defined last: pydantic runs
        the last-defined `before` validator first."""
        return range_first(data)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str, info: ValidationInfo) -> str:
        return v if _stored(info) else check_name(v)

    @field_validator("queue")
    @classmethod
    def _queue(cls, v: str, info: ValidationInfo) -> str:
        return v if _stored(info) else check_name(v, "queue")

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError(
                "whole GPUs must be a whole number (1, 2, 8); for a share of one GPU "
                "use a value below 1 such as 0.5"
            )
        if 0 < v < 1 and round(v * MILLI_PER_GPU) < 1:
            raise ValueError("a GPU share must be at least 0.001")
        return v

    @field_validator("min_gpu_memory")
    @classmethod
    def _min_gpu_memory(cls, v: int | None, info: ValidationInfo) -> int | None:
        gpus = info.data.get("gpus")
        if v is not None and gpus is not None and gpus < 1:
            raise ValueError(
                "min_gpu_memory applies to whole GPUs (gpus: 1, 2, 8); for a share of one GPU "
                "ask for the memory itself with gpu_memory"
            )
        if v is not None and v < 1:
            raise ValueError("min_gpu_memory must be more than 0; remove it to accept any GPU")
        return v

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, v: list[CapacityKind] | None) -> list[CapacityKind] | None:
        if v is not None and len(set(v)) < len(v):
            raise ValueError("capacity lists a kind twice; list each of owned, on-demand, spot "
                             "at most once")
        return v

    @field_validator("node_selector")
    @classmethod
    def _node_selector(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return v if _stored(info) else check_selector(v)

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        bad = [k for k in v if k.startswith("CORRAL_") or k in DEVICE_VARIABLES]
        if bad:
            raise ValueError(f"{bad} are set by corral for every worker; remove them from env")
        unusable = [k for k in v if not k or "=" in k]
        if unusable and not _stored(info):  # the OS splits an entry at its first '='
            raise ValueError(f"{unusable}: an environment variable name cannot be empty or "
                             "hold '='; rename it (letters, digits and '_' are safest)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> WorkloadSpec:
        if self.gpu_memory is not None and self.gpus >= 1:
            raise ValueError(
                "gpu_memory asks for a share of one GPU; with whole GPUs remove it "
                "(whole GPUs come with all their memory)"
            )
        if self.command is not None and self.shell is not None:
            raise ValueError("give either command (an argv list) or shell (a shell line), not both")
        if self.command is not None and not (self.command and self.command[0].strip()):
            raise ValueError("command must not be empty; give the program and its arguments")
        if self.shell is not None and not self.shell.strip():
            raise ValueError("shell must not be blank; give the line to run")
        if self.kind != WorkloadKind.SERVICE and (self.replicas or self.min_replicas is not None):
            raise ValueError("replicas and min_replicas apply to kind: service only")
        if self.kind != WorkloadKind.SERVICE and self.readiness is not None:
            raise ValueError("readiness applies to kind: service only (a probe gates traffic)")
        if self.kind != WorkloadKind.SERVICE and self.liveness is not None:
            raise ValueError("liveness applies to kind: service only")
        if self.kind != WorkloadKind.SERVICE and self.autoscale is not None:
            raise ValueError("autoscale applies to kind: service only")
        if self.kind != WorkloadKind.SERVICE and (self.auth or self.endpoint) is not None:
            raise ValueError("auth and endpoint apply to kind: service only")
        if self.autoscale is not None and self.max_replicas is None:
            raise ValueError("max_replicas: autoscale needs it (the most replicas it may start)")
        if self.kind == WorkloadKind.SERVICE:
            if self.workers != 1:
                raise ValueError("a service scales with replicas, not workers; set replicas")
            if "PORT" in self.env:
                raise ValueError("env: PORT is set by corral for every service replica (the "
                                 "port it must listen on, also in CORRAL_PORT); remove it")
            lo, hi = self.min_replicas or 0, self.max_replicas
            n = self.replicas or 1
            if hi is not None and not lo <= n <= hi:
                raise ValueError(
                    f"replicas ({n}) must lie between min_replicas ({lo}) and max_replicas ({hi})"
                )
        if self.kind == WorkloadKind.INTERACTIVE and self.preemptible:
            raise ValueError("interactive sessions are never preempted; remove preemptible")
        return self

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None, info: ValidationInfo) -> str | None:
        return v if v is None or _stored(info) else check_image(v)

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str | None, info: ValidationInfo) -> str | None:
        if (v is not None and not _stored(info) and not v.startswith("/")
                and not _UPLOADED.fullmatch(v)):
            raise ValueError("workdir must be an absolute path (the server reads it) or an "
                             "uploaded archive (sha256:<64 hex digits>): `corral submit FILE` "
                             "makes one relative to FILE absolute, and uploads it where the "
                             "workers need it")
        return v

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[VolumeSpec]) -> list[VolumeSpec]:
        return check_volumes(v)

    @field_validator("shm_size")
    @classmethod
    def _shm_size(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("shm_size must be at least 1MiB; remove it for the default")
        return v

    @field_validator("setup")
    @classmethod
    def _setup(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("setup must not be blank; give the lines to run, or remove it")
        return v

    def plain_env(self) -> dict[str, str]:
        """The env entries that are values (not secret references)."""
        return {k: v for k, v in self.env.items() if isinstance(v, str)}

    def secret_refs(self) -> dict[str, str]:
        """env variable -> the name of the secret it takes its value from."""
        return secret_refs(self.env)

    @model_validator(mode="after")
    def _workflow(self) -> WorkloadSpec:
        """The workflow fields' rules (corral.spec.workflow), apart from the service rules."""
        if self.array is not None and self.kind != WorkloadKind.JOB:
            raise ValueError("array applies to kind: job only")
        if self.restart_on is not None and self.kind == WorkloadKind.SERVICE:
            raise ValueError("restart_on applies to jobs and sessions; a service's replicas "
                             "are always restarted")
        if self.preemption_grace is not None and self.preemption_grace > MAX_PREEMPTION_GRACE_S:
            raise ValueError(f"preemption_grace must be at most {MAX_PREEMPTION_GRACE_S:g}s: "
                             "it keeps the GPUs from the work that needs them for as long")
        if self.elastic is not None:
            _check_elastic(self)
        ids = [d.id for d in self.depends_on]
        if len(set(ids)) < len(ids):
            raise ValueError("depends_on names a workload twice; list each id once")
        return self

    def restart_causes(self) -> frozenset[str]:
        """The infrastructure causes a failed attempt is restarted after (`restart_on`)."""
        listed = DEFAULT_RESTART_ON if self.restart_on is None else self.restart_on
        return frozenset(c for c in listed if isinstance(c, str))

    def restart_exit_codes(self) -> frozenset[int]:
        """The exit codes a failed attempt is restarted after (none by default)."""
        return frozenset(code for c in self.restart_on or () if isinstance(c, ExitCodes)
                         for code in c.exit_code)

    @property
    def is_preemptible(self) -> bool:
        if self.preemptible is not None:
            return self.preemptible
        return self.kind == WorkloadKind.JOB

    def resources(self) -> WorkerResources:
        if self.gpus >= 1:
            return WorkerResources(gpus=int(self.gpus), cpu_milli=self.cpu, memory_mib=self.memory)
        milli = round(self.gpus * MILLI_PER_GPU) if self.gpus else 0
        return WorkerResources(
            gpu_milli=milli,
            gpu_memory_mib=self.gpu_memory or 0,
            cpu_milli=self.cpu,
            memory_mib=self.memory,
        )

    def to_core(self, workload_id: str, submitted_at: float, user: str = "") -> list[Workload]:
        """Core workloads for this spec: one, or one per service replica (`ID/r<i>`)."""
        base = Workload(
            id=workload_id,
            queue=self.queue,
            resources=self.resources(),
            workers=self.workers,
            kind=self.kind,
            priority=self.priority,
            preemptible=self.is_preemptible,
            min_runtime_s=self.min_runtime,
            gpu_models=tuple(self.gpu_models),
            topology=TopologyLevel.parse(self.topology),
            allow_cross_region=self.allow_cross_region,
            max_price_per_gpu_hour=self.max_price_per_gpu_hour,
            submitted_at=submitted_at,
            user=user,
            capacity_kinds=tuple(self.capacity or ()),
            # an image runs only where a container runtime is (agents report theirs)
            node_selector=tuple(sorted({**self.node_selector, **(
                {LABEL_RUNS_IMAGES: "true"} if self.image is not None else {})}.items())),
            min_gpu_memory_mib=self.min_gpu_memory or 0,
            throughput=tuple(sorted(self.throughput.items())),
            # a service's replicas are kept apart (node, then zone, then provider): one node
            # lost must not take the whole service
            spread_group=workload_id if self.kind == WorkloadKind.SERVICE else None,
        )
        if self.kind != WorkloadKind.SERVICE:
            return [base]
        return [self.replica_unit(base, i) for i in range(self.replicas or 1)]

    def replica_unit(self, base: Workload, i: int) -> Workload:
        """Replica `i` of a service from its core workload `base` (`to_core`'s unit): any `i`,
        since a scaled service has replicas beyond the `replicas` it was submitted with."""
        return dataclasses.replace(
            base, id=f"{base.id}/r{i}", preemptible=self.is_preemptible and i >= (
                self.min_replicas or 0), capacity_kinds=self._replica_capacity(i))

    def _replica_capacity(self, i: int) -> tuple[CapacityKind, ...]:
        """Replica `i`'s capacity kinds: what the spec lists, else its first min_replicas
        replicas stay off spot (a spot interruption would take the service below the floor it
        promised) and those above may use any kind; without min_replicas every replica is the
        floor, and only a preemptible service's replicas may use spot (the core's default, ())."""
        if self.capacity:
            return tuple(self.capacity)
        if self.min_replicas is None or self.is_preemptible:
            return ()
        return () if i < self.min_replicas else ALL_CAPACITY


def _check_elastic(spec: WorkloadSpec) -> None:
    """What an elastic section cannot be combined with (corral.spec.elastic)."""
    assert spec.elastic is not None
    problem = combination_problem("elastic", spec.kind, spec.array is not None, spec.gpus)
    if problem:
        raise ValueError(problem)
    if spec.workers != spec.elastic.min_workers:
        raise ValueError(f"workers ({spec.workers}) must equal elastic.min_workers "
                         f"({spec.elastic.min_workers}), or be left out: the core gang is "
                         "min_workers")


def _stored(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("stored"))
