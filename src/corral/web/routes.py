"""/v1/dashboard/*: read-only views for the dashboard's pages, one request per page refresh.

Same token auth as the rest of the API (`corral.api.context.caller`); every view is filtered by
what the caller may see (`Principal.may_use`): a user gets their queues, and the pool's
occupancy without other queues' names or workload ids.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from corral.api.context import Caller, require_admin
from corral.api.errors import not_found
from corral.sdk import models as M
from corral.web.grid import gpu_totals, node_rows
from corral.web.history import take_sample, visible_point
from corral.web.models import Me, PoolSummary, PoolView, QueueBoard, ReportFile, UsageSeries
from corral.web.queue_board import queue_board
from corral.web.reports import find_report, list_reports
from corral.web.state import WebState, web_state

__all__ = ["router"]

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])
Web = Annotated[WebState, Depends(web_state)]
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": M.ErrorBody}, 403: {"model": M.ErrorBody},
           404: {"model": M.ErrorBody}, 422: {"model": M.ErrorBody}}
MAX_POINTS = 720


@router.get("/me", response_model=Me, responses=_ERRORS)
def me(web: Web, who: Caller) -> Me:
    """Who the token belongs to, and the queues the dashboard will show them."""
    names = [q.name for q in web.reader.read().queues]
    return Me(name=who.name, role=who.role,
              queues=names if who.is_admin else sorted(who.queues))


@router.get("/pool", response_model=PoolView, responses=_ERRORS)
def pool(web: Web, who: Caller) -> PoolView:
    """Every node with its GPU cells and the shares that fill them; pool-wide totals."""
    s = web.reader.read()
    mine = [c for q, c in s.counts.items() if who.may_use(q)]
    return PoolView(nodes=node_rows(s.nodes, s.held, who.may_use),
                    totals=s.totals or gpu_totals(s.nodes, s.held),
                    pending=sum(p for p, _ in mine), running=sum(r for _, r in mine))


@router.get("/pool/summary", response_model=PoolSummary, responses=_ERRORS)
def pool_summary(web: Web, who: Caller) -> PoolSummary:
    """The pool's GPU totals, node count, and the caller's pending and running work, without
    the nodes (the strip on every page: a few hundred bytes at any pool size)."""
    s = web.reader.read()
    mine = [c for q, c in s.counts.items() if who.may_use(q)]
    return PoolSummary(totals=s.totals or gpu_totals(s.nodes, s.held), nodes=len(s.nodes),
                       pending=sum(p for p, _ in mine), running=sum(r for _, r in mine))


@router.get("/queues", response_model=QueueBoard, responses=_ERRORS)
def queues(web: Web, who: Caller) -> QueueBoard:
    """Quota, limit, use, borrowing and fair share of the caller's queues, in tree order."""
    s = web.reader.read()
    return queue_board(s.queues, s.held, s.demand_milli, s.records, s.capacity_gpus,
                       who.may_use)


@router.get("/usage", response_model=UsageSeries, responses=_ERRORS)
def usage(
    web: Web, who: Caller,
    window_s: Annotated[float, Query(ge=60, le=7 * 86_400, description="how far back")] = 3600,
) -> UsageSeries:
    """Allocated GPUs per queue and per provider over the window, idle GPUs per provider.
    History is kept by this server process since it started (see corral.web.history)."""
    s = web.reader.read()
    since = s.at - window_s
    samples = [x for x in web.history.since(since, MAX_POINTS - 1) if x.at < s.at]
    samples.append(take_sample(s.nodes, s.held, s.at))
    return UsageSeries(interval_s=web.settings.usage_interval_s, since=since,
                       points=[visible_point(x, who.may_use) for x in samples])


@router.get("/reports", response_model=list[ReportFile], responses=_ERRORS)
def reports(web: Web, who: Caller) -> list[ReportFile]:
    """Simulator reports (PNG plots, JSON summaries) in the configured directory; admins only,
    since a replayed trace may name every team."""
    require_admin(who)
    return list_reports(web.settings.sim_reports_dir)


@router.get("/reports/{name:path}", response_class=FileResponse, responses=_ERRORS)
def report_file(name: str, web: Web, who: Caller) -> FileResponse:
    require_admin(who)
    path = find_report(web.settings.sim_reports_dir, name)
    if path is None:
        raise not_found("report", name)
    media = "image/png" if path.suffix.lower() == ".png" else "application/json"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "no-store"})
