"""Workload specs written in Python, checked as they are built (issue 14: "a spec builder").

    from corral.sdk import Client
    from corral.sdk.builder import Pipeline, job, sweep

    prep = job("prepare", queue="research-nlp").run("python", "prep.py").resources(cpu=0.5)
    train = (job("train", queue="research-nlp")
             .run("python", "train.py")
             .resources(gpus=4, workers=2, memory="64GiB")
             .restart(on=["preemption", "node_failure"], exit_codes=[75])
             .after(prep))
    with Client.from_env() as c:
        Pipeline(prep, train).submit(c)          # all or nothing, as `corral submit FILE`

Every step returns a new `Workload` (the old one is unchanged) and is validated at once by the
very model the server validates with (`corral.spec.workload.WorkloadSpec`): each state of a
builder is a whole, valid spec (a name and a queue are all a spec needs), so a mistake is raised
by the call that made it, as a `SpecError` whose problems name the field and the fix
(`gpu: unknown field ... (did you mean 'gpus'?)`). What only the server knows (does the queue
exist, may this token submit to it, can the work ever fit) is checked by `dry_run` and
`submit`. `to_dict()` is what a spec file (`corral submit FILE`) would hold, as the user wrote
it (`"64GiB"` stays `"64GiB"`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from corral.sdk.batch import FieldNames, Item, check, order_problems, submit_or_refuse
from corral.spec.errors import SpecError
from corral.spec.workload import WorkloadSpec

if TYPE_CHECKING:
    from corral.sdk import models as M
    from corral.sdk.client import Client

__all__ = ["Pipeline", "SpecError", "Workload", "array", "interactive", "job", "service",
           "sweep"]

Number = int | float
Quantity = int | float | str  # 512 (MiB, seconds, cores) or "512MiB", "30m", "500m"
When = Literal["succeeded", "ended", "failed"]
RestartCause = Literal["node_failure", "preemption", "spot_interruption", "exit"]


@functools.cache
def _field_names() -> FieldNames:
    """Unknown-field suggestions from the model's own JSON Schema (no server needed)."""
    def read() -> dict[str, Any]:
        schema = WorkloadSpec.model_json_schema()
        return {**schema.get("$defs", {}), "WorkloadSpec": schema}
    return FieldNames(read)


def _given(**fields: Any) -> dict[str, Any]:
    """The arguments a step was given (None: not given, the field keeps its value)."""
    return {k: v for k, v in fields.items() if v is not None}


def _validated(fields: Mapping[str, Any], where: str) -> WorkloadSpec:
    try:
        return WorkloadSpec.model_validate(dict(fields))
    except ValidationError as e:
        found = SpecError.from_validation(e)
        names = _field_names()
        raise SpecError([(path, msg + names.suggestion(path, msg))
                         for path, msg in found.problems], where) from None


class Workload:
    """One job, service, interactive session, array or sweep, valid at every step."""

    __slots__ = ("_fields", "_parents", "_spec")

    def __init__(self, fields: Mapping[str, Any], *, _parents: frozenset[str] = frozenset()
                 ) -> None:
        self._fields = dict(fields)
        self._spec = _validated(self._fields, f"{self._fields.get('kind', 'job')} "
                                              f"{self._fields.get('name')!r}")
        # names of builders this one depends on (their ids are known only once submitted)
        self._parents = _parents

    def __repr__(self) -> str:
        return f"Workload({self._fields!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workload) and other._fields == self._fields

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def spec(self) -> WorkloadSpec:
        """The validated model (the server's own type)."""
        return self._spec

    def to_dict(self) -> dict[str, Any]:
        """The spec as a file would hold it: the fields given, as they were written."""
        return dict(self._fields)

    # --- steps: each returns a new, validated Workload ----------------------------------------

    def set(self, **fields: Any) -> Workload:
        """Any field of docs/specs.md by its name: `.set(checkpoint_dir="/ckpt", ttl="2h")`.
        None removes a field (back to its default)."""
        merged = {**self._fields, **fields}
        return Workload({k: v for k, v in merged.items() if v is not None},
                        _parents=self._parents)

    def run(self, program: str, *args: str) -> Workload:
        """The command, as an argv list (no shell): `.run("python", "train.py", "--lr", "0.1")`."""
        return self.set(command=[program, *args], shell=None)

    def shell(self, line: str) -> Workload:
        """A shell line instead of a command: `.shell("python train.py | tee log")`."""
        return self.set(shell=line, command=None)

    def resources(self, *, gpus: Number | None = None, workers: int | None = None,
                  cpu: Quantity | None = None, memory: Quantity | None = None,
                  gpu_memory: Quantity | None = None,
                  gpu_models: Sequence[str] | None = None) -> Workload:
        """Per worker: `gpus` (0.25 is a quarter of one), `cpu` cores, `memory` ("64GiB");
        `workers` start together as one gang. Only the arguments given change."""
        return self.set(**_given(
            gpus=gpus, workers=workers, cpu=cpu, memory=memory, gpu_memory=gpu_memory,
            gpu_models=list(gpu_models) if gpu_models is not None else None))

    def env(self, **values: str) -> Workload:
        """Environment variables, added to those given before."""
        return self.set(env={**self._fields.get("env", {}), **values})

    def priority(self, value: int, *, preemptible: bool | None = None) -> Workload:
        """Higher runs first within a queue (-1000..1000); `preemptible` as given, if given."""
        return self.set(**_given(priority=value, preemptible=preemptible))

    def restart(self, *, on: Iterable[RestartCause] = (), exit_codes: Iterable[int] = (),
                max_restarts: int | None = None, grace: Quantity | None = None) -> Workload:
        """When it is restarted (`on` causes and its own `exit_codes`), how often, and the time
        between SIGTERM and SIGKILL to write a checkpoint (`grace`, e.g. "60s")."""
        rules: list[Any] = list(on)
        codes = list(exit_codes)
        if codes:
            rules.append({"exit_code": codes})
        return self.set(**_given(restart_on=rules or None, max_restarts=max_restarts,
                                 preemption_grace=grace))

    def after(self, parent: Workload | str, *, when: When = "succeeded") -> Workload:
        """Start once `parent` has ended as `when` says. A `Workload` (submitted earlier in the
        same `Pipeline`) or the id `submit` printed (an array's group id waits for every task)."""
        ident = parent.name if isinstance(parent, Workload) else parent
        step = self.set(depends_on=[*self._fields.get("depends_on", []),
                                    {"id": ident, "when": when}])
        if isinstance(parent, Workload):
            step._parents = self._parents | {parent.name}
        return step

    # --- the server --------------------------------------------------------------------------

    def dry_run(self, client: Client) -> M.DryRunResult:
        """What the server would do with it now (admission, placement), storing nothing."""
        self._alone("dry-run")
        return client.dry_run(self.to_dict())

    def submit(self, client: Client, *, idempotency_key: str | None = None) -> M.Submitted:
        """Submit; with `idempotency_key` a retry returns the first submission."""
        self._alone("submit")
        return client.submit(self.to_dict(), idempotency_key=idempotency_key)

    def _alone(self, what: str) -> None:
        if self._parents:
            raise SpecError([("depends_on", f"names workload(s) {sorted(self._parents)} built "
                              f"here, which have no id yet: {what} them together with "
                              "Pipeline(parent, ..., this), or pass the id their submit "
                              "returned")], f"{self._spec.kind.value} {self.name!r}")


