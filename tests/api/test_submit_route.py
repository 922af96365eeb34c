"""POST /v1/workloads' shortcut (corral.api.submit_route): a plain submission skips FastAPI's
routing and dependency resolution and answers exactly what FastAPI's handler answers; anything
else (errors of every kind, an Idempotency-Key, an overridden dependency) still goes through
FastAPI's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies import utils as dependency_utils
from fastapi.routing import APIRoute

from corral.api import context as api_context
from corral.api import workloads
from corral.store import Store

from .harness import Api, build, job


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths of the requests FastAPI resolved dependencies for."""
    seen: list[str] = []
    real = dependency_utils.solve_dependencies

    async def spy(*, request: Any, **kwargs: Any) -> Any:
        seen.append(request.url.path)
        return await real(request=request, **kwargs)

    monkeypatch.setattr("fastapi.routing.solve_dependencies", spy)
    yield seen


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths of the requests FastAPI's router handed to a route."""
    seen: list[str] = []
    real = APIRoute.handle

    async def spy(self: APIRoute, scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await real(self, scope, receive, send)

    monkeypatch.setattr(APIRoute, "handle", spy)
    yield seen


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    """A submission's answer with the values that differ between two submissions removed."""
    [unit] = body["workloads"]
    return {**body, "group_id": None, "workloads": [
        {**unit, "id": None, "group_id": None, "seq": None}]}


def test_a_plain_submission_skips_dependency_resolution(api: Api, resolved: list[str]) -> None:
    r = api.client.post("/v1/workloads", json=job(), headers=api.ann)
    assert r.status_code == 201, r.text
    assert resolved == []
    assert r.headers["content-type"] == "application/json"
    assert api.rows()["workloads"] == 1 and api.rows()["events"] == 1


def test_a_plain_submission_skips_the_router(api: Api, routed: list[str]) -> None:
    assert api.client.post("/v1/workloads", json=job(), headers=api.ann).status_code == 201
    assert routed == []
    keyed = api.client.post("/v1/workloads", json=job(), headers={**api.ann,
                                                                   "Idempotency-Key": "k"})
    assert keyed.status_code == 201 and routed == ["/v1/workloads"]


def test_an_unexpected_error_is_the_one_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(workloads, "_launchable_here", broken)
    fast, slow = _post(api, job(), False), _post(api, job(), True)
    assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    assert fast.status_code == 500 and fast.json()["error"] == "internal_error"


def test_the_fast_path_answers_what_fastapi_answers(api: Api, resolved: list[str]) -> None:
    fast = api.client.post("/v1/workloads", json=job(), headers=api.ann)
    # an Idempotency-Key takes FastAPI's handler; a new key is a new submission (201)
    slow = api.client.post("/v1/workloads", json=job(),
                           headers={**api.ann, "Idempotency-Key": "one"})
    assert resolved == ["/v1/workloads"]
    assert (fast.status_code, slow.status_code) == (201, 201)
    assert _without_ids(fast.json()) == _without_ids(slow.json())
    assert fast.json()["group_id"] != slow.json()["group_id"]
    assert fast.headers["content-type"] == slow.headers["content-type"]


def _post(api: Api, body: Any, through_fastapi: bool) -> Any:
    """POST body as ann; `through_fastapi`: with a dependency overridden by itself (no change
    of meaning), which sends the request through FastAPI's handler."""
    app: Any = api.client.app
    if through_fastapi:
        app.dependency_overrides[api_context.context] = api_context.context
    try:
        if isinstance(body, str):
            return api.client.post("/v1/workloads", content=body, headers={
                **api.ann, "Content-Type": "application/json"})
        return api.client.post("/v1/workloads", json=body, headers=api.ann)
    finally:
        app.dependency_overrides.clear()


@pytest.mark.parametrize(("body", "status", "field"), [
    (job(gpu=1), 422, "gpu"),  # not a valid spec: pydantic's error, the field named
    (job(queue="nope"), 403, "queue"),  # the endpoint's own checks
    (job(queue="team-b"), 403, "queue"),
    (job(gpus=16), 422, "gpus"),  # can never fit
    (job(name="a\x00b"), 422, "name"),  # reject_nul
    ("[1, 2", 400, None),  # not JSON
    ("[]", 422, None),  # JSON, not an object
], ids=["typo", "unknown-queue", "not-a-member", "never-fits", "nul", "not-json",
        "not-an-object"])
def test_refusals_are_answered_as_fastapi_answers_them(api: Api, body: Any, status: int,
                                                       field: str | None) -> None:
    before = api.rows()
    fast, slow = _post(api, body, False), _post(api, body, True)
    assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    assert fast.status_code == status, fast.text
    if field is not None:
        assert field in [p["field"] for p in fast.json()["problems"]], fast.text
    assert api.rows() == before


def test_an_accepted_submission_is_answered_as_fastapi_answers_it(api: Api) -> None:
    fast, slow = _post(api, job(), False), _post(api, job(), True)
    assert (fast.status_code, slow.status_code) == (201, 201)
    assert _without_ids(fast.json()) == _without_ids(slow.json())
    assert fast.headers["content-type"] == slow.headers["content-type"]


def test_a_query_parameter_is_refused_as_unknown(api: Api, resolved: list[str]) -> None:
    r = api.client.post("/v1/workloads?dry=1", json=job(), headers=api.ann)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "dry"
    assert resolved == ["/v1/workloads"] and api.rows()["workloads"] == 0


def test_an_overridden_dependency_is_honoured(api: Api, resolved: list[str]) -> None:
    app: Any = api.client.app
    admin = app.state.corral.authenticate(api.admin["Authorization"].split()[1])
    app.dependency_overrides[api_context.caller] = lambda: admin
    try:
        r = api.client.post("/v1/workloads", json=job(queue="team-b"), headers=api.ann)
    finally:
        app.dependency_overrides.clear()
    assert r.status_code == 201 and r.json()["workloads"][0]["user"] == "root"
    assert resolved == ["/v1/workloads"]


def test_the_route_keeps_its_published_schema(api: Api) -> None:
    op = api.client.get("/openapi.json").json()["paths"]["/v1/workloads"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/WorkloadSpec")
    assert {"201", "200", "409", "422"} <= set(op["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in op["parameters"])
