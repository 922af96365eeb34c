"""Workload and pool specs: every mistake names the field and says how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from corral.cli.main import app
from corral.core import WorkloadKind
from corral.spec import PoolSpec, SpecError, WorkloadSpec, load_pool, load_workloads
from corral.spec.quantities import parse_duration_s, parse_size_mib

ROOT = Path(__file__).resolve().parents[2]
OK = {"name": "train", "queue": "research"}

BAD = [
    ("fractional-whole", {"gpus": 1.5}, "gpus", "whole number"),
    ("negative-gpus", {"gpus": -1}, "gpus", "greater than or equal to 0"),
    ("memory-with-whole", {"gpus": 2, "gpu_memory": "10GiB"}, "", "remove it"),
    ("bad-size", {"memory": "lots"}, "memory", "80GiB"),
    ("bad-duration", {"min_runtime": "soon"}, "min_runtime", "30m"),
    ("bad-name", {"name": "Train Job"}, "name", "lowercase"),
    ("typo-field", {"gpu": 1}, "gpu", "unknown field"),
    ("zero-workers", {"workers": 0}, "workers", "greater than or equal to 1"),
    ("cmd-and-shell", {"command": ["python"], "shell": "python"}, "", "not both"),
    ("replicas-on-job", {"replicas": 3}, "", "service only"),
    ("reserved-env", {"env": {"CUDA_VISIBLE_DEVICES": "0"}}, "env", "set by corral"),
    ("bad-topology", {"topology": "planet"}, "topology", "nvlink"),
]


@pytest.mark.parametrize("extra,field,fix", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_workload_names_field_and_fix(extra: dict[str, object], field: str, fix: str) -> None:
    with pytest.raises(ValidationError) as info:
        WorkloadSpec.model_validate({**OK, **extra})
    err = SpecError.from_validation(info.value, prefix="workloads[0]")
    paths = [p for p, _ in err.problems]
    assert any(p == f"workloads[0].{field}" if field else p == "workloads[0]" for p in paths), paths
    assert fix in str(err)


@pytest.mark.parametrize("text,mib", [("80GiB", 81920), ("512MiB", 512), ("1.5G", 1536), (1024, 1024), ("2T", 2 * 1024 * 1024)])
def test_sizes(text: object, mib: int) -> None:
    assert parse_size_mib(text) == mib


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), (15, 15), ("1d", 86400)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


def test_service_becomes_replicas_with_protected_minimum() -> None:
    spec = WorkloadSpec(name="svc", queue="prod", kind=WorkloadKind.SERVICE, replicas=3, min_replicas=2, gpus=1)
    replicas = spec.to_core("svc", 0.0)
    assert [w.id for w in replicas] == ["svc/r0", "svc/r1", "svc/r2"]
    assert [w.preemptible for w in replicas] == [False, False, False]  # services are not preemptible by default
    spec = spec.model_copy(update={"preemptible": True})
    assert [w.preemptible for w in spec.to_core("svc", 0.0)] == [False, False, True]


def test_fraction_and_memory_shares() -> None:
    assert WorkloadSpec(**OK, gpus=0.25).resources().gpu_milli == 250
    assert WorkloadSpec(**OK, gpu_memory="20GiB").resources().gpu_memory_mib == 20480


def test_pool_rejects_unknown_parent_and_duplicates() -> None:
    with pytest.raises(ValidationError, match="parent 'nope'"):
        PoolSpec.model_validate({"queues": [{"name": "a", "parent": "nope"}]})
    with pytest.raises(ValidationError, match="defined twice"):
        PoolSpec.model_validate({"queues": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ValidationError, match="limit_gpus"):
        PoolSpec.model_validate({"queues": [{"name": "a", "quota_gpus": 8, "limit_gpus": 4}]})
    with pytest.raises(ValidationError, match="unknown score plugin"):
        PoolSpec.model_validate({"scheduler": {"scoring": {"binpak": 1}}})


def test_examples_load_and_expand() -> None:
    pool = load_pool(ROOT / "examples/pool.yaml")
    assert len(pool.nodes()) == 16 and {q.name for q in pool.queues} >= {"research", "prod"}
    assert len(load_workloads(ROOT / "examples/workloads.yaml")) >= 10


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text("workloads:\n  - name: x\n    queue: [unclosed\n")
    with pytest.raises(SpecError, match="line"):
        load_workloads(bad)


runner = CliRunner()


def test_plan_command_explains_every_pending_workload() -> None:
    result = runner.invoke(app, ["plan", str(ROOT / "examples/pool.yaml"), str(ROOT / "examples/workloads.yaml"),
                                 "--now", "1000000", "--json"])
    assert result.exit_code == 0, result.output
    import json

    plan = json.loads(result.output)
    assert plan["placements"] and plan["pending"]
    assert plan["pending"]["b200-wish"]["code"] == "GpuModelUnavailable"
    for reason in plan["pending"].values():
        assert reason["message"]


def test_plan_command_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text("workloads:\n  - name: x\n    queue: research\n    gpus: 1.5\n")
    result = runner.invoke(app, ["plan", str(ROOT / "examples/pool.yaml"), str(bad)])
    assert result.exit_code == 2
    assert "workloads[0].gpus" in result.output and "Traceback" not in result.output


def test_plan_command_unknown_queue(tmp_path: Path) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text("workloads:\n  - name: x\n    queue: nobody\n")
    result = runner.invoke(app, ["plan", str(ROOT / "examples/pool.yaml"), str(bad)])
    assert result.exit_code == 2 and "workloads[0].queue" in result.output and "defined:" in result.output
