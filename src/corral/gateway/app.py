"""The gateway as an ASGI app: `create_gateway_app(route_table)`.

    table = RouteTable()
    app = create_gateway_app(table)                 # run it: uvicorn.run(app, port=8080)
    api.mount("/", app)                             # or mount it in the control plane's app

Routes: `/serve/<service>` and `/serve/<service>/<path>` (every method) to the service's ready
replicas; `/metrics` (Prometheus text); `/healthz`. Anything else is a 404 in the house error
shape. The app's `state.gateway` is the `Gateway` (its table, metrics, admission queue and
transport to replicas); mounted inside another app, whose lifespan does not reach a mounted app's, call
`await gateway.aclose()` at shutdown.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from corral.gateway.admission import Admission
from corral.gateway.limits import GatewayLimits
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.proxy import BrokenResponse, Proxy, error_response
from corral.gateway.routes import RouteTable
from corral.gateway.websocket import WebSocketProxy

__all__ = ["Gateway", "create_gateway_app"]

log = logging.getLogger("corral.gateway")

# httpcore runs `import sniffio` on every request to tell asyncio from trio. Without sniffio
# installed (anyio 4 no longer needs it) that import fails each time, and a failed import is not
# cached: Python searches sys.path again, ~1 ms of CPU per proxied request, measured as 17% of
# a profiled run. A None entry makes the failure immediate; httpcore then assumes asyncio.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


@dataclass
class Gateway:
    table: RouteTable
    limits: GatewayLimits
    admission: Admission
    metrics: GatewayMetrics
    transport: httpx.AsyncBaseTransport
    proxy: Proxy

    async def aclose(self) -> None:
        await self.transport.aclose()


def _transport(limits: GatewayLimits) -> httpx.AsyncHTTPTransport:
    """The connection pool to replicas. A transport, not an `httpx.AsyncClient`: a client keeps
    a cookie jar, so one user's Set-Cookie from a replica would be sent with every later request
    of every user; it also follows redirects and sets auth, none of which a proxy may do. Its
    retries stay 0: `proxy.should_retry` decides, on another replica."""
    pool = httpx.Limits(max_connections=None, max_keepalive_connections=512,
                        keepalive_expiry=limits.upstream_idle_s)
    return httpx.AsyncHTTPTransport(limits=pool, http1=True, http2=False, trust_env=False)


def create_gateway_app(route_table: RouteTable, limits: GatewayLimits | None = None, *,
                       transport: httpx.AsyncBaseTransport | None = None,
                       rng: random.Random | None = None) -> Starlette:
    """The gateway app serving `route_table`. `transport` replaces the connection pool to
    replicas (an `httpx.MockTransport` in a test); `rng` seeds balancing (a replayable run)."""
    limits = limits or GatewayLimits()
    admission = Admission(route_table, limits.max_queue, limits.max_queue_wait_s)
    metrics = GatewayMetrics(route_table, admission.queued)
    http = transport or _transport(limits)
    proxy = Proxy(route_table, limits, admission, metrics, http, rng)
    gateway = Gateway(route_table, limits, admission, metrics, http, proxy)
    sessions = WebSocketProxy(route_table, limits, metrics, proxy.rng, admission)

    async def scrape(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "services": len(route_table.services())})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.aclose()

    app = Starlette(
        routes=[Route("/serve/{service}", proxy), Route("/serve/{service}/{path:path}", proxy),
                WebSocketRoute("/serve/{service}", sessions),
                WebSocketRoute("/serve/{service}/{path:path}", sessions),
                Route("/metrics", scrape, methods=["GET"]),
                Route("/healthz", healthz, methods=["GET"])],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan)
    app.state.gateway = gateway
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}; services are " \
                  "served under /serve/<service>/"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed here"
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return Response(error_response(exc.status_code, code, message), exc.status_code,
                    headers=dict(exc.headers or {}), media_type="application/json")


async def _internal_error(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, BrokenResponse):  # the proxy logged it, with its replica and cause
        log.error("gateway error", exc_info=exc)
    body = json.loads(error_response(500, "internal_error", "the gateway failed on this "
                                     "request; it is logged, retrying may help"))
    return JSONResponse(body, 500)
