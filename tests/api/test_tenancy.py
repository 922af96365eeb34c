"""Tenancy through the API on SQLite and PostgreSQL: member roles and per-workload ownership,
users/tokens/members endpoints, token expiry, revocation and deletion taking effect on the next
request, the audit log, and Idempotency-Key on submissions."""

from __future__ import annotations

import pytest

from corral.store import Store

from .harness import Api, build, job


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _user(api: Api, name: str, queues: list[str] | None = None, role: str = "user") -> dict:
    r = api.client.post("/v1/users", json={"name": name, "role": role, "queues": queues or []},
                        headers=api.admin)
    assert r.status_code == 201, r.text
    return _bearer(r.json()["token"])


def _set_role(api: Api, queue: str, user: str, role: str, headers: dict | None = None) -> int:
    return api.client.put(f"/v1/queues/{queue}/members/{user}", json={"role": role},
                          headers=headers or api.admin).status_code


def _submit(api: Api, headers: dict, **fields: object) -> str:
    r = api.client.post("/v1/workloads", json=job(**fields), headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["workloads"][0]["id"])


def test_members_cancel_only_their_own_work_and_queue_admins_all(api: Api) -> None:
    bob = _user(api, "bob", ["team-a"])
    anns = _submit(api, api.ann)
    r = api.client.post(f"/v1/workloads/{anns}/cancel", headers=bob)
    assert r.status_code == 403 and "ann's workload" in r.json()["message"]
    assert api.client.get(f"/v1/workloads/{anns}/logs", headers=bob).status_code == 403
    assert api.client.get(f"/v1/workloads/{anns}", headers=bob).status_code == 200  # may read
    assert _set_role(api, "team-a", "bob", "queue_admin") == 200
    assert api.client.get(f"/v1/workloads/{anns}/logs", headers=bob).status_code == 200
    assert api.client.post(f"/v1/workloads/{anns}/cancel", headers=bob).json()["state"] == \
        "cancelled"
    own = _submit(api, api.ann)
    assert api.client.post(f"/v1/workloads/{own}/cancel", headers=api.ann).status_code == 200
    actions = [(e["actor"], e["action"], e["target"]) for e in
               api.client.get("/v1/audit", headers=api.admin).json()["items"]]
    assert ("bob", "workload.cancel", anns) in actions and ("bob", "workload.logs", anns) in \
        actions
    assert ("ann", "workload.cancel", own) not in actions  # her own work: not cross-user


def test_viewers_read_but_neither_submit_nor_cancel(api: Api) -> None:
    vic = _user(api, "vic", ["team-a"])
    assert _set_role(api, "team-a", "vic", "viewer") == 200
    wid = _submit(api, api.ann)
    assert api.client.get(f"/v1/workloads/{wid}", headers=vic).status_code == 200
    assert [w["id"] for w in api.client.get("/v1/workloads", headers=vic).json()["items"]] == [wid]
    r = api.client.post("/v1/workloads", json=job(), headers=vic)
    assert r.status_code == 403 and r.json()["problems"][0]["field"] == "queue"
    assert api.client.post(f"/v1/workloads/{wid}/cancel", headers=vic).status_code == 403
    assert api.client.get(f"/v1/workloads/{wid}/logs", headers=vic).status_code == 403


def test_a_non_member_cannot_tell_an_unknown_queue_from_another_teams(api: Api) -> None:
    other = api.client.post("/v1/workloads", json=job(queue="team-b"), headers=api.ann)
    missing = api.client.post("/v1/workloads", json=job(queue="nope"), headers=api.ann)
    assert (other.status_code, missing.status_code) == (403, 403)
    assert "team-b" not in missing.text
    admin = api.client.post("/v1/workloads", json=job(queue="nope"), headers=api.admin)
    assert admin.status_code == 422 and "team-a" not in admin.text  # never lists every queue


