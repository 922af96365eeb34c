"""A service's bearer token held in a secret (`auth: {token_secret: NAME}`, issue 12): refused
at submission and update with a 422 naming `auth.token_secret` unless the service's queue may
use the secret; the mounted gateway admits the secret's current value, follows a new value, and
admits no token once the secret is gone (never public)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from corral.api.service_routes import RouteFeed, mount_gateway
from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock
from corral.control.service_auth import TTL_S
from corral.gateway import GatewayLimits
from corral.spec.service import service_notes
from corral.spec.workload import WorkloadSpec
from corral.store import Store
from corral.store import secrets as S

from .harness import Api, build

GUARD_S = 30.0


def service(**fields: Any) -> dict[str, Any]:
    return {"name": "chat", "queue": "team-a", "kind": "service", "gpus": 1, "cpu": 0.1,
            "memory": 64, "command": ["serve"], "replicas": 1, "min_replicas": 1,
            "max_replicas": 2, "auth": {"token_secret": "chat-token"}, **fields}


def put(api: Api, name: str, value: str, queue: str | None = "team-a") -> None:
    body = {"value": value, **({"queue": queue} if queue else {})}
    r = api.client.put(f"/v1/secrets/{name}", json=body, headers=api.admin)
    assert r.status_code in (200, 201), r.text


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


def test_a_token_secret_the_queue_may_not_use_is_refused_naming_the_field(api: Api) -> None:
    missing = api.client.post("/v1/workloads", json=service(), headers=api.ann)
    put(api, "chat-token", "t0k3n", queue="team-b")  # another queue's: not usable by team-a
    other = api.client.post("/v1/workloads", json=service(), headers=api.ann)
    for r in (missing, other):
        assert r.status_code == 422, r.text
        [problem] = r.json()["problems"]
        assert problem["field"] == "auth.token_secret"
        assert "corral secrets set chat-token --queue team-a" in problem["message"]
    bad_name = api.client.post("/v1/workloads", json=service(auth={"token_secret": "No Way"}),
                               headers=api.ann)
    assert bad_name.status_code == 422 and "token_secret" in bad_name.text
    both = api.client.post("/v1/workloads", json=service(auth={
        "token_secret": "chat-token", "token_sha256": "a" * 64}), headers=api.ann)
    assert both.status_code == 422 and "exactly one of token_sha256" in both.text


def test_the_queues_own_or_a_global_secret_is_accepted_and_an_update_is_checked_too(
        api: Api) -> None:
    put(api, "chat-token", "t0k3n", queue=None)  # global: every queue may use it
    ok = api.client.post("/v1/workloads", json=service(), headers=api.ann)
    assert ok.status_code == 201, ok.text
    put(api, "team-token", "t0k3n")
    assert api.client.post("/v1/workloads", json=service(auth={"token_secret": "team-token"}),
                           headers=api.ann).status_code == 201
    sid = ok.json()["group_id"]
    update = api.client.post(f"/v1/services/{sid}/update", headers=api.ann,
                             json=service(auth={"token_secret": "nowhere"}))
    assert update.status_code == 422, update.text
    assert update.json()["problems"][0]["field"] == "auth.token_secret"
    notes = " ".join(service_notes(WorkloadSpec.model_validate(service())))
    assert "value of secret 'chat-token'" in notes


# -- the mounted gateway ----------------------------------------------------------------------

@pytest.fixture
def events() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(GUARD_S)
    loop.close()


def call(events: asyncio.AbstractEventLoop, app: Starlette, token: str | None) -> int:
    async def go() -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://corral") as client:
            return (await client.get("/serve/chat/x", headers=headers)).status_code
    return int(asyncio.run_coroutine_threadsafe(go(), events).result(GUARD_S))


def test_the_gateway_admits_the_secrets_current_value_and_nothing_once_it_is_gone(
        api: Api, events: asyncio.AbstractEventLoop) -> None:
    put(api, "chat-token", "first\n")  # set from a file: the newline is not part of the token
    r = api.client.post("/v1/workloads", json=service(), headers=api.ann)
    assert r.status_code == 201, r.text
    clock = ManualClock()
    loop = ControlLoop(api.store, api.backend, clock=clock, settings=ControlSettings(),
                       leadership=Leadership(api.store, ttl_s=15.0))
    app = Starlette()
    feed: RouteFeed = mount_gateway(app, loop, api.backend.name,
                                    GatewayLimits(connect_timeout_s=1, max_queue_wait_s=1))
    feed.events = events

    def steps(n: int = 2) -> None:
        for _ in range(n):
            loop.step()
            clock.advance(TTL_S)  # each step may read the secret again

    try:
        steps()
        route = asyncio.run_coroutine_threadsafe(_route(feed), events).result(GUARD_S)
        assert route == hashlib.sha256(b"first").hexdigest()  # only the digest is handed over
        # the replica has no server behind its port: admitted requests end 502, refused 401
        assert call(events, app, "first") == 502
        assert call(events, app, "wrong") == 401 and call(events, app, None) == 401
        put(api, "chat-token", "second")  # rotated: no redeploy
        steps()
        assert call(events, app, "second") == 502 and call(events, app, "first") == 401
        assert api.client.delete("/v1/secrets/chat-token?queue=team-a",
                                 headers=api.admin).status_code == 204
        steps()
        assert call(events, app, "second") == 401 and call(events, app, None) == 401
    finally:
        assert feed.loads is not None
        asyncio.run_coroutine_threadsafe(feed.loads.gateway.aclose(), events).result(GUARD_S)


async def _route(feed: RouteFeed) -> str | None:
    route = feed.table.service("chat")
    return route.auth.token_sha256 if route else None


def test_a_server_without_the_secret_key_fails_closed(store: Store) -> None:
    from corral.control.service_auth import TokenDigests

    store.secret_box = None
    assert TokenDigests(store).digests({("team-a", "chat-token")}, 0.0) == {
        ("team-a", "chat-token"): None}
    assert S.GLOBAL == ""  # the scope a global secret is stored under
