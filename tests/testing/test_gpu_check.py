"""scripts/gpu-check: here (no GPU) it says so and exits 2; on fakes of NVML
(`corral.testing.fake_pynvml`) and cupy (`corral.testing.fake_cupy`) it runs its three parts
end to end through a real `corral up`, and labels the output fake. No GPU is used: the figures
of the fake run are not a GPU's (the workers compute on the CPU and say so)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from corral.testing import fake_cupy, fake_pynvml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=240)


def test_without_a_gpu_it_says_no_gpu_and_exits_2() -> None:
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("this machine has an NVIDIA GPU")
    done = run({**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 2
    assert "gpu-check: no GPU: " in done.stderr and "nothing measured" in done.stderr
    out = json.loads(done.stdout)
    assert out["no_gpu"] is True and out["nvml"]["available"] is False and not out["fake"]


@pytest.mark.slow
def test_on_fakes_it_runs_the_probe_the_known_answer_test_and_two_jobs_on_one_gpu(
        tmp_path: Path) -> None:
    nvml_state = tmp_path / "nvml.json"
    nvml_state.write_text(json.dumps({"gpus": [asdict(fake_pynvml.FakeGpu())] * 2}))
    cupy_state = tmp_path / "cupy.json"
    cupy_state.write_text(json.dumps({"devices": 2, "corrupt": [1]}))
    shims = tmp_path / "shims"
    fake_pynvml.install_shim(shims, nvml_state)
    fake_cupy.install_shim(shims, cupy_state)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(shims), os.environ.get("PYTHONPATH")])), "CORRAL_GPU_CHECK_FAKE": "1"}
    done = run(env, "--seconds", "2", "--probes", "3")
    out = json.loads(done.stdout)
    assert out["fake"] is True
    assert [g["index"] for g in out["nvml"]["gpus"]] == [0, 1] and out["nvml"]["probes"] == 3
    assert out["nvml"]["verdict"]["health"] == "healthy"
    kat = out["known_answer"]
    assert kat["ran"] and [r["passed"] for r in kat["results"]] == [True, False]
    share = out["sharing"]
    assert sorted(share["states"].values()) == ["succeeded", "succeeded"]
    assert share["same_device"] and share["overlap_s"] > 0, share
    assert {w["CORRAL_GPU_MILLI"] for w in share["workers"]} == {"500"}
    assert all(w["on"].startswith("cpu (no torch") for w in share["workers"])
    # the corrupted device fails the run as a whole: exit 1, never a pass
    assert done.returncode == 1 and out["passed"] is False
