"""GET /v1/workloads/{id} of an elastic job says its bounds and its current world, derived from
its spec and the latest world the control plane recorded (corral.control.elastic): the same on
the core gang and on each extra; null for other work. A real control loop on the fake backend
(tests/control/rig.py) resizes the job; the API reads the same store."""

from __future__ import annotations

from typing import Any

from tests.control.rig import Rig

from api.harness import build
from corral.cli.render import elastic_text
from corral.sdk import models as M
from corral.store import Store

ELASTIC = {"min_workers": 2, "max_workers": 4, "resize_interval": 30}


def test_the_read_follows_the_world_as_it_grows(store: Store) -> None:
    rig = Rig(store)
    api = build(store)

    def elastic(wid: str) -> Any:
        got = api.client.get(f"/v1/workloads/{wid}", headers=api.admin)
        assert got.status_code == 200, got.text
        return got.json()["elastic"]

    blocker = rig.submit(name="blk", gpus=2, workers=3)  # 6 of 8 GPUs: only the core fits
    rig.step(2)
    job = rig.submit(name="el", elastic=ELASTIC)
    assert elastic(job) == {"min_workers": 2, "max_workers": 4, "world_size": None,
                            "generation": None}
    rig.step(3)
    assert rig.state(job) == "running"
    started = elastic(job)
    assert (started["world_size"], started["min_workers"], started["max_workers"]) == (2, 2, 4)

    rig.backend.finish(blocker)
    rig.step(40)  # past resize_interval: both extras placed, one more world
    grown = elastic(job)
    assert grown["world_size"] == 4 and grown["generation"] == started["generation"] + 1
    assert elastic(f"{job}-e1") == grown  # an extra says its job's world
    assert elastic(rig.submit(name="plain", gpus=1)) is None
    listed = api.client.get("/v1/workloads", headers=api.admin).json()["items"]
    assert {w["elastic"] for w in listed} == {None}  # lists stay as cheap as they were

    line = elastic_text(M.ElasticWorld.model_validate(grown))
    assert line == f"world of 4 workers (2 to 4 allowed), generation {grown['generation']}"


def test_the_line_before_any_world() -> None:
    line = elastic_text(M.ElasticWorld(min_workers=2, max_workers=8))
    assert line == "no world yet (2 to 8 allowed); starts at 2 when they fit"
