"""Packaging fields on a real Slurm: setup run by the worker's runner before the command (a
failure is SetupFailed with its code), image refused naming it where srun has no pyxis, and the
pyxis step a worker runs in where it has."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import InvalidLaunchSpec, WorkerState, base
from corral.backends.slurm import SlurmBackend, container_argv
from corral.testing.slurm import SlurmCluster

from .conftest import eventually, make_spec

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def backend(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[SlurmBackend]:
    yield SlurmBackend(tmp_path_factory.mktemp("slurm-pack"), env=slurm_cluster.env)


def _ended(backend: SlurmBackend, wid: str) -> list[tuple[WorkerState, str, int | None]]:
    def probe() -> list[tuple[WorkerState, str, int | None]] | None:
        found = [(s.state, s.reason, s.exit_code) for s in backend.poll(time.time())
                 if s.workload_id == wid]
        return found if found and all(s[0].ended for s in found) else None
    return eventually(probe, f"{wid} to end", timeout=60)


def _log(backend: SlurmBackend, wid: str) -> str:
    return backend.read_logs(wid, 0, 0, max_bytes=1 << 20)[0].decode()


def test_setup_runs_before_the_command_and_its_failure_is_setup_failed(
        backend: SlurmBackend, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    backend.launch(make_spec("slurm-setup-ok").on("gpu1").python("print('command ran')")
                   .with_(setup="echo setup ran").build())
    backend.launch(make_spec("slurm-setup-bad").on("gpu2").python(
        f"open({str(marker)!r}, 'w')").with_(setup="exit 5").build())
    assert _ended(backend, "slurm-setup-ok") == [(WorkerState.SUCCEEDED, base.EXITED, 0)]
    log = _log(backend, "slurm-setup-ok")
    assert log.index("setup ran") < log.index("command ran")
    assert _ended(backend, "slurm-setup-bad") == [(WorkerState.FAILED, base.SETUP_FAILED, 5)]
    assert not marker.exists()


def test_an_image_is_refused_naming_it_without_pyxis(backend: SlurmBackend) -> None:
    assert not backend.has_pyxis()  # this test cluster has no pyxis plugin
    assert backend.packaging_fields == frozenset({"setup"})
    with pytest.raises(InvalidLaunchSpec, match=r"image: .*pyxis is not installed"):
        backend.launch(make_spec("slurm-img").on("gpu1").with_(image="ubuntu:22.04").build())


def test_with_pyxis_the_worker_runs_in_a_container_step(backend: SlurmBackend) -> None:
    assert container_argv(None, None, ("python", "t.py")) == ["python", "t.py"]
    assert container_argv("nvcr.io/nvidia/pytorch:24.05-py3", "/work", (sys.executable,)) == [
        "srun", "--ntasks=1", "--container-image=nvcr.io/nvidia/pytorch:24.05-py3",
        "--container-workdir=/work", sys.executable]
