"""Workflow fields of a workload spec: when it is restarted, what it waits for, and arrays.

    restart_on:  [node_failure, preemption, spot_interruption, {exit_code: [3, 75]}]
    depends_on:  [{id: prep-1a2b3c4d, when: succeeded}]
    array:       {range: "0-99", parallel: 8}  |  {grid: {lr: [0.1, 0.01]}, parallel: 4}

Pure models (pydantic only), used by `corral.spec.workload.WorkloadSpec`. What each field does
at run time lives in the control plane: `corral.control.retry` (restart_on),
`corral.control.workflow` (depends_on, array's parallel limit). Documented in docs/specs.md
("Workflows").
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_RESTART_ON",
    "MAX_ARRAY_TASKS",
    "MAX_DEPENDENCIES",
    "MAX_PREEMPTION_GRACE_S",
    "ArraySpec",
    "Dependency",
    "ExitCodes",
    "RestartCause",
    "param_env_name",
]

#: why a workload's attempt ended without it asking to: a retry policy lists the ones to retry
RestartCause = Literal["node_failure", "preemption", "spot_interruption"]
#: infrastructure causes are retried, application errors (a non-zero exit) are not
DEFAULT_RESTART_ON: Final[tuple[RestartCause, ...]] = (
    "node_failure", "preemption", "spot_interruption")

#: tasks of one array (Slurm's default MaxArraySize is 1001); split larger sweeps
MAX_ARRAY_TASKS: Final = 1000
MAX_ARRAY_INDEX: Final = 99_999  # keeps `<group>-<index>` within a workload id's 80 chars
MAX_GRID_KEYS: Final = 16
MAX_GRID_VALUES: Final = 1000
MAX_DEPENDENCIES: Final = 32
#: the longest SIGTERM-to-SIGKILL grace a workload may ask for: a longer one keeps the GPUs
#: from the work that preempted it for as long
MAX_PREEMPTION_GRACE_S: Final = 3600.0

_RANGE = re.compile(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*(?::\s*(\d{1,5})\s*)?")
_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")

_Indices = range  # `ArraySpec.range` (a field) shadows the builtin inside the class
Scalar = Annotated[str, Field(max_length=256)] | bool | int | float


class ExitCodes(BaseModel):
    """`{exit_code: [3, 75]}`: restart after these exit codes (a worker killed by signal N
    exits -N, as the backends report it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exit_code: list[Annotated[int, Field(ge=-64, le=255, strict=True)]] = Field(
        min_length=1, max_length=256)

    @field_validator("exit_code")
    @classmethod
    def _codes(cls, v: list[int]) -> list[int]:
        if 0 in v:
            raise ValueError("exit code 0 is success and never restarted; remove it")
        return v


class Dependency(BaseModel):
    """Start only once workload (or array group) `id` has ended as `when` says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(max_length=80, description="a workload id or an array's group id")
    when: Literal["succeeded", "ended", "failed"] = Field(
        "succeeded", description="succeeded: it ended with exit 0 (every task of an array); "
        "failed: it failed (any task); ended: however it ended (cancelled too)")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.fullmatch(v):
            raise ValueError("an id is what `corral submit` printed (lowercase letters, "
                             "digits, '-', '_', '.'), or the name of a workload submitted "
                             "earlier in the same file")
        return v


class ArraySpec(BaseModel):
    """One submission of many tasks: `range` ("0-99", "0-99:10") or `grid` (the cartesian
    product of parameter lists), at most `parallel` running at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    range: str | None = Field(None, max_length=32, description="'first-last' or "
                              "'first-last:step', inclusive: CORRAL_ARRAY_INDEX per task")
    grid: dict[str, list[Scalar]] | None = Field(
        None, min_length=1, max_length=MAX_GRID_KEYS,
        description="parameter -> values; one task per combination, each gets "
        "CORRAL_PARAM_<NAME> and CORRAL_PARAMS (JSON)")
    parallel: int | None = Field(None, ge=1, le=MAX_ARRAY_TASKS, strict=True,
                                 description="tasks running at once (all when absent)")

    @field_validator("range")
    @classmethod
    def _range(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = _RANGE.fullmatch(v)
        if m is None:
            raise ValueError("range is 'first-last' or 'first-last:step', e.g. '0-99' or "
                             "'0-990:10' (whole numbers, inclusive)")
        first, last, step = int(m[1]), int(m[2]), int(m[3] or 1)
        if last < first or step < 1:
            raise ValueError(f"range {v!r}: last must be >= first and step >= 1")
        if last > MAX_ARRAY_INDEX:
            raise ValueError(f"range {v!r}: indices go up to {MAX_ARRAY_INDEX}")
        return f"{first}-{last}" + (f":{step}" if step != 1 else "")

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if v is None:
            return v
        seen: dict[str, str] = {}
        for name, values in v.items():
            if not _PARAM.fullmatch(name):
                raise ValueError(f"grid parameter {name!r}: use letters, digits and '_' "
                                 "(it becomes CORRAL_PARAM_<NAME>), starting with a letter")
            if name.upper() in seen:
                raise ValueError(f"grid parameters {seen[name.upper()]!r} and {name!r} both "
                                 f"become CORRAL_PARAM_{name.upper()}; rename one")
            seen[name.upper()] = name
            if not 1 <= len(values) <= MAX_GRID_VALUES:
                raise ValueError(f"grid parameter {name!r}: give 1 to {MAX_GRID_VALUES} values")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ArraySpec:
        if (self.range is None) == (self.grid is None):
            raise ValueError("give either range ('0-99') or grid ({lr: [0.1, 0.01]}), "
                             "not both and not neither")
        if self.size > MAX_ARRAY_TASKS:
            raise ValueError(f"the array has {self.size:,} tasks, more than the limit of "
                             f"{MAX_ARRAY_TASKS:,}; split it into several submissions")
        return self

    @property
    def size(self) -> int:
        if self.grid is not None:
            n = 1
            for values in self.grid.values():
                n *= len(values)
            return n
        return len(self.indices())

    def indices(self) -> _Indices:
        """Every task's CORRAL_ARRAY_INDEX, in order: the range's values, or 0..N-1 for a grid."""
        if self.range is None:
            return range(self.size)
        m = _RANGE.fullmatch(self.range)
        assert m is not None  # validated
        return range(int(m[1]), int(m[2]) + 1, int(m[3] or 1))

    def params(self, index: int) -> dict[str, Any]:
        """Task `index`'s parameters: the grid's combination number `index` (the last
        parameter varies fastest, as in itertools.product); {} for a range."""
        if self.grid is None:
            return {}
        names = list(self.grid)
        combo = next(itertools.islice(itertools.product(*self.grid.values()), index, None))
        return dict(zip(names, combo, strict=True))

    def task_env(self, index: int) -> dict[str, str]:
        """The environment of task `index`: CORRAL_ARRAY_INDEX, CORRAL_ARRAY_SIZE, each
        parameter as CORRAL_PARAM_<NAME> and all of them as JSON in CORRAL_PARAMS."""
        params = self.params(index)
        env = {"CORRAL_ARRAY_INDEX": str(index), "CORRAL_ARRAY_SIZE": str(self.size),
               "CORRAL_PARAMS": json.dumps(params, sort_keys=True)}
        env.update({param_env_name(k): _env_value(v) for k, v in params.items()})
        return env


def param_env_name(name: str) -> str:
    return f"CORRAL_PARAM_{name.upper()}"


def _env_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
