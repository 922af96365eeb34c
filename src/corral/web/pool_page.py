"""/v1/dashboard/pool/page: the Pool page drawn from summaries (issue 16).

`/v1/dashboard/pool` sends every node with every GPU cell (8.7 MB at 10,000 nodes) and the
page filtered in the browser. This answers one page of the nodes that match the filters, with
what the page draws around them computed on the server: each provider's group among the
matching nodes (nodes, GPUs, GPUs held, capacity kinds, regions, prices) and the values each
filter offers. Its size is the page's, not the pool's.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from corral.api.context import Caller
from corral.control.device_use import DeviceUseBoard, board_for, judges
from corral.core.model import MILLI_PER_GPU, Node
from corral.store.workloads import Held
from corral.web.grid import gpu_totals, node_rows
from corral.web.models import GpuTotals, NodeRow, _Model
from corral.web.routes import _ERRORS, Web
from corral.web.state import PoolState

__all__ = ["PoolPage", "ProviderGroup", "pool_page", "router", "with_measured_use"]

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])
MAX_PAGE = 500


class ProviderGroup(_Model):
    """One provider's matching nodes, summed: the header of its section on the page."""

    provider: str
    nodes: int
    gpus: int
    gpus_used: float
    capacity_kinds: list[str]
    regions: list[str]
    prices: list[str] = Field(description="'<model> <price>/GPU-h' of its priced nodes")


class PoolPage(_Model):
    nodes: list[NodeRow] = Field(description="the page: matching nodes from `offset`")
    matching: int = Field(description="nodes that match the filters")
    offset: int
    limit: int
    groups: list[ProviderGroup] = Field(description="per provider, over every matching node")
    facets: dict[str, list[str]] = Field(
        description="the values each filter offers (provider, region, gpu_model), of every node")
    totals: GpuTotals
    pending: int = Field(description="pending workloads in the caller's queues")
    running: int = Field(description="workloads holding GPUs in the caller's queues")
    idle_below: float = Field(description="the server's cut-off for a cell's idle_held "
                              "(`corral up --gpu-idle-below`)")
    stale_after_s: float = Field(description="a sample older than this gives no idle_held "
                                 "(`corral up --gpu-use-stale`)")


@router.get("/pool/page", response_model=PoolPage, responses=_ERRORS)
def pool_page(
    web: Web, who: Caller,
    provider: Annotated[str | None, Query(description="only this provider's nodes")] = None,
    region: Annotated[str | None, Query(description="only nodes in this region")] = None,
    gpu_model: Annotated[str | None, Query(description="only nodes of this GPU model")] = None,
    offset: Annotated[int, Query(ge=0, description="matching nodes to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="nodes in the page")] = 100,
) -> PoolPage:
    """One page of the pool's nodes (provider, then node order) matching the filters, each
    provider's summary over all matching nodes, and the filters' values."""
    s = web.reader.read()
    sums = _sums_of(s)
    wanted = {"provider": provider, "region": region, "gpu_model": gpu_model}
    matching = [n for n in sums.by_provider
                if all(v is None or v == "" or getattr(n, k) == v for k, v in wanted.items())]
    page = matching[offset:offset + limit]
    mine = [c for q, c in s.counts.items() if who.may_use(q)]
    held = [h for n in page for h in sums.held_on.get(n.id, ())]
    rows = node_rows(page, held, who.may_use)
    board = board_for(web.reader.ctx.store)
    began: dict[tuple[str, int], list[float | None]] = defaultdict(list)
    for h in held:  # when each hold the caller may see began (a sample before it judges none)
        if who.may_use(h.queue):
            for d in h.devices:
                began[(h.node_id, d)].append(h.began)
    return PoolPage(
        nodes=with_measured_use(rows, board, s.at, began),
        idle_below=board.cutoffs.idle_below, stale_after_s=board.cutoffs.stale_s,
        matching=len(matching), offset=offset, limit=limit,
        groups=_groups(matching, sums.used),
        facets=sums.facets,
        totals=s.totals or gpu_totals(s.nodes, s.held),
        pending=sum(p for p, _ in mine), running=sum(r for _, r in mine))


def with_measured_use(rows: list[NodeRow], board: DeviceUseBoard, now: float,
                      began: Mapping[tuple[str, int], list[float | None]]) -> list[NodeRow]:
    """Each cell's latest measured use beside its allocation (the page's nodes only), and
    whether it is held by work the caller may see (a share with its queue named) yet barely
    used, by the server's cut-offs: another tenant's work is never judged to a member, and a
    sample taken before one of the caller's holds on the cell began (`began`) judges none."""
    for row in rows:
        samples = board.of(row.id)
        for cell in row.devices:
            u = samples.get(cell.index)
            if u is not None:
                cell.utilization, cell.use_age_s = round(u.utilization, 4), round(now - u.at, 1)
                cell.memory_used_bytes, cell.memory_total_bytes = (u.memory_used_bytes,
                                                                   u.memory_total_bytes)
                seen = any(sh.queue is not None for sh in cell.shares)
                cell.before_hold = any(not judges(u, b) for b in began.get((row.id, cell.index),
                                                                             ()))
                cell.idle_held = not cell.before_hold and board.cutoffs.idle_held(u, now, seen)
    return rows


@dataclass(frozen=True)
class _Sums:
    """What every page of one reading shares, computed once per reading (not per request: at
    10,000 nodes and 48,000 placements the walk over the placements was most of a page)."""

    nodes: list[Node]  # the reading's, by identity
    held: list[Held]
    by_provider: list[Node]  # stable: node order within a provider
    held_on: Mapping[str, list[Held]]
    used: Mapping[str, int]  # milli-GPUs held per node
    facets: dict[str, list[str]]


_LAST: list[_Sums] = []  # the last reading's sums (a reading reused by the reader shares them)
_LAST_LOCK = threading.Lock()


def _sums_of(s: PoolState) -> _Sums:
    with _LAST_LOCK:
        if _LAST and _LAST[0].nodes is s.nodes and _LAST[0].held is s.held:
            return _LAST[0]
        held_on: dict[str, list[Held]] = defaultdict(list)
        used: dict[str, int] = defaultdict(int)
        for h in s.held:
            held_on[h.node_id].append(h)
            used[h.node_id] += h.milli_per_device * len(h.devices)
        sums = _Sums(s.nodes, s.held, sorted(s.nodes, key=lambda n: n.provider), dict(held_on),
                     dict(used), {k: sorted({str(getattr(n, k)) for n in s.nodes})
                                  for k in ("provider", "region", "gpu_model")})
        _LAST[:] = [sums]
        return sums


def _groups(nodes: Sequence[Node], used: Mapping[str, int]) -> list[ProviderGroup]:
    by: dict[str, list[Node]] = defaultdict(list)
    for n in nodes:
        by[n.provider].append(n)
    return [ProviderGroup(
        provider=p, nodes=len(ns), gpus=sum(n.gpu_count for n in ns),
        gpus_used=sum(used.get(n.id, 0) for n in ns) / MILLI_PER_GPU,
        capacity_kinds=sorted({str(n.capacity_kind) for n in ns}),
        regions=sorted({n.region for n in ns}),
        prices=sorted({f"{n.gpu_model} {n.price_per_gpu_hour:.2f}/GPU-h"
                       for n in ns if n.price_per_gpu_hour > 0}))
        for p, ns in by.items()]
