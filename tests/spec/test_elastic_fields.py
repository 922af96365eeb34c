"""The `elastic:` section of a job (corral.spec.elastic): bounds and what it cannot combine with."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.spec import WorkloadSpec

BASE: dict[str, Any] = {"name": "train", "queue": "research", "gpus": 1, "command": ["train"]}


def spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({**BASE, **fields})


def test_the_gang_is_min_workers_when_workers_is_left_out() -> None:
    s = spec(elastic={"min_workers": 2, "max_workers": 8, "resize_interval": "1m"})
    assert s.workers == 2
    assert s.elastic is not None and s.elastic.extras == 6
    assert s.elastic.resize_interval == 60.0
    assert s.to_core("j", 0.0)[0].workers == 2


def test_stored_form_validates_back_to_the_same_spec() -> None:
    from corral.control.submission import stored_form
    s = spec(elastic={"min_workers": 1, "max_workers": 3})
    assert WorkloadSpec.from_stored(stored_form(s)) == s


@pytest.mark.parametrize(("fields", "says"), [
    ({"elastic": {"min_workers": 4, "max_workers": 2}}, "must be at least min_workers"),
    ({"elastic": {"min_workers": 0, "max_workers": 2}}, "greater than or equal to 1"),
    ({"elastic": {"min_workers": 1, "max_workers": 5000}}, "less than or equal to 4096"),
    ({"elastic": {"min_workers": 1, "max_workers": 2000}}, "at most 1000"),
    ({"elastic": {"min_workers": 1, "max_workers": 2, "size": 3}}, "elastic.size"),
    ({"elastic": {"min_workers": 2, "max_workers": 4}, "workers": 3}, "elastic.min_workers"),
    ({"elastic": {"min_workers": 1, "max_workers": 4}, "gpus": 0.5}, "whole GPUs"),
    ({"elastic": {"min_workers": 1, "max_workers": 4}, "kind": "interactive"}, "kind: job"),
    ({"elastic": {"min_workers": 1, "max_workers": 4}, "array": {"range": "0-3"}},
     "elastic and array"),
    ({"elastic": {"min_workers": True, "max_workers": 4}}, "min_workers"),
], ids=["max-below-min", "min-zero", "max-over-gang-limit", "too-many-extras", "unknown-field",
        "workers-differs", "gpu-share", "not-a-job", "with-array", "bool-min"])
def test_refused_with_the_field_named(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as e:
        spec(**fields)
    assert says in str(e.value)


def test_workers_equal_to_min_workers_is_accepted() -> None:
    assert spec(workers=2, elastic={"min_workers": 2, "max_workers": 3}).workers == 2


def test_the_example_loads() -> None:
    from pathlib import Path

    import yaml
    text = (Path(__file__).resolve().parents[2] / "examples/elastic.yaml").read_text()
    job = WorkloadSpec.model_validate(yaml.safe_load(text))
    assert job.elastic is not None and (job.workers, job.elastic.max_workers) == (2, 8)


@pytest.mark.parametrize(("entry", "field", "says"), [
    ({"workers": {"min": 2, "max": 8}}, "workloads[0].workers",
     "is elastic, written elastic: {min_workers: 2, max_workers: 8}"),
    ({"elastic": {"min": 2, "max": 8}}, "workloads[0].elastic",
     "min is min_workers"),
    ({"elastic": {"min_nodes": 2, "max_workers": 8}}, "workloads[0].elastic",
     "min_nodes is min_workers"),
], ids=["workers-as-a-range", "torchrun-min-max", "min-nodes"])
def test_a_range_written_as_other_tools_take_it_is_told_the_fix(
        tmp_path: Any, entry: dict[str, Any], field: str, says: str) -> None:
    """The issue's own wording (`workers: {min: 2, max: 8}`) and other tools' names of the
    bounds are refused naming the field and saying how corral writes it, not only 'a valid
    integer' or 'unknown field'."""
    import yaml

    from corral.spec import SpecError, load_workloads
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"workloads": [{**BASE, **entry}]}))
    with pytest.raises(SpecError) as e:
        load_workloads(path)
    text = str(e.value)
    assert f"{field}: " in text and says in text, text
