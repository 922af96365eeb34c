"""Webhooks through the API: a bad hook is a 422 naming its field, the delivery log is read
by whoever may see the workload (404 for anyone else), and never shows a secret's value."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.harness import Api, build, job
from corral.store import Store
from corral.store import secrets as S

VALUE = "whsec-api-0123456789"


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Api:
    store.secret_box = S.SecretBox.load(tmp_path)
    api = build(store)
    with store.write() as c:
        S.put_secret(c, store.secret_box, "hook", VALUE, queue="team-a", by="root", now=0.0)
    return api


def _hook(**fields: object) -> dict[str, object]:
    return {"url": "https://hooks.example.com/corral", "events": ["cancelled"], **fields}


def test_a_bad_url_is_a_422_naming_the_field(api: Api) -> None:
    before = api.rows()
    got = api.client.post("/v1/workloads", json=job(notify=[_hook(url="file:///etc/passwd")]),
                          headers=api.ann)
    assert got.status_code == 422, got.text
    (problem,) = got.json()["problems"]
    assert problem["field"].startswith("notify") and "url" in problem["field"]
    assert "http:// or https://" in problem["message"]
    assert api.rows() == before


def test_a_missing_secret_is_a_422_naming_the_hook(api: Api) -> None:
    got = api.client.post("/v1/workloads", json=job(notify=[_hook(secret="nope")]),
                          headers=api.ann)
    assert got.status_code == 422, got.text
    assert [p["field"] for p in got.json()["problems"]] == ["notify[0].secret"]


def test_the_delivery_log_is_read_by_who_may_see_the_workload(api: Api) -> None:
    sub = api.client.post("/v1/workloads", json=job(notify=[_hook(secret="hook")]),
                          headers=api.ann)
    assert sub.status_code == 201, sub.text
    wid = sub.json()["workloads"][0]["id"]
    assert api.client.post(f"/v1/workloads/{wid}/cancel", headers=api.ann).status_code == 200
    log = api.client.get(f"/v1/workloads/{wid}/deliveries", headers=api.ann)
    assert log.status_code == 200, log.text
    (d,) = log.json()["items"]
    assert (d["event"], d["state"], d["attempts"], d["signed_with"]) == (
        "cancelled", "pending", 0, "hook")
    assert VALUE not in log.text
    group = api.client.get(f"/v1/groups/{sub.json()['group_id']}/deliveries", headers=api.ann)
    assert [x["id"] for x in group.json()["items"]] == [d["id"]]
    other = api.client.post("/v1/workloads", json=job(queue="team-b", notify=[_hook()]),
                            headers=api.admin)
    oid = other.json()["workloads"][0]["id"]
    hidden = api.client.get(f"/v1/workloads/{oid}/deliveries", headers=api.ann)
    assert hidden.status_code == 404
    assert api.client.get("/v1/workloads/nope/deliveries", headers=api.ann).status_code == 404
