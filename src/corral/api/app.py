"""The FastAPI application: `create_app(ApiContext)`; `corral up` serves it with uvicorn."""

from __future__ import annotations

from fastapi import FastAPI

from corral.api import ledger, meta, pool, workloads
from corral.api.context import ApiContext
from corral.api.errors import install_handlers

__all__ = ["create_app"]

DESCRIPTION = """corral's control-plane API. Authenticate with an API token:
`Authorization: Bearer <token>` (`corral up` prints the admin token and writes it to the data
dir). Errors are JSON `{error, message, problems: [{field, message}]}`."""


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="corral", version="v1", description=DESCRIPTION)
    app.state.corral = ctx
    install_handlers(app)
    app.include_router(meta.router)
    app.include_router(workloads.router)
    app.include_router(pool.router)
    app.include_router(ledger.router)  # ledger hook: /v1/ledger (corral.api.ledger)
    from corral.web import install as install_dashboard  # late: corral.web imports corral.api

    install_dashboard(app)  # the dashboard at /, its data at /v1/dashboard, and /metrics
    return app
