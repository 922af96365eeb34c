"""A gang as one Slurm job (`corral.backends.slurm_gang`): which gangs can go as one
heterogeneous job (pure), the batch script, and on a real Slurm: one submission whose components
run each worker on its planned node with the environment contract, a stop that reaches every
worker's runner within its grace, and a control plane that lost the component ids finding them
again by the job's name. The cluster is the module's own, with a 1 s backfill interval:
heterogeneous jobs are started only by the backfill scheduler (30 s apart by default).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import WorkerState, base
from corral.backends.base import WorkerStatus
from corral.backends.records import AttemptRecords
from corral.backends.slurm import SlurmBackend
from corral.backends.slurm_gang import HET_KEY, fits_one_job, gang_job_name, gang_script
from corral.testing.errors import HarnessUnavailable
from corral.testing.slurm import SlurmCluster
from corral.testing.slurmconf import SlurmSettings

from .conftest import CHECKPOINT_ON_TERM, SHOW_ENV, eventually, make_spec

FITS = [
    pytest.param(make_spec("g").workers(2).on("gpu1", "gpu2").build(), True, id="two-nodes"),
    pytest.param(make_spec("g").workers(3).on("gpu1", "gpu2", "gpu3").build(), True,
                 id="three-nodes"),
    pytest.param(make_spec("g").workers(2).on("gpu1").build(), False,
                 id="two-workers-one-node"),  # components may not share a node
    pytest.param(make_spec("g").on("gpu1").build(), False, id="one-worker"),
    pytest.param(make_spec("g").workers(2).on("gpu1", "gpu2").with_(image="nvcr.io/x").build(),
                 False, id="container-image"),  # pyxis runs it as a step of its own
]


@pytest.mark.parametrize(("spec", "fits"), FITS)
def test_which_gangs_go_as_one_job(spec, fits: bool) -> None:
    assert fits_one_job(spec) is fits


def test_the_batch_script_starts_one_step_per_component_and_waits() -> None:
    text = gang_script("corral.g.0.gang", [("/w/worker-0.sbatch", "/w/worker-0.log"),
                                           ("/w/worker-1.sbatch", "/w/my log.log")])
    steps = [line for line in text.splitlines() if line.startswith("srun")]
    assert [s.split()[1] for s in steps] == ["--het-group=0", "--het-group=1"]
    assert steps[1].endswith("--output='/w/my log.log' --open-mode=append "
                             "/bin/sh /w/worker-1.sbatch &")
    assert text.splitlines()[-1] == "wait"


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    try:
        started = SlurmCluster(3, SlurmSettings(backfill_interval_s=1))
    except HarnessUnavailable as e:
        pytest.skip(str(e))
    with started:
        yield started


@pytest.fixture
def backend(cluster: SlurmCluster, tmp_path: Path) -> SlurmBackend:
    return SlurmBackend(tmp_path / "work", env=cluster.env, gang_as_one_job=True)


def mine(backend: SlurmBackend, workload_id: str) -> list[WorkerStatus]:
    return [s for s in backend.poll(time.time()) if s.workload_id == workload_id]


def wait_ended(backend: SlurmBackend, workload_id: str) -> list[WorkerStatus]:
    def ended() -> list[WorkerStatus] | None:
        now = mine(backend, workload_id)
        return now if now and all(s.state.ended for s in now) else None
    return eventually(ended, f"{workload_id} to end", timeout=60)


def log_of(backend: SlurmBackend, workload_id: str, worker: int) -> str:
    return backend.read_logs(workload_id, worker, 0, max_bytes=1 << 20)[0].decode()


@pytest.mark.slurm
def test_a_gang_is_one_heterogeneous_job_on_its_planned_nodes(
        backend: SlurmBackend, cluster: SlurmCluster, tmp_path: Path) -> None:
    spec = (make_spec("het-gang").workers(2).on("gpu1", "gpu2").devices(1, 3).python(SHOW_ENV)
            .with_(checkpoint_dir=str(tmp_path / "ckpt")).build())
    backend.launch(spec)
    record = backend.records.find("het-gang", 0)
    het_id = record.engine[HET_KEY]["id"]
    assert record.engine["jobs"] == {"0": f"{het_id}+0", "1": f"{het_id}+1"}
    named = cluster.run("squeue", "-h", "-r", "-t", "all", f"--name={gang_job_name('het-gang', 0)}",
                        "-o", "%i|%N").stdout.split()
    assert sorted(i.split("|")[0] for i in named) == [f"{het_id}+0", f"{het_id}+1"]  # one job
    assert [s.state for s in wait_ended(backend, "het-gang")] == [WorkerState.SUCCEEDED] * 2
    envs = [json.loads(log_of(backend, "het-gang", w).splitlines()[-1]) for w in (0, 1)]
    assert [e["CORRAL_NODE_ID"] for e in envs] == ["gpu1", "gpu2"]
    assert [len(e["CUDA_VISIBLE_DEVICES"].split(",")) for e in envs] == [2, 2]
    assert len({(e["CORRAL_MASTER_ADDR"], e["CORRAL_MASTER_PORT"]) for e in envs}) == 1
    assert [e["CORRAL_WORKER_INDEX"] for e in envs] == ["0", "1"]
    backend.release("het-gang", 0)


@pytest.mark.slurm
def test_a_stop_reaches_every_worker_within_its_grace(backend: SlurmBackend) -> None:
    backend.launch(make_spec("het-stop").workers(2).on("gpu2", "gpu3")
                   .python(CHECKPOINT_ON_TERM).build())
    eventually(lambda: all("running" in log_of(backend, "het-stop", w) for w in (0, 1)),
               "both workers to print", timeout=60)
    backend.stop("het-stop", 0, 30.0, "preempted")
    ends = wait_ended(backend, "het-stop")
    assert [(e.state, e.reason, e.exit_code) for e in ends] == [
        (WorkerState.STOPPED, base.STOPPED_IN_TIME, 0)] * 2
    for w in (0, 1):
        assert "SIGTERM; deadline file seen: True" in log_of(backend, "het-stop", w)
    backend.release("het-stop", 0)


@pytest.mark.slurm
def test_a_new_backend_finds_the_components_by_the_jobs_name(
        backend: SlurmBackend, cluster: SlurmCluster) -> None:
    spec = make_spec("het-adopt").workers(2).on("gpu1", "gpu3").python(CHECKPOINT_ON_TERM).build()
    backend.launch(spec)
    record = backend.records.find("het-adopt", 0)
    ids = dict(record.engine["jobs"])
    record.engine["jobs"] = {}  # as if the control plane died before saving them
    AttemptRecords.save(record)
    successor = SlurmBackend(backend.records.root, env=cluster.env, gang_as_one_job=True)
    successor.launch(spec)  # equal spec: a no-op, nothing submitted again
    eventually(lambda: [s.state for s in mine(successor, "het-adopt")] == [
        WorkerState.RUNNING] * 2, "the successor to see both workers running", timeout=60)
    assert successor.records.find("het-adopt", 0).engine["jobs"] == ids
    successor.stop("het-adopt", 0, 10.0, "done")
    assert {e.state for e in wait_ended(successor, "het-adopt")} == {WorkerState.STOPPED}
    successor.release("het-adopt", 0)


@pytest.mark.slurm
def test_two_workers_on_one_node_go_as_held_jobs(backend: SlurmBackend) -> None:
    backend.launch(make_spec("het-shared").workers(2).on("gpu1").python("pass").build())
    record = backend.records.find("het-shared", 0)
    assert HET_KEY not in record.engine and "+" not in "".join(record.engine["jobs"].values())
    assert [s.state for s in wait_ended(backend, "het-shared")] == [WorkerState.SUCCEEDED] * 2
    backend.release("het-shared", 0)


@pytest.mark.slurm
def test_a_gang_stopped_while_pending_is_cancelled_whole_and_never_starts(
        backend: SlurmBackend, cluster: SlurmCluster) -> None:
    blocker = cluster.sbatch("--nodelist=gpu3", "--cpus-per-task=4", "--output=/dev/null",
                             "--wrap", "sleep 60")
    try:
        eventually(lambda: cluster.job_info(blocker).get("JobState") == "RUNNING",
                   "the blocker to take gpu3's CPUs", timeout=60)
        backend.launch(make_spec("het-waits").workers(2).on("gpu1", "gpu3")
                       .python("print('ran')").build())
        backend.stop("het-waits", 0, 30.0, "cancelled")
        ends = wait_ended(backend, "het-waits")
        assert [(e.state, e.reason) for e in ends] == [
            (WorkerState.STOPPED, base.STOPPED_BEFORE_START)] * 2
        assert all("ran" not in log_of(backend, "het-waits", w) for w in (0, 1))
        left = cluster.run("squeue", "-h", "-o", "%j").stdout.split()
        assert gang_job_name("het-waits", 0) not in left
        backend.release("het-waits", 0)
    finally:
        cluster.run("scancel", blocker, check=False)


@pytest.mark.slurm
def test_exec_reaches_each_component_of_the_job(backend: SlurmBackend) -> None:
    """`corral exec` on Slurm (`corral.backends.slurm_exec`): srun refuses a component's own
    id, so a step goes in through the leader's id and the worker's ``--het-group``."""
    from corral.backends.slurm_exec import exec_in_step, locate

    backend.launch(make_spec("het-exec").workers(2).on("gpu1", "gpu2").with_(
        env={"MARK": "het"}).python(CHECKPOINT_ON_TERM).build())
    eventually(lambda: all("running" in log_of(backend, "het-exec", w) for w in (0, 1)),
               "both workers to print", timeout=60)
    for w, node in ((0, "gpu1"), (1, "gpu2")):
        step = locate(backend, "het-exec", 0, w)
        done = exec_in_step(step, ["sh", "-c", 'echo "$MARK $CORRAL_WORKER_INDEX '
                                   '$SLURMD_NODENAME"'], timeout_s=30, max_bytes=4096)
        assert (done.exit_code, done.stdout) == (0, f"het {w} {node}\n"), done
    backend.stop("het-exec", 0, 10.0, "done")
    assert {e.state for e in wait_ended(backend, "het-exec")} == {WorkerState.STOPPED}
    backend.release("het-exec", 0)
