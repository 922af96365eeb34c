"""A workload's stated throughput per GPU model: parsed, checked, carried to the core."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.spec import SpecError, WorkloadSpec

OK: dict[str, Any] = {"name": "train", "queue": "research", "gpus": 1}


def test_throughput_reaches_the_core_sorted_by_model() -> None:
    spec = WorkloadSpec.model_validate({**OK, "throughput": {"H100": 3.1, "L4": 0.4, "A100": 2}})
    (w,) = spec.to_core("w1", 0.0)
    assert w.throughput == (("A100", 2.0), ("H100", 3.1), ("L4", 0.4))
    assert WorkloadSpec.model_validate(OK).to_core("w2", 0.0)[0].throughput == ()


@pytest.mark.parametrize("bad", [
    pytest.param({"H100": 0}, id="zero"),
    pytest.param({"H100": -1.5}, id="negative"),
    pytest.param({"H100": "fast"}, id="text"),
    pytest.param({"H100": True}, id="bool"),
    pytest.param({"H100": float("inf")}, id="infinite"),
])
def test_a_bad_rate_is_refused_naming_the_field(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        WorkloadSpec.model_validate({**OK, "throughput": bad})
    assert "throughput" in str(SpecError.from_validation(info.value))
