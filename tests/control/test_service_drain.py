"""A scale-down by hand and a cancel leave the gateway's routes before the replica's SIGTERM
(issue 12), as the autoscaler's drains and rollouts do: real replicas (the example model server
under uvicorn) behind the gateway mounted on a control loop, concurrent clients, 0 failed
requests across a manual scale-down."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from tests.gateway.harness import completion, model_server

from corral.api import service_routes
from corral.api.service_routes import RouteFeed, mount_gateway
from corral.backends.fake import FakeBackend
from corral.control import ControlLoop, endpoints
from corral.control.cancellation import cancel_service
from corral.control.scaling import scale
from corral.gateway import GatewayLimits, ReplicaState
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store.database import sqlite_url

from .rig import Rig

BASE: dict[str, Any] = {"name": "svc", "queue": "q", "kind": "service", "gpus": 1, "cpu": 0.1,
                        "memory": 64, "command": ["serve"], "replicas": 2, "min_replicas": 1,
                        "max_replicas": 3}
#: a guard so a broken test fails instead of hanging; nothing asserts on time
GUARD_S = 30.0
#: requests finished after a SIGTERM before the loop goes on: without the drain first, some of
#: them are sent to the stopped replica while the gateway still routes it
AFTER_SIGTERM = 30


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:  # the ordering is the store's no matter which
    s = Store(sqlite_url(tmp_path / "corral.db"))
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def events() -> Iterator[asyncio.AbstractEventLoop]:
    """The server's event loop (gateway, replicas, clients) in a thread of its own; the
    control loop's thread is the test's."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop

    async def drain() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(drain(), loop).result(GUARD_S)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(GUARD_S)
    loop.close()


def on(events: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, events).result(GUARD_S)


class Replicas:
    """One example model server per replica id, on the server's event loop. `sigterm` is what
    SIGTERM does to uvicorn, done at once: its listener and idle kept-alive connections close,
    requests in flight finish."""

    def __init__(self, events: asyncio.AbstractEventLoop) -> None:
        self.events = events
        self.servers: dict[str, uvicorn.Server] = {}
        self.urls: dict[str, str] = {}
        self.models: dict[str, Any] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, rid: str) -> None:
        async def go() -> None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            model = model_server.ModelState(rid, token_delay_s=0.002)
            server = uvicorn.Server(uvicorn.Config(model_server.create_app(model),
                                                   log_level="warning"))
            self.tasks.append(asyncio.get_running_loop().create_task(
                server.serve(sockets=[sock])))
            while not server.started:
                await asyncio.sleep(0.002)
            self.servers[rid], self.models[rid] = server, model
            self.urls[rid] = f"http://127.0.0.1:{sock.getsockname()[1]}"
        on(self.events, go())

    def sigterm(self, rid: str) -> None:
        async def go() -> None:
            server = self.servers[rid]
            for listener in server.servers:
                listener.close()
            for connection in list(server.server_state.connections):
                connection.shutdown()
            server.should_exit = True
        on(self.events, go())

    def close(self) -> None:
        async def go() -> None:
            for server in self.servers.values():
                server.should_exit = True
            await asyncio.gather(*self.tasks)
        on(self.events, go())


class Clients:
    """Concurrent clients posting completions to the gateway until stopped; every outcome kept
    (a status, or the exception's name)."""

    def __init__(self, events: asyncio.AbstractEventLoop, app: Starlette, n: int = 6) -> None:
        self.outcomes: list[int | str] = []
        self.running = True

        async def client() -> None:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://corral", timeout=GUARD_S) as c:
                while self.running:
                    try:
                        r = await c.post("/serve/svc/v1/completions", json=completion())
                        self.outcomes.append(r.status_code)
                    except httpx.HTTPError as e:
                        self.outcomes.append(type(e).__name__)

        async def start() -> list[asyncio.Task[None]]:
            return [asyncio.get_running_loop().create_task(client()) for _ in range(n)]
        self.tasks = on(events, start())
        self.events = events

    def wait(self, more: int) -> None:
        """Until `more` requests finished after now (bounded by the guard)."""
        target = len(self.outcomes) + more
        done = threading.Event()
        for _ in range(int(GUARD_S / 0.005)):
            if len(self.outcomes) >= target:
                return
            done.wait(0.005)
        raise AssertionError(f"the clients stalled at {len(self.outcomes)} requests")

    def stop(self) -> list[int | str]:
        self.running = False

        async def join() -> None:
            await asyncio.gather(*self.tasks)
        on(self.events, join())
        return self.outcomes