class Pipeline:
    """Workloads submitted all or nothing, in order (`corral submit FILE`'s rules): each
    `after(parent)` names a workload that comes earlier in the pipeline, and is given that
    workload's new id when it is submitted."""

    def __init__(self, *steps: Workload) -> None:
        if not steps:
            raise SpecError([("workloads", "a pipeline needs at least one workload")])
        self.steps = tuple(steps)
        docs = self.to_dicts()
        problems = [p for found in order_problems(docs).values() for p in found]
        names = [s.name for s in steps]
        for i, step in enumerate(steps):
            if names.count(step.name) > 1 and names.index(step.name) != i:
                problems.append((f"workloads[{i}].name", f"{step.name!r} is the name of "
                                 f"workloads[{names.index(step.name)}] too; after() finds a "
                                 "parent by its name, so give each workload its own"))
            problems += [(f"workloads[{i}].depends_on", f"names {p!r}, which is not in this "
                          "pipeline: add it before this step, or pass its id")
                         for p in sorted(step._parents - set(names))]
        if problems:
            raise SpecError(problems, "pipeline")

    def to_dicts(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        """What a spec file holds: `{"workloads": [...]}`."""
        return {"workloads": self.to_dicts()}

    def dry_run(self, client: Client) -> list[Item]:
        """Each step as the server would take it (`.problems` empty: it would be accepted)."""
        return check(client, self.to_dicts())

    def submit(self, client: Client) -> list[M.Submitted]:
        """Every step, or none: `corral.sdk.batch.Refused` names each refusal by its step."""
        return [i.submitted for i in submit_or_refuse(client, self.to_dicts())
                if i.submitted is not None]


# --- the kinds ---------------------------------------------------------------------------------

def job(name: str, *, queue: str, **fields: Any) -> Workload:
    """A batch job: `job("train", queue="research").run("python", "t.py").resources(gpus=4)`."""
    return Workload({"name": name, "queue": queue, **fields})


def service(name: str, *, queue: str, replicas: int = 1, **fields: Any) -> Workload:
    """An inference service: `replicas` copies behind one endpoint; each listens on $PORT."""
    return Workload({"name": name, "queue": queue, "kind": "service", "replicas": replicas,
                     **fields})


def interactive(name: str, *, queue: str, ttl: Quantity, **fields: Any) -> Workload:
    """A notebook or shell: never preempted, stopped after `ttl` ("2h")."""
    return Workload({"name": name, "queue": queue, "kind": "interactive", "ttl": ttl,
                     **fields})


def array(name: str, *, queue: str, range: str, parallel: int | None = None,
          **fields: Any) -> Workload:
    """Tasks `range` ("0-99", "0-99:10"; CORRAL_ARRAY_INDEX each), at most `parallel` at once."""
    spec = {"range": range, **({"parallel": parallel} if parallel is not None else {})}
    return Workload({"name": name, "queue": queue, "array": spec, **fields})


def sweep(name: str, *, queue: str, grid: Mapping[str, Sequence[Any]],
          parallel: int | None = None, **fields: Any) -> Workload:
    """One task per combination of `grid`'s values (CORRAL_PARAM_<NAME>, CORRAL_PARAMS)."""
    spec: dict[str, Any] = {"grid": {k: list(v) for k, v in grid.items()}}
    if parallel is not None:
        spec["parallel"] = parallel
    return Workload({"name": name, "queue": queue, "array": spec, **fields})
