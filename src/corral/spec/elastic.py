"""The `elastic:` section of a job: a gang that may grow from `min_workers` to `max_workers`.

    elastic: {min_workers: 2, max_workers: 8, resize_interval: 5m}

The job is its core gang of `min_workers` (started together or not at all, as any gang) plus up
to `max_workers - min_workers` extra one-worker members, placed when they fit and taken first
when others are owed the GPUs (`corral.control.elastic` says how). The shape is KAI-Scheduler's
elastic PodGroup (`minMember` must run; members above it are placed when they fit and preempted
first) and TorchElastic's `--nnodes=MIN:MAX` (the workers restart with the new world on a
membership change).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.spec.quantities import DurationS

__all__ = [
    "DEFAULT_RESIZE_INTERVAL_S", "EXAMPLE", "MAX_EXTRA_WORKERS", "MAX_WORKERS", "OTHER_SPELLINGS",
    "ElasticSpec",
]

#: the most workers a gang may have (`WorkloadSpec.workers`' bound)
MAX_WORKERS: Final = 4096
#: each extra member is a row of its own, as a service replica is: bounded alike
MAX_EXTRA_WORKERS: Final = 1000
#: a resize restarts every worker; by default not more often than this (TorchElastic restarts
#: at once; here a bound keeps a job whose extras come and go from restarting every cycle)
DEFAULT_RESIZE_INTERVAL_S: Final = 300.0


#: the bounds as other tools spell them (TorchElastic's --nnodes=MIN:MAX and its min_nodes,
#: Kubeflow's ElasticPolicy minReplicas / maxReplicas, a service's min_replicas): a user who
#: writes them is told corral's names, not only "unknown field"
OTHER_SPELLINGS: Final = {
    "min": "min_workers", "max": "max_workers", "min_nodes": "min_workers",
    "max_nodes": "max_workers", "minReplicas": "min_workers", "maxReplicas": "max_workers",
    "min_replicas": "min_workers", "max_replicas": "max_workers",
    "minimum": "min_workers", "maximum": "max_workers",
}
#: how a job that grows is written, for the messages that correct it
EXAMPLE: Final = "elastic: {min_workers: 2, max_workers: 8}"


class ElasticSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _spelling(cls, data: Any) -> Any:
        if isinstance(data, dict):
            wrong = [k for k in data if k in OTHER_SPELLINGS]
            if wrong:
                said = ", ".join(f"{k} is {OTHER_SPELLINGS[k]}" for k in wrong)
                raise ValueError(f"unknown field{'s' if len(wrong) > 1 else ''} here: {said} "
                                 f"({EXAMPLE})")
        return data

    min_workers: int = Field(
        ge=1, le=MAX_WORKERS, strict=True,
        description="the core gang: these start together or not at all, and are never taken "
        "for the extras' sake")
    max_workers: int = Field(
        ge=1, le=MAX_WORKERS, strict=True,
        description="the most workers it grows to when GPUs are free")
    resize_interval: DurationS = Field(
        DEFAULT_RESIZE_INTERVAL_S,
        description="the least time between a change of the world, either way, and a resize "
        "that grows it (each restarts every worker from its checkpoint); a shrink forced by "
        "reclaim, preemption or a failure is not delayed, and a member corral moves stays in "
        "the world")

    @model_validator(mode="after")
    def _bounds(self) -> ElasticSpec:
        if self.max_workers < self.min_workers:
            raise ValueError(f"max_workers ({self.max_workers}) must be at least min_workers "
                             f"({self.min_workers})")
        if self.max_workers - self.min_workers > MAX_EXTRA_WORKERS:
            raise ValueError(f"max_workers - min_workers must be at most {MAX_EXTRA_WORKERS} "
                             "(each extra worker is a member of its own); raise min_workers")
        return self

    @property
    def extras(self) -> int:
        """How many members beyond the core gang it may have."""
        return self.max_workers - self.min_workers
