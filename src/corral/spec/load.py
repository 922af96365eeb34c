"""Loading spec files (YAML or JSON) with errors that name the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corral.spec.document import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, read_document  # noqa: F401 (re-exported)
from corral.spec.errors import SpecError
from corral.spec.pool import PoolSpec
from corral.spec.quantities import DurationS
from corral.spec.workload import WorkloadSpec


class RunningSpec(BaseModel):
    """For dry runs: where an already running workload sits, so a plan can preempt or move it.

    The key is `placed_on`, never `on`: YAML 1.1 reads a bare `on` (like yes, no, off) as a
    boolean, so `on: [...]` would arrive as the key `True`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    started_ago: DurationS = 0.0
    placed_on: list[dict[str, Any]] = Field(
        default_factory=list, description="[{node, devices: [..]}] per worker"
    )

    @model_validator(mode="before")
    @classmethod
    def _not_a_boolean_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(isinstance(k, bool) for k in data):
            raise ValueError("a key here was read as a boolean: YAML takes a bare on, off, yes "
                             "or no for true or false; where the workers run is placed_on: "
                             "[{node: ..., devices: [...]}]")
        return data


class WorkloadEntry(WorkloadSpec):
    submitted_ago: DurationS = 0.0
    running: RunningSpec | None = None


class WorkloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workloads: list[WorkloadEntry]


def load_pool(path: str | Path) -> PoolSpec:
    data = read_document(path, exponent_floats=True)
    try:
        return PoolSpec.model_validate(data or {})
    except ValidationError as exc:
        raise SpecError.from_validation(exc, source=str(path)) from None


def load_workloads(path: str | Path) -> list[WorkloadEntry]:
    data = read_document(path)
    if isinstance(data, list):
        data = {"workloads": data}
    try:
        return list(WorkloadFile.model_validate(data or {}).workloads)
    except ValidationError as exc:
        raise SpecError.from_validation(exc, source=str(path)) from None
