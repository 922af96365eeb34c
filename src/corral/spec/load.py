"""Loading spec files (YAML or JSON) with errors that name the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from corral.spec.errors import SpecError
from corral.spec.pool import PoolSpec
from corral.spec.quantities import DurationS
from corral.spec.workload import WorkloadSpec


class RunningSpec(BaseModel):
    """For dry runs: where an already running workload sits, so a plan can preempt or move it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    started_ago: DurationS = 0.0
    on: list[dict[str, Any]] = Field(
        default_factory=list, description="[{node, devices: [..]}] per worker"
    )


class WorkloadEntry(WorkloadSpec):
    submitted_ago: DurationS = 0.0
    running: RunningSpec | None = None


class WorkloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workloads: list[WorkloadEntry]


def read_document(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError([("", f"cannot read the file: {exc.strerror}")], str(p)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(
            [("", f"{where}not valid YAML ({getattr(exc, 'problem', exc)})")], str(p)
        ) from None


def load_pool(path: str | Path) -> PoolSpec:
    data = read_document(path)
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
