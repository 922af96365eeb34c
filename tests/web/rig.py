"""An in-process API with the dashboard, a control loop on a fake backend and a manual clock,
an admin, and two users in two queues. The loop's cycles feed the app's metrics."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette (>= 1.x) deprecates its TestClient on httpx in favour of httpx2, which the
    # project does not depend on; the client itself works the same.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from corral.api import ApiContext, create_app
from corral.backends.fake import FakeBackend
from corral.control import ControlLoop, ControlSettings, ManualClock, Submissions
from corral.control.accounting import accounting_from_pool
from corral.core.model import CapacityKind, Node, Queue
from corral.store import Store
from corral.store import auth as A
from corral.store import pool as P
from corral.web import observe_loop

NODES = [
    Node("aws-0", "aws", "H100", 4, 81920, 64_000, 262_144, price_per_gpu_hour=4.1,
         capacity_kind=CapacityKind.ON_DEMAND, region="us-east-1"),
    Node("gcp-0", "gcp", "L4", 2, 24576, 32_000, 131_072, price_per_gpu_hour=0.3,
         capacity_kind=CapacityKind.SPOT, region="us-central1"),
]


@dataclass
class Dash:
    store: Store
    clock: ManualClock
    backend: FakeBackend
    loop: ControlLoop
    app: FastAPI
    client: TestClient
    admin: dict[str, str]
    ann: dict[str, str]  # member of team-a
    bob: dict[str, str]  # member of team-b

    def submit(self, who: dict[str, str], **fields: Any) -> str:
        spec = {"name": "w", "queue": "team-a", "gpus": 1, "cpu": 0.1, "memory": 64,
                "command": ["run"], **fields}
        r = self.client.post("/v1/workloads", json=spec, headers=who)
        assert r.status_code == 201, r.text
        return str(r.json()["workloads"][0]["id"])

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.loop.step()
            self.clock.advance(1.0)

    def state(self, wid: str) -> str:
        return str(self.client.get(f"/v1/workloads/{wid}", headers=self.admin).json()["state"])

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """/metrics parsed by the Prometheus client: sample name -> [(labels, value)]."""
        r = self.client.get("/metrics", headers=self.admin)
        assert r.status_code == 200, r.text
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                out.setdefault(s.name, []).append((dict(s.labels), s.value))
        return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    return sum(v for ls, v in samples.get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


def build(store: Store) -> Dash:
    with store.write() as c:
        P.sync_nodes(c, [{"name": "aws"}, {"name": "gcp"}], NODES)
        P.upsert_queue(c, Queue("team-a", quota_gpus=4))
        P.upsert_queue(c, Queue("team-b", quota_gpus=2, limit_gpus=4))
        A.create_user(c, "root", "admin", [], 0.0)
        A.create_user(c, "ann", "user", ["team-a"], 0.0)
        A.create_user(c, "bob", "user", ["team-b"], 0.0)
        tokens = [A.create_token(c, u, 0.0) for u in ("root", "ann", "bob")]
    clock = ManualClock()
    backend = FakeBackend(NODES, check_capacity=True)
    ctx = ApiContext(store, Submissions(store), clock=clock, logs=backend, backend_name="fake")
    app = create_app(ctx)
    app.state.corral_web.reader.ttl_s = 0.0  # every request reads the store: no 1 s staleness
    accounting = accounting_from_pool(store, None, clock.now())  # node prices, unenforced budgets
    loop = ControlLoop(store, backend, clock=clock, settings=ControlSettings(stop_grace_s=5.0),
                       admission=accounting)
    observe_loop(app, loop)
    client = TestClient(app, raise_server_exceptions=False)
    admin, ann, bob = ({"Authorization": f"Bearer {t}"} for t in tokens)
    return Dash(store, clock, backend, loop, app, client, admin, ann, bob)
