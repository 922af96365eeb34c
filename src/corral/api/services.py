"""/v1/services/{id}: a service as one object (its id is its replicas' group id): get, scale,
update (a rolling replace), cancel. Replicas stay workloads (`/v1/workloads/<id>-r<i>`: logs,
events, why)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import Connection, select

from corral.api.context import ApiContext, Caller, context
from corral.api.errors import ApiError, not_found
from corral.api.ledger import _exact, _ledger
from corral.api.views import event_view
from corral.api.workloads import _audit_cross_user, _launchable_here, _may_act_on
from corral.control.cancellation import cancel_service
from corral.control.endpoints import url_of
from corral.control.ledger_prices import build_catalog
from corral.control.rollout import update
from corral.control.scaling import (
    ScaleRefused,
    ServiceNotFound,
    end_idle,
    load_service,
    replica_bounds,
    scale,
)
from corral.control.service_usage import service_usage
from corral.control.services import ServiceStatus, replica_state
from corral.control.submission import stored_form
from corral.ledger import LedgerInputError, PriceCatalog
from corral.sdk import models as M
from corral.spec import WorkloadSpec
from corral.store import ledger_rows as LR
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.auth import Principal
from corral.store.schema import Event
from corral.store.workloads import EventRecord, WorkloadRecord

__all__ = ["router", "service_view"]

router = APIRouter(prefix="/v1", tags=["services"])
#: the service's own events `GET /v1/services/{id}` shows (its latest scale changes)
SERVICE_EVENTS = 20
Ctx = Annotated[ApiContext, Depends(context)]
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": M.ErrorBody}, 403: {"model": M.ErrorBody},
           404: {"model": M.ErrorBody}, 409: {"model": M.ErrorBody},
           422: {"model": M.ErrorBody}}


def _visible(ctx: ApiContext, who: Principal, service_id: str
             ) -> tuple[ServiceStatus, WorkloadSpec]:
    try:
        with ctx.store.read() as conn:
            status, spec = load_service(conn, service_id)
    except ServiceNotFound:
        raise not_found("service", service_id) from None
    if not who.may_use(_first(status).queue):
        raise not_found("service", service_id)
    return status, spec


def _first(status: ServiceStatus) -> WorkloadRecord:
    return status.replicas[0][1]


@router.get("/services/{service_id}", response_model=M.Service, responses=_ERRORS)
def get_service(service_id: str, ctx: Ctx, who: Caller) -> M.Service:
    """The service's desired / ready / starting replicas and each replica's state and node."""
    status, spec = _visible(ctx, who, service_id)
    return service_view(ctx, status, spec)


@router.post("/services/{service_id}/scale", response_model=M.Service, responses=_ERRORS)
def scale_service(service_id: str, body: M.ScaleIn, ctx: Ctx, who: Caller) -> M.Service:
    """Set the desired replica count (within the spec's min_replicas and max_replicas): new
    replicas are created; surplus ones are drained, the highest index first."""
    status, _ = _visible(ctx, who, service_id)
    _may_act_on(who, _first(status), "scale")
    try:
        after = scale(ctx.store, service_id, body.replicas, ctx.clock.now(), who.name)
    except ScaleRefused as e:
        raise ApiError(409 if e.conflict else 422, "conflict" if e.conflict else
                       "invalid_request", str(e), [(e.field, str(e))]) from None
    _audit_cross_user(ctx, who, _first(after), "service.scale")
    return service_view(ctx, after, WorkloadSpec.from_stored(_first(after).spec))


@router.post("/services/{service_id}/update", response_model=M.Service, responses=_ERRORS)
def update_service(service_id: str, spec: WorkloadSpec, ctx: Ctx, who: Caller) -> M.Service:
    """Roll the service out to a new spec: new replicas start beside the old ones, old ones
    are drained as new ones become ready, and the update is rolled back if the new ones are
    not all ready in time. The name, queue and kind stay."""
    status, _ = _visible(ctx, who, service_id)
    _may_act_on(who, _first(status), "update")
    _launchable_here(ctx, spec)
    ctx.submissions.check(spec)  # the same checks as a submission: the pool can run it
    ctx.submissions.check_secrets(spec)  # and the secrets it names (env, auth.token_secret)
    try:
        after = update(ctx.store, service_id, spec, stored_form(spec), ctx.clock.now(),
                       who.name)
    except ScaleRefused as e:
        raise ApiError(409 if e.conflict else 422, "conflict" if e.conflict else
                       "invalid_request", str(e), [(e.field, str(e))]) from None
    _audit_cross_user(ctx, who, _first(after), "service.update")
    return service_view(ctx, after, spec)


@router.post("/services/{service_id}/cancel", response_model=M.Service, responses=_ERRORS)
def cancel_service_(service_id: str, ctx: Ctx, who: Caller) -> M.Service:
    """Cancel every replica (running ones get SIGTERM, then SIGKILL after the grace); the
    service ends when they have. Idempotent."""
    status, spec = _visible(ctx, who, service_id)
    _may_act_on(who, _first(status), "cancel")
    cancel_service(ctx.store, service_id, ctx.clock.now(), who.name)
    end_idle(ctx.store, service_id, ctx.clock.now(), who.name)  # at zero: nothing to stop
    _audit_cross_user(ctx, who, _first(status), "service.cancel")
    return service_view(ctx, _visible(ctx, who, service_id)[0], spec)


def service_view(ctx: ApiContext, status: ServiceStatus, spec: WorkloadSpec) -> M.Service:
    first = _first(status)
    lo, hi = replica_bounds(spec)
    with ctx.store.read() as conn:
        nodes = {rid: node for (rid, _), node in _nodes(conn, status).items()}
        events = _events(conn, status.id)
        used = service_usage(conn, status, ctx.clock.now(), _catalog(conn))
    currency = _ledger(ctx).currency
    return M.Service(
        replica_hours=round(used.replica_hours, 6),
        gpu_hours=_exact((used.gpu_seconds / 3600).quantize(Decimal("0.000001"))),
        cost=currency.format(currency.charge(used.cost or 0)),
        id=status.id, name=first.name, queue=first.queue, user=first.user, state=status.state,
        desired=status.desired, ready=status.ready, starting=status.starting,
        draining=status.draining, min_replicas=lo, max_replicas=hi, spec=first.spec,
        replicas=[M.Replica(id=r.id, index=i, state=replica_state(r), workload_state=r.state,
                            attempt=r.attempt, restart_count=r.restart_count,
                            reason_code=r.reason_code, reason_message=r.reason_message,
                            node_id=nodes.get(r.id),
                            url=url_of(r, nodes.get(r.id), ctx.backend_name or ""))
                  for i, r in status.replicas], events=events)


def _catalog(conn: Connection) -> PriceCatalog | None:
    """The ledger's prices, as `corral usage` uses them; None when they cannot be built (two
    overlapping rules: the usage report says so; the service view still answers)."""
    try:
        return build_catalog([p.rule for p in LR.list_prices(conn)],
                             P.list_nodes(conn, include_inactive=True))
    except LedgerInputError:
        return None


def _events(conn: Connection, service_id: str) -> list[M.Event]:
    """The service's own latest events (scale changes), oldest first."""
    q = select(Event).where(Event.workload_id == service_id).order_by(Event.id.desc()) \
        .limit(SERVICE_EVENTS)
    return [event_view(EventRecord.of(r)) for r in reversed(conn.execute(q).all())]


def _nodes(conn: Connection, status: ServiceStatus) -> dict[tuple[str, int], str]:
    """The node of each replica's current attempt, where it has one."""
    keys = [(r.id, r.attempt) for _, r in status.replicas if r.state not in ("pending",)
            and replica_state(r) != "ended"]
    found = W.assignments_of(conn, keys) if keys else {}
    return {k: a[0].node_id for k, a in found.items() if a}
