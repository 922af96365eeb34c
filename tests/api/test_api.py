"""The HTTP API on SQLite and PostgreSQL: auth and roles, submission checks (nothing stored on
refusal), listing and paging, cancel, why, events, logs, dry run, queues and nodes."""

from __future__ import annotations

import pytest

from corral.store import Store

from .harness import Api, build, job


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


def test_health_and_version_need_no_token(api: Api) -> None:
    assert api.client.get("/v1/health").json()["database"] == "ok"
    assert api.client.get("/v1/version").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}],
                         ids=["no-token", "unknown-token"])
def test_requests_without_a_valid_token_are_401(api: Api, headers: dict) -> None:
    r = api.client.get("/v1/workloads", headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


BAD_SUBMISSIONS = [
    ("typo-field", job(gpu=1), "gpu"),
    ("unknown-queue", job(queue="nope"), "queue"),
    ("no-command", {"name": "x", "queue": "team-a", "gpus": 1}, "command"),
    ("bigger-than-any-node", job(gpus=16), "gpus"),
    ("model-nobody-offers", job(gpu_models=["B200"]), "gpu_models"),
    ("above-queue-limit", job(queue="team-b", gpus=4, workers=2), "gpus"),
    ("bad-name", job(name="Bad Name"), "name"),
    ("fraction-above-one", job(gpus=1.5), "gpus"),
]


@pytest.mark.parametrize(("body", "field"), [b[1:] for b in BAD_SUBMISSIONS],
                         ids=[b[0] for b in BAD_SUBMISSIONS])
def test_bad_submissions_are_422_with_the_field_and_store_nothing(
    api: Api, body: dict, field: str
) -> None:
    before = api.rows()
    r = api.client.post("/v1/workloads", json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert field in [p["field"] for p in r.json()["problems"]]
    assert api.rows() == before


def test_users_see_and_change_only_their_queues(api: Api) -> None:
    theirs = api.client.post("/v1/workloads", json=job(queue="team-b"), headers=api.admin)
    other_id = theirs.json()["workloads"][0]["id"]
    assert api.client.get(f"/v1/workloads/{other_id}", headers=api.ann).status_code == 404
    assert api.client.post(f"/v1/workloads/{other_id}/cancel", headers=api.ann).status_code == 404
    r = api.client.post("/v1/workloads", json=job(queue="team-b"), headers=api.ann)
    assert r.status_code == 403
    mine = api.client.post("/v1/workloads", json=job(), headers=api.ann)
    assert mine.status_code == 201
    listed = api.client.get("/v1/workloads", headers=api.ann).json()["items"]
    assert [w["queue"] for w in listed] == ["team-a"]
    assert api.client.post("/v1/nodes/n0/cordon", headers=api.ann).status_code == 403
    assert api.client.post("/v1/queues", json={"name": "x"}, headers=api.ann).status_code == 403


def test_list_pages_and_filters(api: Api) -> None:
    for i in range(5):
        api.client.post("/v1/workloads", json=job(name=f"j{i}"), headers=api.admin)
    first = api.client.get("/v1/workloads?limit=3", headers=api.admin).json()
    rest = api.client.get(f"/v1/workloads?limit=3&cursor={first['next_cursor']}",
                          headers=api.admin).json()
    names = [w["name"] for w in first["items"] + rest["items"]]
    assert names == ["j4", "j3", "j2", "j1", "j0"] and rest["next_cursor"] is None
    pending = api.client.get("/v1/workloads?state=pending&state=running", headers=api.admin)
    assert len(pending.json()["items"]) == 5
    bad = api.client.get("/v1/workloads?state=sleeping", headers=api.admin)
    assert bad.status_code == 422 and bad.json()["problems"]


def test_cancel_why_and_events(api: Api) -> None:
    wid = api.client.post("/v1/workloads", json=job(), headers=api.admin).json()["workloads"][0]["id"]
    why = api.client.get(f"/v1/workloads/{wid}/why", headers=api.admin).json()
    assert (why["state"], why["code"]) == ("pending", "Submitted")
    r = api.client.post(f"/v1/workloads/{wid}/cancel", headers=api.admin)
    assert r.json()["state"] == "cancelled"
    again = api.client.post(f"/v1/workloads/{wid}/cancel", headers=api.admin)
    assert again.status_code == 200  # idempotent
    events = api.client.get(f"/v1/workloads/{wid}/events", headers=api.admin).json()["items"]
    assert [(e["to_state"], e["reason"]) for e in events] == [
        ("pending", "Submitted"), ("cancelled", "Cancelled")]


def test_logs_are_read_from_an_offset(api: Api) -> None:
    from corral.backends.base import LaunchSpec
    from corral.core.model import WorkerAssignment

    wid = api.client.post("/v1/workloads", json=job(), headers=api.admin).json()["workloads"][0]["id"]
    api.backend.launch(LaunchSpec(wid, 0, "team-a", (WorkerAssignment(0, "n0", (0,), 1000, 0),),
                                  ("python",)))
    api.backend.write_log(wid, 0, b"hello\nworld\n")
    first = api.client.get(f"/v1/workloads/{wid}/logs?offset=0&max_bytes=6",
                           headers=api.admin).json()
    second = api.client.get(f"/v1/workloads/{wid}/logs?offset={first['next_offset']}",
                            headers=api.admin).json()
    assert (first["data"], second["data"]) == ("hello\n", "world\n")


def test_dry_run_answers_and_stores_nothing(api: Api) -> None:
    before = api.rows()
    r = api.client.post("/v1/dry-run", json=job(gpus=4), headers=api.admin).json()
    assert r["outcome"] == "start" and r["placements"]
    assert api.rows() == before


def test_queue_crud_with_usage(api: Api) -> None:
    r = api.client.post("/v1/queues", json={"name": "ml", "quota_gpus": 2, "limit_gpus": 1},
                        headers=api.admin)
    assert r.status_code == 422 and r.json()["problems"]  # limit below quota
    assert api.client.post("/v1/queues", json={"name": "ml", "quota_gpus": 2},
                           headers=api.admin).status_code == 201
    assert api.client.post("/v1/queues", json={"name": "ml"}, headers=api.admin).status_code == 409
    put = api.client.put("/v1/queues/ml", json={"name": "ml", "quota_gpus": 3}, headers=api.admin)
    assert put.json()["quota_gpus"] == 3
    api.client.post("/v1/workloads", json=job(queue="ml"), headers=api.admin)
    info = api.client.get("/v1/queues/ml", headers=api.admin).json()
    assert (info["pending"], info["used_gpus"]) == (1, 0)
    assert api.client.delete("/v1/queues/ml", headers=api.admin).status_code == 409


def test_cordon_and_users(api: Api) -> None:
    assert api.client.post("/v1/nodes/n0/cordon", headers=api.admin).json()["cordoned"]
    assert api.client.post("/v1/nodes/zz/cordon", headers=api.admin).status_code == 404
    r = api.client.post("/v1/users", json={"name": "bo", "queues": ["team-b"]}, headers=api.admin)
    token = r.json()["token"]
    me = api.client.get("/v1/queues", headers={"Authorization": f"Bearer {token}"}).json()
    assert [q["name"] for q in me] == ["team-b"]
