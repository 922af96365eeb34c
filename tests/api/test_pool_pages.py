"""/v1/nodes pages and filters on the server; /v1/nodes/summary counts per provider, model, state."""

from __future__ import annotations

import pytest

from corral.store import Store

from .harness import Api, build, job


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


def _ids(api: Api, query: str) -> list[str]:
    r = api.client.get(f"/v1/nodes{query}", headers=api.admin)
    assert r.status_code == 200, r.text
    return [n["id"] for n in r.json()]


def test_nodes_page_in_id_order_and_filter(api: Api) -> None:
    assert _ids(api, "") == ["n0", "n1"]
    assert _ids(api, "?limit=1") == ["n0"]
    assert _ids(api, "?limit=1&after=n0") == ["n1"]
    assert _ids(api, "?limit=5&after=n1") == []
    assert _ids(api, "?gpu_model=A100") == []
    assert _ids(api, "?provider=local&gpu_model=H100") == ["n0", "n1"]
    api.client.post("/v1/nodes/n1/cordon", headers=api.admin).raise_for_status()
    assert _ids(api, "?state=cordoned") == ["n1"]
    assert _ids(api, "?state=schedulable&limit=10") == ["n0"]


def test_a_page_counts_the_gpus_its_nodes_hold(api: Api) -> None:
    from corral.control import ControlLoop, ManualClock

    api.client.post("/v1/workloads", json=job(gpus=3), headers=api.admin).raise_for_status()
    ControlLoop(api.store, api.backend, clock=ManualClock()).step()
    page = api.client.get("/v1/nodes?limit=2", headers=api.admin).json()
    assert sorted(n["gpus_used"] for n in page) == [0, 3]


def test_summary_counts_nodes_gpus_and_use_per_group(api: Api) -> None:
    r = api.client.get("/v1/nodes/summary", headers=api.ann)
    assert r.status_code == 200, r.text
    assert r.json() == [{"provider": "local", "gpu_model": "H100", "state": "schedulable",
                         "nodes": 2, "gpus": 8, "gpus_used": 0.0}]
    api.client.post("/v1/nodes/n1/cordon", headers=api.admin).raise_for_status()
    states = {(g["state"], g["nodes"]) for g in
              api.client.get("/v1/nodes/summary", headers=api.ann).json()}
    assert states == {("schedulable", 1), ("cordoned", 1)}


def test_bad_page_arguments_are_422_naming_the_field(api: Api) -> None:
    for query, field in (("?limit=0", "limit"), ("?state=broken", "state"),
                         ("?limit=100000", "limit")):
        r = api.client.get(f"/v1/nodes{query}", headers=api.admin)
        assert r.status_code == 422, r.text
        assert field in r.text
