"""`image:` on the local backend, for real: workers run in podman containers of the busybox
test image (built here, never pulled, in a podman storage of the test's own:
tests/integration/podman_image.py) and are seen from outside: their exit code, their log, what
they wrote to the checkpoint directory and volumes, their secrets (never on a command line), the
stop contract (SIGTERM in time, or killed and removed at the deadline), and setup run inside the
same container; and once through a real `corral up` (the API accepts image on the local backend,
the dry run says what it will do, the CLI's logs show the output). Skipped where podman cannot
run (`runtime_problem`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.backends.conftest import eventually, make_spec
from tests.integration.podman_image import (
    IMAGE,
    container_backend,
    containers_named,
    image_runtime,
)

from corral.backends import LocalBackend, WorkerState, base
from corral.backends.containers import RUNTIME_ENV, ContainerRuntime
from corral.backends.worker_exec import container_of, exec_beside, worker_pid
from corral.testing.corral_up import CorralServer, stop_workers

# real containers (podman run itself: 83-102 ms of CPU per start here, conmon and crun besides)
pytestmark = pytest.mark.slow

SECRET = "s3cr3t-Value-7f0c"


@pytest.fixture(scope="module")
def runtime() -> Iterator[ContainerRuntime]:
    with image_runtime() as built:
        yield built


@pytest.fixture
def backend(tmp_path: Path, runtime: ContainerRuntime) -> Iterator[LocalBackend]:
    with container_backend(tmp_path / "work", runtime) as local:
        yield local


def _ended(backend: LocalBackend, wid: str) -> list[base.WorkerStatus]:
    def probe() -> list[base.WorkerStatus] | None:
        found = [s for s in backend.poll(time.time()) if s.workload_id == wid]
        return found if found and all(s.state.ended for s in found) else None
    return eventually(probe, f"{wid} to end", timeout=120)


def _log(backend: LocalBackend, wid: str) -> str:
    path = backend.work_dir / wid / "0" / "worker-0.log"
    return path.read_text() if path.exists() else ""


def _wait_log(backend: LocalBackend, wid: str, text: str) -> str:
    return eventually(lambda: text in _log(backend, wid) and _log(backend, wid),
                      f"{text!r} in {wid}'s log", timeout=120)


def _command_lines() -> list[str]:
    lines = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"))
        except OSError:
            continue
    return lines


def test_a_worker_runs_in_the_image_with_its_env_mounts_and_exit_code(
        backend: LocalBackend, tmp_path: Path) -> None:
    volume, ckpt, cwd = tmp_path / "vol", tmp_path / "ckpt", tmp_path / "cwd"
    for folder in (volume, cwd):
        folder.mkdir()
    (volume / "f").write_text("from-the-volume\n")
    script = ("echo in-image $HF_TOKEN_HASHLESS rank=$CORRAL_WORKER_INDEX; cat /data/f; pwd; "
              "test -d /usr || echo busybox-root; echo step-5 > $CORRAL_CHECKPOINT_DIR/"
              "ckpt-5; echo out > result; echo ready; sleep 30; exit 3")
    spec = make_spec("img-env").command("/bin/sh", "-c", script).with_(
        image=IMAGE, working_dir=str(cwd), checkpoint_dir=str(ckpt),
        secret_env={"HF_TOKEN_HASHLESS": SECRET},
        volumes=({"name": "data", "mount": "/data", "host_path": str(volume),
                  "read_only": True},)).build()
    backend.launch(spec)
    log = _wait_log(backend, "img-env", "ready")
    assert f"in-image {SECRET} rank=0" in log  # the secret reached the container's env
    assert "from-the-volume" in log and str(cwd) in log and "busybox-root" in log
    assert (ckpt / "ckpt-5").read_text() == "step-5\n"  # written inside, seen on the host
    assert (cwd / "result").read_text() == "out\n"
    running = _command_lines()
    assert any("corral-img-env-0-0-" in line for line in running)  # podman run is up
    assert not [line for line in running if SECRET in line]  # never on a command line
    backend.stop("img-env", 0, 0.0, "test: done looking")
    [status] = _ended(backend, "img-env")
    assert status.state == WorkerState.STOPPED


def test_corral_exec_runs_inside_the_workers_container(backend: LocalBackend) -> None:
    backend.launch(make_spec("img-exec").command("/bin/sh", "-c", "echo ready; sleep 60")
                   .with_(image=IMAGE, env={"STAGE": "inside"}).build())
    _wait_log(backend, "img-exec", "ready")
    pid = worker_pid(backend.work_dir, "img-exec", 0, 0)
    assert container_of(pid) is not None
    done = exec_beside(pid, ["/bin/sh", "-c", "echo $STAGE; ls /bin/busybox"], timeout_s=60,
                       max_bytes=4096)
    assert (done.exit_code, done.stdout) == (0, "inside\n/bin/busybox\n"), done
    backend.stop("img-exec", 0, 0.0, "test: done")
    _ended(backend, "img-exec")


def test_the_exit_code_of_the_container_is_the_workers(backend: LocalBackend) -> None:
    backend.launch(make_spec("img-exit").command("/bin/sh", "-c", "echo bye; exit 7")
                   .with_(image=IMAGE).build())
    [status] = _ended(backend, "img-exit")
    assert (status.state, status.reason, status.exit_code) == (
        WorkerState.FAILED, base.EXITED, 7)
    first, *_ = _log(backend, "img-exit").splitlines()
    assert first.startswith(f"[corral] image {IMAGE} in container corral-img-exit-0-0-")
    assert "bye" in _log(backend, "img-exit")


def test_a_stop_reaches_the_container_as_sigterm_within_the_grace(
        backend: LocalBackend, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    script = ('trap "cat $CORRAL_PREEMPT_DEADLINE_FILE > $CORRAL_CHECKPOINT_DIR/ckpt-term; '
              'echo saved; exit 0" TERM; echo ready; sleep 60 & wait')
    backend.launch(make_spec("img-term").command("/bin/sh", "-c", script)
                   .with_(image=IMAGE, checkpoint_dir=str(ckpt)).build())
    _wait_log(backend, "img-term", "ready")
    backend.stop("img-term", 0, 30.0, "test: preempted")
    [status] = _ended(backend, "img-term")
    assert (status.state, status.exit_code) == (WorkerState.STOPPED, 0)
    assert float((ckpt / "ckpt-term").read_text()) > 0  # the deadline file, read inside
    assert "saved" in _log(backend, "img-term")


def test_a_container_that_ignores_sigterm_is_killed_and_removed_at_the_deadline(
        backend: LocalBackend, runtime: ContainerRuntime) -> None:
    # sh runs a trap only once its foreground command ends: a 0.2 s sleep answers TERM well
    # inside the grace (`sleep 1` in a 1 s grace left the trap to race the deadline; failed at
    # load 5). The grace is 5 s: the test checks the kill comes after it, not its length, and a
    # loaded 2-core box may take a second to carry TERM through podman and the line to its log
    script = 'trap "echo ignoring TERM" TERM; echo ready; while true; do sleep 0.2; done'
    backend.launch(make_spec("img-kill").command("/bin/sh", "-c", script)
                   .with_(image=IMAGE).build())
    _wait_log(backend, "img-kill", "ready")
    backend.stop("img-kill", 0, 5.0, "test: preempted")
    [status] = _ended(backend, "img-kill")
    assert (status.state, status.reason) == (WorkerState.STOPPED, base.KILLED_AFTER_GRACE)
    assert "ignoring TERM" in _log(backend, "img-kill")  # it got SIGTERM first
    assert "corral-img-kill-" not in containers_named(runtime, every=True)  # nothing left running


def test_setup_runs_in_the_same_container_before_the_command(backend: LocalBackend) -> None:
    backend.launch(make_spec("img-setup").command("/bin/sh", "-c", "cat /tmp/made-by-setup")
                   .with_(image=IMAGE, setup="echo setup ran; echo ready > /tmp/made-by-setup")
                   .build())
    [status] = _ended(backend, "img-setup")
    assert status.state == WorkerState.SUCCEEDED
    log = _log(backend, "img-setup")
    assert log.index("setup ran") < log.index("ready")
    backend.launch(make_spec("img-setup-bad").command("/bin/sh", "-c", "echo command ran")
                   .with_(image=IMAGE, setup="exit 4").build())
    [status] = _ended(backend, "img-setup-bad")
    assert (status.state, status.exit_code) == (WorkerState.FAILED, 4)
    log = _log(backend, "img-setup-bad")
    assert "setup exited 4" in log and "command ran" not in log


def test_corral_up_runs_a_submitted_image_and_the_dry_run_says_how(
        runtime: ContainerRuntime, tmp_path: Path) -> None:
    server = CorralServer(tmp_path / "corral", extra_env={RUNTIME_ENV: runtime.program}).start()
    try:
        data = tmp_path / "data"
        data.mkdir()
        (data / "input").write_text("from-the-host\n")
        spec = tmp_path / "job.yaml"
        spec.write_text(yaml.safe_dump({
            "name": "in-image", "queue": "default", "cpu": 0.1, "memory": "64MiB",
            "image": IMAGE, "volumes": [{"name": "data", "host_path": str(data),
                                         "mount": "/data", "read_only": True}],
            "command": ["/bin/sh", "-c", "cat /data/input; test -d /usr || echo "
                        "busybox-root; echo volume at $CORRAL_VOLUME_DATA"]}))
        dry = server.cli("submit", "--dry-run", str(spec))
        assert f"run {IMAGE}` on its node" in dry.stdout, dry.stdout
        wid = server.cli_json("submit", str(spec))[0]["workloads"][0]["id"]  # type: ignore[index]
        with server.client() as c:
            assert c.wait(wid, timeout_s=120).state == "succeeded"
            logs = c.logs(wid).data
        assert "from-the-host" in logs and "busybox-root" in logs and "volume at /data" in logs
    finally:
        server.stop()
        stop_workers(server.data_dir)


def test_a_ray_node_host_runs_an_image_worker_in_podman(
        runtime: ContainerRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's node host (`ray_worker.NodeHost`) as an object, without a Ray cluster: the path
    its `start` takes for an image (the same code runs in the actor on a real cluster:
    tests/backends/test_ray_packaging.py, when one can start)."""
    from corral.backends import ray_worker

    monkeypatch.setattr(ray_worker, "_node_address", lambda: "127.0.0.1")
    monkeypatch.setattr(ray_worker, "_node_id", lambda: "node-a")
    monkeypatch.setenv(RUNTIME_ENV, runtime.program)
    ckpt, volume = tmp_path / "ckpt", tmp_path / "vol"
    volume.mkdir()
    (volume / "f").write_text("vol-on-ray\n")
    host = ray_worker.NodeHost()
    place = (str(tmp_path / "root"), "ray-img", 0, "tok", 0)
    env = {"CORRAL_CHECKPOINT_DIR": str(ckpt), "CORRAL_WORKER_INDEX": "0",
           "CORRAL_VOLUME_DATA": str(volume), "CUDA_VISIBLE_DEVICES": "1"}
    script = ("test -d /usr || echo busybox-root; cat $CORRAL_VOLUME_DATA/f; "
              "cat /tmp/by-setup; echo c > $CORRAL_CHECKPOINT_DIR/ckpt-1; exit 5")
    host.start(place, ["/bin/sh", "-c", script], env, None, None,
               "echo from-setup > /tmp/by-setup", IMAGE)
    status = eventually(lambda: (s := host.status(place)) and s["state"] == "ended" and s,
                        "the Ray worker to end", timeout=120)
    assert status["exit"]["exit_code"] == 5
    log = ray_worker.WorkerPlace(*place).log_path.read_text()
    assert "busybox-root" in log and "vol-on-ray" in log and "from-setup" in log, log
    assert (ckpt / "ckpt-1").read_text() == "c\n"
    host.reap(place)  # the runner, which wrote its exit record, is waited for
