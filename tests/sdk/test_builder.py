"""The SDK's spec builder (corral.sdk.builder): every step is a whole spec, validated by the
server's own model at the call that made it; errors name the field and the fix; what it builds
is what a spec file holds. Against a server: test_builder_live.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corral.sdk.builder import (
    Pipeline,
    SpecError,
    Workload,
    array,
    interactive,
    job,
    service,
    sweep,
)
from corral.spec.workload import WorkloadSpec

ROOT = Path(__file__).resolve().parents[2]


def _train() -> Workload:
    return job("train", queue="research-nlp").run("python", "train.py")


def test_each_kind_builds_the_spec_a_file_would_hold() -> None:
    built = [
        _train().resources(gpus=4, workers=2, memory="64GiB", gpu_models=["A100", "H100"])
        .restart(on=["preemption"], exit_codes=[75], max_restarts=5, grace="60s")
        .env(WANDB_MODE="offline").priority(50),
        service("chat", queue="serving", replicas=2).run("python", "serve.py").resources(gpus=1),
        interactive("nb", queue="interns", ttl="2h").shell("jupyter lab")
        .resources(gpu_memory="10GiB"),
        array("shards", queue="q", range="0-99", parallel=8).run("python", "shard.py"),
        sweep("lr", queue="q", grid={"lr": [0.1, 0.01]}, parallel=2).run("python", "t.py"),
    ]
    for w in built:
        as_file = yaml.safe_load(yaml.safe_dump(w.to_dict()))  # what `corral submit` would read
        assert WorkloadSpec.model_validate(as_file) == w.spec
    assert built[0].to_dict()["memory"] == "64GiB"  # as written, not converted
    assert built[0].spec.memory == 64 * 1024
    assert built[0].to_dict()["restart_on"] == ["preemption", {"exit_code": [75]}]
    assert built[4].spec.array is not None and built[4].spec.array.parallel == 2


def test_the_sweep_example_file_and_the_builder_agree() -> None:
    text = (ROOT / "examples/sweep.yaml").read_text()
    from_file = WorkloadSpec.model_validate(yaml.safe_load(text))
    built = (sweep("lr-sweep", queue="research-vision",
                   grid={"lr": [0.1, 0.01], "batch_size": [32, 64, 128]}, parallel=2)
             .run(*from_file.command or []).resources(gpus=0.25, cpu=0.5, memory="256MiB"))
    assert built.spec == from_file


def test_a_step_returns_a_new_workload_and_leaves_the_old_one() -> None:
    base = _train()
    bigger = base.resources(gpus=8)
    assert base.spec.gpus != 8 and bigger.spec.gpus == 8
    assert base.shell("make").spec.command is None  # a shell replaces the command
    assert bigger.set(gpus=None).spec.gpus == base.spec.gpus  # None: back to the default


@pytest.mark.parametrize(("step", "field", "says"), [
    (lambda w: w.set(gpu=1), "gpu", "did you mean 'gpus'?"),
    (lambda w: w.set(array={"grd": {"lr": [1]}}), "array.grd", "did you mean 'grid'?"),
    (lambda w: w.resources(gpus=-1), "gpus", "greater than or equal to 0"),
    (lambda w: w.resources(memory="12 potatoes"), "memory", "write it like 80GiB"),
    (lambda w: w.set(workers="2"), "workers", "expected a number, not the string '2'"),
    (lambda w: w.set(shell="make"), "", "either command (an argv list) or shell"),
    (lambda w: w.set(replicas=2), "", "kind: service only"),
    (lambda w: w.after("Not An Id!"), "depends_on[0].id", "an id is what `corral submit` printed"),
])
def test_a_mistake_is_raised_by_the_step_that_made_it(step, field: str, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        step(_train())
    [(where, why)] = caught.value.problems
    assert (where, says in why) == (field, True), caught.value.problems
    assert str(caught.value).startswith("job 'train': ")


def test_a_bad_name_is_refused_at_once() -> None:
    with pytest.raises(SpecError, match="name: name must be 1-63 lowercase"):
        job("Train Run", queue="q")


def test_a_pipeline_names_parents_that_come_later_or_are_missing() -> None:
    prep = job("prep", queue="q").run("true")
    train = _train().after(prep)
    assert Pipeline(prep, train).to_dict()["workloads"][1]["depends_on"] == [
        {"id": "prep", "when": "succeeded"}]
    with pytest.raises(SpecError, match=r"workloads\[0\]\.depends_on\[0\]\.id: names 'prep', "
                       "which comes later"):
        Pipeline(train, prep)
    with pytest.raises(SpecError, match=r"workloads\[0\]\.depends_on: names 'prep', which is "
                       "not in this pipeline"):
        Pipeline(train)
    with pytest.raises(SpecError, match=r"workloads\[1\]\.name: 'prep' is the name of "):
        Pipeline(prep, prep.run("false"))


def test_a_workload_whose_parent_has_no_id_yet_is_not_sent_alone() -> None:
    child = _train().after(job("prep", queue="q"))
    with pytest.raises(SpecError, match=r"Pipeline\(parent, \.\.\., this\)"):
        child.submit(None)  # type: ignore[arg-type]  # refused before any request
    assert _train().after("prep-1a2b3c4d")._parents == frozenset()  # an id: fine alone


def test_the_builder_imports_no_server_stack() -> None:
    code = ("import json, sys, corral.sdk.builder\n"
            "print(json.dumps(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m.split(".")[0] in {
        "fastapi", "starlette", "sqlalchemy", "numpy", "uvicorn", "alembic"}]
    assert not [m for m in loaded if m.startswith((
        "corral.api", "corral.store", "corral.control", "corral.backends", "corral.cli"))]
