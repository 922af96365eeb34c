"""Capacity kinds, node selectors and least GPU memory through the API and the control loop, on
SQLite and PostgreSQL: what is submitted reads back the same, the scheduler honours it, and a
constraint no node meets is refused at submission naming its field."""

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

GIB = 1024


def node(id: str, kind: CapacityKind, model: str, mem_gib: int, region: str,
         labels: tuple[tuple[str, str], ...] = (), rack: str = "") -> Node:
    return Node(id, id.split("-")[0], model, 4, mem_gib * GIB, 64_000, 262_144,
                capacity_kind=kind, region=region, labels=labels, rack=rack)


NODES = [
    node("own-0", CapacityKind.OWNED, "H100", 80, "eu-central", (("fabric", "ib"),), "fra-r12"),
    node("spot-0", CapacityKind.SPOT, "H100", 80, "us-east-1"),
    node("cloud-0", CapacityKind.ON_DEMAND, "L4", 24, "us-east-1"),
]


@dataclass
class Pool:
    client: TestClient
    loop: ControlLoop
    clock: ManualClock
    admin: dict[str, str]

    def post(self, **fields: Any) -> Any:
        spec = {"name": "w", "queue": "team", "gpus": 1, "cpu": 0.1, "memory": 64,
                "command": ["run"], **fields}
        return self.client.post("/v1/workloads", json=spec, headers=self.admin)

    def submit(self, **fields: Any) -> str:
        r = self.post(**fields)
        assert r.status_code == 201, r.text
        return str(r.json()["workloads"][0]["id"])

    def get(self, wid: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/workloads/{wid}", headers=self.admin)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def nodes_of(self, wid: str) -> set[str]:
        return {p["node_id"] for p in self.get(wid)["placements"]}

    def step(self, n: int = 3) -> None:
        for _ in range(n):
            self.loop.step()
            self.clock.advance(1.0)


@pytest.fixture
def pool(store: Store) -> Iterator[Pool]:
    with store.write() as c:
        P.sync_nodes(c, [{"name": n.provider, "capacity_kind": str(n.capacity_kind)}
                         for n in NODES], NODES)
        P.upsert_queue(c, Queue("team", quota_gpus=12))
        A.create_user(c, "root", "admin", [], 0.0)
        admin = A.create_token(c, "root", 0.0)
    clock = ManualClock()
    backend = FakeBackend(NODES, check_capacity=True)
    ctx = ApiContext(store, Submissions(store), clock=clock, logs=backend, backend_name="fake")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    yield Pool(client, ControlLoop(store, backend, clock=clock), clock,
               {"Authorization": f"Bearer {admin}"})
    client.close()


def test_fields_read_back_and_place_where_they_allow(pool: Pool) -> None:
    wid = pool.submit(name="tuned", capacity=["owned", "on-demand"], min_gpu_memory="40GiB",
                      node_selector={"fabric": "ib", "corral.dev/region": "eu-central"})
    spec = pool.get(wid)["spec"]
    assert spec["capacity"] == ["owned", "on-demand"] and spec["min_gpu_memory"] == 40 * GIB
    assert spec["node_selector"] == {"fabric": "ib", "corral.dev/region": "eu-central"}
    pool.step()
    assert pool.get(wid)["state"] == "running" and pool.nodes_of(wid) == {"own-0"}


def test_work_that_must_not_stop_never_lands_on_spot(pool: Pool) -> None:
    first = pool.submit(name="first", gpus=4, gpu_models=["H100"], preemptible=False)
    pool.step()
    assert pool.nodes_of(first) == {"own-0"}
    second = pool.submit(name="second", gpus=4, gpu_models=["H100"], preemptible=False)
    batch = pool.submit(name="batch", gpus=4, gpu_models=["H100"])  # preemptible: spot is fine
    pool.step(5)
    assert pool.get(second)["state"] == "pending"  # the idle spot node is not for it
    assert pool.nodes_of(batch) == {"spot-0"}


def test_service_minimum_off_spot_surplus_on_it(pool: Pool) -> None:
    r = pool.post(name="svc", kind="service", replicas=3, min_replicas=1, gpus=4,
                  gpu_models=["H100"])
    assert r.status_code == 201, r.text
    ids = [w["id"] for w in r.json()["workloads"]]
    pool.step()
    assert [pool.nodes_of(i) for i in ids[:2]] == [{"own-0"}, {"spot-0"}]
    assert pool.get(ids[2])["state"] == "pending"  # r2 may use spot, but spot-0 is full


def test_min_gpu_memory_keeps_a_job_off_small_gpus(pool: Pool) -> None:
    pool.submit(name="fill", gpus=4, gpu_models=["H100"], preemptible=False)
    pool.step()
    big = pool.submit(name="big", gpus=1, min_gpu_memory="40GiB", preemptible=False)
    small = pool.submit(name="small", gpus=1, preemptible=False)
    pool.step(5)
    assert pool.get(big)["state"] == "pending"  # only the 24 GiB L4s are free (and stable)
    assert pool.nodes_of(small) == {"cloud-0"}


def test_selector_restricts_placement(pool: Pool) -> None:
    pool.submit(name="fill", gpus=4, gpu_models=["H100"], preemptible=False)
    pool.step()
    picky = pool.submit(name="picky", gpus=1, node_selector={"fabric": "ib"})
    anywhere = pool.submit(name="anywhere", gpus=1, gpu_models=["H100"])
    pool.step(5)
    assert pool.get(picky)["state"] == "pending"  # own-0 is the only node with fabric=ib
    assert pool.nodes_of(anywhere) == {"spot-0"}


@pytest.mark.parametrize("fields,field,words", [
    ({"node_selector": {"fabric": "roce"}}, "node_selector", "values of fabric in the pool: ib"),
    ({"node_selector": {"fabric": "ib", "corral.dev/region": "us-east-1"}}, "node_selector",
     "all of"),
    ({"min_gpu_memory": "141GiB"}, "min_gpu_memory", "largest in the pool have 80 GiB"),
    ({"capacity": ["spot"], "gpu_models": ["L4"]}, "spec", "capacity and gpu_models together"),
    ({"capacity": ["spot"], "node_selector": {"fabric": "ib"}}, "spec",
     "capacity and node_selector together"),
], ids=["no-label", "labels-apart", "memory", "model-not-on-spot", "kinds-and-labels-apart"])
def test_constraint_no_node_meets_is_refused_naming_it(
        pool: Pool, fields: dict[str, Any], field: str, words: str) -> None:
    r = pool.post(**fields)
    assert r.status_code == 422, r.text
    found = {p["field"]: p["message"] for p in r.json()["problems"]}
    assert field in found and words in found[field], found


def test_default_capacity_refusal_explains_the_default(store: Store) -> None:
    """A pool of spot only: a notebook (never preempted) is told why and how to allow spot."""
    spot = [node("spot-0", CapacityKind.SPOT, "H100", 80, "us-east-1")]
    with store.write() as c:
        P.sync_nodes(c, [{"name": "spot", "capacity_kind": "spot"}], spot)
        P.upsert_queue(c, Queue("team", quota_gpus=4))
    from corral.spec import SpecError, WorkloadSpec

    subs = Submissions(store)
    spec = WorkloadSpec.model_validate({"name": "nb", "queue": "team", "kind": "interactive",
                                        "gpus": 0.25, "shell": "jupyter lab"})
    with pytest.raises(SpecError) as info:
        subs.check(spec)
    (where, message), = info.value.problems
    assert where == "capacity" and "stays off spot" in message and "capacity: [spot]" in message
    subs.check(spec.model_copy(update={"capacity": [CapacityKind.SPOT]}))  # allowed: accepted


def test_default_capacity_with_a_model_only_on_spot_says_why(pool: Pool) -> None:
    r = pool.post(name="infer", gpus=1, gpu_models=["H100"], preemptible=False,
                  node_selector={"corral.dev/region": "us-east-1"})
    found = {p["field"]: p["message"] for p in r.json()["problems"]}
    assert r.status_code == 422 and "list spot in capacity" in found["spec"], found


def test_nodes_show_their_labels_and_rack_to_select_by(pool: Pool) -> None:
    r = pool.client.get("/v1/nodes", headers=pool.admin)
    assert r.status_code == 200, r.text
    got = {n["id"]: (n["labels"], n["rack"]) for n in r.json()}
    assert got["own-0"] == ({"fabric": "ib"}, "fra-r12") and got["spot-0"] == ({}, "")
