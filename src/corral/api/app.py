"""The FastAPI application: `create_app(ApiContext)`; `corral up` serves it with uvicorn
(`corral.api.serving` gives uvicorn its limits)."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from corral.api import ledger, meta, pool, tenancy, workloads
from corral.api.context import ApiContext
from corral.api.errors import install_handlers
from corral.api.guard import RequestGuard
from corral.api.inputs import check_query, reject_nul
from corral.api.openapi import install_openapi
from corral.api.submit_route import SubmitShortcut

__all__ = ["create_app"]

DESCRIPTION = """corral's control-plane API. Authenticate with an API token:
`Authorization: Bearer <token>` (`corral up` prints the admin token and writes it to the data
dir). Every error, whatever its status, is JSON `{error, message, problems: [{field, message}]}`:
400 the body is not JSON, 401 no or a bad token (checked before the body is read), 403, 404,
405 (with `Allow`), 408 the body took too long, 409, 413 the body is over 1 MiB or a spec over
256 KiB, 422 a field is wrong (named in `problems`; a query parameter the operation does not
list, or a second value of a single-value one, is wrong too), 429 the token's request rate is
used up (`Retry-After`)."""


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="corral", version="v1", description=DESCRIPTION,
                  dependencies=[Depends(reject_nul), Depends(check_query)])
    app.state.corral = ctx
    install_handlers(app)
    app.include_router(meta.router)
    app.include_router(workloads.router)
    from corral.api import services  # issue 12: a service as one object (corral.api.services)

    app.include_router(services.router)
    app.include_router(pool.router)
    app.include_router(tenancy.router)
    from corral.api import secrets  # issue 13: named secrets (corral.api.secrets)

    app.include_router(secrets.router)
    from corral.api import webhooks  # issue 13: the notify webhooks' delivery log

    app.include_router(webhooks.router)
    from corral.api import workdirs  # issue 13: uploaded workdirs (corral.api.workdirs)

    app.include_router(workdirs.router)
    app.include_router(workdirs.agent_router)
    from corral.api import exec as exec_routes  # issue 13: corral exec (corral.api.exec)

    app.include_router(exec_routes.router)
    from corral.api import port_forward  # issue 13: corral port-forward (a WebSocket)

    port_forward.install(app)
    from corral.api import shell  # issue 13: corral ssh (a terminal over a WebSocket)

    shell.install(app)
    app.include_router(ledger.router)  # ledger hook: /v1/ledger (corral.api.ledger)
    from corral.api import agents  # issue 11: join tokens and the agent wire (corral.api.agents)

    app.include_router(agents.admin_router)
    app.include_router(agents.agent_router)
    from corral.api import agent_notices  # issue 11: spot notices read on the host

    app.include_router(agent_notices.router)
    from corral.web import install as install_dashboard  # late: corral.web imports corral.api

    # innermost of the app's middlewares (the first added): inside the guard and the timer
    app.add_middleware(SubmitShortcut, route=workloads.SUBMIT_ROUTE)
    install_dashboard(app)  # the dashboard at /, its data at /v1/dashboard, and /metrics
    install_openapi(app)
    app.add_middleware(RequestGuard, ctx=ctx)  # outermost: before any body is read
    return app