def test_queue_admins_manage_members_of_their_queue_only(api: Api) -> None:
    qa = _user(api, "qa", ["team-a"])
    _user(api, "newbie")
    assert _set_role(api, "team-a", "qa", "queue_admin") == 200
    assert _set_role(api, "team-a", "newbie", "member", qa) == 200
    assert _set_role(api, "team-b", "newbie", "member", qa) == 404  # not theirs to see
    assert _set_role(api, "team-a", "newbie", "member", api.ann) == 403  # a plain member
    members = api.client.get("/v1/queues/team-a/members", headers=api.ann).json()
    assert {(m["user"], m["role"]) for m in members} == {
        ("ann", "member"), ("qa", "queue_admin"), ("newbie", "member")}
    assert api.client.delete("/v1/queues/team-a/members/newbie", headers=qa).status_code == 204
    assert api.client.delete("/v1/queues/team-a/members/newbie", headers=qa).status_code == 404


def test_removing_a_member_takes_effect_on_the_next_request(api: Api) -> None:
    assert api.client.get("/v1/queues/team-a", headers=api.ann).status_code == 200
    assert api.client.delete("/v1/queues/team-a/members/ann", headers=api.admin).status_code == 204
    assert api.client.get("/v1/queues/team-a", headers=api.ann).status_code == 404


def test_users_are_created_listed_and_deleted_at_once(api: Api) -> None:
    cy = _user(api, "cy", ["team-b"])
    assert api.client.get("/v1/whoami", headers=cy).json()["memberships"] == {"team-b": "member"}
    listed = {u["name"]: u for u in api.client.get("/v1/users", headers=api.admin).json()}
    assert set(listed) == {"root", "ann", "cy"} and listed["cy"]["queues"] == ["team-b"]
    assert api.client.get("/v1/users", headers=cy).status_code == 403
    wid = _submit(api, cy, queue="team-b")
    assert api.client.delete("/v1/users/cy", headers=api.admin).status_code == 204
    assert api.client.get("/v1/whoami", headers=cy).status_code == 401  # the very next request
    assert api.client.get(f"/v1/workloads/{wid}", headers=api.admin).json()["user"] == "cy"
    assert api.client.delete("/v1/users/cy", headers=api.admin).status_code == 404
    assert api.client.delete("/v1/users/root", headers=api.admin).status_code == 409  # yourself


def test_tokens_are_created_listed_revoked_and_expire(api: Api) -> None:
    made = api.client.post("/v1/tokens", json={"name": "ci", "expires_in_s": 3600},
                           headers=api.ann).json()
    ci = _bearer(made["token"])
    assert api.client.get("/v1/whoami", headers=ci).json()["name"] == "ann"
    mine = api.client.get("/v1/tokens", headers=api.ann).json()
    assert [t["name"] for t in mine] == ["", "ci"] and "token" not in mine[1]
    assert api.client.get("/v1/tokens?user=root", headers=api.ann).status_code == 403
    # ann may neither make tokens for others nor raise her own rate
    assert api.client.post("/v1/tokens", json={"user": "root"}, headers=api.ann).status_code == 403
    assert api.client.post("/v1/tokens", json={"rate_per_s": 1e5},
                           headers=api.ann).status_code == 403
    api.client.app.state.corral.clock.advance(3601)
    assert api.client.get("/v1/whoami", headers=ci).status_code == 401  # expired
    fresh = api.client.post("/v1/tokens", json={}, headers=api.ann).json()
    root_tokens = api.client.get("/v1/tokens?user=root", headers=api.admin).json()
    assert api.client.delete(f"/v1/tokens/{root_tokens[0]['id']}",
                             headers=api.ann).status_code == 404  # not hers: not visible
    r = api.client.delete(f"/v1/tokens/{fresh['info']['id']}", headers=api.ann)
    assert r.status_code == 200 and r.json()["revoked"]
    assert api.client.get("/v1/whoami", headers=_bearer(fresh["token"])).status_code == 401
    assert api.client.delete(f"/v1/tokens/{2**63}", headers=api.ann).status_code == 422


def test_the_audit_log_records_admin_actions_for_admins_only(api: Api) -> None:
    _user(api, "dee", ["team-a"])
    _set_role(api, "team-a", "dee", "viewer")
    api.client.post("/v1/nodes/n0/cordon", headers=api.admin)
    api.client.delete("/v1/users/dee", headers=api.admin)
    page = api.client.get("/v1/audit", headers=api.admin).json()
    assert [(e["action"], e["target"]) for e in page["items"]] == [
        ("user.create", "dee"), ("member.set", "dee"), ("node.cordon", "n0"),
        ("user.delete", "dee")]
    assert page["items"][1]["detail"] == {"role": "viewer", "before": "member"}
    after = api.client.get(f"/v1/audit?after={page['next_after']}", headers=api.admin).json()
    assert after["items"] == []
    assert api.client.get("/v1/audit", headers=api.ann).status_code == 403