@dataclasses.dataclass
class Setup:
    rig: Rig
    sid: str
    feed: RouteFeed
    app: Starlette
    replicas: Replicas
    sigtermed: list[str]
    clients: Clients | None = None


@pytest.fixture
def setup(store: Store, events: asyncio.AbstractEventLoop,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    """A service of 2 replicas serving behind the mounted gateway: each replica's route is its
    model server's URL, and the fake backend's stop SIGTERMs it (then lets the clients send
    AFTER_SIGTERM more requests, so a gateway still routing it would send it some)."""
    rig = Rig(store)
    spec = WorkloadSpec.model_validate(BASE)
    sid = rig.submissions.submit(spec, "ann", rig.clock.now())[0].group_id
    replicas = Replicas(events)
    for i in range(2):
        replicas.start(f"{sid}-r{i}")
    real_routes = endpoints.live_routes
    monkeypatch.setattr(service_routes, "live_routes", lambda live, name: [
        dataclasses.replace(r, url=replicas.urls[r.replica]) for r in real_routes(live, name)])
    app = Starlette()
    feed = mount_gateway(app, rig.loop, rig.backend.name,
                         GatewayLimits(max_tries=1, connect_timeout_s=1,
                                       max_queue_wait_s=GUARD_S))
    feed.events = events  # what the app's lifespan does under uvicorn
    out = Setup(rig, sid, feed, app, replicas, [])
    stop = rig.backend.stop

    def sigterm(wid: str, attempt: int, grace: float, reason: str) -> None:
        if wid in replicas.servers and wid not in out.sigtermed:
            out.sigtermed.append(wid)
            replicas.sigterm(wid)
            if out.clients is not None:
                out.clients.wait(AFTER_SIGTERM)
        stop(wid, attempt, grace, reason)
    monkeypatch.setattr(rig.backend, "stop", sigterm)
    rig.step(3)
    yield out
    if out.clients is not None and out.clients.running:
        out.clients.stop()
    replicas.close()
    assert feed.loads is not None
    on(events, feed.loads.gateway.aclose())


def routed(s: Setup) -> dict[str, ReplicaState]:
    async def read() -> dict[str, ReplicaState]:
        route = s.feed.table.service(s.sid)
        return {rid: r.state for rid, r in route.replicas.items()} if route else {}
    assert s.feed.events is not None
    return dict(on(s.feed.events, read()))


def test_a_scale_down_by_hand_fails_no_request_of_concurrent_clients(setup: Setup) -> None:
    s = setup
    r0, r1 = f"{s.sid}-r0", f"{s.sid}-r1"
    assert routed(s) == {r0: ReplicaState.READY, r1: ReplicaState.READY}
    assert s.feed.events is not None
    clients = s.clients = Clients(s.feed.events, s.app)
    clients.wait(40)
    served_before = s.replicas.models[r1].served
    scale(s.rig.store, s.sid, 1, s.rig.clock.now(), "ann")
    for _ in range(3):
        s.rig.step()
        clients.wait(10)
    outcomes = clients.stop()
    assert s.sigtermed == [r1]
    assert served_before > 0  # r1 took its share until its drain
    failed = [o for o in outcomes if o != 200]
    assert failed == [], f"{len(failed)} of {len(outcomes)} requests failed"
    assert len(outcomes) >= 40 + AFTER_SIGTERM


def test_a_cancelled_service_leaves_the_gateway_before_its_replicas_get_sigterm(
        setup: Setup) -> None:
    s = setup
    cancel_service(s.rig.store, s.sid, s.rig.clock.now(), "ann")
    s.rig.step()  # the loop sees the stop requests: the gateway routes both replicas draining
    assert s.sigtermed == []
    assert set(routed(s).values()) == {ReplicaState.DRAINING}
    s.rig.step()  # then they get SIGTERM
    assert sorted(s.sigtermed) == [f"{s.sid}-r0", f"{s.sid}-r1"]



@dataclasses.dataclass
class Successor:
    """Another control plane over the same machines (a standby, or a restart), with its own
    gateway: its backend re-adopts what the first one launched."""

    loop: ControlLoop
    feed: RouteFeed
    app: Starlette

    def states(self) -> dict[str, ReplicaState]:
        async def read() -> dict[str, ReplicaState]:
            return {rid: r.state for route in self.feed.table.services()
                    for rid, r in route.replicas.items()}
        assert self.feed.events is not None
        return dict(on(self.feed.events, read()))


@pytest.fixture
def successor(setup: Setup, events: asyncio.AbstractEventLoop,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Successor]:
    s = setup
    backend = FakeBackend(s.rig.nodes, world=s.rig.world, check_capacity=True)
    stop = backend.stop

    def sigterm(wid: str, attempt: int, grace: float, reason: str) -> None:
        if wid in s.replicas.servers and wid not in s.sigtermed:
            s.sigtermed.append(wid)
            s.replicas.sigterm(wid)
        stop(wid, attempt, grace, reason)
    monkeypatch.setattr(backend, "stop", sigterm)
    loop = s.rig.new_loop(backend, holder="successor")
    app = Starlette()
    feed = mount_gateway(app, loop, backend.name)
    feed.events = events
    yield Successor(loop, feed, app)
    assert feed.loads is not None
    on(events, feed.loads.gateway.aclose())


def test_a_new_leaders_first_step_holds_the_stops_of_replicas_the_former_gateway_routed(
        setup: Setup, successor: Successor) -> None:
    """A failover between a cancel and its SIGTERM: the new leader's own gateway never routed
    the replicas, but the former leader's did (ready); its first step routes them draining and
    holds their SIGTERM, the next one sends it."""
    s = setup
    assert set(routed(s).values()) == {ReplicaState.READY}  # the former leader's gateway
    cancel_service(s.rig.store, s.sid, s.rig.clock.now(), "ann")
    s.rig.clock.advance(20.0)  # the former leader stopped stepping: its lease (15 s) expires
    successor.loop.step()
    assert successor.loop.leadership.leading
    assert s.sigtermed == []
    assert successor.states() == {f"{s.sid}-r0": ReplicaState.DRAINING,
                                  f"{s.sid}-r1": ReplicaState.DRAINING}
    s.rig.clock.advance(1.0)
    successor.loop.step()
    assert sorted(s.sigtermed) == [f"{s.sid}-r0", f"{s.sid}-r1"]


def test_after_its_first_routes_a_new_leader_holds_only_what_it_routed(
        setup: Setup, successor: Successor) -> None:
    """The hold for every running replica lasts until the new leader's routes are applied:
    a scale-down after that is held one step, as in the steady state, not more."""
    s = setup
    s.rig.clock.advance(20.0)
    successor.loop.step()
    assert successor.feed.routed_epoch == successor.loop.leadership.epoch
    assert successor.feed.routed == {f"{s.sid}-r0", f"{s.sid}-r1"}
    scale(s.rig.store, s.sid, 1, s.rig.clock.now(), "ann")
    s.rig.clock.advance(1.0)
    successor.loop.step()
    assert s.sigtermed == []
    assert successor.states()[f"{s.sid}-r1"] is ReplicaState.DRAINING
    s.rig.clock.advance(1.0)
    successor.loop.step()
    assert s.sigtermed == [f"{s.sid}-r1"]


def test_a_standbys_gateway_routes_the_replicas_and_their_drain_from_the_store(
        setup: Setup, successor: Successor) -> None:
    """Clients may reach any server: a standby's gateway serves the service too, and routes a
    replica draining as soon as its stop is asked (the leader SIGTERMs it a step later)."""
    s = setup
    r0, r1 = f"{s.sid}-r0", f"{s.sid}-r1"
    successor.loop.step()
    assert not successor.loop.leadership.leading  # the rig's loop holds the lease
    assert successor.states() == {r0: ReplicaState.READY, r1: ReplicaState.READY}
    assert successor.feed.events is not None

    async def call() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=successor.app),
                                     base_url="http://standby") as c:
            r = await c.post("/serve/svc/v1/completions", json=completion())
            return r.status_code
    assert on(successor.feed.events, call()) == 200
    scale(s.rig.store, s.sid, 1, s.rig.clock.now(), "ann")
    s.rig.clock.advance(service_routes.STANDBY_EVERY_S)
    successor.loop.step()
    assert successor.states() == {r0: ReplicaState.READY, r1: ReplicaState.DRAINING}
    assert s.sigtermed == []  # the standby stops nothing
