"""`setup` on a real Ray cluster: run by the worker's runner on its node before the command;
a failure is SetupFailed with its code and the command never runs. `image`: the worker runs in
a podman container on its node (a busybox image built here, never pulled)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.test_ray import backend, gpu_nodes, log_of, wait_ended  # noqa: F401 (fixtures)
from corral.backends import WorkerState, base

from .conftest import make_spec

pytestmark = pytest.mark.ray


def test_setup_runs_first_and_its_failure_is_setup_failed(
        backend, gpu_nodes: list[str], tmp_path: Path) -> None:  # noqa: F811
    marker = tmp_path / "ran"
    backend.launch(make_spec("ray-setup-ok").on(gpu_nodes[0]).devices(0)
                   .python("print('command ran')").with_(setup="echo setup ran").build())
    backend.launch(make_spec("ray-setup-bad").on(gpu_nodes[0]).devices(1)
                   .python(f"open({str(marker)!r}, 'w')").with_(setup="exit 6").build())
    assert [s.state for s in wait_ended(backend, "ray-setup-ok")] == [WorkerState.SUCCEEDED]
    log = log_of(backend, "ray-setup-ok", 0)
    assert log.index("setup ran") < log.index("command ran")
    [bad] = wait_ended(backend, "ray-setup-bad")
    assert (bad.state, bad.reason, bad.exit_code) == (WorkerState.FAILED, base.SETUP_FAILED, 6)
    assert not marker.exists()
    for wid in ("ray-setup-ok", "ray-setup-bad"):
        backend.release(wid, 0)


@pytest.fixture(scope="module")
def ray_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The busybox test image in podman's default storage (the one a Ray node's host uses),
    under a tag of this run's own; removed afterwards."""
    from integration.podman_image import IMAGE, image_runtime

    tag = f"localhost/corral-test-ray:{uuid.uuid4().hex[:8]}"
    archive = tmp_path_factory.mktemp("ray-image-archive") / "image.tar"
    # built in image_runtime's short root (podman's runroot: 50 characters at most), saved
    with image_runtime() as local:
        for step in (["tag", IMAGE, tag], ["save", "-o", str(archive), tag]):
            subprocess.run([local.program, *step], check=True, capture_output=True, timeout=120)
    subprocess.run(["podman", "load", "-i", str(archive)], check=True, capture_output=True,
                   timeout=120)
    yield tag
    subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, timeout=120,
                   check=False)


def test_an_image_runs_in_podman_on_the_ray_node(
        backend, gpu_nodes: list[str], ray_image: str, tmp_path: Path) -> None:  # noqa: F811
    assert "image" in backend.packaging_fields
    ckpt = tmp_path / "ckpt"
    script = ("test -d /usr || echo busybox-root rank=$CORRAL_WORKER_INDEX; "
              "echo c > $CORRAL_CHECKPOINT_DIR/ckpt-1; cat /tmp/by-setup; exit 5")
    backend.launch(make_spec("ray-image").on(gpu_nodes[0]).devices(0)
                   .command("/bin/sh", "-c", script)
                   .with_(image=ray_image, checkpoint_dir=str(ckpt),
                          setup="echo from-setup > /tmp/by-setup").build())
    [status] = wait_ended(backend, "ray-image")
    assert (status.state, status.exit_code) == (WorkerState.FAILED, 5)
    log = log_of(backend, "ray-image", 0)
    assert "busybox-root rank=0" in log and "from-setup" in log, log
    assert (ckpt / "ckpt-1").read_text() == "c\n"
    backend.release("ray-image", 0)
