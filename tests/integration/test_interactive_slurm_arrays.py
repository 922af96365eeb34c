"""`corral exec` on a real Slurm with warm slots off (`corral up --backend slurm
--slurm-warm-slots 0`): the jobs a step must reach are then a gang's batch jobs and job array
tasks, not pilots (tests/integration/test_interactive_slurm.py covers those, with exec, ssh
and port-forward). A module of its own: its server must not share the cluster's GPUs with that
module's server and its spare pilots (module fixtures end with their module)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from corral.testing.corral_up import CorralServer
from corral.testing.slurm import MARKER_ENV, SlurmCluster

from .test_interactive_slurm import _until

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_exec_reaches_a_gangs_worker_and_array_tasks_without_pilots(
        slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """Warm slots off: a gang's workers are batch jobs of their own (exec picks one by
    --worker, on its node); single workers of one shape on one node go as a Slurm job array,
    whose task srun reaches by its own job id (an array of 6 on 3 nodes of 4 GPUs: some node
    has two)."""
    env = slurm_cluster.env
    srv = CorralServer(tmp_path / "data", extra_env={"SLURM_CONF": env["SLURM_CONF"],
                                                     MARKER_ENV: env[MARKER_ENV]})
    srv.start("--backend", "slurm", "--slurm-warm-slots", "0", timeout=180)
    try:
        targets = []
        for name, extra in (("gang", {"workers": 2}), ("tasks", {"array": {"range": "0-5"}})):
            spec = tmp_path / f"{name}.yaml"
            spec.write_text(yaml.safe_dump({
                "name": name, "queue": "default", "gpus": 1, "cpu": 0.1, "memory": 64,
                "command": ["sleep", "600"], **extra}))
            made = srv.cli_json("submit", str(spec))[0]["workloads"]  # type: ignore[index]
            targets += [(str(w["id"]), 1 if name == "gang" else 0) for w in made]
        with srv.client() as c:
            _until(lambda: all(c.get(w).state == "running" for w, _ in targets),
                   "the gang and the tasks to run", 180)
        tasks = slurm_cluster.run("squeue", "-h", "-r", "-o", "%i").stdout.split()
        assert any("_" in t for t in tasks), tasks  # some tasks went as a job array
        for wid, worker in targets:
            # running in Slurm's eyes before its runner has started the command: wait for it
            def seen(wid: str = wid, worker: int = worker) -> bool:
                got = srv.cli("exec", wid, "--worker", str(worker), "--", "sh", "-c",
                              'echo "$CORRAL_WORKER_INDEX $CORRAL_NODE_ID $SLURMD_NODENAME"',
                              check=False)
                assert got.returncode in (0, 1), got.stderr
                assert "no step" not in got.stderr, got.stderr  # srun took the job id
                return got.returncode == 0 and got.stdout.split()[0] == str(worker) and len(
                    set(got.stdout.split()[1:])) == 1  # the step ran on the worker's node
            _until(seen, f"exec in {wid} worker {worker}", 120)
    finally:
        srv.stop()
        slurm_cluster.cancel_all_jobs()
