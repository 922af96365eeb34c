"""Elastic jobs on a real Slurm (slurmctld + slurmd gpu1..gpu3, 4 GPUs each, started by the
test): the core gang and each extra are Slurm jobs of their own, and the workers see the world
they were launched into. A control plane on the system clock, stepped by the test.

Queues: el (quota 4) runs the elastic job of 2 to 5 workers of 2 GPUs each; own (quota 8) the
work that fills the pool and then takes back what el borrowed."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.elastic_worlds import WORKER, newest_generation, recorded_sizes, whole

from corral.backends.slurm import SlurmBackend
from corral.control.cancellation import cancel
from corral.core.model import Queue
from corral.store import pool as P
from corral.testing.plane import ControlPlane
from corral.testing.slurm import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def plane(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane.start(tmp_path, SlurmBackend(tmp_path / "work", env=slurm_cluster.env),
                              queue="el", grace_s=2.0)
    with plane.store.write() as c:
        P.upsert_queue(c, Queue("el", quota_gpus=4.0))
        P.upsert_queue(c, Queue("own", quota_gpus=8.0))
    yield plane
    # the test ends with its jobs still running (sleepers, the elastic world): the session's
    # cluster is shared, and the next module expects its nodes idle
    slurm_cluster.cancel_all_jobs()


def test_starts_at_min_grows_after_the_interval_and_gives_extras_back_first(
        plane: ControlPlane, tmp_path: Path) -> None:
    out = tmp_path / "worlds.txt"
    [blocker] = plane.submit_spec({"name": "blk", "queue": "own", "gpus": 4, "workers": 2,
                                   "command": SLEEP})
    plane.run_until(lambda: plane.record(blocker).state == "running", "the blocker")
    [job, *extras] = plane.submit_spec({
        "name": "el", "gpus": 2, "env": {"OUT": str(out)}, "command": [sys.executable, "-c",
                                                                       WORKER],
        "elastic": {"min_workers": 2, "max_workers": 5, "resize_interval": 3},
        "restart_on": [{"exit_code": [3]}], "max_restarts": 1, "restart_backoff": 0})
    assert len(extras) == 3
    plane.run_until(lambda: whole(out, 2), "the core gang alone, world of 2")
    assert {plane.record(x).state for x in extras} == {"pending"}

    cancel(plane.store, blocker, time.time(), "ann")  # room for the extras
    plane.run_until(lambda: whole(out, 5), "the world of 5", timeout=120)
    assert plane.record(job).restart_count == 0  # a resize spends no restart
    # the workers wrote their lines, so they run; the plane learns it at its next polls
    plane.run_until(lambda: {plane.record(x).state for x in extras} == {"running"}, "extras")

    # own takes back what el borrows: three tasks of 2 GPUs; one fits in the 2 GPUs left free,
    # the other two are owed and take two extras (never the core gang)
    owners = [plane.submit_spec({"name": f"own{i}", "queue": "own", "gpus": 2,
                                 "command": SLEEP})[0] for i in range(3)]
    # the gang restarted into the world of 3: running once the plane's next poll sees it
    plane.run_until(lambda: all(plane.record(o).state == "running" for o in owners)
                    and whole(out, 3) and plane.record(job).state == "running",
                    "the owners and the world of 3", timeout=120)
    kinds = {reason for _, reason, _ in plane.workload_events(job)}
    assert "Reclaim" not in kinds and "Preempt" not in kinds  # the extras went first
    sizes = recorded_sizes(plane.store, job)
    assert [s for _, s in sizes][:2] == [2, 5] and sizes[-1][1] == 3, sizes
    assert sizes[1][0] - sizes[0][0] >= 3  # grew no sooner than resize_interval
    taken = [x for x in extras if plane.record(x).state != "running"]
    assert len(taken) == 2
    # the file a worker may watch (in the job's checkpoint directory) holds the latest world
    world_file = Path(out.read_text().splitlines()[-1].split()[3])
    assert json.loads(world_file.read_text())["world_size"] == 3

    # the extra left crashes with exit 3, which the job's restart_on retries: it starts again
    # (its restart counted on its row), and its peers restart with it into a new generation
    [left] = [x for x in extras if x not in taken]
    before = newest_generation(out)
    (tmp_path / f"fail-{left}").touch()
    plane.run_until(lambda: newest_generation(out) > before and whole(out, 3),
                    "a new world of 3 after the crash", timeout=120)
    assert (plane.record(left).restart_count, plane.record(job).restart_count) == (1, 0)
    assert recorded_sizes(plane.store, job)[-1][1] == 3
