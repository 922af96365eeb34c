"""The parts of exec, ssh and port-forward on Slurm that need no Slurm: which job and node a
worker's step goes to and what is refused before any srun (`corral.backends.slurm_exec.
locate`), and what the step runs on the node (`corral.backends.worker_step`) beside a live
process standing in for a worker. End to end on a real Slurm: tests/integration/
test_interactive_slurm.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.backends.local_runner import CHILD_RECORD, EXIT_RECORD, write_identity
from corral.backends.records import AttemptRecords
from corral.backends.slurm_exec import StepRefused, locate
from corral.backends.slurm_gang import HET_KEY
from corral.backends.slurm_pilot import JOB_ID_FILE
from corral.backends.worker_step import REFUSED_EXIT, main

from .conftest import make_spec


class _Slurm:
    """A SlurmBackend as `locate` reads it: its records, interpreter, client env, squeue."""

    def __init__(self, root: Path, squeue: str = "") -> None:
        self.records = AttemptRecords(root)
        self.python, self.bin_dir = sys.executable, None
        self.client_env = {"SLURM_CONF": "/etc/slurm.conf", "CORRAL_QUEUE": "not passed on"}
        self.asked: list[tuple[str, ...]] = []
        self._squeue = squeue

    def _slurm(self, *args: str, check: bool = True) -> Any:
        self.asked.append(args)
        return SimpleNamespace(stdout=self._squeue)


def _launched(slurm: _Slurm, engine: dict[str, Any], *, started: bool = True,
              image: str | None = None) -> Path:
    spec = make_spec("web").workers(2).on("gpu1", "gpu2").with_(image=image).build()
    record = slurm.records.create(spec, {"jobs": {}, "notes": {}, **engine})
    for w in (0, 1):
        (record.dir / f"worker-{w}").mkdir()
        if started:
            write_identity(record.dir / f"worker-{w}" / CHILD_RECORD, os.getpid())
    return record.dir


def test_a_step_goes_into_the_workers_job_on_its_node(tmp_path: Path) -> None:
    slurm = _Slurm(tmp_path)
    _launched(slurm, {"jobs": {"0": "41", "1": "42"}})
    step = locate(slurm, "web", 0, 1)  # type: ignore[arg-type]
    argv = step.argv("exec", "--", "true", srun_opts=("-u",))
    assert argv[:8] == ["srun", "-u", "--jobid=42", "--overlap", "--nodes=1", "--ntasks=1",
                        "--nodelist=gpu2", "--job-name=corral-step"]
    assert argv[argv.index("--worker") + 1] == "1" and argv[-2:] == ["--", "true"]
    assert "CORRAL_QUEUE" not in step.env and step.env["SLURM_CONF"] == "/etc/slurm.conf"
    assert slurm.asked == []  # a plain job id: Slurm is not asked


def test_a_pilots_job_and_an_array_tasks_own_id_are_found(tmp_path: Path) -> None:
    pilot = _Slurm(tmp_path / "pilot")
    adir = _launched(pilot, {})
    (adir / "worker-0" / JOB_ID_FILE).write_text("77\n")  # what the pilot writes
    assert locate(pilot, "web", 0, 0).job == "77"  # type: ignore[arg-type]
    array = _Slurm(tmp_path / "array", squeue="93\n")
    _launched(array, {"jobs": {"0": "90_3"}})
    assert locate(array, "web", 0, 0).job == "93"  # type: ignore[arg-type]
    assert array.asked == [("squeue", "-h", "-j", "90_3", "-o", "%A")]


@pytest.mark.parametrize(("engine", "started", "ended", "says"), [
    ({}, True, False, "has not started on Slurm yet"),  # no job id: queued for a pilot
    ({"jobs": {"0": "41"}}, False, False, "has not started on Slurm yet"),
    ({"jobs": {"0": "41"}}, True, True, "has ended"),
], ids=["no-job-yet", "no-process-yet", "ended"])
def test_a_worker_without_a_running_process_is_a_conflict(
        tmp_path: Path, engine: dict[str, Any], started: bool, ended: bool, says: str) -> None:
    slurm = _Slurm(tmp_path)
    adir = _launched(slurm, engine, started=started)
    if ended:
        (adir / "worker-0" / EXIT_RECORD).write_text("{}")
    with pytest.raises(LookupError, match=says):
        locate(slurm, "web", 0, 0)  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="no worker 5"):
        locate(slurm, "web", 0, 5)  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="never launched"):
        locate(slurm, "other", 0, 0)  # type: ignore[arg-type]


def test_a_heterogeneous_gangs_worker_is_its_leaders_component(tmp_path: Path) -> None:
    het = _Slurm(tmp_path)
    _launched(het, {"jobs": {"0": "5+0", "1": "5+1"}, HET_KEY: {"name": "g"}})
    argv = locate(het, "web", 0, 1).argv("shell")  # type: ignore[arg-type]
    assert argv[1:3] == ["--jobid=5", "--het-group=1"] and het.asked == []


def test_an_image_worker_is_refused_naming_pyxis(tmp_path: Path) -> None:
    boxed = _Slurm(tmp_path)
    _launched(boxed, {"jobs": {"0": "41"}}, image="docker.io/library/python:3.11")
    with pytest.raises(StepRefused, match="pyxis") as e:
        locate(boxed, "web", 0, 0)  # type: ignore[arg-type]
    assert e.value.status == 501


# --- on the node: corral.backends.worker_step ---------------------------------------------


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[list[str]]:
    """A live process recorded as worker 0 of `web` attempt 0 (its own session, cwd and
    environment); yields worker_step's options naming it."""
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(["sleep", "60"], cwd=home, start_new_session=True,
                            env={**os.environ, "MARK": "the-workers-own"})
    wdir = tmp_path / "work" / "web" / "0" / "worker-0"
    wdir.mkdir(parents=True)
    write_identity(wdir / CHILD_RECORD, proc.pid)
    yield ["--work-dir", str(tmp_path / "work"), "--workload", "web", "--attempt", "0",
           "--worker", "0"]
    proc.kill()
    proc.wait()


