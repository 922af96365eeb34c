"""Workflow fields of a workload spec: each mistake is refused naming the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.control.submission import stored_form
from corral.spec import WorkloadSpec
from corral.spec.errors import SpecError

BASE = {"name": "w", "queue": "q", "command": ["run"]}


def _refusal(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        WorkloadSpec.model_validate({**BASE, **fields})
    return str(SpecError.from_validation(info.value))


@pytest.mark.parametrize(("fields", "says"), [
    ({"restart_on": ["reboot"]}, "restart_on"),
    ({"restart_on": [{"exit_code": [0]}]}, "exit code 0 is success"),
    ({"restart_on": [{"exit_code": []}]}, "restart_on"),
    ({"restart_on": [{"exit_code": ["3"]}]}, "restart_on"),
    ({"restart_on": [{"exit_code": [300]}]}, "restart_on"),
    ({"restart_on": [{"exit_codes": [3]}]}, "exit_codes"),
    ({"kind": "service", "restart_on": ["preemption"]}, "a service's replicas are always"),
    ({"preemption_grace": "2h"}, "preemption_grace must be at most 3600s"),
    ({"preemption_grace": -1}, "preemption_grace"),
], ids=lambda v: str(v)[:40])
def test_mistakes_are_refused_naming_the_field(fields: dict[str, Any], says: str) -> None:
    assert says in _refusal(**fields)


def test_the_default_retries_infrastructure_failures_only() -> None:
    spec = WorkloadSpec.model_validate(BASE)
    assert spec.restart_causes() == {"node_failure", "preemption", "spot_interruption"}
    assert spec.restart_exit_codes() == frozenset()


def test_a_listed_policy_replaces_the_default_and_round_trips() -> None:
    spec = WorkloadSpec.model_validate({**BASE, "restart_on": [
        "preemption", {"exit_code": [3, -9]}], "preemption_grace": "2m"})
    assert spec.restart_causes() == {"preemption"}
    assert spec.restart_exit_codes() == {3, -9}
    assert spec.preemption_grace == 120.0
    assert WorkloadSpec.from_stored(stored_form(spec)) == spec
    assert WorkloadSpec.model_validate({**BASE, "restart_on": []}).restart_causes() == set()


@pytest.mark.parametrize(("fields", "says"), [
    ({"array": {"range": "0-1000"}}, "1,001 tasks, more than the limit of 1,000"),
    ({"array": {"grid": {"a": list(range(40)), "b": list(range(30))}}}, "1,200 tasks"),
    ({"array": {"range": "5-2"}}, "last must be >= first"),
    ({"array": {"range": "0-200000"}}, "range is 'first-last'"),
    ({"array": {"range": "a-b"}}, "range is 'first-last'"),
    ({"array": {"range": "0-3", "grid": {"a": [1]}}}, "either range"),
    ({"array": {}}, "either range"),
    ({"array": {"grid": {"lr": [0.1], "LR": [1]}}}, "both become CORRAL_PARAM_LR"),
    ({"array": {"grid": {"learning-rate": [0.1]}}}, "becomes CORRAL_PARAM_<NAME>"),
    ({"array": {"grid": {"lr": []}}}, "give 1 to 1000 values"),
    ({"array": {"range": "0-3", "parallel": 0}}, "parallel"),
    ({"kind": "interactive", "array": {"range": "0-3"}}, "array applies to kind: job only"),
    ({"depends_on": [{"id": "a-1"}, {"id": "a-1"}]}, "names a workload twice"),
    ({"depends_on": [{"id": "a-1", "when": "done"}]}, "depends_on[0].when"),
    ({"depends_on": [{"id": "A B"}]}, "an id is what `corral submit` printed"),
    ({"depends_on": [{"id": f"p-{i}"} for i in range(33)]}, "depends_on"),
], ids=lambda v: str(v)[:40])
def test_array_and_depends_on_mistakes_are_refused(fields: dict[str, Any], says: str) -> None:
    assert says in _refusal(**fields)


def test_a_range_with_a_step_and_a_grid_enumerate_their_tasks() -> None:
    ranged = WorkloadSpec.model_validate({**BASE, "array": {"range": " 0 - 20 : 10 "}})
    assert ranged.array is not None and list(ranged.array.indices()) == [0, 10, 20]
    assert ranged.array.range == "0-20:10"
    grid = WorkloadSpec.model_validate({**BASE, "array": {"grid": {
        "lr": [0.1, 0.01], "opt": ["adam", "sgd"], "warm": [True]}}})
    assert grid.array is not None and grid.array.size == 4
    assert grid.array.params(1) == {"lr": 0.1, "opt": "sgd", "warm": True}
    env = grid.array.task_env(1)
    assert (env["CORRAL_PARAM_WARM"], env["CORRAL_PARAM_OPT"]) == ("true", "sgd")
    assert WorkloadSpec.from_stored(stored_form(grid)) == grid
