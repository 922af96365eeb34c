"""GET /v1/providers on SQLite and PostgreSQL: one summary per provider that agrees with
/v1/nodes and with running fractional work, names no queue or workload, and needs a token;
and the pure summary (`provider_infos`) on its own, table-driven."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from corral.api import ApiContext, create_app
from corral.api.pool import provider_infos
from corral.backends.fake import FakeBackend
from corral.control import ControlLoop, ManualClock, Submissions
from corral.core.model import CapacityKind, Health, Node, Queue
from corral.store import Store
from corral.store import auth as A
from corral.store import pool as P
from corral.store.workloads import Held

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # see harness.py: Starlette's TestClient deprecation
    from fastapi.testclient import TestClient

OD, SPOT, OWNED = CapacityKind.ON_DEMAND, CapacityKind.SPOT, CapacityKind.OWNED


def node(id: str, provider: str, model: str, gpus: int, kind: CapacityKind, region: str,
         price: float, health: Health = Health.HEALTHY) -> Node:
    return Node(id, provider, model, gpus, 81920, 64_000, 262_144, price_per_gpu_hour=price,
                capacity_kind=kind, region=region, health=health)


NODES = [
    node("aws-0", "aws", "H100", 4, OD, "us-east-1", 4.1),
    node("aws-1", "aws", "H100", 4, SPOT, "us-west-2", 1.5),
    node("aws-2", "aws", "A10G", 1, OD, "us-east-1", 1.0),
    node("gcp-0", "gcp", "L4", 2, SPOT, "us-central1", 0.3, Health.UNHEALTHY),
    node("gcp-1", "gcp", "L4", 2, SPOT, "us-central1", 0.35),
    node("lab-0", "lab", "H100", 4, OWNED, "fra", 0.0),
]


@dataclass
class Pool:
    client: TestClient
    loop: ControlLoop
    clock: ManualClock
    admin: dict[str, str]
    ann: dict[str, str]  # a user of team-a only

    def submit(self, **fields: Any) -> str:
        spec = {"name": "w", "queue": "team-a", "gpus": 1, "cpu": 0.1, "memory": 64,
                "command": ["run"], **fields}
        r = self.client.post("/v1/workloads", json=spec, headers=self.ann)
        assert r.status_code == 201, r.text
        return str(r.json()["workloads"][0]["id"])

    def run_until_running(self, *ids: str, steps: int = 10) -> None:
        for _ in range(steps):
            states = {self.client.get(f"/v1/workloads/{i}", headers=self.admin).json()["state"]
                      for i in ids}
            if states == {"running"}:
                return
            self.loop.step()
            self.clock.advance(1.0)
        raise AssertionError(f"not running after {steps} steps: {states}")


@pytest.fixture
def pool(store: Store) -> Iterator[Pool]:
    with store.write() as c:
        P.sync_nodes(c, [{"name": p} for p in ("aws", "gcp", "lab")], NODES)
        P.upsert_queue(c, Queue("team-a", quota_gpus=8))
        A.create_user(c, "root", "admin", [], 0.0)
        A.create_user(c, "ann", "user", ["team-a"], 0.0)
        admin, ann = A.create_token(c, "root", 0.0), A.create_token(c, "ann", 0.0)
    clock = ManualClock()
    backend = FakeBackend(NODES, check_capacity=True)
    ctx = ApiContext(store, Submissions(store), clock=clock, logs=backend, backend_name="fake")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    yield Pool(client, ControlLoop(store, backend, clock=clock), clock,
               {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {ann}"})
    client.close()


def _from_nodes(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What /v1/providers must say, recomputed from /v1/nodes alone."""
    out: dict[str, dict[str, Any]] = {}
    for n in nodes:
        p = out.setdefault(n["provider"], {"nodes": 0, "gpus_total": 0, "gpus_allocated": 0.0,
                                           "gpus_idle": 0.0, "gpus_unavailable": 0.0,
                                           "gpu_models": defaultdict(int)})
        free = n["gpu_count"] - n["gpus_used"]
        takes_work = not n["cordoned"] and n["health"] == "healthy"
        p["nodes"] += 1
        p["gpus_total"] += n["gpu_count"]
        p["gpus_allocated"] += n["gpus_used"]
        p["gpus_idle" if takes_work else "gpus_unavailable"] += free
        p["gpu_models"][n["gpu_model"]] += n["gpu_count"]
    return out


