"""`image:` on the local backend without running a container: what `podman run` is given (env by
name only, mounts at their host paths, devices through CDI, ulimits a process without
CAP_SYS_RESOURCE may set), what is refused and why (no runtime, GPUs without CDI, a hybrid
cgroup layout crun refuses), and the runner's `--container` option. Real containers:
tests/integration/test_images_local.py."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from corral.backends import InvalidLaunchSpec, LocalBackend, containers, local_runner
from corral.backends.containers import ContainerRuntime, gpu_handout, runtime_problem
from corral.backends.local import virtual_nodes
from corral.backends.local_runner import parse_args

from .conftest import eventually, make_spec

RUNTIME = ContainerRuntime(program="podman", pull="never")
SECRET = "hf_unit-Secret-31"


def _runner_argv(backend: LocalBackend, **fields: object) -> tuple[list[str], dict[str, str]]:
    spec = make_spec("img").command("python", "train.py").with_(
        image="nvcr.io/nvidia/pytorch:24.05-py3", **fields).build()
    return backend.worker_process(spec, 0, backend.work_dir / "img" / "0", 29500)


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "work", nodes=virtual_nodes(1, 4), containers=RUNTIME)


def test_the_worker_is_podman_run_with_env_by_name_and_secrets_off_the_command_line(
        backend: LocalBackend, tmp_path: Path) -> None:
    argv, env = _runner_argv(backend, env={"EPOCHS": "3"}, secret_env={"HF_TOKEN": SECRET},
                             checkpoint_dir=str(tmp_path / "ckpt"), working_dir=str(tmp_path))
    options, command = parse_args(argv[argv.index("--record-dir"):])
    assert options["--container"] == command[command.index("--name") + 1]
    assert command[:3] == ["podman", "run", "--rm"] and "--network=host" in command
    assert command[-3:] == ["nvcr.io/nvidia/pytorch:24.05-py3", "python", "train.py"]
    assert not [a for a in argv if SECRET in a or "EPOCHS=" in a]  # values stay off `ps`
    passed = {command[i + 1] for i, a in enumerate(command) if a == "--env"}
    assert {"HF_TOKEN", "EPOCHS", "CORRAL_WORKER_INDEX", "CORRAL_CHECKPOINT_DIR"} <= passed
    assert "PATH" not in passed and "HOME" not in passed  # the image's own, not the host's
    assert env["HF_TOKEN"] == SECRET  # podman reads it from its (the runner's) environment
    mounts = {command[i + 1] for i, a in enumerate(command) if a == "-v"}
    adir = backend.work_dir / "img" / "0"
    assert {f"{adir}:{adir}:ro", f"{tmp_path}:{tmp_path}",
            f"{tmp_path / 'ckpt'}:{tmp_path / 'ckpt'}"} <= mounts
    assert command[command.index("-w") + 1] == str(tmp_path)
    assert "--uid" not in argv and "--setup-file" not in argv


def test_volumes_are_mounted_where_asked_and_read_only_when_asked(backend: LocalBackend,
                                                                  tmp_path: Path) -> None:
    argv, _ = _runner_argv(backend, volumes=(
        {"name": "data", "mount": "/data", "host_path": str(tmp_path), "read_only": True},
        {"name": "out", "mount": "/out", "host_path": "/srv/out", "read_only": False}))
    mounts = {argv[i + 1] for i, a in enumerate(argv) if a == "-v"}
    assert {f"{tmp_path}:/data:ro", "/srv/out:/out"} <= mounts


def test_setup_runs_in_the_container_through_a_prologue(backend: LocalBackend) -> None:
    argv, env = _runner_argv(backend, setup="pip install -e .")
    assert env[containers.SETUP_ENV] == "pip install -e ."
    image_at = argv.index("nvcr.io/nvidia/pytorch:24.05-py3")
    assert argv[image_at + 1:image_at + 3] == ["/bin/sh", "-c"]
    assert argv[-3:] == ["corral-setup", "python", "train.py"]
    assert "pip install" not in " ".join(argv)


def test_ulimits_never_exceed_what_this_process_may_set() -> None:
    argv = RUNTIME.run_argv("img", ["true"], name="n", env_names=[], mounts=[], workdir=None,
                            devices=[])
    limits = dict(argv[i + 1].split("=") for i, a in enumerate(argv) if a == "--ulimit")
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = int(limits["nofile"].split(":")[1])
    assert nofile <= hard_nofile or hard_nofile == resource.RLIM_INFINITY
    assert int(limits["nproc"].split(":")[1]) <= 32768


def test_gpus_go_through_cdi_and_are_renumbered_inside() -> None:
    cdi = ContainerRuntime(cdi=True, gpu_files=True)
    argv = cdi.run_argv("img", ["true"], name="n", env_names=["CORRAL_QUEUE"], mounts=[],
                        workdir=None, devices=[2, 5],
                        env_values=containers.container_gpu_env(cdi, [2, 5]))
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--device"] == [
        "nvidia.com/gpu=2", "nvidia.com/gpu=5"]
    assert "CUDA_VISIBLE_DEVICES=0,1" in argv


@pytest.mark.parametrize(("runtime", "devices", "refused", "says"), [
    (ContainerRuntime(cdi=False, gpu_files=True), [0], True, "nvidia-ctk cdi generate"),
    (ContainerRuntime(cdi=False, gpu_files=False), [0, 1], False, "no GPU device files"),
    (ContainerRuntime(cdi=True, gpu_files=True), [3], False, "through CDI"),
    (ContainerRuntime(cdi=False, gpu_files=True), [], False, ""),
], ids=["gpus-without-cdi", "cpu-host", "cdi", "no-gpus"])
def test_gpu_handout(runtime: ContainerRuntime, devices: list[int], refused: bool,
                     says: str) -> None:
    refusal, note = gpu_handout(runtime, devices)
    assert (refusal is not None) == refused
    assert says in (refusal or note)


def test_gpus_without_a_cdi_spec_are_refused_naming_image(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "work", nodes=virtual_nodes(1, 4),
                           containers=ContainerRuntime(gpu_files=True))
    spec = make_spec("img").command("true").with_(image="ubuntu:22.04").build()
    with pytest.raises(InvalidLaunchSpec, match=r"image: .*no CDI spec"):
        backend.launch(spec)


def test_a_program_missing_on_the_host_is_fine_in_an_image(backend: LocalBackend) -> None:
    spec = make_spec("img").command("only-in-the-image").with_(image="ubuntu:22.04").build()
    backend._check_spec(spec)
    assert "image" in backend.packaging_fields


def test_the_root_as_working_dir_is_refused_in_an_image(backend: LocalBackend) -> None:
    spec = make_spec("img").command("true").with_(image="ubuntu:22.04", working_dir="/").build()
    with pytest.raises(InvalidLaunchSpec, match=r"working_dir: '/' would be mounted"):
        backend._check_spec(spec)


def test_a_hybrid_cgroup_layout_crun_refuses_is_named(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    controllers = tmp_path / "cgroup.controllers"
    monkeypatch.setattr(containers, "_HYBRID_UNIFIED", controllers)
    monkeypatch.setattr(containers.shutil, "which", lambda program: f"/usr/bin/{program}")
    controllers.write_text("hugetlb\n")
    assert "hybrid mode with hugetlb" in (runtime_problem() or "")
    assert containers.detect_runtime() is None
    controllers.write_text("\n")
    assert runtime_problem() is None
    monkeypatch.setattr(containers.shutil, "which", lambda program: None)
    assert "podman is not installed" in (runtime_problem() or "")


def test_the_container_name_is_unique_per_work_dir_and_worker(tmp_path: Path) -> None:
    names = {containers.container_name(tmp_path / d, "wl", 0, w) for d in "ab" for w in (0, 1)}
    assert len(names) == 4


def test_the_runner_removes_the_container_when_it_kills_at_the_deadline(tmp_path: Path) -> None:
    """Without podman: a stand-in 'podman' whose `run` ignores SIGTERM and whose `rm` notes its
    arguments. The runner must follow its SIGKILL with `rm --force ... NAME`, since a real
    container's conmon is outside the group the SIGKILL reaches."""
    fake = tmp_path / "podman"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = rm ]; then echo "$@" >> {tmp_path}/removed; exit 0; '
                    f'fi\ntrap "" TERM\n: > {tmp_path}/trapped\nwhile true; do sleep 0.05; done\n')
    fake.chmod(0o755)
    deadline = tmp_path / "deadline"
    deadline.write_text("1.0\n")  # long past: SIGTERM, then SIGKILL at once
    python, *runner = local_runner.runner_argv(sys.executable)
    done = subprocess.run([python, *runner, "--record-dir", str(tmp_path / "rec"),
                           "--deadline-file", str(deadline), "--container", "corral-x-0-0-ab",
                           "--", str(fake), "run", "--name", "corral-x-0-0-ab", "img"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # the runner's own start saw the deadline first
    # a worker started before the stop came: the runner signals it, then removes its container
    (tmp_path / "rec2").mkdir()
    proc = subprocess.Popen([python, *runner, "--record-dir", str(tmp_path / "rec2"),
                             "--deadline-file", str(tmp_path / "later"), "--container",
                             "corral-x-0-0-ab", "--", str(fake), "run", "img"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp_path / "trapped").unlink(missing_ok=True)
    eventually(lambda: (tmp_path / "rec2" / "child.json").exists(), "the worker to start")
    # its SIGTERM ignored before the stop comes (a load of 15-38 once let the TERM in first)
    eventually(lambda: (tmp_path / "trapped").exists(), "the worker to ignore SIGTERM")
    (tmp_path / "later").write_text("1.0\n")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert (tmp_path / "removed").read_text() == "rm --force --ignore --time 0 corral-x-0-0-ab\n"
    ended = json.loads((tmp_path / "rec2" / "exit.json").read_text())
    assert (ended["stopped"], ended["reason"]) == (True, "KilledAfterGrace")
