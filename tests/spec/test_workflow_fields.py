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
