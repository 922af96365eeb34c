"""Elastic jobs on a real Ray (the session's cluster: worker-1 and worker-2, 4 GPUs each): the
core gang and each extra are attempts of their own, run by corral's host actors with their GPUs
held by placement groups, and the workers see the world they were launched into. A control plane
on the system clock, stepped by the test (as tests/integration/test_elastic_slurm.py on Slurm).

Queues: el (quota 2) runs the elastic job of 2 to 5 workers of 1 GPU each; own (quota 6) the
work that fills the pool and then takes back what el borrowed.

The core gang starts on one node. Where a node holds a core-gang worker as the only work an
owed one-worker task could take there, the core's reclaim may take the core gang rather than
an extra on the other node (`evict._candidates` ranks nodes by the dearest work on them, a tie
here, then by how long it ran): seen on this cluster with the gang split over both nodes
(el failed whole: its restart_on does not list preemption). Pinned in
tests/cli/test_plan_elastic.py as a strict xfail; not a Ray matter.

The cluster is shared by the session: the backend has a namespace of its own, and the fixture's
teardown (run even when the test fails) stops and releases every attempt it launched (their
placement groups removed), kills its host actors, and waits for the cluster's 8 GPUs to be free
again, as the next Ray module expects."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.elastic_worlds import WORKER, newest_generation, recorded_sizes, whole

from corral.control.cancellation import cancel
from corral.core.model import Queue
from corral.store import pool as P
from corral.store import workloads as W
from corral.testing.daemons import wait_until
from corral.testing.plane import ControlPlane
from corral.testing.raycluster import RayTestCluster

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[ray]'")

pytestmark = [pytest.mark.ray, pytest.mark.slow]

#: the host actors of this module's backend live here, not in the default "corral" namespace
NAMESPACE = "corral-elastic-test"
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def plane(ray_driver: RayTestCluster, tmp_path: Path) -> Iterator[ControlPlane]:
    from corral.backends.ray import RayBackend

    backend = RayBackend(tmp_path / "work", namespace=NAMESPACE,
                         node_root=str(tmp_path / "nodes"))
    try:
        plane = ControlPlane.start(tmp_path, backend, queue="el", grace_s=2.0)
        with plane.store.write() as c:
            P.upsert_queue(c, Queue("el", quota_gpus=2.0))
            P.upsert_queue(c, Queue("own", quota_gpus=6.0))
        yield plane
        print(_history(plane))  # shown when the test failed: what each row went through
    finally:
        _leave_the_cluster_as_found(backend)


def _history(plane: ControlPlane) -> str:
    with plane.store.read() as c:
        return "\n".join(f"{e.at:.1f} {e.workload_id} {e.kind} {e.reason} {e.to_state or ''} "
                         f"{e.message[:200]}" for e in W.list_events(c))


def _leave_the_cluster_as_found(backend: Any) -> None:
    """Stop and release every attempt this backend launched (their workers killed, placement
    groups removed), kill its host actors, and wait for every GPU to be free again."""
    total = ray.cluster_resources().get("GPU", 0.0)
    attempts = list(backend._attempts)
    for wid, attempt in attempts:
        with contextlib.suppress(Exception):
            backend.stop(wid, attempt, 0.0, "the test ended")
    with contextlib.suppress(AssertionError):
        wait_until(lambda: all(s.state.ended for s in backend.poll(time.time())), timeout=30,
                   what="the test's workers to end")
    for wid, attempt in attempts:
        with contextlib.suppress(Exception):
            backend.release(wid, attempt)
    for record in backend.records.scan():  # whatever release left (a worker not seen ended)
        backend._unreserve(record)
    for name in {f"corral-host/{n['NodeID']}" for n in ray.nodes()}:
        with contextlib.suppress(ValueError):  # no host on that node
            ray.kill(ray.get_actor(name, namespace=NAMESPACE))
    wait_until(lambda: ray.available_resources().get("GPU", 0.0) == total, timeout=60,
               what="the test's placement groups to be removed (every GPU free)")


def ray_gpus_held() -> float:
    """GPUs Ray counts as taken (placement groups: corral's hold of each attempt's share)."""
    return ray.cluster_resources().get("GPU", 0.0) - ray.available_resources().get("GPU", 0.0)


def test_starts_at_min_grows_after_the_interval_and_gives_extras_back_first(
        plane: ControlPlane, tmp_path: Path) -> None:
    out = tmp_path / "worlds.txt"
    # own fills one node and half the other: 2 GPUs left, room for the core gang alone, on one
    # node (so no node holds a core worker as its only borrowed work: module docstring)
    blockers = [plane.submit_spec({"name": f"blk{g}", "queue": "own", "gpus": g,
                                   "command": SLEEP})[0] for g in (4, 2)]
    plane.run_until(lambda: all(plane.record(b).state == "running" for b in blockers),
                    "the blockers")
    [job, *extras] = plane.submit_spec({
        "name": "el", "gpus": 1, "env": {"OUT": str(out)}, "command": [sys.executable, "-c",
                                                                       WORKER],
        "elastic": {"min_workers": 2, "max_workers": 5, "resize_interval": 3},
        "restart_on": [{"exit_code": [3]}], "max_restarts": 1, "restart_backoff": 0})
    assert len(extras) == 3
    plane.run_until(lambda: whole(out, 2), "the core gang alone, world of 2", timeout=120)
    assert {plane.record(x).state for x in extras} == {"pending"}
    assert plane.nodes_of(job, plane.record(job).attempt) == plane.nodes_of(blockers[1], 0) * 2

    for b in blockers:  # room for the extras
        cancel(plane.store, b, time.time(), "ann")
    plane.run_until(lambda: whole(out, 5), "the world of 5", timeout=180)
    assert plane.record(job).restart_count == 0  # a resize spends no restart
    plane.run_until(lambda: {plane.record(x).state for x in extras} == {"running"}, "extras")
    wait_until(lambda: ray_gpus_held() == 5.0, timeout=60,
               what="Ray to hold 5 GPUs (the world's), the blocker's and the old worlds' "
               "placement groups removed")

    # own takes back what el borrows: five tasks of 1 GPU; three fit in the 3 GPUs left free,
    # the other two are owed and take two extras (never the core gang)
    owners = [plane.submit_spec({"name": f"own{i}", "queue": "own", "gpus": 1,
                                 "command": SLEEP})[0] for i in range(5)]
    plane.run_until(lambda: all(plane.record(o).state == "running" for o in owners)
                    and whole(out, 3), "the owners and the world of 3", timeout=180)
    assert plane.record(job).state == "running"
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
    wait_until(lambda: ray_gpus_held() == 8.0, timeout=60,
               what="Ray to hold the world of 3 and the 5 owners' GPUs, nothing more")

    # the extra left crashes with exit 3, which the job's restart_on retries: it starts again
    # (its restart counted on its row), and its peers restart with it into a new generation
    [left] = [x for x in extras if x not in taken]
    before = newest_generation(out)
    (tmp_path / f"fail-{left}").touch()
    plane.run_until(lambda: newest_generation(out) > before and whole(out, 3),
                    "a new world of 3 after the crash", timeout=180)
    assert (plane.record(left).restart_count, plane.record(job).restart_count) == (1, 0)
    assert recorded_sizes(plane.store, job)[-1][1] == 3
