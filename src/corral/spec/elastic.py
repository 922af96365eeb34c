"""The `elastic:` section of a job: a gang that may grow from `min_workers` to `max_workers`.

    elastic: {min_workers: 2, max_workers: 8, resize_interval: 5m}

The short form the issue writes, `workers: {min: 2, max: 8}` (with `resize_interval` if wanted),
is the same job: `normalise_workers_range` turns it into the section above before the spec is
validated, so what is stored, returned by the API and scheduled is the `elastic:` form. In
either spelling the range is checked first (`range_first`) and a bad one is the only error said:
`workers` (the gang's size) is taken from it, so its errors would otherwise follow from the
range's, beside the rest of the spec's. Written both ways, each bad range is said at its own
field, then that the job is written once.

The job is its core gang of `min_workers` (started together or not at all, as any gang) plus up
to `max_workers - min_workers` extra one-worker members, placed when they fit and taken first
when others are owed the GPUs (`corral.control.elastic` says how). The shape is KAI-Scheduler's
elastic PodGroup (`minMember` must run; members above it are placed when they fit and preempted
first) and TorchElastic's `--nnodes=MIN:MAX` (the workers restart with the new world on a
membership change).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from corral.core.model import WorkloadKind
from corral.spec.quantities import DurationS

__all__ = [
    "DEFAULT_RESIZE_INTERVAL_S", "EXAMPLE", "MAX_EXTRA_WORKERS", "MAX_WORKERS", "OTHER_SPELLINGS",
    "SHORT_EXAMPLE", "ElasticSpec", "WorkersRange", "combination_problem",
    "normalise_workers_range", "range_first", "workers_json_schema",
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
#: the same job as issue 13 writes it (normalise_workers_range)
SHORT_EXAMPLE: Final = "workers: {min: 2, max: 8}"
#: the names a range written as `workers: {..}` may be given under another tool's habit
_SHORT_SPELLINGS: Final = {
    k: v.removesuffix("_workers") for k, v in {
        **OTHER_SPELLINGS, "min_workers": "min_workers", "max_workers": "max_workers"}.items()
    if k not in {"min", "max"}}


def _refuse_spellings(data: Any, names: dict[str, str], example: str) -> None:
    """Another tool's name of a bound is told ours, not only 'unknown field'."""
    if isinstance(data, dict):
        wrong = [k for k in data if k in names]
        if wrong:
            said = ", ".join(f"{k} is {names[k]}" for k in wrong)
            raise ValueError(f"unknown field{'s' if len(wrong) > 1 else ''} here: {said} "
                             f"({example})")


def _check_bounds(low: int, high: int, names: tuple[str, str]) -> None:
    """The range's own rules, the same whichever way it is written."""
    lo, hi = names
    if high < low:
        raise ValueError(f"{hi} ({high}) must be at least {lo} ({low})")
    if high - low > MAX_EXTRA_WORKERS:
        raise ValueError(f"{hi} - {lo} must be at most {MAX_EXTRA_WORKERS} (each extra worker "
                         f"is a member of its own); raise {lo}")


