"""Attach the dashboard and the metrics to the API app: `install(app)`, called by create_app.

    install(app)            /            redirect to the dashboard
                            /ui/         the dashboard's files (corral.web.site)
                            /v1/dashboard/*   its data (corral.web.routes)
                            /metrics     Prometheus (corral.web.metrics), admin token
                            middleware   API request latency
                            lifespan     the utilization sampler thread
    observe_loop(app, loop) feed the scheduler's cycles into the app's metrics
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from starlette.responses import Response

from corral.api.context import ApiContext, Caller, require_admin
from corral.control.loop import ControlLoop
from corral.web import routes, site
from corral.web.metrics import CorralMetrics, RequestTimer, metrics_response
from corral.web.settings import WebSettings
from corral.web.state import WebState, web_state

__all__ = ["install", "observe_loop"]

_metrics = APIRouter(include_in_schema=False)


@_metrics.get("/metrics")
def metrics(web: Annotated[WebState, Depends(web_state)], who: Caller) -> Response:
    require_admin(who)
    return metrics_response(web.metrics)


def install(app: FastAPI, settings: WebSettings | None = None) -> WebState:
    """Add the dashboard, its data endpoints and /metrics to an app made by
    `corral.api.create_app` (which sets `app.state.corral`). Returns the shared state."""
    ctx: ApiContext = app.state.corral
    state = WebState.build(ctx, settings or WebSettings.from_env())
    state.metrics = CorralMetrics(state.reader, ctx.store, ctx.clock)
    app.state.corral_web = state
    app.include_router(routes.router)
    from corral.web import providers_page  # issue 11: the Providers page's data

    app.include_router(providers_page.router)
    from corral.web import pool_page  # issue 16: the Pool page drawn from summaries

    app.include_router(pool_page.router)
    from corral.web import services_page  # issue 12: the Services page (traffic from the gateway)

    app.include_router(services_page.router)
    app.include_router(_metrics)
    app.include_router(site.router)
    site.mount_site(app)
    app.add_middleware(RequestTimer, histogram=state.metrics.request_seconds)
    _run_sampler_with(app, state)
    return state


def _run_sampler_with(app: FastAPI, state: WebState) -> None:
    """Start the sampler when the server starts serving and stop it when it stops, around
    whatever lifespan the app already has."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        state.sampler.start()
        try:
            async with inner(a) as inner_state:
                yield inner_state
        finally:
            state.sampler.stop()

    app.router.lifespan_context = lifespan


def observe_loop(app: FastAPI, loop: ControlLoop) -> None:
    """Count `loop`'s scheduling cycles in `app`'s metrics (call once, after both exist)."""
    loop.observers.append(app.state.corral_web.metrics.observe_cycle)
