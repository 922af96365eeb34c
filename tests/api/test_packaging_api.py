"""Packaging fields at submission: a field the pool's backend cannot honour is a 422 naming it
(never accepted and ignored); the local backend's workdir is checked on this host; the dry run
says what each field will do."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.harness import build, job
from corral.backends.containers import ContainerRuntime
from corral.control.packaging import HONOURED
from corral.store import Store

FIELDS = {"setup": "pip install -r requirements.txt", "image": "pytorch/pytorch:2.3.0",
          "workdir": "/"}


@pytest.mark.parametrize("backend", sorted(set(HONOURED) - {"fake"}))
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_field_the_backend_cannot_honour_is_refused_naming_it(
        store: Store, tmp_path: Path, backend: str, field: str) -> None:
    api = build(store, backend_name=backend)
    value = str(tmp_path) if field == "workdir" else FIELDS[field]
    if field == "workdir" and backend == "agent":  # its hosts get it uploaded (sha256:...)
        value = "sha256:" + "0" * 64
    r = api.client.post("/v1/workloads", json=job(**{field: value}), headers=api.ann)
    if field in HONOURED[backend]:
        assert r.status_code == 201, r.text
        return
    assert r.status_code == 422, r.text
    [problem] = r.json()["problems"]
    assert problem["field"] == field and f"the {backend} backend" in problem["message"]


def test_the_local_workdir_must_be_a_directory_here(store: Store, tmp_path: Path) -> None:
    api = build(store, backend_name="local")
    r = api.client.post("/v1/workloads", json=job(workdir=str(tmp_path / "missing")),
                        headers=api.ann)
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"] == "workdir"
    assert "not a directory on this host" in r.json()["problems"][0]["message"]


def test_the_dry_run_says_what_packaging_fields_do(store: Store, tmp_path: Path) -> None:
    api = build(store)
    r = api.client.post("/v1/dry-run", json=job(setup="make", workdir=str(tmp_path),
                                                 image="ubuntu:22.04"), headers=api.ann)
    notes = " ".join(r.json()["notes"])
    assert "setup: runs with /bin/sh before the command" in notes
    assert f"workdir: {tmp_path} is copied" in notes and "image: workers run in ubuntu:22.04" \
        in notes


VOLUME = {"name": "data", "host_path": "/mnt/data", "mount": "/data"}


@pytest.mark.parametrize(("backend", "fields", "field", "says"), [
    ("local", {"volumes": [{**VOLUME, "claim": "pvc", "host_path": None}]}, "volumes[0].claim",
     "needs the Kubernetes backend"),
    ("agent", {"volumes": [VOLUME]}, "volumes[0].mount", "set mount to /mnt/data"),
    ("ray", {"volumes": [{**VOLUME, "mount": "/mnt/data", "read_only": True}]},
     "volumes[0].read_only", "remove read_only"),
    ("slurm", {"volumes": [VOLUME]}, "volumes[0].mount", "no container"),
    ("local", {"volumes": [{**VOLUME, "mount": "/nope-corral", "host_path": "/nope-corral"}]},
     "volumes[0].host_path", "not a directory on this host"),
    ("agent", {"shm_size": "8GiB"}, "shm_size", "only Kubernetes"),
], ids=["claim-off-k8s", "mount-elsewhere", "read-only-process", "slurm-no-image",
        "local-missing", "shm-off-k8s"])
def test_volumes_a_backend_cannot_give_are_refused_naming_them(
        store: Store, backend: str, fields: dict, field: str, says: str) -> None:
    api = build(store, backend_name=backend)
    r = api.client.post("/v1/workloads", json=job(**fields), headers=api.ann)
    assert r.status_code == 422, r.text
    assert any(p["field"] == field and says in p["message"] for p in r.json()["problems"]), \
        r.text


def test_volumes_kubernetes_can_give_are_accepted_and_explained(store: Store) -> None:
    api = build(store, backend_name="kubernetes")
    fields = {"volumes": [{**VOLUME, "read_only": True}, {"name": "ckpt", "claim": "ckpt-pvc",
                                                          "mount": "/ckpt"}],
              "shm_size": "16GiB"}
    assert api.client.post("/v1/workloads", json=job(**fields), headers=api.ann).status_code \
        == 201
    notes = " ".join(api.client.post("/v1/dry-run", json=job(**fields),
                                     headers=api.ann).json()["notes"])
    assert "volumes: data (the node's /mnt/data) at /data, read-only, also in " \
           "CORRAL_VOLUME_DATA" in notes and "shm_size: /dev/shm of 16384 MiB" in notes


def test_the_local_backend_with_podman_takes_an_image_mounts_volumes_and_explains_it(
        store: Store, tmp_path: Path) -> None:
    api = build(store, backend_name="local")
    api.backend.containers = ContainerRuntime()  # type: ignore[attr-defined]
    api.backend.packaging_fields = frozenset({"setup", "workdir", "image"})  # type: ignore[attr-defined]
    fields = {"image": "ubuntu:22.04", "gpus": 1,
              "volumes": [{**VOLUME, "host_path": str(tmp_path), "read_only": True}]}
    r = api.client.post("/v1/workloads", json=job(**fields), headers=api.ann)
    assert r.status_code == 201, r.text  # mount elsewhere and read-only: a container can
    notes = " ".join(api.client.post("/v1/dry-run", json=job(**fields),
                                     headers=api.ann).json()["notes"])
    assert "each worker runs as `podman run ubuntu:22.04` on its node" in notes
    assert "the container gets none of the planned GPUs" in notes  # no GPU device files here