def test_exec_on_the_node_answers_one_json_line(worker: list[str], tmp_path: Path,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["exec", *worker, "--", "sh", "-c", 'echo "$MARK -- $(pwd)"; exit 4']) == 0
    done = json.loads(capfd.readouterr().out)
    assert done == {"exit_code": 4, "stdout": f"the-workers-own -- {tmp_path / 'home'}\n",
                    "stderr": "", "timed_out": False, "truncated": False}
    main(["exec", *worker, "--", "no-such-program-x"])
    assert json.loads(capfd.readouterr().out)["error"] == "invalid"
    main(["exec", *worker[:-1], "3", "--", "true"])  # no such worker: no live process
    assert json.loads(capfd.readouterr().out)["error"] == "conflict"


def test_a_relay_refuses_a_port_the_worker_does_not_listen_on(
        worker: list[str], capfd: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as other:  # listened on by this test, not by the worker
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert main(["relay", *worker, "--port", str(port)]) == REFUSED_EXIT
    status, _, reason = capfd.readouterr().out.strip().partition(" ")
    assert status == "403" and f"does not listen on port {port}" in reason


def test_a_step_beside_a_pilots_worker_wears_the_runs_mark_from_its_start(
        tmp_path: Path) -> None:
    """A reusing pilot takes no next worker while a process of the run lives, found by the
    run's mark in /proc/*/environ (`slurm_pilot.RUN_MARK`): the step started by srun is
    not the worker's child, so it starts again with the worker's mark (review R on
    ebef4bd); the command it runs is its child, whose parent's environment shows the mark."""
    from corral.backends import slurm_pilot, worker_step

    entry = Path(worker_step.__file__).with_name("worker_step_main.py")  # (runs on import)

    assert worker_step.RUN_MARK == slurm_pilot.RUN_MARK
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(["sleep", "60"], cwd=home, start_new_session=True,
                            env={**os.environ, slurm_pilot.RUN_MARK: "run-7"})
    try:
        wdir = tmp_path / "work" / "web" / "0" / "worker-0"
        wdir.mkdir(parents=True)
        write_identity(wdir / CHILD_RECORD, proc.pid)
        env = {k: v for k, v in os.environ.items() if k != slurm_pilot.RUN_MARK}
        done = subprocess.run(
            [sys.executable, "-I", "-S", str(entry), "exec", "--work-dir",
             str(tmp_path / "work"), "--workload", "web", "--attempt", "0", "--worker", "0",
             "--", "sh", "-c", 'tr "\\0" "\\n" < /proc/$PPID/environ'],
            env=env, capture_output=True, text=True, timeout=60, check=True)
        parent_env = json.loads(done.stdout)["stdout"].splitlines()
        assert f"{slurm_pilot.RUN_MARK}=run-7" in parent_env
    finally:
        proc.kill()
        proc.wait()
