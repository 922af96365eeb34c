"""Chaos on a real Slurm: one slurmd dies under a running 2-worker gang. Once Slurm declares the
node DOWN, corral reports its worker lost, fences what still runs there, cordons the node, and
restarts the whole gang from its last common checkpoint on the other nodes; the job ends with
exactly the result of a run that never failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.backends.slurm import SlurmBackend
from corral.testing.slurm import SlurmCluster

from .plane import Plane, events, fault_free, progress, results, train_args

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Long enough to still run when Slurm declares the node DOWN (SlurmdTimeout 3 s: ~8 s).
STEPS, EVERY, STEP_S = 300, 10, 0.05


def test_a_killed_slurmd_restarts_the_whole_gang_from_its_checkpoint(
        slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path / "work", env=slurm_cluster.env)
    plane = Plane.start(tmp_path, backend)
    ckpt = tmp_path / "ckpt"
    wid = plane.submit("slurm-chaos", train_args(STEPS, STEP_S, EVERY), workers=2, gpus=1,
                       max_restarts=2, restart_backoff=0, checkpoint_dir=str(ckpt))
    plane.run_until(lambda: plane.record(wid).state == "running"
                    and min(progress(ckpt, w, 0) for w in (0, 1)) >= 2 * EVERY,
                    "the gang to run past two checkpoints")
    victim = plane.nodes_of(wid, 0)[0]
    try:
        slurm_cluster.kill_node(victim)
        plane.run_until(lambda: plane.record(wid).state in ("succeeded", "failed"),
                        "the job to end", timeout=150)
        rec = plane.record(wid)
        # Two legitimate paths, by timing: Slurm declares the node down first (workers lost: a
        # restart is used), or the health monitor drains the gang first (the node's failure, not
        # the workload's: a new attempt without using a restart). Exactly one must have happened.
        evs = plane.workload_events(wid)
        lost = ("transition", "Restarting", "pending") in evs
        drained = ("transition", "Requeued", "pending") in evs
        assert lost != drained, evs
        assert (rec.state, rec.attempt, rec.restart_count) == ("succeeded", 1, int(lost))
        assert victim not in plane.nodes_of(wid, 1)
        assert ("NodeCordoned", victim) in plane.node_events()
        assert not drained or ("transition", "NodeUnhealthy", "preempted") in evs
        assert results(ckpt, 2) == fault_free(tmp_path, 2, STEPS, EVERY)
        # The fenced attempt stopped for good: nothing of attempt 0 ran after the restart.
        restarted_at = min(e["t"] for w in (0, 1) for e in events(ckpt, w) if e["attempt"] == 1)
        assert all(e["t"] < restarted_at for w in (0, 1) for e in events(ckpt, w)
                   if e["attempt"] == 0)
        resumed = {e["step"] for w in (0, 1) for e in events(ckpt, w) if e["event"] == "resume"}
        # The relaunched workers saw the restart count in their environment (CORRAL_RESTART_COUNT).
        assert {e["restarts"] for w in (0, 1) for e in events(ckpt, w)
                if e["attempt"] == 1} == {rec.restart_count}
        assert len(resumed) == 1
        assert resumed.pop() >= min(progress(ckpt, w, 0) for w in (0, 1)) - EVERY > 0
    finally:
        slurm_cluster.restart_node(victim)
