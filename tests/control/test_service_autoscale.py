"""Services autoscaled on the gateway's load (issue 12): the `autoscale` spec field, one
`ServiceScaler` per service fed each tick, its decision applied through the scale path within
[min_replicas, max_replicas] with the policy's reason as the service's event, scale from zero by
a request queued at the mounted gateway, nothing for a service without autoscale, nothing
during a rollout."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from tests.api.harness import build

from corral.api.service_routes import RouteFeed, apply_routes, mark_draining, mount_gateway
from corral.backends.fake import FakeBackend
from corral.cli.workloads import _print_service
from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock
from corral.control.endpoints import Route
from corral.control.gateway_loads import STALE_S, WRITE_EVERY_S, SharedLoads
from corral.control.rollout import update
from corral.control.scaling import SCALED, end_idle, scale
from corral.control.service_autoscale import (
    AUTOSCALER,
    Load,
    ServiceAutoscaler,
    autoscaled_services,
)
from corral.control.services import service_status
from corral.control.submission import stored_form
from corral.gateway import GatewayLimits, ReplicaState, RouteTable, ServiceLimits
from corral.gateway.retries import RetryPolicy
from corral.sdk import models as M
from corral.serving import SCALED_UP
from corral.spec import WorkloadSpec
from corral.spec.service import service_notes
from corral.store import Store
from corral.store import workloads as W
from corral.store.gateway_loads import LoadTotals, write_loads
from corral.store.workloads import EventRecord

from .rig import Rig

BASE: dict[str, Any] = {"name": "svc", "queue": "q", "kind": "service", "gpus": 1, "cpu": 0.1,
                        "memory": 64, "command": ["serve"], "replicas": 1, "min_replicas": 1,
                        "max_replicas": 3, "restart_backoff": 1, "target_utilization": 1.0,
                        "autoscale": {"target_in_flight": 2}}
#: a guard so a broken test fails instead of hanging; nothing asserts on time
GUARD_S = 30.0


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def submit(rig: Rig, **fields: Any) -> str:
    spec = WorkloadSpec.model_validate({**BASE, **fields})
    return rig.submissions.submit(spec, "ann", rig.clock.now())[0].group_id


def desired(rig: Rig, sid: str) -> tuple[int, str]:
    with rig.store.read() as c:
        s = service_status(sid, W.list_workloads(c, group_id=sid, limit=100))
    return s.desired, s.state


def service_events(rig: Rig, sid: str) -> list[EventRecord]:
    with rig.store.read() as c:
        return W.list_events(c, workload_id=sid)


def tick(rig: Rig, scaler: ServiceAutoscaler, loads: dict[str, Load]) -> None:
    live = rig.loop.live
    services = scaler.services(autoscaled_services(live.records.values(), live.specs))
    scaler.step(rig.clock.now(), services, loads)


# -- the spec ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "named"), [
    ({"max_replicas": None}, "max_replicas"),
    ({"autoscale": {}}, "target_in_flight"),
    ({"autoscale": {"target_in_flight": -1}}, "target_in_flight"),
    ({"autoscale": {"target_latency": "0s"}}, "target_latency"),
    ({"autoscale": {"target_rps": 5, "scale_to_zero_after": "2d"}}, "scale_to_zero_after"),
    ({"autoscale": {"target_rps": 5, "stable_window": "1s"}}, "stable_window"),
    ({"autoscale": {"target_rps": 5, "latency_percentile": 50}}, "latency_percentile"),
    ({"autoscale": {"target_rps": 5, "targets": 1}}, "targets"),
    ({"kind": "job", "replicas": None, "min_replicas": None}, "autoscale"),
    ({"auth": {"token_sha256": "s3cret"}}, "auth.token_sha256"),
    ({"auth": {"token": "s3cret"}}, "auth.token"),
    ({"endpoint": {"max_concurrent": 0}}, "endpoint.max_concurrent"),
    ({"endpoint": {"max_queue": -1}}, "endpoint.max_queue"),
    ({"endpoint": {"request_timeout": "0s"}}, "endpoint.request_timeout"),
    ({"endpoint": {"queue_timeout": "10m", "request_timeout": "1m"}}, "queue_timeout"),
    ({"endpoint": {"connect_timeout": "0s"}}, "endpoint.connect_timeout"),
    ({"endpoint": {"connect_timeout": "10m"}}, "at most 5m"),
    ({"endpoint": {"first_byte_timeout": "soon"}}, "endpoint.first_byte_timeout"),
    ({"endpoint": {"first_byte_timeout": "2m", "request_timeout": "1m"}},
     "first_byte_timeout must not exceed request_timeout"),
    ({"endpoint": {"retry": {"on_reset": "yes"}}}, "endpoint.retry.on_reset"),
    ({"endpoint": {"retry": {"attempts": 0}}}, "endpoint.retry.attempts"),
    ({"endpoint": {"retry": {"budget": 2}}}, "endpoint.retry.budget"),
    ({"endpoint": {"retry": {"on_timeout": True}}}, "endpoint.retry.on_timeout"),
    ({"endpoint": {"retry": {"replay_buffer": "64MiB"}}}, "from 0 to 16MiB"),
    ({"endpoint": {"retry": {"replay_buffer": -1}}}, "endpoint.retry.replay_buffer"),
    ({"endpoint": {"retry": {"replay_buffer": "lots"}}}, "write it like 4MiB or 512KiB"),
    ({"endpoint": {"retry": {"replay_buffer": 10**400}}}, "endpoint.retry.replay_buffer"),
    ({"endpoint": {"websocket": {"idle_timeout": "0s"}}}, "endpoint.websocket.idle_timeout"),
    ({"endpoint": {"websocket": {"max_session": "30d"}}}, "endpoint.websocket.max_session"),
    ({"auth": {}}, "exactly one of token_sha256"),
    ({"auth": {"token_secret": "Bad Name"}}, "auth.token_secret"),
    ({"kind": "job", "replicas": None, "min_replicas": None, "max_replicas": None,
      "autoscale": None, "endpoint": {"max_queue": 1}}, "endpoint apply to kind: service"),
])
def test_a_bad_autoscale_section_is_refused_naming_the_field(fields: dict[str, Any],
                                                             named: str) -> None:
    with pytest.raises(ValidationError) as e:
        WorkloadSpec.model_validate({**BASE, **fields})
    assert named in str(e.value)


def test_the_dry_run_says_what_autoscale_and_target_utilization_do() -> None:
    auto = WorkloadSpec.model_validate({**BASE, "min_replicas": 0, "target_utilization": 0.5,
                                        "autoscale": {"target_in_flight": 8,
                                                      "scale_to_zero_after": "5m"}})
    note = " ".join(service_notes(auto))
    assert "autoscaled within [0, 3]" in note and "8 in flight per replica" in note
    assert "aiming at 50% of it (target_utilization)" in note
    assert "scaled to zero after 300s" in note
    plain = WorkloadSpec.model_validate({**BASE, "autoscale": None})
    assert "target_utilization does nothing without autoscale" in " ".join(service_notes(plain))


def test_the_dry_run_and_a_stored_spec_keep_the_replay_buffers_unit() -> None:
    spec = WorkloadSpec.model_validate({**BASE, "endpoint": {"retry": {
        "replay_buffer": "512KiB"}}})
    assert "request bodies up to 512KiB are held" in " ".join(service_notes(spec))
    stored = spec.model_dump()  # validated again when read back: 524288 would mean MiB
    assert stored["endpoint"]["retry"]["replay_buffer"] == "512KiB"
    assert WorkloadSpec.model_validate(stored).endpoint == spec.endpoint


# -- the decision, applied ---------------------------------------------------------------------

def test_load_scales_up_within_max_replicas_with_the_true_reason(rig: Rig) -> None:
    sid = submit(rig)
    rig.step(2)
    assert desired(rig, sid) == (1, "serving")
    scaler = ServiceAutoscaler(rig.store)
    tick(rig, scaler, {sid: Load(in_flight=20, running=2, arrivals=20)})  # asks for 10
    assert desired(rig, sid)[0] == 3  # max_replicas
    [event] = service_events(rig, sid)
    assert (event.reason, event.subject) == (SCALED_UP, AUTOSCALER)
    assert event.message.startswith("scaled 1 -> 3")
    assert "20 in flight" in event.message and "target 2 per replica" in event.message
    assert "capped at max_replicas 3" in event.message
    with rig.store.read() as c:
        added = W.list_events(c, workload_id=f"{sid}-r2")
    assert "scaled from 1 to 3 by autoscaler" in added[0].message
    rig.step(2)
    for _ in range(3):  # still the same load: nothing to change, nothing recorded
        tick(rig, scaler, {sid: Load(in_flight=20, running=6)})
        rig.clock.advance(1)
    assert desired(rig, sid)[0] == 3 and len(service_events(rig, sid)) == 1


def test_a_quiet_service_scales_to_zero_and_a_request_brings_it_back(rig: Rig) -> None:
    sid = submit(rig, min_replicas=0, autoscale={"target_in_flight": 2,
                                                 "scale_to_zero_after": "20s"})
    rig.step(2)
    scaler = ServiceAutoscaler(rig.store)
    drained = []
    for _ in range(25):
        tick(rig, scaler, {})
        drained += scaler.drained  # handed to the gateway before the loop stops the replica
        rig.step()
    assert desired(rig, sid) == (0, "idle")  # its replica drained and ended
    assert drained == [(sid, f"{sid}-r0")]
    zero = service_events(rig, sid)[-1]
    assert zero.reason == "ScaledToZero" and "scale to zero after 20 s" in zero.message
    assert sid in scaler.services({})  # out of the loop's memory, still scaled
    tick(rig, scaler, {sid: Load(in_flight=1, arrivals=1)})
    assert desired(rig, sid) == (1, "starting")
    up = service_events(rig, sid)[-1]
    assert up.reason == SCALED_UP and up.message.startswith("scaled 0 -> 1 (panic)")
    assert "in flight (60 s average), target 2 per replica" in up.message


def at_zero(rig: Rig) -> str:
    """An autoscaled service scaled to zero by hand (its replica drained and ended)."""
    sid = submit(rig, min_replicas=0)
    rig.step(2)
    scale(rig.store, sid, 0, rig.clock.now(), "ann")
    rig.step(4)
    assert desired(rig, sid) == (0, "idle")
    return sid


def test_a_restarted_control_plane_picks_up_a_service_at_zero(rig: Rig) -> None:
    sid = at_zero(rig)
    fresh = ServiceAutoscaler(rig.store)  # a new `corral up`: nothing in memory
    assert sid in fresh.services({})  # found in the store on its first tick: routed
    tick(rig, fresh, {sid: Load(in_flight=1, arrivals=1)})
    assert desired(rig, sid) == (1, "starting")  # and a queued request scales it up
    assert service_events(rig, sid)[-1].subject == AUTOSCALER


def test_a_service_cancelled_at_zero_ends_and_no_request_brings_it_back(rig: Rig) -> None:
    sid = at_zero(rig)
    scaler = ServiceAutoscaler(rig.store)
    assert sid in scaler.services({})
    assert end_idle(rig.store, sid, rig.clock.now(), "ann")
    assert desired(rig, sid) == (0, "ended")
    assert service_events(rig, sid)[-1].reason == "Cancelled"
    tick(rig, scaler, {sid: Load(in_flight=5, arrivals=5)})  # a request was still queued
    assert desired(rig, sid) == (0, "ended") and sid not in scaler.scalers
    rig.clock.advance(10)  # the next re-read drops it from the routes too
    assert sid not in scaler.services({}, rig.clock.now())
    assert sid not in ServiceAutoscaler(rig.store).services({})  # a restart does not revive it
    assert not end_idle(rig.store, sid, rig.clock.now(), "ann")  # idempotent: already ended


def test_a_service_without_autoscale_is_never_scaled(rig: Rig) -> None:
    sid = submit(rig, autoscale=None)
    rig.step(2)
    scaler = ServiceAutoscaler(rig.store)
    for _ in range(5):
        tick(rig, scaler, {sid: Load(in_flight=50, running=2, arrivals=50)})
        rig.step()
    assert desired(rig, sid) == (1, "serving")
    assert service_events(rig, sid) == [] and scaler.scalers == {}


def test_no_scaling_during_a_rollout(rig: Rig) -> None:
    sid = submit(rig)
    rig.step(2)
    new = WorkloadSpec.model_validate({**BASE, "command": ["serve", "v2"]})
    update(rig.store, sid, new, stored_form(new), rig.clock.now(), "ann")
    rig.step()
    scaler = ServiceAutoscaler(rig.store)
    tick(rig, scaler, {sid: Load(in_flight=20, running=2, arrivals=20)})
    assert [e for e in service_events(rig, sid) if e.subject == AUTOSCALER] == []


def test_a_scale_by_hand_is_an_event_of_the_service_too(rig: Rig) -> None:
    sid = submit(rig)
    scale(rig.store, sid, 2, rig.clock.now(), "ann")
    [event] = service_events(rig, sid)
    assert (event.reason, event.message) == (SCALED, "scaled from 1 to 2 by ann")


# -- through the mounted gateway ---------------------------------------------------------------

@pytest.fixture
def events() -> Iterator[asyncio.AbstractEventLoop]:
    """The server's event loop, in a thread of its own (the loop's thread is the test's)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop

    async def drain() -> None:  # a request still queued at the gateway ends before the loop
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()

    asyncio.run_coroutine_threadsafe(drain(), loop).result(GUARD_S)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(GUARD_S)
    loop.close()


