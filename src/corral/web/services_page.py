"""/v1/dashboard/services: the Services page's data (issue 12): every live service the caller
may see, with its endpoint, replicas ready / desired, its traffic now (requests/s, p50 and p99
latency, errors over the last `recent_s`), what it has cost, and its traffic over the window for
the charts.

Where it comes from: the services and their cost from the store (`load_service`,
`service_usage`, as `GET /v1/services/<id>` shows them, so any API process answers the same);
the traffic from the gateway this process serves (`corral.gateway.traffic.TrafficHistory`,
sampled from its counters every few seconds by the route feed). The traffic history is per
process and starts empty at each restart, like the Utilization page's; a process without a
gateway (or a standby's, which routes nothing) shows no traffic.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import Connection, desc, func, select

from corral.api.context import ApiContext, Caller
from corral.api.ledger import _ledger
from corral.api.services import _catalog
from corral.control.scaling import ServiceNotFound, load_service, replica_bounds
from corral.control.service_usage import service_usage
from corral.gateway.traffic import TrafficHistory, TrafficPoint
from corral.store.auth import Principal
from corral.store.schema import WorkloadRow
from corral.web.routes import _ERRORS, Web

__all__ = ["ServiceRow", "ServicesView", "TrafficNow", "router"]

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])
#: the newest services read per refresh
MAX_SERVICES = 200


class TrafficNow(BaseModel):
    """One interval of a service's traffic at the gateway; latencies in milliseconds (None: no
    request ended in it)."""

    at: float
    since: float
    requests_per_s: float
    errors_per_s: float
    requests: int
    errors: int = Field(description="responses with a 5xx status (the gateway's own included)")
    p50_ms: float | None
    p99_ms: float | None
    in_flight: float


class ServiceRow(BaseModel):
    id: str
    name: str
    queue: str
    state: str
    endpoint: str = Field(description="the path on this server's gateway: /serve/<id>/")
    auth: str = Field(description="public or token")
    desired: int
    ready: int
    starting: int
    draining: int
    min_replicas: int
    max_replicas: int
    autoscaled: bool
    replica_hours: float
    cost: str
    traffic: TrafficNow | None = Field(description="the last recent_s seconds")
    series: list[TrafficNow] = Field(description="one point per gateway sample interval")


class ServicesView(BaseModel):
    services: list[ServiceRow]
    window_s: float
    recent_s: float
    sampled: bool = Field(description="whether this process's gateway records traffic")


@router.get("/services", response_model=ServicesView, responses=_ERRORS)
def services(
    request: Request, web: Web, who: Caller,
    window_s: Annotated[float, Query(ge=60, le=86_400, description="how far back")] = 900,
    recent_s: Annotated[float, Query(ge=5, le=3600, description="the numbers' window")] = 60,
) -> ServicesView:
    """Every live service in the caller's queues: replicas, traffic now and over the window,
    cost so far."""
    traffic: TrafficHistory | None = getattr(request.app.state, "corral_traffic", None)
    ctx = web.ctx
    now = ctx.clock.now()
    rows = []
    with ctx.store.read() as conn:
        catalog = _catalog(conn)
        for sid in _service_ids(conn, who):
            row = _row(ctx, conn, sid, now, catalog)
            if row is not None:
                rows.append(_with_traffic(row, traffic, now - window_s, recent_s))
    return ServicesView(services=rows, window_s=window_s, recent_s=recent_s,
                        sampled=traffic is not None and traffic.last_at is not None)


def _service_ids(conn: Connection, who: Principal) -> list[str]:
    """The newest services (by their newest replica row) in the caller's queues."""
    newest = func.max(WorkloadRow.seq)
    q = select(WorkloadRow.group_id).where(WorkloadRow.kind == "service") \
        .group_by(WorkloadRow.group_id).order_by(desc(newest)).limit(MAX_SERVICES)
    if not who.is_admin:
        q = q.where(WorkloadRow.queue.in_(sorted(who.queues)))
    return [r[0] for r in conn.execute(q)]


def _row(ctx: ApiContext, conn: Connection, sid: str, now: float, catalog: Any
         ) -> ServiceRow | None:
    try:
        status, spec = load_service(conn, sid)
    except ServiceNotFound:
        return None
    if status.state == "ended":
        return None
    lo, hi = replica_bounds(spec)
    used = service_usage(conn, status, now, catalog)
    currency = _ledger(ctx).currency
    return ServiceRow(
        id=sid, name=spec.name, queue=spec.queue, state=status.state,
        endpoint=f"/serve/{sid}/", auth="token" if spec.auth else "public",
        desired=status.desired, ready=status.ready, starting=status.starting,
        draining=status.draining, min_replicas=lo, max_replicas=hi,
        autoscaled=spec.autoscale is not None, replica_hours=round(used.replica_hours, 6),
        cost=currency.format(currency.charge(used.cost or 0)), traffic=None, series=[])


def _with_traffic(row: ServiceRow, traffic: TrafficHistory | None, since: float,
                  recent_s: float) -> ServiceRow:
    if traffic is None:
        return row
    recent = traffic.summary(row.id, recent_s)
    return row.model_copy(update={
        "traffic": _view(recent) if recent else None,
        "series": [_view(p) for p in traffic.series(row.id, since)]})


def _view(p: TrafficPoint) -> TrafficNow:
    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 1)
    return TrafficNow(at=p.at, since=p.since, requests_per_s=round(p.requests_per_s, 3),
                      errors_per_s=round(p.errors_per_s, 3), requests=p.requests,
                      errors=p.errors, p50_ms=ms(p.p50_s), p99_ms=ms(p.p99_s),
                      in_flight=p.in_flight)
