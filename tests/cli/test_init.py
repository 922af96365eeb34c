"""`corral init job` (issue 14, the SDK/CLI spec builder): a workload file from flags that
`corral submit` accepts as written, commented fields that stay comments, mistakes refused
before anything is written, an existing file never overwritten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from corral.cli.init import job_file
from corral.spec.workload import WorkloadSpec

PY = sys.executable


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "corral.cli.main", "init", "job", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={"COLUMNS": "120",
                                                                           "PATH": "/usr/bin:/bin"})


def test_the_file_is_the_spec_the_flags_say() -> None:
    command = ["python", "-c", "print('lr: 3e-4 # not a comment')"]  # YAML's specials, quoted
    text = job_file("train-1", "research", command, gpus=0.5,
                    workers=2, cpu=4, memory="16GiB", priority=10, preemptible=False,
                    checkpoint_dir="/ckpt", max_runtime="12h")
    (item,) = yaml.safe_load(text)["workloads"]
    spec = WorkloadSpec.model_validate(item)
    assert (spec.name, spec.queue, spec.gpus, spec.workers, spec.priority) == \
        ("train-1", "research", 0.5, 2, 10)
    assert spec.command == command and spec.preemptible is False
    assert spec.checkpoint_dir == "/ckpt" and spec.max_runtime == 12 * 3600
    assert "# max_restarts:" in text and "max_restarts" not in item  # a hint, not a value


def test_the_command_writes_a_file_once(tmp_path: Path) -> None:
    r = _cli(tmp_path, "train", "-q", "research", "--gpus", "8", "-o", "job.yaml", "--",
             "python", "train.py", "--epochs", "3")
    assert r.returncode == 0, r.stderr
    (item,) = yaml.safe_load((tmp_path / "job.yaml").read_text())["workloads"]
    assert item["command"] == ["python", "train.py", "--epochs", "3"] and item["gpus"] == 8
    again = _cli(tmp_path, "train", "-o", "job.yaml", "--", "true")
    assert again.returncode == 1 and "job.yaml exists" in again.stderr


def test_a_spec_corral_would_refuse_is_not_written(tmp_path: Path) -> None:
    r = _cli(tmp_path, "train", "--memory", "lots", "-o", "job.yaml", "--", "true")
    assert r.returncode == 2 and "memory" in r.stderr
    assert not (tmp_path / "job.yaml").exists()
