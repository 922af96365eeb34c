"""Chaos on a real Ray cluster: a node dies under a running 2-worker gang. corral sees the node
dead, cordons it, stops the rest of the gang, and restarts the whole gang from its last common
checkpoint on healthy nodes; the job ends with exactly the result of a run that never failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.core.model import Health
from corral.testing.daemons import wait_until
from corral.testing.raycluster import RayNodeSpec, RayTestCluster

from .plane import Plane, events, fault_free, progress, results, train_args

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[ray]'")

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS, EVERY, STEP_S = 100, 10, 0.05


def harness_name(cluster: RayTestCluster, plane: Plane, node_id: str) -> str:
    """The harness's worker name of a corral node id (via the Ray node id label)."""
    ray_id = next(dict(n.labels)["ray.io/node-id"] for n in plane.backend.inventory()
                  if n.id == node_id)
    return next(name for name, rid in cluster.node_ids.items() if rid == ray_id)


def test_a_killed_node_restarts_the_whole_gang_from_its_checkpoint(
        ray_driver: RayTestCluster, tmp_path: Path) -> None:
    from corral.backends.ray import RayBackend

    backend = RayBackend(tmp_path / "work", node_root=str(tmp_path / "nodes"))
    plane = Plane.start(tmp_path, backend)
    ckpt = tmp_path / "ckpt"
    wid = plane.submit("ray-chaos", train_args(STEPS, STEP_S, EVERY), workers=2, gpus=1,
                       max_restarts=2, restart_backoff=0, checkpoint_dir=str(ckpt))
    plane.run_until(lambda: plane.record(wid).state == "running"
                    and min(progress(ckpt, w, 0) for w in (0, 1)) >= 2 * EVERY,
                    "the gang to run past two checkpoints")
    victim = plane.nodes_of(wid, 0)[0]
    try:
        ray_driver.kill_node(harness_name(ray_driver, plane, victim))
        done = plane.run_until(lambda: plane.record(wid).state in ("succeeded", "failed"),
                               "the job to end", timeout=120)
        rec = plane.record(wid)
        assert (rec.state, rec.attempt, rec.restart_count) == ("succeeded", 1, 1), done
        assert victim not in plane.nodes_of(wid, 1)
        healthy = {n.id for n in backend.inventory() if n.health == Health.HEALTHY}
        assert set(plane.nodes_of(wid, 1)) <= healthy
        assert ("NodeCordoned", victim) in plane.node_events()
        assert ("transition", "Restarting", "pending") in plane.workload_events(wid)
        assert results(ckpt, 2) == fault_free(tmp_path, 2, STEPS, EVERY)
        # Resumed from a checkpoint, losing at most one interval of the dead worker's progress.
        dead = plane.nodes_of(wid, 0).index(victim)
        resumed = {e["step"] for e in events(ckpt, dead) if e["event"] == "resume"}
        # The relaunched workers saw the restart in their environment (CORRAL_RESTART_COUNT).
        assert {e["restarts"] for w in (0, 1) for e in events(ckpt, w) if e["attempt"] == 1} == {1}
        assert len(resumed) == 1
        assert resumed.pop() >= progress(ckpt, dead, 0) - EVERY > 0
    finally:
        ray_driver.add_node(RayNodeSpec())  # the documented shape for later tests
        wait_until(lambda: ray.cluster_resources().get("GPU") == 8.0, timeout=60,
                   what="8 GPUs back in the cluster")
