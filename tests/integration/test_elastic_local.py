"""Elastic jobs end to end on the local backend (corral.control.elastic): a real `corral up`,
real worker processes that write the world they were launched into and exit on SIGTERM.

Queues made here: elastic-a (quota 0: everything it runs is borrowed) runs the elastic job,
elastic-b (quota 4) the work that fills and then reclaims the pool's 8 virtual GPUs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tests.integration.elastic_worlds import WORKER, full, worlds

from corral.sdk import Client
from corral.sdk.models import Event
from corral.testing.corral_up import CorralServer

pytestmark = pytest.mark.slow

def _until(what: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _events(c: Client, wid: str) -> list[Event]:
    out: list[Event] = []
    while True:
        page = c.events(wid, after=out[-1].id if out else 0)
        if not page.items:
            return out
        out += page.items


def _filler(c: Client, name: str, workers: int) -> str:
    return c.submit({"name": name, "queue": "elastic-b", "gpus": 1, "workers": workers,
                     "command": [sys.executable, "-c", "import time; time.sleep(300)"]}
                    ).workloads[0].id


def test_starts_at_min_grows_when_room_frees_and_gives_extras_back_first(
        server: CorralServer, tmp_path: Path) -> None:
    out = tmp_path / "worlds.txt"
    spec = {"name": "elastic", "queue": "elastic-a", "gpus": 1, "env": {"OUT": str(out)},
            "elastic": {"min_workers": 2, "max_workers": 8, "resize_interval": 3},
            "command": [sys.executable, "-c", WORKER]}
    with server.client() as c:
        c.create_queue("elastic-a", quota_gpus=0)
        c.create_queue("elastic-b", quota_gpus=4)
        blocker = _filler(c, "blocker", 6)
        c.wait(blocker, states={"running"}, timeout_s=60)
        path = tmp_path / "elastic.yaml"
        path.write_text(yaml.safe_dump(spec))
        dry = server.cli("submit", "--dry-run", str(path)).stdout
        assert "elastic: 2 to 8 workers; would start now with 2 workers" in dry, dry

        job = c.submit(spec).workloads[0].id
        _until(lambda: full(out, 2))  # only min fits: the core gang alone, world of 2
        assert c.get(f"{job}-e1").state == "pending"

        c.cancel(blocker)  # room for the extras: the job grows, no sooner than the interval
        _until(lambda: full(out, 8))  # the whole pool, all of it borrowed
        assert c.get(job).restart_count == 0  # a resize spends no restart

        # b takes back its quota of 4: four tasks of one GPU, submitted at once
        tasks = c.submit({"name": "owner", "queue": "elastic-b", "gpus": 1,
                          "array": {"range": "0-3"}, "command": [
                              sys.executable, "-c", "import time; time.sleep(300)"]})
        owners = [w.id for w in tasks.workloads]
        _until(lambda: all(c.get(o).state == "running" for o in owners))
        _until(lambda: worlds(out)[max(worlds(out))][0] == 4 and full(out, 4))
        assert c.get(job).state == "running"
        events = _events(c, job)
        kinds = [e.reason for e in events]
        assert "Reclaim" not in kinds and "Preempt" not in kinds  # the extras went first
        recorded = [(e.at, e.data["world_size"]) for e in events
                  if e.reason == "ElasticWorld" and e.data.get("started", True)]
        sizes = [s for _, s in recorded]
        assert sizes[:2] == [2, 8] and sizes[-1] == 4 and sorted(sizes[1:], reverse=True) == \
            sizes[1:], sizes  # grew once, then only shrank
        assert recorded[1][0] - recorded[0][0] >= 3  # it grew no sooner than resize_interval

        # the file a worker may watch holds the latest world
        world_file = Path(out.read_text().splitlines()[-1].split()[3])
        assert json.loads(world_file.read_text())["world_size"] == 4

        c.cancel_group(job)
        c.cancel_group(tasks.group_id)
