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

from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.spec.quantities import DurationS

__all__ = ["DEFAULT_RESIZE_INTERVAL_S", "MAX_EXTRA_WORKERS", "MAX_WORKERS", "ElasticSpec"]

#: the most workers a gang may have (`WorkloadSpec.workers`' bound)
MAX_WORKERS: Final = 4096
#: each extra member is a row of its own, as a service replica is: bounded alike
MAX_EXTRA_WORKERS: Final = 1000
#: a resize restarts every worker; by default not more often than this (TorchElastic restarts
#: at once; here a bound keeps a job whose extras come and go from restarting every cycle)
DEFAULT_RESIZE_INTERVAL_S: Final = 300.0


class ElasticSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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
