"""/v1/workloads/{id}/deliveries and /v1/groups/{id}/deliveries: the webhook delivery log.

Who may read it: whoever may see the workload (its queue's members, viewers and admins), as
its events. A delivery shows its URL, event, state, attempts and last answer; never a secret's
value (only the name it was signed with) and never the body beyond what events already show.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from corral.api.context import ApiContext, Caller, context
from corral.api.errors import not_found
from corral.sdk import models as M
from corral.sdk.webhooks import Delivery, DeliveryPage
from corral.store import groups as G
from corral.store import webhooks as WH
from corral.store import workloads as W
from corral.store.auth import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["workloads"])
Ctx = Annotated[ApiContext, Depends(context)]
Limit = Annotated[int, Query(ge=1, le=1000)]
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": M.ErrorBody} for s in (401, 404, 422)}


def _view(d: WH.Delivery) -> Delivery:
    return Delivery(id=d.id, workload_id=d.workload_id, url=d.url, event=d.event,
                    state=d.state, attempts=d.attempts, created_at=d.created_at,
                    next_at=d.next_at if d.state == WH.PENDING else None,
                    finished_at=d.finished_at, last_status=d.last_status,
                    last_error=d.last_error, signed_with=d.secret)


def _workload_log(ctx: ApiContext, who: Principal, workload_id: str, limit: int
                  ) -> DeliveryPage:
    with ctx.store.read() as conn:
        rec = W.get_workload(conn, workload_id)
        if rec is None or not who.may_use(rec.queue):
            raise not_found("workload", workload_id)
        found = WH.deliveries_of(conn, [workload_id], limit)
    return DeliveryPage(items=[_view(d) for d in found])


def _group_log(ctx: ApiContext, who: Principal, group_id: str, limit: int) -> DeliveryPage:
    with ctx.store.read() as conn:
        queue = G.queues_of(conn, [group_id]).get(group_id)
        if queue is None or not who.may_use(queue):
            raise not_found("group", group_id)
        ids = [r.id for r in W.list_workloads(conn, group_id=group_id, limit=5000)]
        found = WH.deliveries_of(conn, ids, limit)
    return DeliveryPage(items=[_view(d) for d in found])


@router.get("/workloads/{workload_id}/deliveries", response_model=DeliveryPage,
            responses=_ERRORS)
async def workload_deliveries(workload_id: str, ctx: Ctx, who: Caller,
                              limit: Limit = 200) -> DeliveryPage:
    """The webhook deliveries this workload's `notify` owed, oldest first."""
    return await run_in_threadpool(_workload_log, ctx, who, workload_id, limit)


@router.get("/groups/{group_id}/deliveries", response_model=DeliveryPage, responses=_ERRORS)
async def group_deliveries(group_id: str, ctx: Ctx, who: Caller,
                           limit: Limit = 200) -> DeliveryPage:
    """The webhook deliveries of every task of an array (or replica of a service)."""
    return await run_in_threadpool(_group_log, ctx, who, group_id, limit)
