"""The busybox test image on real podman, shared by the `image:` tests (test_images_local,
test_images_shell, test_images_agent, tests/backends/test_ray_packaging): an image built here
from busybox-static (a rootfs tarball, `podman import`; never pulled), in a podman storage of the
caller's own (a wrapper adds --root/--runroot/--storage-driver vfs), and the local backend that
runs its workers in it. Skipped where podman cannot run (`runtime_problem`) or busybox-static is
missing."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from corral.backends import LocalBackend
from corral.backends.containers import ContainerRuntime, runtime_problem
from corral.backends.local import virtual_nodes

BUSYBOX = Path("/bin/busybox")
IMAGE = "localhost/corral-test:bb"
APPLETS = ("sh", "echo", "cat", "env", "ls", "sleep", "pwd", "grep", "tee", "test", "printf")


def skip_reason() -> str | None:
    """Why the image tests cannot run here, or None."""
    problem = runtime_problem()
    if problem is not None:
        return problem
    if not BUSYBOX.is_file():
        return "busybox-static is not installed (scripts/install-system-deps installs it)"
    return None


def build_test_image(root: Path, applets: tuple[str, ...] = APPLETS) -> ContainerRuntime:
    """A podman wrapper over a storage under `root` holding IMAGE: busybox and its applets.
    `root/run` must stay within podman's 50 characters (`image_runtime` sees to it)."""
    rootfs = root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for folder in ("tmp", "etc", "proc", "sys", "dev"):
        (rootfs / folder).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in applets:
        (rootfs / "bin" / applet).symlink_to("busybox")
    with tarfile.open(root / "rootfs.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    wrapper = root / "podman"
    wrapper.write_text(f'#!/bin/sh\nexec podman --root {root}/storage --runroot {root}/run '
                       f'--storage-driver vfs "$@"\n')
    wrapper.chmod(0o755)
    subprocess.run([str(wrapper), "import", str(root / "rootfs.tar"), IMAGE], check=True,
                   capture_output=True, timeout=120)
    return ContainerRuntime(program=str(wrapper), pull="never")


def remove_all_containers(runtime: ContainerRuntime) -> None:
    """Whatever a failed test left running (SIGKILLed `podman run`s leave their containers),
    removed and unmounted before pytest deletes the storage, which the containers' own cleanup
    could no longer find."""
    subprocess.run([runtime.program, "rm", "--all", "--force", "--time", "0"],
                   capture_output=True, timeout=120, check=False)


@contextmanager
def image_runtime(applets: tuple[str, ...] = APPLETS) -> Iterator[ContainerRuntime]:
    """The test image's runtime (a module fixture's body); skips where podman cannot run; every
    container removed and the storage deleted at the end.

    Its root is a short temp dir of its own, not pytest's tmp_path: podman refuses a runroot
    longer than 50 characters, and pytest-xdist's per-worker base dir
    (/tmp/pytest-of-root/pytest-N/popen-gwN/...) made the runroot 52 and every image test of the
    run error at setup."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="corral-pod-"))
    try:
        runtime = build_test_image(root, applets)
        try:
            yield runtime
        finally:
            remove_all_containers(runtime)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def container_backend(work: Path, runtime: ContainerRuntime) -> Iterator[LocalBackend]:
    """A local backend (one virtual node, 2 GPUs) whose image workers run in `runtime`; the
    workers a failed test left are stopped at the end."""
    local = LocalBackend(work, nodes=virtual_nodes(1, 2), containers=runtime)
    try:
        yield local
    finally:
        for workload_id, attempt in local.launched():
            local.stop(workload_id, attempt, 0.0, "test ended")


def containers_named(runtime: ContainerRuntime, *, every: bool = False) -> str:
    """`podman ps` names, one a line (with `every`, stopped containers too)."""
    return subprocess.run([runtime.program, "ps", *(["-a"] if every else []), "--format",
                           "{{.Names}}"], capture_output=True, text=True, check=True,
                          timeout=60).stdout
