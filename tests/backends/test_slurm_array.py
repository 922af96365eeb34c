"""Job arrays in the Slurm backend: which launches of a batch share one ``sbatch --array``
(pure), and on a real Slurm: an array's tasks map back to their own workers exactly (each
runs its own command with its own environment and log), a refused member leaves the others,
and a control plane that crashed between ``sbatch`` and saving the task ids finds every task
again by the array's name and index, without submitting anything twice. Arrays are the path
of single workers with warm slots off (`warm_slots=0`; on by default, they go to pilots).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.backends import InvalidLaunchSpec, WorkerState
from corral.backends.base import LaunchSpec, WorkerStatus
from corral.backends.records import LAUNCH
from corral.backends.slurm import SlurmBackend
from corral.backends.slurm_array import (
    ARRAY_PREFIX,
    array_name,
    dispatch_script,
    group_for_arrays,
    task_job_id,
)
from corral.testing.slurm import SlurmCluster

from .conftest import SHOW_ENV, eventually, make_spec

WAIT_FOR_FILE = ("import os, sys, time\nprint('started', os.environ['CORRAL_WORKLOAD_ID'], "
                 "flush=True)\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.05)\n")

GROUPS = [
    pytest.param(["a", "a", None, "b", "a"], 10, [[0, 1, 4]], [2, 3], id="one-array-and-lone"),
    pytest.param(["a", "b", "c"], 10, [], [0, 1, 2], id="no-two-alike"),
    pytest.param(["a"] * 5, 2, [[0, 1], [2, 3]], [4], id="cut-at-max-tasks"),
    pytest.param([None, None], 10, [], [0, 1], id="nothing-may-join"),
    pytest.param([], 10, [], [], id="empty"),
]


@pytest.mark.parametrize(("keys", "max_tasks", "arrays", "lone"), GROUPS)
def test_group_for_arrays(keys: list[str | None], max_tasks: int, arrays: list[list[int]],
                          lone: list[int]) -> None:
    assert group_for_arrays(keys, lambda k: k, max_tasks) == (arrays, lone)


def test_dispatch_script_runs_task_i_and_refuses_unknown_tasks(tmp_path: Path) -> None:
    scripts = []
    for i in range(3):
        p = tmp_path / f"task {i}.sh"  # a space: the path must be quoted
        p.write_text(f"echo task-{i}\n")
        scripts.append(p)
    dispatch = tmp_path / "dispatch.sh"
    dispatch.write_text(dispatch_script("corral-array.x", scripts))
    for i in range(3):
        out = subprocess.run(["/bin/sh", str(dispatch)], env={"SLURM_ARRAY_TASK_ID": str(i)},
                             capture_output=True, text=True, check=True)
        assert out.stdout == f"task-{i}\n"
    missing = subprocess.run(["/bin/sh", str(dispatch)], env={"SLURM_ARRAY_TASK_ID": "3"},
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "no task 3" in missing.stderr


def test_array_names_are_unique_and_task_ids_are_slurms() -> None:
    assert len({array_name() for _ in range(100)}) == 100
    assert array_name().startswith(ARRAY_PREFIX)
    assert task_job_id("41", 7) == "41_7"


# --- on a real Slurm ---------------------------------------------------------------------------


def statuses_of(backend: SlurmBackend, ids: list[str]) -> dict[str, WorkerStatus]:
    return {s.workload_id: s for s in backend.poll(time.time()) if s.workload_id in ids}


def wait_all(backend: SlurmBackend, ids: list[str], state: WorkerState) -> None:
    def done() -> bool:  # every worker (a gang's too), not one per workload
        now = [s for s in backend.poll(time.time()) if s.workload_id in ids]
        return {s.workload_id for s in now} == set(ids) and all(s.state == state for s in now)
    eventually(done, f"{ids} to be {state}", timeout=60)


def arrays_named(cluster: SlurmCluster) -> dict[str, list[str]]:
    """array name -> its task ids, as Slurm lists them (one task per line)."""
    out: dict[str, list[str]] = {}
    for line in cluster.run("squeue", "-h", "-r", "-t", "all", "-o", "%j|%i").stdout.split():
        name, job = line.split("|")
        if name.startswith(ARRAY_PREFIX):
            out.setdefault(name, []).append(job)
    return out


@pytest.mark.slurm
def test_single_workers_of_one_shape_go_as_one_array_and_map_back_exactly(
        slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, warm_slots=0)
    before = set(arrays_named(slurm_cluster))
    ids = [f"arr-{i}" for i in range(3)]
    specs = [make_spec(wid).on("gpu1").devices(i).python(SHOW_ENV).build()
             for i, wid in enumerate(ids)]
    gang = make_spec("arr-gang").workers(2).on("gpu2", "gpu3").python(SHOW_ENV).build()
    bad = make_spec("arr-bad").on("gpu1").with_(working_dir="/no/such/dir").build()
    errors = backend.launch_many([*specs, bad, gang])
    assert errors[:3] == [None] * 3 and errors[4] is None
    assert isinstance(errors[3], InvalidLaunchSpec)
    [name] = set(arrays_named(slurm_cluster)) - before
    engines = [backend.records.find(wid, 0).engine for wid in ids]
    assert [e["array"] for e in engines] == [{"name": name, "task": i} for i in range(3)]
    array_id = engines[0]["jobs"]["0"].split("_")[0]
    assert [e["jobs"]["0"] for e in engines] == [task_job_id(array_id, i) for i in range(3)]
    assert sorted(arrays_named(slurm_cluster)[name]) == [task_job_id(array_id, i)
                                                         for i in range(3)]
    wait_all(backend, [*ids, "arr-gang"], WorkerState.SUCCEEDED)
    for wid in ids:  # each task ran its own worker: its own env, its own log
        text = backend.read_logs(wid, 0, 0, max_bytes=1 << 20)[0].decode()
        env = json.loads(text.splitlines()[-1])
        assert (env["CORRAL_WORKLOAD_ID"], env["CORRAL_NODE_ID"]) == (wid, "gpu1")
        assert env["CORRAL_WORKERS"] == "1"
    for wid in [*ids, "arr-gang"]:
        backend.release(wid, 0)
    assert statuses_of(backend, ids) == {}


@pytest.mark.slurm
def test_a_restarted_control_plane_finds_array_tasks_by_name_and_runs_nothing_twice(
        slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    work, gate = tmp_path / "work", tmp_path / "go"
    backend = SlurmBackend(work, env=slurm_cluster.env, warm_slots=0)
    before = set(arrays_named(slurm_cluster))
    ids = [f"arr-crash-{i}" for i in range(3)]
    specs: list[LaunchSpec] = [
        make_spec(wid).on("gpu2").devices(i).command(sys.executable, "-c", WAIT_FOR_FILE,
                                                     str(gate)).build()
        for i, wid in enumerate(ids)]
    assert backend.launch_many(specs) == [None] * 3
    [name] = set(arrays_named(slurm_cluster)) - before
    submitted = {wid: backend.records.find(wid, 0).engine["jobs"]["0"] for wid in ids}
    # what a crash between sbatch and saving the ids leaves: records that name the array and
    # the task, without job ids
    for wid in ids:
        path = work / wid / "0" / LAUNCH
        data = json.loads(path.read_text())
        data["engine"]["jobs"] = {}
        path.write_text(json.dumps(data))
    successor = SlurmBackend(work, env=slurm_cluster.env, warm_slots=0)
    assert successor.launch_many(specs) == [None] * 3  # the same attempts: nothing submitted
    assert set(arrays_named(slurm_cluster)) - before == {name}
    assert len(arrays_named(slurm_cluster)[name]) == 3
    wait_all(successor, ids, WorkerState.RUNNING)
    assert {wid: successor.records.find(wid, 0).engine["jobs"]["0"] for wid in ids} == submitted
    for wid in ids:  # each worker is its own task: the log its task writes names it
        def printed(wid: str = wid) -> bool:
            return f"started {wid}" in successor.read_logs(wid, 0, 0)[0].decode()
        eventually(printed, f"{wid} to print")
    gate.touch()
    wait_all(successor, ids, WorkerState.SUCCEEDED)
    for wid in ids:
        successor.release(wid, 0)


@pytest.mark.slurm
def test_between_asks_of_slurm_ends_come_from_the_exit_records(
        slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Slurm asked once (status_interval_s: an hour), polls run no Slurm command, and a
    worker that exits is still reported at once, from its runner's exit record."""
    backend = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, status_interval_s=3600)
    gate = tmp_path / "go"
    spec = make_spec("ask-exits").on("gpu3").command(sys.executable, "-c", WAIT_FOR_FILE,
                                                     str(gate)).build()
    backend.launch(spec)
    eventually(lambda: "started ask-exits" in backend.read_logs("ask-exits", 0, 0)[0].decode(),
               "the worker to run")
    backend._asker.next_ask = 0.0  # one ask now, then none for an hour
    eventually(lambda: statuses_of(backend, ["ask-exits"])["ask-exits"].state
               == WorkerState.RUNNING and backend._asker.idle(),
               "Slurm's answer (asked on its own thread)")
    statuses_of(backend, ["ask-exits"])  # takes that answer
    commands: list[str] = []
    real = backend._slurm

    def counted(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return real(command, *args, check=check)
    monkeypatch.setattr(backend, "_slurm", counted)
    assert statuses_of(backend, ["ask-exits"])["ask-exits"].state == WorkerState.RUNNING
    gate.touch()
    eventually(lambda: statuses_of(backend, ["ask-exits"])["ask-exits"].state
               == WorkerState.SUCCEEDED, "the exit to be reported without asking Slurm")
    assert commands == []
    backend.release("ask-exits", 0)
