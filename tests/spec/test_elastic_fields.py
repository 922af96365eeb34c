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
    # its commented short form, put in place of the elastic line, is the same job
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("elastic:"))
    short = next(line.removeprefix("# ") for line in lines if line.startswith("# workers: {"))
    lines[at] = short
    assert WorkloadSpec.model_validate(yaml.safe_load("\n".join(lines) + "\n")) == job


def load(tmp_path: Any, entry: dict[str, Any]) -> Any:
    """One workload through the file loader, as `corral submit` and `corral plan` read it."""
    import yaml

    from corral.spec import load_workloads
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"workloads": [{**BASE, **entry}]}))
    return load_workloads(path)


@pytest.mark.parametrize(("entry", "field", "says"), [
    ({"elastic": {"min": 2, "max": 8}}, "workloads[0].elastic",
     "min is min_workers"),
    ({"elastic": {"min_nodes": 2, "max_workers": 8}}, "workloads[0].elastic",
     "min_nodes is min_workers"),
    ({"workers": {"min_workers": 2, "max_workers": 8}}, "workloads[0].workers",
     "min_workers is min"),
    ({"workers": {"minReplicas": 2, "max": 8}}, "workloads[0].workers",
     "minReplicas is min"),
], ids=["torchrun-min-max", "min-nodes", "long-names-in-workers", "kubeflow-in-workers"])
def test_a_range_written_as_other_tools_take_it_is_told_the_fix(
        tmp_path: Any, entry: dict[str, Any], field: str, says: str) -> None:
    """Other tools' names of the bounds are refused naming the field and saying how corral
    writes it, not only 'unknown field'."""
    from corral.spec import SpecError
    with pytest.raises(SpecError) as e:
        load(tmp_path, entry)
    text = str(e.value)
    assert f"{field}: " in text and says in text, text


# -- `workers: {min: 2, max: 8}`: issue 13's spelling of the same elastic job --

@pytest.mark.parametrize(("short", "long"), [
    ({"min": 2, "max": 8}, {"min_workers": 2, "max_workers": 8}),
    ({"min": 3, "max": 3}, {"min_workers": 3, "max_workers": 3}),
    ({"min": 1, "max": 4, "resize_interval": "90s"},
     {"min_workers": 1, "max_workers": 4, "resize_interval": 90}),
], ids=["issue-13", "no-extras", "with-interval"])
def test_workers_as_a_range_is_the_elastic_job(
        tmp_path: Any, short: dict[str, Any], long: dict[str, Any]) -> None:
    """Normalised at validation: the spec (so what is stored, returned and scheduled) equals
    the one written with `elastic:`."""
    from corral.control.submission import stored_form
    (entry,) = load(tmp_path, {"workers": short})
    written = spec(elastic=long)
    assert (entry.workers, entry.elastic) == (written.workers, written.elastic)
    got = spec(workers=short)
    assert got == written
    body = stored_form(got)
    assert body.get("workers", 1) == long["min_workers"]  # a number (1 is left out)
    assert (body["elastic"]["min_workers"], body["elastic"]["max_workers"]) == (
        long["min_workers"], long["max_workers"])
    assert WorkloadSpec.from_stored(body) == written
    assert [w.workers for w in got.to_core("j", 0.0)] == [long["min_workers"]]


@pytest.mark.parametrize(("fields", "field", "says"), [
    ({"workers": {"min": 4, "max": 2}}, "workloads[0].workers", "max (2) must be at least min (4)"),
    ({"workers": {"min": 0, "max": 2}}, "workloads[0].workers.min", "greater than or equal to 1"),
    ({"workers": {"min": 1, "max": 5000}}, "workloads[0].workers.max",
     "less than or equal to 4096"),
    ({"workers": {"min": 1, "max": 2000}}, "workloads[0].workers", "max - min must be at most 1000"),
    ({"workers": {"min": True, "max": 4}}, "workloads[0].workers.min", "not true or false"),
    ({"workers": {"min": 2}}, "workloads[0].workers.max", "required field is missing"),
    ({"workers": {"min": 1, "max": 2, "size": 3}}, "workloads[0].workers.size", "unknown field"),
    ({"workers": {"min": 1, "max": 4}, "gpus": 0.5}, "workloads[0].workers", "whole GPUs"),
    ({"workers": {"min": 1, "max": 4}, "kind": "interactive"}, "workloads[0].workers",
     "kind: job only"),
    ({"workers": {"min": 1, "max": 4}, "kind": "service"}, "workloads[0].workers",
     "kind: job only"),
    ({"workers": {"min": 1, "max": 4}, "array": {"range": "0-3"}}, "workloads[0].workers",
     "and array cannot be combined"),
    ({"workers": {"min": 1, "max": 4}, "kind": ["job"]}, "workloads[0].kind",
     "Input should be 'job'"),
    ({"workers": {"min": 2, "max": 4}, "elastic": {"min_workers": 2, "max_workers": 4}},
     "workloads[0].workers", "keep elastic: {min_workers, max_workers, resize_interval} and "
     "remove workers"),
], ids=["max-below-min", "min-zero", "max-over-gang-limit", "too-many-extras", "bool-min",
        "no-max", "unknown-field", "gpu-share", "not-a-job", "service", "with-array",
        "kind-a-list", "both-forms"])
