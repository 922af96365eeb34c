"""Packaging fields on the backends, for real: `setup` run by the local runner before the
command (and its failure as SetupFailed), `workdir` copied into the attempt, `image` refused by
the local backend without a container runtime (run with podman: tests/integration/
test_images_local.py) and set as the pod's image on Kubernetes, where setup runs through a shell
prologue (run here with /bin/sh) and its failure is read back from the termination message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.backends import InvalidLaunchSpec, LocalBackend, WorkerState, base
from corral.backends.kubernetes import KubernetesBackend
from corral.backends.kubernetes_fake import FakeKubernetes
from corral.backends.kubernetes_objects import SETUP_ENV, pod_name
from corral.backends.local import virtual_nodes
from corral.backends.workdir import WORKDIR_COPY, check_workdir

from .conftest import eventually, make_spec

READ_SETUP = ("import pathlib, os; print('cmd sees', pathlib.Path('made-by-setup').read_text(), "
              "os.getcwd())")


def _ended(backend: LocalBackend, wid: str) -> list[tuple[WorkerState, str, int | None, str]]:
    def probe() -> list[tuple[WorkerState, str, int | None, str]] | None:
        found = [(s.state, s.reason, s.exit_code, s.message) for s in backend.poll(time.time())
                 if s.workload_id == wid]
        return found if found and all(s[0].ended for s in found) else None
    return eventually(probe, f"{wid} to end")


def _log(backend: LocalBackend, wid: str) -> str:
    return (backend.work_dir / wid / "0" / "worker-0.log").read_text()


def test_setup_runs_before_the_command_in_the_same_worker(local: LocalBackend,
                                                          tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    spec = make_spec("setup-ok").python(READ_SETUP).with_(
        working_dir=str(cwd), setup="echo setup ran; printf ready > made-by-setup").build()
    local.launch(spec)
    assert _ended(local, "setup-ok") == [(WorkerState.SUCCEEDED, base.EXITED, 0, "")]
    log = _log(local, "setup-ok")
    assert log.index("setup ran") < log.index(f"cmd sees ready {cwd}")


def test_a_failed_setup_is_setup_failed_with_its_code_and_the_command_never_runs(
        local: LocalBackend, tmp_path: Path) -> None:
    marker = tmp_path / "command-ran"
    spec = make_spec("setup-bad").python(f"open({str(marker)!r}, 'w')").with_(
        setup="echo installing; exit 3").build()
    local.launch(spec)
    [(state, reason, code, message)] = _ended(local, "setup-bad")
    assert (state, reason, code) == (WorkerState.FAILED, base.SETUP_FAILED, 3)
    assert "setup exited 3" in message
    assert not marker.exists()
    assert "installing" in _log(local, "setup-bad")


def test_the_workdir_is_copied_and_the_command_runs_in_the_copy(local: LocalBackend,
                                                                tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("import os, pathlib\npathlib.Path('out.txt').write_text("
                                  "os.getcwd())\nprint(open('data.lnk').read())\n")
    (tmp_path / "dataset").write_text("from the dataset")
    os.symlink(tmp_path / "dataset", src / "data.lnk")
    spec = make_spec("wd").command(sys.executable, "train.py").with_(workdir=str(src)).build()
    local.launch(spec)
    assert _ended(local, "wd")[0][0] == WorkerState.SUCCEEDED
    copy = local.work_dir / "wd" / "0" / WORKDIR_COPY
    assert (copy / "out.txt").read_text() == str(copy)  # ran in the copy
    assert not (src / "out.txt").exists()  # the user's tree is untouched
    assert (copy / "data.lnk").is_symlink()  # a link stays a link
    assert "from the dataset" in _log(local, "wd")


def test_a_workdir_over_the_limit_or_missing_is_refused_naming_it(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"x" * 2048)
    with pytest.raises(InvalidLaunchSpec, match=r"workdir: .* holds more than"):
        check_workdir(str(big), limit=1024)
    check_workdir(str(big), limit=4096)
    with pytest.raises(InvalidLaunchSpec, match=r"workdir: .* is not a directory"):
        check_workdir(str(tmp_path / "nope"))


def test_the_local_backend_refuses_an_image_naming_it_without_a_runtime(tmp_path: Path) -> None:
    local = LocalBackend(tmp_path / "work", nodes=virtual_nodes(2, 4), containers=None)
    assert "image" not in local.packaging_fields
    with pytest.raises(InvalidLaunchSpec, match=r"image: the local backend .*no container "
                       r"runtime can run here .*install podman"):
        local.launch(make_spec("img").with_(image="pytorch/pytorch:2.3.0").build())
    assert not (local.work_dir / "img").exists()


@pytest.fixture
def k8s(tmp_path: Path) -> tuple[FakeKubernetes, KubernetesBackend]:
    fake = FakeKubernetes()
    fake.add_node("gpu-a")
    return fake, KubernetesBackend(tmp_path / "k8s", image="corral/default:1",
                                   api_client=fake.api_client())


def test_kubernetes_runs_the_specs_image_else_its_own(
        k8s: tuple[FakeKubernetes, KubernetesBackend]) -> None:
    fake, backend = k8s
    backend.launch(make_spec("k-img").on("gpu-a").with_(
        image="nvcr.io/nvidia/pytorch:24.05-py3").build())
    backend.launch(make_spec("k-default").on("gpu-a").build())
    images = [fake.pod(pod_name(w, 0, 0))["spec"]["containers"][0]["image"]
              for w in ("k-img", "k-default")]
    assert images == ["nvcr.io/nvidia/pytorch:24.05-py3", "corral/default:1"]


@pytest.mark.parametrize(("setup", "code", "ran"), [
    ("echo setting up", 0, True), ("echo broken >&2; exit 4", 4, False)],
    ids=["setup-ok", "setup-fails"])
def test_kubernetes_setup_prologue_runs_for_real(
        k8s: tuple[FakeKubernetes, KubernetesBackend], tmp_path: Path, setup: str, code: int,
        ran: bool) -> None:
    fake, backend = k8s
    marker = tmp_path / "ran"
    backend.launch(make_spec("k-setup").on("gpu-a").command("touch", str(marker)).with_(
        setup=setup).build())
    container = fake.pod(pod_name("k-setup", 0, 0))["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    termination = tmp_path / "termination-log"
    command = [c.replace("/dev/termination-log", str(termination)) for c in container["command"]]
    done = subprocess.run(command, env={"PATH": os.defpath, SETUP_ENV: env[SETUP_ENV]},
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, marker.exists()) == (code, ran)
    if not ran:
        message = termination.read_text()
        assert message.startswith("corral: setup exited 4")
        fake.exit(pod_name("k-setup", 0, 0), code, message=message)
        [status] = [s for s in backend.poll(time.time()) if s.workload_id == "k-setup"]
        assert (status.state, status.reason, status.exit_code) == (
            WorkerState.FAILED, base.SETUP_FAILED, 4)
