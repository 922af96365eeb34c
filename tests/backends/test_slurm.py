"""The Slurm backend on a real Slurm (slurmctld + 3 slurmd with fake GPUs and shards): inventory,
a gang pinned to the planned nodes with whole and fractional GPUs, the environment contract, the
preemption contract, pending work stopped before it starts, failures, refusals, and re-adoption
by a new backend instance. Node death is exercised end to end in tests/chaos.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import InvalidLaunchSpec, LaunchConflict, LaunchError, WorkerState, base
from corral.backends.base import WorkerStatus
from corral.backends.slurm import WATCH_BATCH, SlurmBackend, job_name
from corral.core.model import Health
from corral.testing.slurm import SlurmCluster

from .conftest import CHECKPOINT_ON_TERM, SHOW_ENV, eventually, make_spec

pytestmark = pytest.mark.slurm

IGNORE_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("running", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def backend(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[SlurmBackend]:
    yield SlurmBackend(tmp_path_factory.mktemp("slurm-work"), env=slurm_cluster.env)


def mine(backend: SlurmBackend, workload_id: str) -> list[WorkerStatus]:
    return [s for s in backend.poll(time.time()) if s.workload_id == workload_id]


def wait_ended(backend: SlurmBackend, workload_id: str) -> list[WorkerStatus]:
    def ended() -> list[WorkerStatus] | None:
        now = mine(backend, workload_id)
        return now if now and all(s.state.ended for s in now) else None
    return eventually(ended, f"{workload_id} to end", timeout=60)


def wait_state(backend: SlurmBackend, workload_id: str, state: WorkerState) -> None:
    eventually(lambda: all(s.state == state for s in mine(backend, workload_id) or [None]),
               f"{workload_id} to be {state}", timeout=60)


def log_of(backend: SlurmBackend, workload_id: str, worker: int) -> str:
    return backend.read_logs(workload_id, worker, 0, max_bytes=1 << 20)[0].decode()


def test_inventory_reads_gpus_and_shards(backend: SlurmBackend) -> None:
    nodes = backend.inventory()
    assert [(n.id, n.provider, n.gpu_count, n.cpu_milli, n.health) for n in nodes] == [
        (f"gpu{i}", "slurm", 4, 4000, Health.HEALTHY) for i in (1, 2, 3)]
    assert {dict(n.labels)["slurm.shards-per-gpu"] for n in nodes} == {"2"}


def test_a_gang_runs_on_its_planned_nodes_with_the_environment_contract(
        backend: SlurmBackend, slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    gang = (make_spec("slurm-gang").workers(2).on("gpu1", "gpu2").devices(1, 3)
            .python(SHOW_ENV).with_(checkpoint_dir=str(tmp_path / "ckpt")).build())
    share = make_spec("slurm-share").on("gpu3").devices(2).share(250, 20000).python(SHOW_ENV).build()
    backend.launch(gang)
    backend.launch(share)
    jobs = {w: backend.records.find("slurm-gang", 0).engine["jobs"][str(w)] for w in (0, 1)}
    eventually(lambda: all(slurm_cluster.job_info(j).get("NodeList") for j in jobs.values()),
               "the jobs to be placed")
    assert [slurm_cluster.job_info(jobs[w])["NodeList"] for w in (0, 1)] == ["gpu1", "gpu2"]
    assert [s.state for s in wait_ended(backend, "slurm-gang")] == [WorkerState.SUCCEEDED] * 2
    envs = [json.loads(log_of(backend, "slurm-gang", w).splitlines()[-1]) for w in (0, 1)]
    assert [e["CORRAL_NODE_ID"] for e in envs] == ["gpu1", "gpu2"]
    assert [len(e["CUDA_VISIBLE_DEVICES"].split(",")) for e in envs] == [2, 2]  # Slurm's pick
    assert len({(e["CORRAL_MASTER_ADDR"], e["CORRAL_MASTER_PORT"]) for e in envs}) == 1
    assert envs[1]["CORRAL_CHECKPOINT_DIR"] == str(tmp_path / "ckpt")
    [shared] = wait_ended(backend, "slurm-share")
    assert shared.state == WorkerState.SUCCEEDED
    text = log_of(backend, "slurm-share", 0)
    assert "asked 1 shard(s) for 250" in text
    assert json.loads(text.splitlines()[-1])["CORRAL_GPU_MILLI"] == "250"
    for wid in ("slurm-gang", "slurm-share"):
        backend.release(wid, 0)
    assert not mine(backend, "slurm-gang")


def test_stop_follows_the_preemption_contract(backend: SlurmBackend) -> None:
    backend.launch(make_spec("slurm-polite").on("gpu1").python(CHECKPOINT_ON_TERM).build())
    backend.launch(make_spec("slurm-stubborn").on("gpu2").python(IGNORE_TERM).build())
    for wid in ("slurm-polite", "slurm-stubborn"):
        wait_state(backend, wid, WorkerState.RUNNING)
        eventually(lambda wid=wid: "running" in log_of(backend, wid, 0), f"{wid} to print")
    backend.stop("slurm-polite", 0, 30.0, "preempted by a higher priority")
    backend.stop("slurm-polite", 0, 60.0, "again")
    backend.stop("slurm-stubborn", 0, 1.0, "evicted")
    [polite] = wait_ended(backend, "slurm-polite")
    [stubborn] = wait_ended(backend, "slurm-stubborn")
    assert (polite.state, polite.reason, polite.exit_code) == (
        WorkerState.STOPPED, base.STOPPED_IN_TIME, 0)
    assert polite.message.startswith("preempted by a higher priority")
    assert "SIGTERM; deadline file seen: True" in log_of(backend, "slurm-polite", 0)
    assert (stubborn.state, stubborn.reason, stubborn.exit_code) == (
        WorkerState.STOPPED, base.KILLED_AFTER_GRACE, -9)
    for wid in ("slurm-polite", "slurm-stubborn"):
        backend.release(wid, 0)


def test_work_stopped_while_pending_never_starts(backend: SlurmBackend,
                                                slurm_cluster: SlurmCluster) -> None:
    blocker = slurm_cluster.sbatch("--nodelist=gpu3", "--cpus-per-task=4", "--output=/dev/null",
                                   "--wrap", "sleep 60")
    try:
        eventually(lambda: slurm_cluster.job_info(blocker).get("JobState") == "RUNNING",
                   "the blocker to take gpu3's CPUs")
        backend.launch(make_spec("slurm-waits").on("gpu3").python("print('ran')").build())
        assert [s.state for s in mine(backend, "slurm-waits")] == [WorkerState.STARTING]
        backend.stop("slurm-waits", 0, 30.0, "cancelled")
        [end] = wait_ended(backend, "slurm-waits")
        assert (end.state, end.reason) == (WorkerState.STOPPED, base.STOPPED_BEFORE_START)
        assert "ran" not in log_of(backend, "slurm-waits", 0)
        backend.release("slurm-waits", 0)
    finally:
        slurm_cluster.run("scancel", blocker, check=False)


FAILURES = [
    pytest.param((sys.executable, "-c", "import sys; sys.exit(3)"), base.EXITED, 3, id="exit-3"),
    pytest.param(("/nonexistent/program",), base.COMMAND_NOT_FOUND, 127, id="no-such-program"),
]


@pytest.mark.parametrize(("argv", "reason", "code"), FAILURES)
def test_failures_are_reported_with_their_exit_code(backend: SlurmBackend, argv, reason, code,
                                                    request: pytest.FixtureRequest) -> None:
    wid = f"slurm-fail-{request.node.callspec.id}"
    backend.launch(make_spec(wid).on("gpu1").command(*argv).build())
    [end] = wait_ended(backend, wid)
    assert (end.state, end.reason, end.exit_code) == (WorkerState.FAILED, reason, code)
    backend.release(wid, 0)


def test_a_new_backend_readopts_running_jobs_and_launch_is_idempotent(
        backend: SlurmBackend, slurm_cluster: SlurmCluster) -> None:
    spec = make_spec("slurm-adopt").on("gpu2").python(CHECKPOINT_ON_TERM).build()
    backend.launch(spec)
    wait_state(backend, "slurm-adopt", WorkerState.RUNNING)
    successor = SlurmBackend(backend.records.root, env=slurm_cluster.env)
    successor.launch(spec)  # equal spec: a no-op
    named = slurm_cluster.run("squeue", "-h", f"--name={job_name('slurm-adopt', 0, 0)}",
                              "-o", "%i").stdout.split()
    assert len(named) == 1
    assert [s.state for s in mine(successor, "slurm-adopt")] == [WorkerState.RUNNING]
    with pytest.raises(LaunchConflict):
        successor.launch(make_spec("slurm-adopt").on("gpu1").python("pass").build())
    successor.stop("slurm-adopt", 0, 10.0, "done")
    assert wait_ended(successor, "slurm-adopt")[0].state == WorkerState.STOPPED
    successor.release("slurm-adopt", 0)
    backend._attempts.pop(("slurm-adopt", 0), None)  # the old instance is gone in real life


def test_refusals_name_the_field_and_leave_nothing_behind(
        backend: SlurmBackend, slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    for spec in (make_spec("slurm-bad").on("gpu9").build(),
                 make_spec("slurm-bad").on("gpu1").devices(4).build(),
                 make_spec("slurm-bad").on("gpu1").with_(working_dir="/no/such/dir").build()):
        with pytest.raises(InvalidLaunchSpec) as e:
            backend.launch(spec)
        assert e.value.field in ("assignments", "working_dir")
    elsewhere = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, partition="nosuch")
    gang = make_spec("slurm-refused").workers(2).on("gpu1", "gpu2").python("pass").build()
    with pytest.raises(LaunchError, match="Slurm refused"):
        elsewhere.launch(gang)
    assert [s.state for s in elsewhere.poll(time.time())] == [WorkerState.LOST] * 2
    left = slurm_cluster.run("squeue", "-h", "-o", "%j").stdout.split()
    assert not [n for n in left if n.startswith("corral.slurm-refused.")]


def test_an_end_is_seen_between_polls_without_asking_slurm(
        backend: SlurmBackend, tmp_path: Path) -> None:
    """`changed_since_poll` (the control loop's wake, corral.control.wake): a worker's exit
    record written after the last poll is seen by a stat, no Slurm command, and wakes once."""
    go = tmp_path / "go"
    wait_for_go = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
    wid = "slurm-wake"
    backend.launch(make_spec(wid).on("gpu1").command(sys.executable, "-c", wait_for_go).build())
    wait_state(backend, wid, WorkerState.RUNNING)  # a poll that reported it running
    eventually(backend._asker.idle, "the last poll's round of Slurm commands to end")
    calls: list[str] = []
    ask = backend._slurm

    def counted(command: str, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
        calls.append(command)
        return ask(command, *args, check=check)

    backend._slurm = counted  # type: ignore[method-assign]
    try:
        assert not backend.changed_since_poll()
        go.touch()
        eventually(backend.changed_since_poll, "the exit record to be seen", timeout=60)
        assert not backend.changed_since_poll()  # one wake per record
        assert calls == []
    finally:
        del backend._slurm
    [end] = wait_ended(backend, wid)
    assert end.state == WorkerState.SUCCEEDED
    assert not backend.changed_since_poll()
    backend.release(wid, 0)


def test_a_check_between_polls_looks_at_a_bounded_number_of_records(tmp_path: Path) -> None:
    """A large pool's waits stay cheap: each `changed_since_poll` stats at most WATCH_BATCH
    exit records, round robin, so an end far down the list is found by a later call."""
    backend = SlurmBackend(tmp_path / "work")
    paths = [tmp_path / f"w{i}" / "exit.json" for i in range(2 * WATCH_BATCH + 100)]
    backend._awaited = list(paths)
    paths[-1].parent.mkdir()
    paths[-1].touch()
    assert [backend.changed_since_poll() for _ in range(3)] == [False, False, True]
    assert not backend.changed_since_poll()  # each record once
    paths[5].parent.mkdir()
    paths[5].touch()
    # the sweep goes on from where it was (200 of 499), round past the end, to it
    assert [backend.changed_since_poll() for _ in range(3)] == [False, True, False]