def test_providers_agree_with_nodes_and_running_fractional_work(pool: Pool) -> None:
    frac = pool.submit(name="probe", gpus=0.25, gpu_models=["L4"])
    whole = pool.submit(name="train", gpus=2, gpu_models=["H100"])
    pool.run_until_running(frac, whole)
    frac_node = pool.client.get(f"/v1/workloads/{frac}", headers=pool.admin
                                ).json()["placements"][0]["node_id"]
    assert frac_node == "gcp-1"  # the only healthy L4 node
    assert pool.client.post(f"/v1/nodes/{frac_node}/cordon", headers=pool.admin).status_code == 200

    r = pool.client.get("/v1/providers", headers=pool.ann)  # a plain user sees the whole pool
    assert r.status_code == 200, r.text
    got = {p["name"]: p for p in r.json()}
    nodes = pool.client.get("/v1/nodes", headers=pool.admin).json()
    want = _from_nodes(nodes)

    assert list(got) == ["aws", "gcp", "lab"]
    for name, p in got.items():
        w = want[name]
        assert (p["nodes"], p["gpus_total"], p["gpu_models"]) == (
            w["nodes"], w["gpus_total"], dict(w["gpu_models"])), name
        for key in ("gpus_allocated", "gpus_idle", "gpus_unavailable"):
            assert p[key] == pytest.approx(w[key]), (name, key)
        assert p["gpus_total"] == pytest.approx(
            p["gpus_allocated"] + p["gpus_idle"] + p["gpus_unavailable"]), name
    assert sum(p["gpus_allocated"] for p in got.values()) == pytest.approx(2.25)

    gcp = got["gcp"]  # gcp-0 unhealthy, gcp-1 cordoned and holding the 0.25 share
    assert (gcp["capacity_kinds"], gcp["regions"]) == (["spot"], ["us-central1"])
    assert (gcp["gpus_allocated"], gcp["gpus_idle"], gcp["gpus_unavailable"]) == (0.25, 0, 3.75)
    assert gcp["nodes_unavailable"] == 2
    assert (gcp["price_per_gpu_hour_min"], gcp["price_per_gpu_hour_max"]) == (0.3, 0.35)
    aws = got["aws"]
    assert aws["capacity_kinds"] == ["on-demand", "spot"]
    assert aws["regions"] == ["us-east-1", "us-west-2"]
    assert aws["gpu_models"] == {"A10G": 1, "H100": 8}
    assert (aws["price_per_gpu_hour_min"], aws["price_per_gpu_hour_max"]) == (1.0, 4.1)
    assert got["lab"]["capacity_kinds"] == ["owned"]
    assert "team-a" not in r.text and frac not in r.text and whole not in r.text

    pool.client.post(f"/v1/nodes/{frac_node}/uncordon", headers=pool.admin)
    gcp = {p["name"]: p for p in pool.client.get("/v1/providers", headers=pool.ann).json()}["gcp"]
    assert (gcp["gpus_idle"], gcp["gpus_unavailable"], gcp["nodes_unavailable"]) == (1.75, 2, 1)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}],
                         ids=["no-token", "unknown-token"])
def test_providers_without_a_valid_token_are_401(pool: Pool, headers: dict[str, str]) -> None:
    r = pool.client.get("/v1/providers", headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def _held(node_id: str, devices: tuple[int, ...], milli: int) -> Held:
    return Held("w", "q", node_id, devices, milli)


CPU_NODE = Node("cpu-0", "p", "", 0, 0, 64_000, 262_144, price_per_gpu_hour=0.0)
PURE = [
    ("fractions-count-their-fraction",
     [node("a", "p", "H100", 4, OD, "r", 2.0)],
     [_held("a", (0,), 250), _held("a", (0, 1), 500)],
     {"gpus_allocated": 1.25, "gpus_idle": 2.75, "gpus_unavailable": 0.0}),
    ("degraded-takes-no-new-work",
     [node("a", "p", "H100", 4, OD, "r", 2.0, Health.DEGRADED)],
     [_held("a", (0,), 1000)],
     {"gpus_allocated": 1.0, "gpus_idle": 0.0, "gpus_unavailable": 3.0, "nodes_unavailable": 1}),
    ("a-cpu-node-adds-no-model-and-no-price",
     [node("a", "p", "L4", 2, OD, "r", 0.5), CPU_NODE],
     [],
     {"nodes": 2, "gpu_models": {"L4": 2}, "price_per_gpu_hour_min": 0.5, "gpus_idle": 2.0}),
    ("only-cpu-nodes",
     [CPU_NODE], [],
     {"gpus_total": 0, "gpu_models": {}, "price_per_gpu_hour_min": 0.0,
      "price_per_gpu_hour_max": 0.0}),
]


@pytest.mark.parametrize(("nodes", "held", "want"), [c[1:] for c in PURE], ids=[c[0] for c in PURE])
def test_provider_infos(nodes: list[Node], held: list[Held], want: dict[str, Any]) -> None:
    [info] = provider_infos(nodes, held)
    assert {k: getattr(info, k) for k in want} == want
