"""A parent queue's use is what its subtree holds, in `GET /v1/queues` as on the dashboard and
in /metrics (issue 14: `corral queues` said 0 for a parent whose children held 24.5 GPUs,
while the dashboard said 24.5): quotas and limits are checked against subtree use
(corral.core.queues), so that is the one definition."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from corral.api import ApiContext, create_app
from corral.backends.fake import FakeBackend
from corral.control import ControlLoop, ManualClock, Submissions
from corral.core.model import CapacityKind, Node, Queue
from corral.store import Store
from corral.store import auth as A
from corral.store import pool as P

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # see harness.py: Starlette's TestClient deprecation
    from fastapi.testclient import TestClient

NODES = [Node(f"n{i}", "local", "H100", 4, 81920, 64_000, 262_144,
              capacity_kind=CapacityKind.OWNED) for i in range(2)]


@dataclass
class Tree:
    client: TestClient
    loop: ControlLoop
    admin: dict[str, str]

    def submit(self, queue: str, gpus: float) -> None:
        spec = {"name": "w", "queue": queue, "gpus": gpus, "cpu": 0.1, "memory": 64,
                "command": ["run"]}
        r = self.client.post("/v1/workloads", json=spec, headers=self.admin)
        assert r.status_code == 201, r.text

    def get(self, path: str) -> Any:
        r = self.client.get(path, headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def tree(store: Store) -> Iterator[Tree]:
    """org > (ml > ml-nlp, cv); solo has no parent."""
    with store.write() as c:
        P.sync_nodes(c, [{"name": "local"}], NODES)
        for q in (Queue("org", quota_gpus=6), Queue("ml", quota_gpus=4, parent="org"),
                  Queue("ml-nlp", quota_gpus=2, parent="ml"),
                  Queue("cv", quota_gpus=2, parent="org"), Queue("solo", quota_gpus=2)):
            P.upsert_queue(c, q)
        A.create_user(c, "root", "admin", [], 0.0)
        admin = A.create_token(c, "root", 0.0)
    clock = ManualClock()
    backend = FakeBackend(NODES, check_capacity=True)
    ctx = ApiContext(store, Submissions(store), clock=clock, logs=backend, backend_name="fake")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    yield Tree(client, ControlLoop(store, backend, clock=clock),
               {"Authorization": f"Bearer {admin}"})
    client.close()


def test_a_parent_queue_uses_what_its_subtree_holds(tree: Tree) -> None:
    for queue, gpus in (("ml", 2), ("ml-nlp", 1), ("cv", 0.5), ("solo", 1)):
        tree.submit(queue, gpus)
    for _ in range(3):
        tree.loop.step()
    used = {q["name"]: q["used_gpus"] for q in tree.get("/v1/queues")}
    assert used == {"org": 3.5, "ml": 3, "ml-nlp": 1, "cv": 0.5, "solo": 1}
    assert tree.get("/v1/queues/org")["used_gpus"] == 3.5
    board = {q["name"]: q["used_gpus"] for q in tree.get("/v1/dashboard/queues")["queues"]}
    assert board == used  # the dashboard's definition, and /metrics' (web/queue_board)
