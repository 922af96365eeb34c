"""The gateway in the control plane's server: `/serve/<service>/...` to the service's ready
replicas, its route table fed from the control loop's state after every step.

    feed = mount_gateway(app, loop, backend.name)     # in `corral up` (corral.cli.server)

A service is routed under its id (`chat-1a2b3c4d`) and, while it is the only live service of
that name, under its name (`chat`) too. Replicas come from `corral.control.endpoints.live_routes`
(ready: running and its readiness probe passing; starting; draining: cancelled or scaled down,
still running). Routes are computed on the loop's thread (no store read: the loop's memory) and
applied to the `RouteTable` on the server's event loop, where the gateway reads it.

Drains: a replica asked to stop (a scale-down by hand or by the autoscaler, a cancel, a rollout's
drain) leaves the gateway's routes before its SIGTERM, so no request is sent to a process that
is shutting down (Knative's activator and Kubernetes' endpoint removal do the same: out of the
load balancer first, then the signal). The loop holds the stop of a replica the gateway still
routes as ready (`RouteFeed.hold`, `ControlLoop.stop_hold`): the feed after that step routes it
draining (in-flight requests finish within the replica's grace), and the next step stops it.
A gateway that does not answer delays a stop by at most `HOLD_MAX_S`. After a failover (or a
restart) the new leader does not know what the former leader's gateway routed as ready, and its
own table is empty or stale: until its feed has applied this epoch's routes, it holds the stop of
every running replica (one step; the routes it then applies mark them draining).

Each service's `auth` (a bearer token by its SHA-256, or the secret that holds it:
`corral.control.service_auth`, read at most every few seconds, failing closed when the secret
is gone) and `endpoint` limits (max_concurrent, max_queue, queue_timeout, request_timeout,
connect_timeout, first_byte_timeout, retry, websocket) come from the spec its newest live replica runs
(`endpoint_settings`), so an update that changes them takes effect with the rollout's first
new replica; a service without them is public under the gateway's own limits.

Every server's gateway routes, the leader's and the standbys' (clients may reach any of them):
a standby reads the routes from the store's change feed into a state of its own, at most every
`STANDBY_EVERY_S` (`RouteFeed._follow`); only the leader scales and holds stops. A standby
writes what its gateway counted per autoscaled service to the store every `WRITE_EVERY_S`
(`GatewayLoads.totals`), and the leader adds the fresh rows of the other gateways to its own
counts (`corral.control.gateway_loads.SharedLoads`), so traffic that reaches only a standby
scales the service too.

Autoscaling (`corral.control.service_autoscale`): after each step the feed also reads, on the
server's event loop, what the gateway counted per autoscaled service (`GatewayLoads`), and the
loop's thread hands it to the `ServiceAutoscaler`, whose changes go through `scaling.scale`. An
autoscaled service stays in the route table with no replica at all (scaled to zero), so that a
request for it waits in the gateway's queue and scales it up, instead of a 404.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from starlette.routing import Route as StarletteRoute
from starlette.routing import WebSocketRoute

from corral.control.endpoints import Route, live_routes
from corral.control.gateway_loads import (
    WRITE_EVERY_S,
    SharedLoads,
    add_loads,
    new_latencies,
    write_own,
)
from corral.control.live_state import LiveState
from corral.control.loop import ControlLoop, StepReport
from corral.control.service_auth import TokenDigests, token_secret
from corral.control.service_autoscale import (
    Autoscaled,
    Load,
    ServiceAutoscaler,
    autoscaled_services,
)
from corral.control.snapshot import SpecCache
from corral.gateway import (
    GatewayLimits,
    ReplicaState,
    RouteTable,
    ServiceAuth,
    ServiceLimits,
    create_gateway_app,
)
from corral.gateway.app import Gateway
from corral.gateway.retries import RetryPolicy
from corral.gateway.traffic import TrafficHistory
from corral.spec import WorkloadSpec
from corral.store.gateway_loads import LoadTotals
from corral.store.workloads import WorkloadRecord

__all__ = ["GatewayLoads", "RouteFeed", "apply_routes", "endpoint_settings", "mark_draining",
           "mount_gateway"]

T = TypeVar("T")
#: how long the loop's thread waits for the event loop to read the gateway's counters; a busier
#: event loop costs the autoscaler one tick, never the control loop a stall
_READ_TIMEOUT_S = 2.0
#: the longest a replica's SIGTERM waits for the gateway to route it draining (loop clock); a
#: gateway whose event loop does not answer for this long must not keep a replica forever
HOLD_MAX_S = 10.0
#: how often a standby's gateway reads its routes from the store
STANDBY_EVERY_S = 1.0

log = logging.getLogger("corral.api.service_routes")

_STATES = {"ready": ReplicaState.READY, "starting": ReplicaState.STARTING,
           "draining": ReplicaState.DRAINING}


Settings = tuple[ServiceAuth, ServiceLimits]
_PUBLIC: Settings = (ServiceAuth.public(), ServiceLimits())


Digests = Mapping[tuple[str, str], str | None]


def endpoint_settings(spec: WorkloadSpec, digests: Digests | None = None) -> Settings:
    """A service's auth and limits at the gateway, from its spec's `auth` and `endpoint`.
    `digests`: (queue, secret) -> its token's SHA-256 (None or absent: unreadable, so no
    token admits)."""
    auth = ServiceAuth.public()
    if spec.auth is not None and spec.auth.token_sha256 is not None:
        auth = ServiceAuth(spec.auth.token_sha256)
    elif spec.auth is not None and spec.auth.token_secret is not None:
        digest = (digests or {}).get((spec.queue, spec.auth.token_secret))
        auth = ServiceAuth(digest) if digest else ServiceAuth.deny()
    e = spec.endpoint
    retry = RetryPolicy(e.retry.on_reset, e.retry.attempts, e.retry.budget) \
        if e is not None and e.retry is not None else None
    ws = e.websocket if e is not None else None
    limits = ServiceLimits(e.max_concurrent, e.max_queue, e.queue_timeout, e.request_timeout,
                           e.connect_timeout, e.first_byte_timeout, retry,
                           ws.idle_timeout if ws else None,
                           ws.max_session if ws else None,
                           e.retry.replay_buffer if e.retry else None) if e else ServiceLimits()
    return auth, limits


def _newest_specs(live: LiveState, services: Mapping[str, Autoscaled]
                  ) -> dict[str, WorkloadSpec]:
    """Per service id in the loop's memory (and per idle autoscaled one): the spec of its
    newest live replica (during a rollout: the new spec)."""
    newest: dict[str, Any] = {}
    for rec in live.records.values():
        if rec.kind == "service" and (rec.group_id not in newest
                                      or rec.seq > newest[rec.group_id].seq):
            newest[rec.group_id] = rec
    out = {sid: live.specs.spec(rec) for sid, rec in newest.items()}
    for sid, svc in services.items():
        if sid not in out and svc.spec is not None:
            out[sid] = svc.spec
    return out


def live_settings(live: LiveState, services: Mapping[str, Autoscaled],
                  tokens: TokenDigests | None = None, now: float = 0.0
                  ) -> dict[str, Settings]:
    """Per service id in the loop's memory (and per idle autoscaled one): its settings, from
    the spec of its newest live replica. `tokens`: where secrets' digests are read."""
    specs = _newest_specs(live, services)
    wanted = {(s.queue, name) for s in specs.values()
              if (name := token_secret(s)) is not None}
    digests = tokens.digests(wanted, now) if tokens is not None and wanted else {}
    return {sid: endpoint_settings(spec, digests) for sid, spec in specs.items()}