def test_an_idempotency_key_makes_a_retry_return_the_first_submission(api: Api) -> None:
    key = {**api.ann, "Idempotency-Key": "train-2026-12-03"}
    first = api.client.post("/v1/workloads", json=job(), headers=key)
    retry = api.client.post("/v1/workloads", json=job(), headers=key)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["group_id"] == first.json()["group_id"]
    before = api.rows()
    other = api.client.post("/v1/workloads", json=job(gpus=2), headers=key)
    assert other.status_code == 409 and other.json()["problems"][0]["field"] == "Idempotency-Key"
    assert api.rows() == before
    # the key is the user's own: another user with the same key makes their own submission
    assert api.client.post("/v1/workloads", json=job(), headers={
        **api.admin, "Idempotency-Key": "train-2026-12-03"}).status_code == 201


def test_a_refused_submission_does_not_use_up_its_key(api: Api) -> None:
    key = {**api.ann, "Idempotency-Key": "k"}
    assert api.client.post("/v1/workloads", json=job(gpus=64), headers=key).status_code == 422
    assert api.client.post("/v1/workloads", json=job(), headers=key).status_code == 201


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"],
                         ids=["empty", "space", "too-long", "non-ascii"])
def test_a_malformed_idempotency_key_is_422(api: Api, key: str) -> None:
    r = api.client.post("/v1/workloads", json=job(),
                        headers={**api.ann, "Idempotency-Key": key.encode()})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "Idempotency-Key"


def test_credit_grants_and_transfers_are_audited_with_who_made_them(api: Api) -> None:
    grant = api.client.post("/v1/ledger/grants", json={"queue": "team-a", "amount": "10"},
                            headers=api.admin)
    assert grant.status_code == 201, grant.text
    moved = api.client.post("/v1/ledger/transfers", json={
        "source": "team-a", "target": "team-b", "amount": "4"}, headers=api.admin)
    assert moved.status_code == 201, moved.text
    entries = api.client.get("/v1/audit?actor=root", headers=api.admin).json()["items"]
    assert [(e["action"], e["queue"], e["detail"]) for e in entries] == [
        ("credits.grant", "team-a", {"amount": "10"}),
        ("credits.transfer", "team-a", {"to": "team-b", "amount": "4"})]


def test_an_unknown_queue_in_a_grant_does_not_list_the_queues(api: Api) -> None:
    r = api.client.post("/v1/ledger/grants", json={"queue": "nope", "amount": "1"},
                        headers=api.admin)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "queue"
    assert "team-a" not in r.text and "team-b" not in r.text


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/tokens", {"rate_per_s": False}, "rate_per_s"),  # found by the API fuzz, 2026-12-05
    ("/v1/tokens", {"burst": True}, "burst"),
    ("/v1/tokens", {"expires_in_s": "60"}, "expires_in_s"),
    ("/v1/queues", {"name": "ml", "quota_gpus": True}, "quota_gpus"),
    ("/v1/queues", {"name": "ml", "priority": 1.5}, "priority"),
    ("/v1/queues", {"name": "ml", "quota_by_model": {"H100": False}}, "quota_by_model"),
    ("/v1/ledger/grants", {"queue": "team-a", "amount": "1", "expires_at": False}, "expires_at"),
    ("/v1/ledger/grants", {"queue": "team-a", "amount": "1", "expires_at": "4102444800"},
     "expires_at"),
])
def test_a_number_given_as_a_bool_or_string_is_refused_naming_it(
        api: Api, path: str, body: dict[str, object], field: str) -> None:
    """What the schema says is a number is a number: pydantic's lax mode made `false` a rate of
    0.0 (unlimited) and stored it, where the OpenAPI schema promises a refusal."""
    r = api.client.post(path, json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert field in r.text
