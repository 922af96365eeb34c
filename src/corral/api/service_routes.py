"""The gateway in the control plane's server: `/serve/<service>/...` to the service's ready
replicas, its route table fed from the control loop's state after every step.

    feed = mount_gateway(app, loop, backend.name)     # in `corral up` (corral.cli.server)

A service is routed under its id (`chat-1a2b3c4d`) and, while it is the only live service of
that name, under its name (`chat`) too. Replicas come from `corral.control.endpoints.live_routes`
(ready: running and its readiness probe passing; starting; draining: cancelled or scaled down,
still running). Routes are computed on the loop's thread (no store read: the loop's memory) and
applied to the `RouteTable` on the server's event loop, where the gateway reads it.

Services are public on the gateway for now: a spec field for a service token is not there yet
(the gateway supports one: `ServiceAuth.token`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.routing import Route as StarletteRoute

from corral.control.endpoints import Route, live_routes
from corral.control.loop import ControlLoop, StepReport
from corral.gateway import ReplicaState, RouteTable, create_gateway_app

__all__ = ["RouteFeed", "apply_routes", "mount_gateway"]

log = logging.getLogger("corral.api.service_routes")

_STATES = {"ready": ReplicaState.READY, "starting": ReplicaState.STARTING,
           "draining": ReplicaState.DRAINING}


def apply_routes(table: RouteTable, routes: Sequence[Route]) -> None:
    """Make `table` hold exactly `routes` (by service id, and by name where unique): services
    and replicas added, states and URLs updated, the ones gone removed."""
    wanted: dict[str, dict[str, Route]] = {}
    names = Counter({r.name: 0 for r in routes})
    for service in {(r.service, r.name) for r in routes}:
        names[service[1]] += 1
    for r in routes:
        wanted.setdefault(r.service, {})[r.replica] = r
        if r.name and names[r.name] == 1 and r.name != r.service:
            wanted.setdefault(r.name, {})[r.replica] = r
    for key, replicas in wanted.items():
        try:
            if table.service(key) is None:
                table.set_service(key)
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


class RouteFeed:
    """A control-loop observer that hands the step's routes to the event loop of the server."""

    def __init__(self, table: RouteTable, loop: ControlLoop, backend_name: str) -> None:
        self.table, self.loop, self.backend_name = table, loop, backend_name
        self.events: asyncio.AbstractEventLoop | None = None

    def __call__(self, report: StepReport) -> None:
        if not report.leader or self.events is None:
            return
        routes = live_routes(self.loop.live, self.backend_name)
        self.events.call_soon_threadsafe(apply_routes, self.table, routes)


def mount_gateway(app: Any, loop: ControlLoop, backend_name: str) -> RouteFeed:
    """Serve `/serve/<service>` and `/serve/<service>/<path>` from `app` (before its other
    routes), fed by `loop`. Returns the feed (its table: `feed.table`)."""
    table = RouteTable()
    gateway = create_gateway_app(table)
    app.router.routes[0:0] = [StarletteRoute("/serve/{service}", gateway),
                              StarletteRoute("/serve/{service}/{path:path}", gateway)]
    feed = RouteFeed(table, loop, backend_name)
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
    return feed