def apply_routes(table: RouteTable, routes: Sequence[Route],
                 keep: Iterable[tuple[str, str]] = (),
                 settings: Mapping[str, Settings] | None = None) -> None:
    """Make `table` hold exactly `routes` (by service id, and by name where unique): services
    and replicas added, states and URLs updated, the ones gone removed. `keep`: services (id,
    name) routed even with no replica (autoscaled: a request scales them up from zero).
    `settings`: per service id, its auth and limits (default: public, the gateway's limits)."""
    wanted: dict[str, dict[str, Route]] = {}
    owner: dict[str, str] = {}  # table key -> service id
    services = {(r.service, r.name) for r in routes} | set(keep)
    names = Counter(name for _, name in services)
    for sid, name in services:
        wanted.setdefault(sid, {})
        owner[sid] = sid
        if name and names[name] == 1 and name != sid:
            wanted.setdefault(name, {})
            owner[name] = sid
    for r in routes:
        wanted.setdefault(r.service, {})[r.replica] = r
        if r.name and names[r.name] == 1 and r.name != r.service:
            wanted.setdefault(r.name, {})[r.replica] = r
    for key, replicas in wanted.items():
        auth, limits = (settings or {}).get(owner.get(key, key), _PUBLIC)
        try:
            route = table.service(key)
            if route is None or route.auth != auth or route.limits != limits:
                table.set_service(key, auth, limits)
        except ValueError:  # a key the gateway's name rule refuses (an id over 63 characters)
            continue
        route = table.service(key)
        assert route is not None
        for rid in set(route.replicas) - set(replicas):
            table.remove_replica(key, rid)
        for rid, r in replicas.items():
            current = route.replicas.get(rid)
            if current is None or current.url != r.url or current.state is not _STATES[r.state]:
                table.set_replica(key, rid, r.url, _STATES[r.state])
    for gone in {s.name for s in table.services()} - set(wanted):
        table.remove_service(gone)


