"""The workflow fields through the API: refusals name the field (never a 500), a group is
reported and cancelled as one, and only by those who may see it."""

from __future__ import annotations

import pytest

from corral.store import Store

from .harness import Api, build, job


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


def test_a_dependency_on_an_unknown_or_hidden_workload_is_a_422_naming_it(api: Api) -> None:
    theirs = api.client.post("/v1/workloads", json=job(queue="team-b"),
                             headers=api.admin).json()["group_id"]
    before = api.rows()
    for parent in ("nope-12345678", theirs):  # ann is not in team-b: the same answer
        r = api.client.post("/v1/workloads", json=job(depends_on=[{"id": parent}]),
                            headers=api.ann)
        assert r.status_code == 422, r.text
        assert [p["field"] for p in r.json()["problems"]] == ["depends_on[0].id"]
    assert api.rows() == before  # nothing stored


def test_an_oversized_array_is_a_422_naming_the_field(api: Api) -> None:
    r = api.client.post("/v1/workloads", json=job(array={"range": "0-5000"}), headers=api.ann)
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"].startswith("array")
    assert "more than the limit of 1,000" in r.text


def test_a_group_is_reported_and_cancelled_as_one_by_those_who_may(api: Api) -> None:
    r = api.client.post("/v1/workloads", json=job(array={"range": "0-3", "parallel": 2}),
                        headers=api.ann)
    assert r.status_code == 201, r.text
    group = r.json()["group_id"]
    got = api.client.get(f"/v1/groups/{group}", headers=api.ann).json()
    assert [w["id"] for w in got["workloads"]] == [f"{group}-{i}" for i in range(4)]
    assert [w["reason_code"] for w in got["workloads"]][2:] == ["ArrayParallelLimit"] * 2
    hidden = api.client.post("/v1/workloads", json=job(queue="team-b"),
                             headers=api.admin).json()["group_id"]
    assert api.client.get(f"/v1/groups/{hidden}", headers=api.ann).status_code == 404
    assert api.client.post(f"/v1/groups/{hidden}/cancel", headers=api.ann).status_code == 404
    done = api.client.post(f"/v1/groups/{group}/cancel", headers=api.ann).json()
    assert {w["state"] for w in done["workloads"]} == {"cancelled"}
    assert api.client.post(f"/v1/groups/{group}/cancel", headers=api.ann).status_code == 200


def test_the_dry_run_explains_the_workflow_fields(api: Api) -> None:
    r = api.client.post("/v1/dry-run", json=job(array={"range": "0-9", "parallel": 3},
                                                 restart_on=[{"exit_code": [75]}]),
                        headers=api.ann).json()
    assert any(n.startswith("array: 10 tasks (CORRAL_ARRAY_INDEX 0..9), at most 3 at once")
               for n in r["notes"])
    assert any("exit codes 75" in n for n in r["notes"])