def test_workers_as_a_range_is_refused_as_elastic_is(
        tmp_path: Any, fields: dict[str, Any], field: str, says: str) -> None:
    """The same bounds and combinations as `elastic:`, each named where the user wrote it."""
    from corral.spec import SpecError
    with pytest.raises(SpecError) as e:
        load(tmp_path, fields)
    assert f"{field}: " in str(e.value) and says in str(e.value), str(e.value)


# -- a bad range is the first thing said (issue 13): not an error derived from it, nor the rest
#    of the spec's errors beside it, in either spelling --

#: other faults of the same workload, each of which is reported when the range is good
OTHER_FAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "unknown-field": {"gpuz": 1},
    "gpu-share": {"gpus": 0.5},
    "a-service": {"kind": "service"},
    "bad-name": {"name": "no spaces here"},
    "workers-differs": {"workers": 3},
}
#: (range as written under workers:, as written under elastic:, where its error is, says)
BAD_RANGES = [
    ({"min": 8, "max": 2}, {"min_workers": 8, "max_workers": 2}, "", "must be at least"),
    ({"min": 0, "max": 2}, {"min_workers": 0, "max_workers": 2}, "min",
     "greater than or equal to 1"),
    ({"min": 4097, "max": 4}, {"min_workers": 4097, "max_workers": 4}, "min",
     "less than or equal to 4096"),
    ({"min": 2, "max": 4097}, {"min_workers": 2, "max_workers": 4097}, "max",
     "less than or equal to 4096"),
    ({"min": 2.5, "max": 4}, {"min_workers": 2.5, "max_workers": 4}, "min", "valid integer"),
    ({"min": "2", "max": 4}, {"min_workers": "2", "max_workers": 4}, "min", "not the string"),
]


@pytest.mark.parametrize("other", OTHER_FAULTS.values(), ids=OTHER_FAULTS.keys())
@pytest.mark.parametrize(("short", "long", "bound", "says"), BAD_RANGES,
                         ids=["min-over-max", "min-zero", "over-limit", "max-over-limit",
                              "non-integer", "a-string"])
@pytest.mark.parametrize("spelling", ["workers", "elastic"])
def test_a_bad_range_is_refused_first_and_alone(
        tmp_path: Any, spelling: str, short: dict[str, Any], long: dict[str, Any], bound: str,
        says: str, other: dict[str, Any]) -> None:
    from corral.spec import SpecError
    # (under the short spelling, workers-differs is the range itself: the same as none)
    entry = {**other, **({"workers": short} if spelling == "workers" else {"elastic": long})}
    with pytest.raises(SpecError) as e:
        load(tmp_path, entry)
    named = {"": "", "min": ".min", "max": ".max"}[bound] if spelling == "workers" else {
        "": "", "min": ".min_workers", "max": ".max_workers"}[bound]
    field = f"workloads[0].{spelling}{named}"
    assert [p for p, _ in e.value.problems] == [field], str(e.value)
    assert says in e.value.problems[0][1], str(e.value)


@pytest.mark.parametrize("other", [f for k, f in OTHER_FAULTS.items() if k != "none"],
                         ids=[k for k in OTHER_FAULTS if k != "none"])
def test_a_good_range_leaves_the_other_faults_reported(tmp_path: Any,
                                                       other: dict[str, Any]) -> None:
    """The guard above is not a spec that refuses everything: with the range right, the other
    fault is what is said."""
    from corral.spec import SpecError
    with pytest.raises(SpecError) as e:
        load(tmp_path, {**other, "elastic": {"min_workers": 2, "max_workers": 4}})
    assert all(".elastic" not in p for p, _ in e.value.problems), str(e.value)


@pytest.mark.parametrize(("short", "long", "bound", "says"), BAD_RANGES,
                         ids=["min-over-max", "min-zero", "over-limit", "max-over-limit",
                              "non-integer", "a-string"])
@pytest.mark.parametrize("bad", ["workers", "elastic", "both"])
def test_a_bad_range_written_both_ways_is_named_before_written_once(
        tmp_path: Any, bad: str, short: dict[str, Any], long: dict[str, Any], bound: str,
        says: str) -> None:
    """Both spellings given (issue 13): each bad range is said at its own field, then that the
    job is written once (it said only "written once", and the range kept was found bad at the
    next try)."""
    from corral.spec import SpecError
    good_short, good_long = {"min": 2, "max": 4}, {"min_workers": 2, "max_workers": 4}
    entry = {"workers": short if bad in ("workers", "both") else good_short,
             "elastic": long if bad in ("elastic", "both") else good_long}
    with pytest.raises(SpecError) as e:
        load(tmp_path, entry)
    named = {"workers": {"": "", "min": ".min", "max": ".max"},
             "elastic": {"": "", "min": ".min_workers", "max": ".max_workers"}}
    fields = [f"workloads[0].{s}{named[s][bound]}" for s in ("workers", "elastic")
              if bad in (s, "both")]
    problems = e.value.problems
    assert [p for p, _ in problems] == [*fields, "workloads[0].workers"], str(e.value)
    assert all(says in m for _, m in problems[:-1]), str(e.value)
    assert "written once" in problems[-1][1], str(e.value)


def test_a_good_range_written_both_ways_says_written_once_only(tmp_path: Any) -> None:
    from corral.spec import SpecError
    with pytest.raises(SpecError) as e:
        load(tmp_path, {"workers": {"min": 2, "max": 4},
                        "elastic": {"min_workers": 2, "max_workers": 4}})
    assert [p for p, _ in e.value.problems] == ["workloads[0].workers"], str(e.value)
    assert "written once" in e.value.problems[0][1]
