"""What a user submits: a job, a service or an interactive session, as YAML or JSON.

The spec is strict (unknown fields are errors, so typos do not pass silently) and converts to
the core's model with `to_core`. A service becomes one core workload per replica, so replicas
are placed independently; replicas below `min_replicas` are never preempted.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.core.model import (
    MILLI_PER_GPU,
    TopologyLevel,
    WorkerResources,
    Workload,
    WorkloadKind,
)
from corral.spec.quantities import CpuMilli, DurationS, SizeMiB

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")

Topology = Literal["nvlink", "rack", "zone", "region", "any"]


def check_name(value: str, what: str = "name") -> str:
    if not _NAME.match(value):
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
    workers: int = Field(1, ge=1, le=4096, description="gang size: all start together or none")
    gpus: float = Field(
        0, ge=0, description="whole GPUs per worker (1, 2, 8) or a share below 1 (0.25)"
    )
    gpu_memory: SizeMiB | None = Field(
        None, description="GPU memory per worker for a share, e.g. 20GiB"
    )
    cpu: CpuMilli = Field(1000, description="CPU cores per worker (4, 0.5, '500m')")
    memory: SizeMiB = Field(2048, description="RAM per worker, e.g. 64GiB")
    gpu_models: list[str] = Field(
        default_factory=list, description="allowed models, preferred first"
    )
    topology: Topology = "any"
    allow_cross_region: bool = False
    priority: int = Field(0, ge=-1000, le=1000)
    preemptible: bool | None = None
    min_runtime: DurationS = 0.0
    max_runtime: DurationS | None = None
    max_price_per_gpu_hour: float | None = Field(None, gt=0)
    command: list[str] | None = None
    shell: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    checkpoint_dir: str | None = None
    max_restarts: int = Field(3, ge=0, le=1000)
    restart_backoff: DurationS = 10.0
    replicas: int | None = Field(None, ge=1, le=1000, description="services: replicas to run")
    min_replicas: int | None = Field(None, ge=0, le=1000)
    max_replicas: int | None = Field(None, ge=1, le=1000)
    target_utilization: float | None = Field(None, gt=0, le=1)
    ttl: DurationS | None = Field(None, description="interactive: stopped after this long")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

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

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if k.startswith("CORRAL_") or k == "CUDA_VISIBLE_DEVICES"]
        if bad:
            raise ValueError(f"{bad} are set by corral for every worker; remove them from env")
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
        if self.command is not None and not self.command:
            raise ValueError("command must not be empty; give the program and its arguments")
        if self.kind != WorkloadKind.SERVICE and (self.replicas or self.min_replicas is not None):
            raise ValueError("replicas and min_replicas apply to kind: service only")
        if self.kind == WorkloadKind.SERVICE:
            if self.workers != 1:
                raise ValueError("a service scales with replicas, not workers; set replicas")
            lo, hi = self.min_replicas or 0, self.max_replicas
            n = self.replicas or 1
            if hi is not None and not lo <= n <= hi:
                raise ValueError(
                    f"replicas ({n}) must lie between min_replicas ({lo}) and max_replicas ({hi})"
                )
        if self.kind == WorkloadKind.INTERACTIVE and self.preemptible:
            raise ValueError("interactive sessions are never preempted; remove preemptible")
        return self

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
        )
        if self.kind != WorkloadKind.SERVICE:
            return [base]
        keep = self.min_replicas or 0
        return [
            Workload(
                **{
                    **_fields(base),
                    "id": f"{workload_id}/r{i}",
                    "preemptible": self.is_preemptible and i >= keep,
                }
            )
            for i in range(self.replicas or 1)
        ]


def _fields(w: Workload) -> dict[str, object]:
    return {f: getattr(w, f) for f in w.__dataclass_fields__}