class _Range(BaseModel):
    """What both spellings of the range share: other tools' names of a bound told ours, and
    the bounds' own rules, said in the names the user wrote (`_SAID`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _SPELLINGS: ClassVar[dict[str, str]]
    _EXAMPLE: ClassVar[str]
    _SAID: ClassVar[tuple[str, str]]

    @model_validator(mode="before")
    @classmethod
    def _spelling(cls, data: Any) -> Any:
        _refuse_spellings(data, cls._SPELLINGS, cls._EXAMPLE)
        return data

    @model_validator(mode="after")
    def _bounds(self) -> _Range:
        _check_bounds(*self.bounds, self._SAID)
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        """(the core gang, the most workers)."""
        raise NotImplementedError


class ElasticSpec(_Range):
    _SPELLINGS = OTHER_SPELLINGS
    _EXAMPLE = EXAMPLE
    _SAID = ("min_workers", "max_workers")

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

    @property
    def bounds(self) -> tuple[int, int]:
        return self.min_workers, self.max_workers

    @property
    def extras(self) -> int:
        """How many members beyond the core gang it may have."""
        return self.max_workers - self.min_workers


class WorkersRange(_Range):
    """`workers: {min, max, resize_interval}`: an elastic job written as issue 13 writes it,
    checked with the same bounds as `ElasticSpec` and its errors named as the user wrote them."""

    _SPELLINGS = _SHORT_SPELLINGS
    _EXAMPLE = SHORT_EXAMPLE
    _SAID = ("min", "max")

    # aliases, so that the attributes do not shadow the builtins
    low: int = Field(alias="min", ge=1, le=MAX_WORKERS, strict=True,
                     description="the core gang (elastic.min_workers)")
    high: int = Field(alias="max", ge=1, le=MAX_WORKERS, strict=True,
                      description="the most workers it grows to (elastic.max_workers)")
    resize_interval: DurationS = Field(
        DEFAULT_RESIZE_INTERVAL_S, description="as elastic.resize_interval")

    @property
    def bounds(self) -> tuple[int, int]:
        return self.low, self.high


_R = TypeVar("_R", bound=_Range)


def combination_problem(written: str, kind: Any, has_array: bool, gpus: Any) -> str | None:
    """What an elastic job cannot be combined with, said about the field the user wrote
    (`elastic` or `workers: {min, max}`); None when nothing is wrong. Takes raw values too (a
    kind or gpus that is not valid is left to its own field's error)."""
    if isinstance(kind, str) and kind in set(WorkloadKind) - {WorkloadKind.JOB}:
        return f"{written} applies to kind: job only (a service scales with replicas)"
    if has_array:
        return (f"{written} and array cannot be combined: submit one elastic job per task, or "
                "make the array's tasks fixed-size")
    if isinstance(gpus, int | float) and not isinstance(gpus, bool) and 0 < gpus < 1:
        return (f"{written}: its workers take whole GPUs (gpus: 1, 2, 8) or none; a share of a "
                "GPU (gpus below 1) is not elastic")
    return None


def range_first(data: Any) -> Any:
    """A workload's raw fields with its range of workers checked before anything else, in
    either spelling, so that a bad range is what the user is told, alone: not an error derived
    from it (`workers` is the core gang's size, taken from the range) nor the rest of the
    spec's. `workers: {..}` is made the `elastic:` section (normalise_workers_range); an
    `elastic:` section gives `workers` its min_workers where `workers` is left out."""
    if not isinstance(data, dict):
        return data
    if isinstance(data.get("workers"), dict):
        return normalise_workers_range(data)
    if isinstance(data.get("elastic"), dict):
        got = _validated_at("elastic", ElasticSpec, data["elastic"])
        if "workers" not in data:
            return {**data, "workers": got.min_workers}
    return data


def normalise_workers_range(data: Any) -> Any:
    """A workload's raw fields with `workers: {min, max, resize_interval}` made the `elastic:`
    section it means (`workers` = min); anything else is returned as it is. Its errors are
    located at `workers` (`workers.min`...), as the user wrote it."""
    if not isinstance(data, dict) or not isinstance(data.get("workers"), dict):
        return data
    if data.get("elastic") is not None:
        _refuse_both(data["workers"], data["elastic"])
    got = _validated_at("workers", WorkersRange, data["workers"])
    problem = combination_problem("a range of workers (an elastic job)",
                                  data.get("kind", WorkloadKind.JOB.value),
                                  data.get("array") is not None, data.get("gpus"))
    if problem:
        _refuse(("workers",), problem, data["workers"])
    elastic = {"min_workers": got.low, "max_workers": got.high,
               "resize_interval": got.resize_interval}
    return {**data, "workers": got.low, "elastic": elastic}


def workers_json_schema(schema: dict[str, Any]) -> None:
    """`workers` in the JSON Schema (docs/schema/workload.json, the API's OpenAPI): a number or
    the short form's range, as validation takes it, so an editor does not flag the issue's
    spelling and a fuzzer does not expect it refused. Written out, not a $ref: the same dict
    serves both documents, whose definitions live under different paths."""
    number = {k: schema.pop(k) for k in ("type", "minimum", "maximum") if k in schema}
    bound = {"type": "integer", "minimum": 1, "maximum": MAX_WORKERS}
    schema["anyOf"] = [number, {
        "type": "object", "additionalProperties": False, "required": ["min", "max"],
        "description": "an elastic job, the same as elastic: {min_workers, max_workers, "
                       "resize_interval}",
        "properties": {
            "min": {**bound, "description": "the core gang (elastic.min_workers)"},
            "max": {**bound, "description": "the most workers (elastic.max_workers)"},
            "resize_interval": {"type": ["number", "string"],
                                "description": "seconds, or a duration such as 5m"}}}]


#: both spellings of the range in one workload
_WRITTEN_TWICE: Final = ("an elastic job is written once: keep elastic: {min_workers, "
                         "max_workers, resize_interval} and remove workers (or keep workers: "
                         "{min, max} and remove elastic)")


def _refuse_both(short: Any, long: Any) -> None:
    """Both spellings given: each bad range is said first, at its own field (the one the user
    will keep may be the bad one: telling only "written once" hid it until the next try),
    then that the job is written once."""
    errors = [*_errors_at("workers", WorkersRange, short),
              *_errors_at("elastic", ElasticSpec, long)]
    errors.append(InitErrorDetails(type="value_error", loc=("workers",), input=short,
                                   ctx={"error": ValueError(_WRITTEN_TWICE)}))
    raise ValidationError.from_exception_data("WorkloadSpec", errors)


def _errors_at(field: str, model: type[_R], value: Any) -> list[InitErrorDetails]:
    """`value`'s errors as `model` (none when it is valid), located as `_validated_at`'s."""
    try:
        model.model_validate(value)
    except ValidationError as e:
        return _located(field, e)
    return []


def _validated_at(field: str, model: type[_R], value: Any) -> _R:
    """`value` as `model`, its errors located where the user wrote them (workers.min, not
    min)."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise ValidationError.from_exception_data("WorkloadSpec", _located(field, e)) from None


def _located(field: str, e: ValidationError) -> list[InitErrorDetails]:
    return [InitErrorDetails(type=err["type"], loc=(field, *err["loc"]), input=err.get("input"),
                             ctx=err.get("ctx", {})) for err in e.errors()]


def _refuse(loc: tuple[str, ...], message: str, value: Any) -> None:
    raise ValidationError.from_exception_data("WorkloadSpec", [InitErrorDetails(
        type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)})])