def mounted(rig: Rig, events: asyncio.AbstractEventLoop) -> tuple[Starlette, RouteFeed]:
    app = Starlette()
    feed = mount_gateway(app, rig.loop, rig.backend.name,
                         GatewayLimits(max_queue_wait_s=GUARD_S, connect_timeout_s=1))
    feed.events = events  # what the app's lifespan does under uvicorn
    return app, feed


async def get(app: Starlette, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://corral") as client:
        return await client.get(path)


def on(events: asyncio.AbstractEventLoop, fn: Any) -> Any:
    async def call() -> Any:
        return fn()
    return asyncio.run_coroutine_threadsafe(call(), events).result(GUARD_S)


def test_a_request_queued_at_the_gateway_scales_a_service_up_from_zero(
        rig: Rig, events: asyncio.AbstractEventLoop) -> None:
    sid = submit(rig, min_replicas=0)
    app, feed = mounted(rig, events)
    rig.step(2)
    scale(rig.store, sid, 0, rig.clock.now(), "ann")
    rig.step(8)
    assert desired(rig, sid) == (0, "idle")
    admission = feed.loads.gateway.admission if feed.loads else None
    assert admission is not None and on(events, lambda: feed.table.service("svc")) is not None
    request = asyncio.run_coroutine_threadsafe(get(app, "/serve/svc/v1/chat"), events)
    for _ in range(1000):  # until the gateway holds it in the service's queue
        if on(events, lambda: admission.queued("svc")) == 1:
            break
        threading.Event().wait(0.01)
    assert on(events, lambda: admission.queued("svc")) == 1
    rig.step()
    assert desired(rig, sid)[0] == 1
    up = service_events(rig, sid)[-1]
    assert up.reason == SCALED_UP and up.message.startswith("scaled 0 -> 1 (panic)")
    assert "in flight" in up.message and "target 2 per replica" in up.message
    assert not request.done()  # it waits for the replica (the fixture ends it)


def test_the_gateway_does_not_hold_a_service_without_autoscale_at_zero(
        rig: Rig, events: asyncio.AbstractEventLoop) -> None:
    sid = submit(rig, min_replicas=0, autoscale=None)
    app, feed = mounted(rig, events)
    rig.step(2)
    scale(rig.store, sid, 0, rig.clock.now(), "ann")
    rig.step(8)
    response = asyncio.run_coroutine_threadsafe(get(app, "/serve/svc/x"), events).result(GUARD_S)
    assert response.status_code == 404
    rig.step(2)
    assert desired(rig, sid) == (0, "idle") and feed.autoscaler.scalers == {}


def test_the_gateway_counts_what_the_autoscaler_reads(
        rig: Rig, events: asyncio.AbstractEventLoop) -> None:
    """Arrivals since the last read, in flight, and each finished request's latency."""
    sid = submit(rig)
    app, feed = mounted(rig, events)
    rig.step(2)
    assert feed.loads is not None
    loads = feed.loads
    keys = {sid: [sid, "svc"]}
    on(events, lambda: loads.read(keys))  # the baseline
    for _ in range(3):  # the replica's URL has no server: 502 each, yet counted
        asyncio.run_coroutine_threadsafe(get(app, "/serve/svc/x"), events).result(GUARD_S)
    load = on(events, lambda: loads.read(keys))[sid]
    assert (load.in_flight, load.running, load.arrivals, len(load.latencies)) == (0, 0, 3, 3)
    assert all(x > 0 for x in load.latencies)  # each at its histogram bucket's bound
    assert on(events, lambda: loads.read(keys))[sid] == Load()  # nothing new since


# -- what the API and `corral describe` show ---------------------------------------------------

def test_the_service_shows_its_scaling_events_with_their_reasons(store: Store, capsys: Any
                                                                 ) -> None:
    api = build(store)
    spec = {**BASE, "queue": "team-a"}
    dry = api.client.post("/v1/dry-run", json=spec, headers=api.ann)
    assert dry.status_code == 200, dry.text
    assert any("autoscaled within [1, 3]" in n for n in dry.json()["notes"])
    r = api.client.post("/v1/workloads", json=spec, headers=api.ann)
    assert r.status_code == 201, r.text
    sid = r.json()["group_id"]
    clock = ManualClock()
    loop = ControlLoop(store, api.backend, clock=clock, settings=ControlSettings(),
                       leadership=Leadership(store, ttl_s=15.0))
    for _ in range(2):
        loop.step()
        clock.advance(1)
    scaler = ServiceAutoscaler(store)
    services = scaler.services(autoscaled_services(loop.live.records.values(), loop.live.specs))
    scaler.step(clock.now(), services, {sid: Load(in_flight=4, running=1, arrivals=4)})
    got = api.client.get(f"/v1/services/{sid}", headers=api.ann)
    assert got.status_code == 200, got.text
    [event] = got.json()["events"]
    assert (event["reason"], event["subject"]) == (SCALED_UP, AUTOSCALER)
    assert event["message"].startswith("scaled 1 -> 2") and "4 in flight" in event["message"]
    _print_service(M.Service.model_validate(got.json()), False)
    printed = capsys.readouterr().out
    assert "scaling" in printed and "ScaledUp" in printed and "autoscaler" in printed


def test_the_specs_auth_and_endpoint_limits_reach_the_gateway(
        rig: Rig, events: asyncio.AbstractEventLoop) -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    sid = submit(rig, autoscale=None, auth={"token_sha256": digest},
                 endpoint={"max_concurrent": 3, "max_queue": 5, "request_timeout": "90s",
                           "connect_timeout": "2s", "first_byte_timeout": "30s",
                           "retry": {"on_reset": False, "attempts": 3,
                                     "replay_buffer": "512KiB"},
                           "websocket": {"idle_timeout": "1m", "max_session": "1h"}})
    app, feed = mounted(rig, events)
    rig.step(3)
    for key in (sid, "svc"):  # by id and by name
        route = on(events, lambda k=key: feed.table.service(k))
        assert route.auth.token_sha256 == digest
        assert route.limits == ServiceLimits(max_concurrent=3, max_queue=5,
                                             total_timeout_s=90.0, connect_timeout_s=2.0,
                                             first_byte_timeout_s=30.0,
                                             retry=RetryPolicy(False, 3, 0.2),
                                             ws_idle_timeout_s=60.0, ws_max_session_s=3600.0,
                                             replay_buffer_bytes=512 << 10)
    refused = asyncio.run_coroutine_threadsafe(get(app, "/serve/svc/x"), events).result(GUARD_S)
    assert refused.status_code == 401 and "bearer token" in refused.json()["message"]
    assert "s3cret" not in json.dumps(WorkloadSpec.model_validate(
        {**BASE, "auth": {"token_sha256": digest}}).model_dump())
    new = WorkloadSpec.model_validate({**BASE, "autoscale": None, "command": ["serve", "2"]})
    update(rig.store, sid, new, stored_form(new), rig.clock.now(), "ann")
    rig.step(2)  # the new spec has neither: public, the gateway's limits, from its first replica
    route = on(events, lambda: feed.table.service(sid))
    assert route.auth.is_public and route.limits == ServiceLimits()


def test_replicas_drained_by_a_scale_down_get_no_new_request_at_once() -> None:
    table = RouteTable()
    for key in ("svc-1a2b3c4d", "svc"):  # by id and by name
        table.set_service(key)
        table.set_replica(key, "svc-1a2b3c4d-r1", "http://127.0.0.1:20001", ReplicaState.READY)
        table.set_replica(key, "svc-1a2b3c4d-r0", "http://127.0.0.1:20000", ReplicaState.READY)
    mark_draining(table, [("svc-1a2b3c4d", "svc-1a2b3c4d-r1")])
    for key in ("svc-1a2b3c4d", "svc"):
        route = table.service(key)
        assert route is not None and [r.id for r in route.ready()] == ["svc-1a2b3c4d-r0"]


def test_a_suspect_replica_stays_avoided_across_route_updates_until_it_restarts() -> None:
    """The gateway marks a replica that cut a stream suspect; the control plane's route
    update every step must not undo that while the store still says ready, and a restart
    (its state leaves ready) ends it."""
    def update_routes(state: str) -> None:
        apply_routes(table, [Route("svc-1", "svc-1-r0", "http://127.0.0.1:20000", state, "svc"),
                             Route("svc-1", "svc-1-r1", "http://127.0.0.1:20001", "ready", "svc")])

    def suspect() -> bool:
        found = table.replica("svc-1", "svc-1-r0")
        return found is not None and found.suspect(1.0)

    table = RouteTable()
    update_routes("ready")
    table.mark_suspect("svc-1", "svc-1-r0", 100.0)
    update_routes("ready")  # the next steps: nothing changed in the store
    update_routes("ready")
    assert suspect()
    update_routes("starting")  # killed and restarted: a new process
    update_routes("ready")
    assert not suspect()


# -- the load through a standby's gateway ------------------------------------------------------

def test_traffic_through_a_standbys_gateway_alone_scales_the_service_up(
        rig: Rig, events: asyncio.AbstractEventLoop) -> None:
    """Clients may reach any server: a request queued at a standby's gateway reaches the
    leader's autoscaler through the store (the standby's counters, every WRITE_EVERY_S)."""
    sid = submit(rig, min_replicas=0)
    _, feed = mounted(rig, events)
    rig.step(2)
    scale(rig.store, sid, 0, rig.clock.now(), "ann")
    rig.step(8)
    assert desired(rig, sid) == (0, "idle")
    backend = FakeBackend(rig.nodes, world=rig.world, check_capacity=True)
    app = Starlette()
    standby = mount_gateway(app, rig.new_loop(backend, holder="standby"), backend.name,
                            GatewayLimits(max_queue_wait_s=GUARD_S, connect_timeout_s=1))
    standby.events = events
    standby.loop.step()  # routes the idle service from the store, writes its counters (0)
    assert not standby.loop.leadership.leading
    request = asyncio.run_coroutine_threadsafe(get(app, "/serve/svc/v1/chat"), events)
    admission = standby.loads.gateway.admission if standby.loads else None
    assert admission is not None
    for _ in range(1000):  # until the standby's gateway holds it in the service's queue
        if on(events, lambda: admission.queued("svc")) == 1:
            break
        threading.Event().wait(0.01)
    assert on(events, lambda: admission.queued("svc")) == 1
    rig.step()  # the standby has not written since: the leader sees no load
    assert desired(rig, sid) == (0, "idle")
    rig.clock.advance(WRITE_EVERY_S)
    standby.loop.step()  # WRITE_EVERY_S later: it writes 1 in flight
    rig.step()
    assert desired(rig, sid)[0] == 1
    up = service_events(rig, sid)[-1]
    assert up.reason == SCALED_UP and "in flight" in up.message
    leader_queue = feed.loads.gateway.admission if feed.loads else None
    assert leader_queue is not None and on(events, lambda: leader_queue.queued("svc")) == 0
    assert not request.done()  # it waits at the standby for the replica (the fixture ends it)
    loads = standby.loads
    assert loads is not None
    asyncio.run_coroutine_threadsafe(loads.gateway.aclose(), events).result(GUARD_S)


def test_the_leader_sums_fresh_rows_of_other_gateways_and_ignores_stale_and_its_own(
        store: Store) -> None:
    ten = tuple((b, n) for b, n in ((0.1, 0.0), (1.0, 0.0), (None, 0.0)))
    with store.write() as c:
        write_loads(c, "dead", {"s1": LoadTotals(9, 9, 100.0, ten)}, now=0.0)
    shared = SharedLoads(own="leader")
    start = STALE_S + 5.0
    with store.write() as c:
        write_loads(c, "standby", {"s1": LoadTotals(3, 1, 50.0, ten)}, now=start)
        write_loads(c, "leader", {"s1": LoadTotals(7, 7, 70.0, ten)}, now=start)
    # first sight: the gauges of the fresh row; the dead gateway's old row and its own: none
    assert shared.read(store, ["s1"], start) == {"s1": Load(3, 1)}
    grown = ((0.1, 2.0), (1.0, 5.0), (None, 6.0))
    with store.write() as c:
        write_loads(c, "standby", {"s1": LoadTotals(2, 2, 56.0, grown)}, now=start + 2)
    assert shared.read(store, ["s1"], start + 2) == {
        "s1": Load(2, 2, 6, (0.1, 0.1, 1.0, 1.0, 1.0, 1.0))}
    # not rewritten for STALE_S by the leader's clock: counts for nothing
    assert shared.read(store, ["s1"], start + 2 + STALE_S - 1) == {"s1": Load(2, 2)}
    assert shared.read(store, ["s1"], start + 2 + STALE_S) == {}
    with store.write() as c:  # it writes again: fresh, and only the growth counts
        write_loads(c, "standby", {"s1": LoadTotals(0, 0, 57.0, grown)}, now=start + 40)
    assert shared.read(store, ["s1"], start + 40) == {"s1": Load(0, 0, 1)}
