"""The Ray harness runs a real multi-node cluster with fake GPUs: GPU work spreads over worker
nodes with CUDA_VISIBLE_DEVICES set, a killed node is reported dead, and stopping leaves no
process behind."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from corral.testing.daemons import pids_with_env, process_dead, wait_until
from corral.testing.errors import HarnessStartFailed
from corral.testing.raycluster import (
    NODE_MARKER_ENV,
    RAYLET_STARTUP_TIMEOUT,
    RayNodeSpec,
    RayTestCluster,
)

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[ray]'")

pytestmark = pytest.mark.ray


@ray.remote(num_gpus=4, num_cpus=0)
class _GpuHolder:
    """Holds a whole fake node's GPUs while alive, so two of them cannot share a node."""

    def where(self) -> tuple[str, str]:
        import os

        return ray.get_runtime_context().get_node_id(), os.environ.get("CUDA_VISIBLE_DEVICES", "")


def test_gpu_actors_land_on_distinct_worker_nodes_with_visible_devices(
    ray_driver: RayTestCluster,
) -> None:
    holders = [_GpuHolder.remote() for _ in range(2)]
    try:
        placed = ray.get([h.where.remote() for h in holders], timeout=60)
    finally:
        for h in holders:
            ray.kill(h)
    nodes = {node for node, _ in placed}
    assert len(nodes) == 2
    assert nodes <= set(ray_driver.node_ids.values())
    assert all(sorted(devices.split(",")) == ["0", "1", "2", "3"] for _, devices in placed)


def test_accelerator_type_resource_is_schedulable(ray_driver: RayTestCluster) -> None:
    @ray.remote(num_gpus=1, accelerator_type="H100")
    def node_of_task() -> str:
        return ray.get_runtime_context().get_node_id()

    assert ray.get(node_of_task.remote(), timeout=60) in ray_driver.node_ids.values()


def test_killed_node_is_reported_dead_and_its_actor_lost(ray_driver: RayTestCluster) -> None:
    from ray.exceptions import RayActorError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    victim = ray_driver.live_workers[-1]
    node_id = ray_driver.node_ids[victim]
    pinned = _GpuHolder.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
    ).remote()
    try:
        assert ray.get(pinned.where.remote(), timeout=60)[0] == node_id
        ray_driver.kill_node(victim)
        marker = f"{ray_driver.temp_dir}:{victim}"
        assert all(process_dead(pid) for pid in pids_with_env(NODE_MARKER_ENV, marker))
        ray_driver.wait_for_node_dead(node_id, timeout=30)
        assert ray_driver.node_alive(node_id) is False
        with pytest.raises(RayActorError):
            ray.get(pinned.where.remote(), timeout=60)
    finally:
        # Put the shared cluster back in its documented shape: two 4-GPU workers.
        ray_driver.add_node(RayNodeSpec())
    wait_until(
        lambda: ray.cluster_resources().get("GPU") == 8.0,
        timeout=30,
        what="8 GPUs back in the cluster",
    )


_LIFECYCLE = textwrap.dedent(
    """
    import json
    from corral.testing.raycluster import RayNodeSpec, RayTestCluster
    with RayTestCluster([RayNodeSpec(num_gpus=2, num_cpus=1)], head_cpus=1) as c:
        pids = c.process_ids()
        temp = str(c.temp_dir)
    print(json.dumps({"pids": pids, "temp": temp}))
    """
)


def test_stop_kills_every_process_it_started_and_removes_its_dir(tmp_path: Path) -> None:
    # In a child process: a second Cluster in this process would reset the driver's global state.
    done = subprocess.run(
        [sys.executable, "-c", _LIFECYCLE],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        cwd=tmp_path,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["pids"]) >= 3  # at least GCS, head raylet, worker raylet
    assert not Path(report["temp"]).exists()
    assert all(process_dead(pid) for pid in report["pids"])


@pytest.mark.parametrize(("failures", "starts", "raised"), [
    pytest.param([RAYLET_STARTUP_TIMEOUT], 2, None, id="raylet-timeout-is-tried-again-once"),
    pytest.param([RAYLET_STARTUP_TIMEOUT] * 2, 2, RAYLET_STARTUP_TIMEOUT, id="twice-fails"),
    pytest.param(["gcs_server exited"], 1, "gcs_server exited", id="other-failures-fail-at-once"),
])
def test_only_rays_raylet_startup_timeout_is_retried(
        monkeypatch: pytest.MonkeyPatch, failures: list[str], starts: int,
        raised: str | None) -> None:
    cluster = RayTestCluster()
    calls: list[int] = []

    def start_once() -> RayTestCluster:
        calls.append(1)
        if len(calls) <= len(failures):
            raise HarnessStartFailed(f"Ray test cluster failed to start: {failures[len(calls) - 1]}")
        return cluster

    monkeypatch.setattr(cluster, "_start_once", start_once)
    if raised is None:
        assert cluster.start() is cluster
    else:
        with pytest.raises(HarnessStartFailed, match=raised):
            cluster.start()
    assert len(calls) == starts
