"""The Slurm harness runs real slurmctld + slurmd with fake GPUs: gangs span nodes, GPUs and
shards reach jobs as CUDA_VISIBLE_DEVICES, finished jobs are on record, and a killed slurmd
takes its node down until it is restarted."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.testing.daemons import pids_with_env, process_dead, wait_until
from corral.testing.slurm import MARKER_ENV, SlurmCluster
from corral.testing.slurmconf import SlurmSettings

pytestmark = pytest.mark.slurm


def _wait_for_job(cluster: SlurmCluster, job_id: str, states: set[str]) -> dict[str, str]:
    info: dict[str, str] = {}

    def reached() -> bool:
        info.update(cluster.job_info(job_id))
        return info.get("JobState") in states

    wait_until(reached, timeout=60, what=f"job {job_id} to reach {sorted(states)} (saw {info})")
    return info


def test_every_node_is_idle_with_gpus_and_shards(slurm_cluster: SlurmCluster) -> None:
    assert slurm_cluster.node_states() == {name: "idle" for name in ("gpu1", "gpu2", "gpu3")}
    node = slurm_cluster.run("scontrol", "show", "node", "-o", "gpu1").stdout
    assert "Gres=gpu:4,shard:8" in node


def test_two_node_gang_runs_writes_files_and_is_recorded(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    script = tmp_path / "gang.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"srun bash -c 'echo \"$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES\" > {tmp_path}/out.$SLURM_PROCID'\n"
        f"while [ ! -e {release} ]; do sleep 0.1; done\n"
    )
    job = slurm_cluster.sbatch(
        "-N", "2", "--gres=gpu:2", "-o", str(tmp_path / "slurm.out"), str(script)
    )

    running = _wait_for_job(slurm_cluster, job, {"RUNNING"})
    queue = slurm_cluster.run("squeue", "-h", "-j", job, "-o", "%i %T %D").stdout.split()
    assert queue == [job, "RUNNING", "2"]
    assert running["NumNodes"] == "2"

    release.touch()
    done = _wait_for_job(slurm_cluster, job, {"COMPLETED", "FAILED", "CANCELLED"})
    assert done["JobState"] == "COMPLETED", (tmp_path / "slurm.out").read_text()
    lines = sorted((tmp_path / f"out.{rank}").read_text().split() for rank in (0, 1))
    assert len({node for node, _ in lines}) == 2
    assert all(len(devices.split(",")) == 2 for _, devices in lines)

    wait_until(lambda: job in slurm_cluster.completed_jobs(), timeout=30, what="sacct -c record")
    record = slurm_cluster.completed_jobs()[job]
    assert (record["State"], record["NNodes"]) == ("COMPLETED", "2")


def test_a_shard_gives_a_job_one_gpu(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "cvd"
    job = slurm_cluster.sbatch(
        "--gres=shard:1",
        "-o",
        str(out),
        "--wrap",
        "echo $CUDA_VISIBLE_DEVICES $SLURM_SHARDS_ON_NODE",
    )
    assert _wait_for_job(slurm_cluster, job, {"COMPLETED", "FAILED"})["JobState"] == "COMPLETED"
    device, shards = out.read_text().split()
    assert (device in {"0", "1", "2", "3"}, shards) == (True, "1")


def test_killed_slurmd_takes_its_node_down_and_restart_brings_it_back(
    slurm_cluster: SlurmCluster,
) -> None:
    try:
        slurm_cluster.kill_node("gpu3")
        states = slurm_cluster.wait_for_nodes(lambda s: s.startswith("down"), ["gpu3"])
        assert states == {"gpu3": "down*"}
        assert slurm_cluster.node_states()["gpu1"] == "idle"
    finally:
        slurm_cluster.restart_node("gpu3")
    assert slurm_cluster.node_states()["gpu3"] == "idle"


def test_stop_ends_jobs_and_daemons_and_removes_the_dir() -> None:
    cluster = SlurmCluster(nodes=1, settings=SlurmSettings(gpus_per_node=1, shards_per_gpu=0))
    with cluster:
        root = cluster.root
        job = cluster.sbatch("-o", "/dev/null", "--wrap", "sleep 300")
        _wait_for_job(cluster, job, {"RUNNING"})
        assert pids_with_env(MARKER_ENV, str(root))  # daemons and the job carry the marker
    assert not root.exists()
    assert all(process_dead(pid) for pid in pids_with_env(MARKER_ENV, str(root)))
