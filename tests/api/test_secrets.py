"""/v1/secrets and secret references in specs: who may set them, that no answer, audit entry,
event or dry run carries a value, that the database holds them sealed, and that a reference to
a missing secret is refused at submission naming the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from api.harness import Api, build, job
from corral.store import Store
from corral.store import auth as A
from corral.store import secrets as S

VALUE = "hf_s3cr3t-VALUE-0123456789"


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Api:
    store.secret_box = S.SecretBox.load(tmp_path)
    return build(store)


def _set(api: Api, name: str, value: str = VALUE, queue: str | None = "team-a",
         who: str = "admin") -> object:
    body = {"value": value} if queue is None else {"value": value, "queue": queue}
    return api.client.put(f"/v1/secrets/{name}", json=body, headers=getattr(api, who))


def _everything(api: Api, wid: str) -> str:
    """Every answer a user could read about a workload and the secrets, as one text."""
    got = [api.client.get(p, headers=api.admin).text for p in (
        f"/v1/workloads/{wid}", f"/v1/workloads/{wid}/events", "/v1/secrets", "/v1/audit",
        "/v1/workloads")]
    return "\n".join(got)


def test_a_secret_is_set_listed_and_used_but_its_value_never_comes_back(api: Api) -> None:
    made = _set(api, "hf-token")
    assert made.status_code == 200, made.text
    assert made.json()["created"] is True and VALUE not in made.text
    assert _set(api, "hf-token").json()["created"] is False  # replaced
    sub = api.client.post("/v1/workloads", json=job(env={"HF_TOKEN": {"secret": "hf-token"},
                                                         "LR": "0.1"}), headers=api.ann)
    assert sub.status_code == 201, sub.text
    wid = sub.json()["workloads"][0]["id"]
    dry = api.client.post("/v1/dry-run", json=job(env={"HF_TOKEN": {"secret": "hf-token"}}),
                          headers=api.ann)
    assert "env HF_TOKEN: the value of secret 'hf-token'" in dry.text
    seen = _everything(api, wid) + dry.text
    assert VALUE not in seen
    assert '"hf-token"' in seen  # names are not secret: the spec and the listing show them


def test_the_database_holds_only_the_sealed_value(api: Api, store: Store) -> None:
    _set(api, "hf-token")
    with store.read() as c:
        sealed = c.execute(select(S.SecretRow.sealed)).scalar_one()
    assert VALUE not in sealed and VALUE.encode() not in sealed.encode()
    assert store.secret_box is not None and store.secret_box.open(sealed) == VALUE
    other = S.SecretBox([S.Fernet.generate_key()])
    with pytest.raises(S.SecretsUnavailable, match="key changed"):
        other.open(sealed)


def test_a_reference_to_a_missing_secret_is_refused_naming_the_variable(api: Api) -> None:
    before = api.rows()
    r = api.client.post("/v1/workloads", json=job(env={"HF_TOKEN": {"secret": "nope"}}),
                        headers=api.ann)
    assert r.status_code == 422
    problems = {p["field"]: p["message"] for p in r.json()["problems"]}
    assert "env.HF_TOKEN" in problems
    assert "corral secrets set nope --queue team-a" in problems["env.HF_TOKEN"]
    assert api.rows() == before
    dry = api.client.post("/v1/dry-run", json=job(env={"HF_TOKEN": {"secret": "nope"}}),
                          headers=api.ann)
    assert dry.json()["outcome"] == "rejected" and "env.HF_TOKEN" in dry.text


def test_a_queue_secret_is_not_visible_to_another_queue(api: Api) -> None:
    _set(api, "db-pass", queue="team-b")
    r = api.client.post("/v1/workloads", json=job(env={"P": {"secret": "db-pass"}}),
                        headers=api.admin)  # team-a's work
    assert r.status_code == 422 and "env.P" in r.text
    _set(api, "db-pass", queue=None)  # a global one serves every queue
    ok = api.client.post("/v1/workloads", json=job(env={"P": {"secret": "db-pass"}}),
                         headers=api.admin)
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(("role", "queue", "status"), [
    ("member", "team-a", 403), ("member", None, 403), ("queue_admin", "team-a", 200),
    ("queue_admin", None, 403), ("queue_admin", "team-b", 404),
], ids=["member-queue", "member-global", "queue-admin-own", "queue-admin-global",
        "queue-admin-other"])
def test_who_may_set_a_secret(api: Api, store: Store, role: str, queue: str | None,
                              status: int) -> None:
    with store.write() as c:
        A.set_membership(c, "ann", "team-a", role)
    r = _set(api, "k", queue=queue, who="ann")
    assert r.status_code == status, r.text
    if status == 403:
        assert "admin" in r.json()["message"]


def test_listing_shows_global_and_own_queues_only(api: Api) -> None:
    _set(api, "a", queue="team-a")
    _set(api, "b", queue="team-b")
    _set(api, "g", queue=None)
    mine = api.client.get("/v1/secrets", headers=api.ann).json()
    assert sorted((s["name"], s["queue"]) for s in mine) == [("a", "team-a"), ("g", None)]
    assert all(set(s) == {"name", "queue", "created_by", "created_at", "updated_at", "created"}
               for s in mine)
    assert api.client.get("/v1/secrets?queue=team-b", headers=api.ann).status_code == 404


def test_remove(api: Api) -> None:
    _set(api, "a")
    assert api.client.delete("/v1/secrets/a?queue=team-a", headers=api.ann).status_code == 403
    assert api.client.delete("/v1/secrets/a?queue=team-a", headers=api.admin).status_code == 204
    assert api.client.delete("/v1/secrets/a?queue=team-a", headers=api.admin).status_code == 404
    audit = api.client.get("/v1/audit", headers=api.admin).json()["items"]
    assert [e["action"] for e in audit][-2:] == ["secret.set", "secret.remove"]


@pytest.mark.parametrize(("body", "field"), [
    ({"value": "a\0b"}, "value"),
    ({"value": "x" * (64 * 1024 + 1)}, "value"),
    ({"value": 5}, "value"),
    ({"value": "v", "queue": ""}, "queue"),
    ({"value": "v", "extra": 1}, "extra"),
], ids=["nul", "too-long", "not-text", "empty-queue", "unknown-field"])
def test_hostile_values_are_refused_naming_the_field(api: Api, body: dict, field: str) -> None:
    r = api.client.put("/v1/secrets/k", json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert any(field in p["field"] for p in r.json()["problems"]), r.text


@pytest.mark.parametrize("name", ["UPPER", "has space", "-dash", "x" * 64])
def test_bad_names_are_refused(api: Api, name: str) -> None:
    r = api.client.put(f"/v1/secrets/{name}", json={"value": "v"}, headers=api.admin)
    assert r.status_code == 422
    spec = api.client.post("/v1/workloads", json=job(env={"T": {"secret": name}}),
                           headers=api.admin)
    assert spec.status_code == 422 and "env.T" in json.dumps(spec.json()["problems"])


def test_without_a_key_secrets_are_unavailable_not_a_500(store: Store) -> None:
    api = build(store)
    store.secret_box = None  # a server built without `corral up`'s key
    r = _set(api, "k")
    assert r.status_code == 503 and "CORRAL_SECRET_KEY" in r.json()["message"]