def mark_draining(table: RouteTable, drained: Sequence[tuple[str, str]]) -> None:
    """Stop sending new requests to replicas just drained by a scale-down. The loop sends them
    SIGTERM at its next step, before the next route update would mark them draining; a request
    sent meanwhile on a kept-alive connection the replica closes as it shuts down would fail
    without a response. In-flight requests finish (the replica's grace)."""
    ids = {rid for _, rid in drained}
    for route in table.services():
        for rid in ids & set(route.replicas):
            table.set_state(route.name, rid, ReplicaState.DRAINING)


class GatewayLoads:
    """Per service, what the gateway counted since the last read: in flight (its gauge: queued
    + running), running (the replicas' outstanding requests), arrivals (finished since the last
    read + the change in flight: every arrival has either finished or is still in flight) and
    latencies (the request-seconds histogram's new counts, each at its bucket's upper bound: as
    precise as the histogram, and never below the truth). Read on the gateway's event loop."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        #: per table key: (in flight, finished, cumulative bucket counts) at the last read
        self._last: dict[str, tuple[float, float, tuple[float, ...]]] = {}
        self._bounds: tuple[float, ...] = ()

    def read(self, keys: Mapping[str, Sequence[str]]) -> dict[str, Load]:
        """`keys`: service id -> its keys in the route table (its id, its name where unique)."""
        now = self._counters({k for ks in keys.values() for k in ks})
        out = {}
        for sid, ks in keys.items():
            in_flight = arrivals = running = 0.0
            latencies: list[float] = []
            for k in ks:
                flight, done, buckets = now.get(k, (0.0, 0.0, ()))
                was = self._last.get(k, (flight, done, buckets))  # first read: the baseline
                self._last[k] = (flight, done, buckets)
                in_flight += flight
                arrivals += max(0.0, done - was[1] + flight - was[0])
                latencies += self._new_latencies(was[2], buckets)
                route = self.gateway.table.service(k)
                running += sum(r.outstanding for r in route.replicas.values()) if route else 0
            out[sid] = Load(int(in_flight), int(min(running, in_flight)), int(arrivals),
                            tuple(latencies))
        for gone in set(self._last) - {k for ks in keys.values() for k in ks}:
            del self._last[gone]
        return out

    def _counters(self, keys: set[str]) -> dict[str, tuple[float, float, tuple[float, ...]]]:
        """One collection of the gateway's registry: per key, in flight, finished, buckets."""
        flight: dict[str, float] = {}
        done: dict[str, float] = {}
        buckets: dict[str, list[tuple[float, float]]] = {}
        for family in self.gateway.metrics.registry.collect():
            for sample in family.samples:
                key = sample.labels.get("service", "")
                if key not in keys:
                    continue
                if sample.name == "corral_gateway_in_flight":
                    flight[key] = sample.value
                elif sample.name == "corral_gateway_requests_total":
                    done[key] = done.get(key, 0.0) + sample.value
                elif sample.name == "corral_gateway_request_seconds_bucket":
                    buckets.setdefault(key, []).append((float(sample.labels["le"]),
                                                        sample.value))
        for found in buckets.values():
            found.sort()
            self._bounds = tuple(b for b, _ in found)
        return {k: (flight.get(k, 0.0), done.get(k, 0.0),
                    tuple(v for _, v in buckets.get(k, ()))) for k in keys}

    def _new_latencies(self, was: tuple[float, ...], now: tuple[float, ...]) -> list[float]:
        return new_latencies(self._pairs(was), self._pairs(now))

    def _pairs(self, counts: tuple[float, ...]) -> list[tuple[float | None, float]]:
        """Cumulative counts as (upper bound, count), None for +Inf."""
        if len(counts) != len(self._bounds):
            return []
        return [(None if b == float("inf") else b, c)
                for b, c in zip(self._bounds, counts, strict=True)]

    def totals(self, keys: Mapping[str, Sequence[str]]) -> dict[str, LoadTotals]:
        """Per service id, what this gateway counted since it started (under all its keys):
        what a standby writes for the leader (`corral.control.gateway_loads`)."""
        now = self._counters({k for ks in keys.values() for k in ks})
        out = {}
        for sid, ks in keys.items():
            flight = done = running = 0.0
            summed: tuple[float, ...] = ()
            for k in ks:
                f, d, buckets = now.get(k, (0.0, 0.0, ()))
                flight, done = flight + f, done + d
                if buckets:  # one histogram per key, all with the gateway's bounds
                    summed = buckets if not summed else tuple(
                        a + b for a, b in zip(summed, buckets, strict=True))
                route = self.gateway.table.service(k)
                running += sum(r.outstanding for r in route.replicas.values()) if route else 0
            out[sid] = LoadTotals(int(flight), int(min(running, flight)), done + flight,
                                  tuple(self._pairs(summed)))
        return out


