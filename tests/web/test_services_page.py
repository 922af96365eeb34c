"""/v1/dashboard/services (issue 12): every live service of the caller's queues with its
endpoint, replicas ready / desired, cost, and its traffic from the gateway's counters: rates,
p50 / p99 and errors now, and a point per sample interval for the charts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.api.harness import Api, build

from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock
from corral.gateway import RouteTable
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.traffic import TrafficHistory
from corral.store import Store
from corral.store.database import sqlite_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(sqlite_url(tmp_path / "corral.db"))
    s.upgrade()
    yield s
    s.close()


def service(**fields: Any) -> dict[str, Any]:
    return {"name": "chat", "queue": "team-a", "kind": "service", "gpus": 1, "cpu": 0.1,
            "memory": 64, "command": ["serve"], "replicas": 2, "min_replicas": 1,
            "max_replicas": 4, **fields}


def submit(api: Api, spec: dict[str, Any], who: dict[str, str]) -> str:
    r = api.client.post("/v1/workloads", json=spec, headers=who)
    assert r.status_code == 201, r.text
    return str(r.json()["group_id"])


def test_the_services_view_lists_replicas_cost_and_traffic_per_visible_service(
        store: Store) -> None:
    api = build(store)
    sid = submit(api, service(auth={"token_sha256": hashlib.sha256(b"t").hexdigest()}),
                 api.ann)
    other = submit(api, service(name="batch", queue="team-b", replicas=1), api.admin)
    submit(api, {"name": "train", "queue": "team-a", "gpus": 1, "command": ["t"]}, api.ann)
    clock = ManualClock()
    loop = ControlLoop(store, api.backend, clock=clock, settings=ControlSettings(),
                       leadership=Leadership(store, ttl_s=15.0))
    for _ in range(3):
        loop.step()
        clock.advance(1)
    app: Any = api.client.app
    empty = api.client.get("/v1/dashboard/services", headers=api.ann).json()
    assert empty["sampled"] is False and empty["services"][0]["traffic"] is None

    metrics = GatewayMetrics(RouteTable(), lambda _: 0)
    history = TrafficHistory(metrics.registry)
    app.state.corral_traffic = history  # what mount_gateway does in `corral up`
    keys = {sid: [sid, "chat"], other: [other, "batch"]}
    t0 = app.state.corral.clock.now() - 10  # the server's clock: the window ends at its now
    history.sample(t0, keys)
    for _ in range(19):
        metrics.requests.labels("chat", "200").inc()
        metrics.total.labels("chat").observe(0.04)
    metrics.requests.labels(sid, "504").inc()
    metrics.total.labels(sid).observe(3.0)
    history.sample(t0 + 10, keys)

    mine = api.client.get("/v1/dashboard/services?window_s=900&recent_s=60", headers=api.ann)
    assert mine.status_code == 200, mine.text
    [row] = mine.json()["services"]  # team-b's service and the job are not listed for ann
    assert (row["id"], row["state"], row["ready"], row["desired"]) == (sid, "serving", 2, 2)
    assert (row["endpoint"], row["auth"]) == (f"/serve/{sid}/", "token")
    assert row["replica_hours"] >= 0 and row["cost"]
    now = row["traffic"]
    assert (now["requests"], now["errors"]) == (20, 1)
    assert now["requests_per_s"] == 2.0 and now["errors_per_s"] == 0.1
    assert 25 < now["p50_ms"] <= 50 and 2500 < now["p99_ms"] <= 5000
    assert len(row["series"]) == 1 and row["series"][0]["at"] == t0 + 10
    every = api.client.get("/v1/dashboard/services", headers=api.admin).json()["services"]
    assert {r["id"] for r in every} == {sid, other}
    bad = api.client.get("/v1/dashboard/services?window_s=1", headers=api.ann)
    assert bad.status_code == 422 and "window_s" in bad.text
    assert api.client.get("/v1/dashboard/services").status_code == 401
