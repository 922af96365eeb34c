"""Non-NVIDIA device hand-out and the progress contract on the local backend, for real: the
workers are processes that write what they found in their environment (no accelerator is
needed: the variables are what is tested, not the devices behind them)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import LocalBackend, WorkerState, local_runner
from corral.backends.local import virtual_nodes
from corral.backends.progress import Progress
from corral.core.model import LABEL_VENDOR

from .conftest import eventually, make_spec

DUMP_DEVICES = """
import json, os, pathlib
names = ("CUDA_", "ROCR_", "HIP_", "HABANA_", "NEURON_", "TPU_")
seen = {k: v for k, v in os.environ.items() if k.startswith(names)}
out = pathlib.Path(os.environ["OUT"]) / f"env-{os.environ['CORRAL_WORKER_INDEX']}.json"
out.write_text(json.dumps(seen))
"""

WRITE_PROGRESS = """
import json, os, pathlib, time
path = pathlib.Path(os.environ["CORRAL_PROGRESS_FILE"])
tmp = path.with_name(".progress.tmp")
tmp.write_text(json.dumps({"steps": 120, "total_steps": 1000, "steps_per_s": 2.5}))
os.rename(tmp, path)
out = pathlib.Path(os.environ["OUT"])
(out / "wrote").write_text("1")
while not (out / "go").exists():
    time.sleep(0.02)
"""


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "work"
    yield path
    for record in [*path.glob("*/*/worker-*/child.json"), *path.glob("*/*/worker-*/spawn.json")]:
        identity = local_runner.read_identity(record)
        if identity is not None and local_runner.is_alive(identity):
            local_runner.kill_group(identity.pid, signal.SIGKILL)


def _run(backend: LocalBackend, spec_id: str, out: Path, nodes: tuple[str, ...],
         workers: int = 1) -> list[dict[str, str]]:
    spec = (make_spec(spec_id).workers(workers).on(*nodes).devices(1, 3).python(DUMP_DEVICES)
            .with_(env={"OUT": str(out)}).build())
    backend.launch(spec)

    def ended() -> bool | None:
        got = [s for s in backend.poll(0.0) if s.workload_id == spec_id]
        return True if got and all(s.state.ended for s in got) else None
    eventually(ended, f"{spec_id} to end")
    assert all(s.state == WorkerState.SUCCEEDED for s in backend.poll(0.0)
               if s.workload_id == spec_id)
    return [json.loads((out / f"env-{i}.json").read_text()) for i in range(workers)]


def test_a_worker_on_an_amd_node_gets_rocm_variables_and_no_cuda(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the control plane's own shell names NVIDIA devices: none of it may reach an AMD worker
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "7")
    nodes = [*virtual_nodes(1, 4, gpu_model="MI300X", prefix="amd"),
             *virtual_nodes(1, 4, gpu_model="H100", prefix="nv")]
    backend = LocalBackend(work, nodes=nodes)
    out = tmp_path / "out"
    out.mkdir()
    amd, nvidia = _run(backend, "mixed", out, ("amd-0", "nv-0"), workers=2)
    assert amd == {"ROCR_VISIBLE_DEVICES": "1,3", "HIP_VISIBLE_DEVICES": "0,1"}
    assert nvidia == {"CUDA_VISIBLE_DEVICES": "1,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@pytest.mark.parametrize(("vendor", "expected"), [
    ("intel", {"HABANA_VISIBLE_MODULES": "1,3", "HABANA_VISIBLE_DEVICES": "1,3"}),
    ("aws", {"NEURON_RT_VISIBLE_CORES": "1,3"}),
    ("google", {"TPU_VISIBLE_CHIPS": "1,3"}),
])
def test_the_node_label_names_the_vendor_whatever_the_model(
    work: Path, tmp_path: Path, vendor: str, expected: dict[str, str],
) -> None:
    node = virtual_nodes(1, 4, gpu_model="virtual-accelerator", prefix="x")[0]
    labelled = dataclasses.replace(node, labels=((LABEL_VENDOR, vendor),))
    out = tmp_path / "out"
    out.mkdir()
    assert _run(LocalBackend(work, nodes=[labelled]), "one", out, ("x-0",)) == [expected]


def test_the_backend_reads_what_a_worker_wrote_to_its_progress_file(
    work: Path, tmp_path: Path,
) -> None:
    backend = LocalBackend(work, nodes=virtual_nodes(1, 4))
    out = tmp_path / "out"
    out.mkdir()
    spec = (make_spec("train").on("local-0").python(WRITE_PROGRESS)
            .with_(env={"OUT": str(out)}).build())
    backend.launch(spec)
    assert backend.progress("train", 0) in ({}, {0: Progress(120, 2.5, 1000)})
    eventually(lambda: (out / "wrote").exists() or None, "the worker's progress")
    assert backend.progress("train", 0) == {0: Progress(120, 2.5, 1000)}
    (out / "go").write_text("1")
    assert backend.progress("nothing", 0) == {}
    assert not os.environ.get("CORRAL_PROGRESS_FILE")  # the worker's, never the server's