class RouteFeed:
    """A control-loop observer that hands the step's routes to the event loop of the server,
    then feeds the autoscaled services' load from the gateway to the `ServiceAutoscaler`."""

    def __init__(self, table: RouteTable, loop: ControlLoop, backend_name: str,
                 loads: GatewayLoads | None = None) -> None:
        self.table, self.loop, self.backend_name = table, loop, backend_name
        self.events: asyncio.AbstractEventLoop | None = None
        self.loads = loads
        self.autoscaler = ServiceAutoscaler(loop.store)
        #: services' tokens held in secrets: their digests (corral.control.service_auth)
        self.tokens = TokenDigests(loop.store)
        #: each service's traffic over time, sampled from the gateway's counters (dashboard)
        self.traffic: TrafficHistory | None = None
        #: on a standby: its own state read from the store, and when it was last read
        self._standby: tuple[LiveState, float] | None = None
        #: on a standby: which services to route (idle ones at zero included); never steps
        self._listing = ServiceAutoscaler(loop.store)
        #: replicas the gateway routes as ready, as last applied (read on the loop's thread)
        self.routed: set[str] = set()
        #: the leadership epoch `routed` was applied in: another epoch's (or none) says nothing
        #: of what a gateway routes now (the former leader's may have routed any replica)
        self.routed_epoch: int | None = None
        #: replica id -> when its stop was first held (HOLD_MAX_S bounds it)
        self._held_since: dict[str, float] = {}
        #: the leader's reader of the standbys' gateway counters; a standby's last write
        self.shared = SharedLoads(loop.leadership.holder)
        self._written_at: float | None = None

    def hold(self, rec: WorkloadRecord, now: float) -> bool:
        """Whether `rec`'s stop waits for the next step: the gateway still sends it requests
        (the feed after this step routes it draining), for at most HOLD_MAX_S. Before this
        leader's first routes are applied, any running replica may be routed as ready."""
        if self.loop.leadership.epoch != self.routed_epoch:
            routed = rec.state == "running"
        else:
            routed = rec.id in self.routed
        if rec.kind != "service" or not routed:
            self._held_since.pop(rec.id, None)
            return False
        since = self._held_since.setdefault(rec.id, now)
        if now - since < HOLD_MAX_S:
            return True
        log.warning("%s stopped while the gateway may still route it: routes not applied for "
                    "%gs", rec.id, now - since)
        return False

    def __call__(self, report: StepReport) -> None:
        if self.events is None:
            return
        if not report.leader:
            self._follow()
            return
        self._standby = None  # the loop's own memory is read from here on
        routes = live_routes(self.loop.live, self.backend_name)
        active = autoscaled_services(self.loop.live.records.values(), self.loop.live.specs)
        services = self.autoscaler.services(active, self.loop.clock.now())
        keep = [(s.id, s.name) for s in services.values()]
        settings = live_settings(self.loop.live, services, self.tokens, self.loop.clock.now())
        # waited for (bounded): the next step may SIGTERM a replica drained in this one, and the
        # gateway must have stopped sending it requests first (a request sent on a kept-alive
        # connection the replica closes as it shuts down fails with no response)
        try:
            applied = self._on_events(_done(lambda: apply_routes(self.table, routes, keep,
                                                                 settings)))
            if applied:  # else the table is as it was: holds stand
                self.routed = {r.replica for r in routes if r.state == "ready"}
                self.routed_epoch = self.loop.leadership.epoch
        except Exception:  # a route table that refuses an update must not stop the loop
            log.exception("routes not applied to the gateway this tick")
        now = self.loop.clock.now()
        if self.traffic is not None and self.traffic.due(now):  # the Services page's charts
            every = _all_keys(routes, keep)
            traffic = self.traffic
            self._on_events(lambda: traffic.sample(now, every))
        if self.routed_epoch == self.loop.leadership.epoch:  # else every hold stands
            self._held_since = {k: v for k, v in self._held_since.items() if k in self.routed}
        if not services or self.loads is None:
            return
        keys = _keys(routes, services)
        loads = self._on_events(lambda: self.loads.read(keys) if self.loads else {})
        if loads is not None:
            loads = add_loads(loads, self._standbys_loads(services))
            self.autoscaler.step(self.loop.clock.now(), services, loads)
            drained = self.autoscaler.drained
            marked = bool(drained) and self._on_events(
                _done(lambda: mark_draining(self.table, drained)))
            if marked:
                self.routed -= {rid for _, rid in drained}

    def _standbys_loads(self, services: Mapping[str, Autoscaled]) -> dict[str, Load]:
        """What the standbys' gateways counted (their rows in the store); nothing when the
        store cannot be read this tick (the leader's own counters still scale)."""
        try:
            return self.shared.read(self.loop.store, list(services), self.loop.clock.now())
        except Exception:
            log.exception("the standbys' gateway counters not read this tick")
            return {}

    def _write_loads(self, routes: Sequence[Route], services: Mapping[str, Autoscaled],
                     now: float) -> None:
        """A standby's gateway counters, written for the leader every WRITE_EVERY_S."""
        if self.loads is None or (self._written_at is not None
                                  and now - self._written_at < WRITE_EVERY_S):
            return
        self._written_at = now
        keys = _keys(routes, services)
        loads = self.loads
        totals = self._on_events(lambda: loads.totals(keys))
        if totals is not None:
            write_own(self.loop.store, self.loop.leadership.holder, totals, now)

    def _follow(self) -> None:
        """A standby's gateway routes too (clients may reach any server): from the store's
        change feed, read into a state of its own at most every STANDBY_EVERY_S, with the same
        rules as the leader's (draining as soon as a stop is asked; the leader holds its
        SIGTERM one step). It neither scales nor holds anything: that is the leader's."""
        now = self.loop.clock.now()
        if self._standby is not None and now - self._standby[1] < STANDBY_EVERY_S:
            return
        live = self._standby[0] if self._standby is not None else LiveState(SpecCache())
        self._standby = (live, now)
        try:
            with self.loop.store.read() as conn:
                live.refresh(conn, queues=False)
            routes = live_routes(live, self.backend_name)
            active = autoscaled_services(live.records.values(), live.specs)
            services = self._listing.services(active, now)
            keep = [(sv.id, sv.name) for sv in services.values()]
            settings = live_settings(live, services, self.tokens, now)
            self._on_events(lambda: apply_routes(self.table, routes, keep, settings))
            self._write_loads(routes, services, now)
        except Exception:  # a standby's routes must never stop its loop (or its API)
            log.exception("a standby's routes not refreshed this tick")
            self._standby = None
        self.routed, self.routed_epoch = set(), None  # a leader's own routes come first

    def _on_events(self, read: Callable[[], T]) -> T | None:
        """`read()` run on the server's event loop (where the gateway's table and counters
        live), waited for up to 2 s; None when it does not answer in time (the loop goes on:
        a busy event loop costs a late route update, never a stalled control loop)."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(read())
            except Exception as e:  # handed to the waiting thread, logged there
                done.set_exception(e)

        events = self.events
        if events is None:
            return None
        events.call_soon_threadsafe(run)
        try:
            return done.result(timeout=_READ_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            log.warning("the gateway's event loop did not answer within %gs (routes or "
                        "counters late this tick)", _READ_TIMEOUT_S)
            return None


def _done(act: Callable[[], None]) -> Callable[[], bool]:
    """`act` that says True once it ran (`_on_events` says None when it did not in time)."""
    def run() -> bool:
        act()
        return True
    return run


def _all_keys(routes: Sequence[Route], keep: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Every routed service's keys in the route table (`apply_routes`' rule)."""
    services = {(r.service, r.name) for r in routes} | set(keep)
    names = Counter(name for _, name in services)
    return {sid: [sid] + ([name] if name and names[name] == 1 and name != sid else [])
            for sid, name in services}


