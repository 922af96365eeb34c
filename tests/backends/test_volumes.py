"""Volumes on the backends: a real local worker finds its volume in CORRAL_VOLUME_<NAME>; a
Kubernetes pod gets hostPath and PVC volumes mounted where asked (read-only where asked) and a
memory-backed /dev/shm of the asked size; a Slurm worker in an image gets them as pyxis
--container-mounts."""

from __future__ import annotations

import time
from pathlib import Path

from corral.backends import LocalBackend, WorkerState
from corral.backends.kubernetes import KubernetesBackend
from corral.backends.kubernetes_fake import FakeKubernetes
from corral.backends.kubernetes_objects import pod_name
from corral.backends.slurm import container_argv

from .conftest import eventually, make_spec

DATA = {"name": "data", "mount": "/data", "host_path": "/mnt/datasets", "claim": None,
        "read_only": True}
CKPT = {"name": "ckpt", "mount": "/ckpt", "host_path": None, "claim": "ckpt-pvc",
        "read_only": False}


def test_a_local_worker_finds_its_volume(local: LocalBackend, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("a dataset row")
    volume = {"name": "data", "mount": str(data), "host_path": str(data), "claim": None,
              "read_only": False}
    spec = make_spec("vol").python(
        "import os; print(open(os.environ['CORRAL_VOLUME_DATA'] + '/x.txt').read())").with_(
        volumes=(volume,), env={"CORRAL_VOLUME_DATA": str(data)}).build()
    local.launch(spec)

    def ended() -> bool:
        return any(s.state.ended for s in local.poll(time.time()) if s.workload_id == "vol")
    eventually(ended, "the worker to end")
    [status] = [s for s in local.poll(time.time()) if s.workload_id == "vol"]
    assert status.state == WorkerState.SUCCEEDED
    assert "a dataset row" in (local.work_dir / "vol" / "0" / "worker-0.log").read_text()


def test_a_pod_gets_its_volumes_and_shm(tmp_path: Path) -> None:
    fake = FakeKubernetes()
    fake.add_node("gpu-a")
    backend = KubernetesBackend(tmp_path, image="img:1", api_client=fake.api_client())
    backend.launch(make_spec("k-vol").on("gpu-a").with_(volumes=(DATA, CKPT), shm_mib=16384)
                   .build())
    pod = fake.pod(pod_name("k-vol", 0, 0))
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["vol-data"]["hostPath"] == {"path": "/mnt/datasets", "type": "Directory"}
    assert volumes["vol-ckpt"]["persistentVolumeClaim"] == {"claimName": "ckpt-pvc",
                                                            "readOnly": False}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16384Mi"}
    mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert (mounts["/data"]["readOnly"], mounts["/ckpt"]["readOnly"]) == (True, False)
    assert mounts["/dev/shm"]["name"] == "dshm"
    assert "/etc/corral" in mounts  # the preemption deadline's mount stays


def test_a_slurm_worker_in_an_image_gets_its_volumes_as_pyxis_mounts() -> None:
    rw = {**DATA, "name": "out", "mount": "/out", "host_path": "/scratch/out", "read_only": False}
    argv = container_argv("img:1", None, ("python", "t.py"), (DATA, rw, CKPT))
    assert "--container-mounts=/mnt/datasets:/data:ro,/scratch/out:/out" in argv
    assert argv[-2:] == ["python", "t.py"]