def _keys(routes: Sequence[Route], services: Mapping[str, Autoscaled]) -> dict[str, list[str]]:
    """Each autoscaled service's keys in the route table: its id, and its name while no other
    service has it (`apply_routes`' rule): requests under either count."""
    names = Counter(name for _, name in {(r.service, r.name) for r in routes}
                    | {(s.id, s.name) for s in services.values()})
    return {sid: [sid] + ([s.name] if s.name and names[s.name] == 1 and s.name != sid else [])
            for sid, s in services.items()}


def mount_gateway(app: Any, loop: ControlLoop, backend_name: str,
                  limits: GatewayLimits | None = None) -> RouteFeed:
    """Serve `/serve/<service>` and `/serve/<service>/<path>` from `app` (before its other
    routes), fed by `loop`. Returns the feed (its table: `feed.table`)."""
    table = RouteTable()
    gateway = create_gateway_app(table, limits)
    app.router.routes[0:0] = [StarletteRoute("/serve/{service}", gateway),
                              StarletteRoute("/serve/{service}/{path:path}", gateway),
                              WebSocketRoute("/serve/{service}", gateway),  # WebSockets too
                              WebSocketRoute("/serve/{service}/{path:path}", gateway)]
    feed = RouteFeed(table, loop, backend_name, GatewayLoads(gateway.state.gateway))
    feed.traffic = TrafficHistory(gateway.state.gateway.metrics.registry)
    app.state.corral_traffic = feed.traffic  # the dashboard's Services page reads it
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        feed.events = asyncio.get_running_loop()  # the event loop the route table is read on
        try:
            async with inner(a) as inner_state:
                yield inner_state
        finally:
            feed.events = None
            await gateway.state.gateway.aclose()

    app.router.lifespan_context = lifespan
    loop.observers.append(feed)
    loop.stop_hold = feed.hold
    return feed
