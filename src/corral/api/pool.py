"""/v1/nodes, /v1/providers, /v1/queues: the pool. Changes need the admin role (and are
audited); members see their queues, and every node and provider (they share the pool). Users,
tokens and members: `corral.api.tenancy`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ValidationError

from corral.api.context import ApiContext, Caller, context, require_admin
from corral.api.errors import ApiError, not_found
from corral.api.views import QueueUse
from corral.control.device_use import UseCutoffs, UseSample, board_for, judges
from corral.control.health import device_reasons, health_reasons
from corral.core.model import MILLI_PER_GPU, Health, Node, Queue
from corral.sdk import models as M
from corral.spec import QueueSpec, SpecError
from corral.store import audit as AU
from corral.store import auth as A
from corral.store import pool as P
from corral.store import queue_use as QU
from corral.store import workloads as W

__all__ = ["provider_infos", "router"]

router = APIRouter(prefix="/v1")
Ctx = Annotated[ApiContext, Depends(context)]
_ERRORS = {401: {"model": M.ErrorBody}, 403: {"model": M.ErrorBody},
           404: {"model": M.ErrorBody}, 422: {"model": M.ErrorBody}}
Name = Annotated[str, Path(max_length=200)]


NodeState = Literal["schedulable", "cordoned", "unhealthy"]


@router.get("/nodes", response_model=list[M.NodeInfo], responses=_ERRORS, tags=["pool"])
def list_nodes(
    ctx: Ctx, who: Caller,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description=(
        "at most this many nodes, in id order; page on with `after`"))] = None,
    after: Annotated[str | None, Query(max_length=200, description=(
        "the last node id of the previous page"))] = None,
    provider: Annotated[str | None, Query(max_length=63)] = None,
    gpu_model: Annotated[str | None, Query(max_length=63)] = None,
    state: NodeState | None = None,
) -> list[M.NodeInfo]:
    """Nodes in id order, filtered and paged on the server (without `limit`: all of them).
    A 10,000-node pool is better drawn from `/v1/nodes/summary`, with pages for detail."""
    with ctx.store.read() as conn:
        nodes = P.page_nodes(conn, after=after, limit=limit, provider=provider,
                             gpu_model=gpu_model, state=state)
        held = W.holding_placements(conn, node_ids=None if limit is None else
                                    [n.id for n in nodes])
        why = health_reasons(conn, [n.id for n in nodes if n.health != Health.HEALTHY])
        for node_id, gpus in device_reasons(conn, nodes).items():  # GPUs cordoned one by one
            why[node_id] = f"{why[node_id]} | {gpus}" if why.get(node_id) else gpus
    used: dict[str, float] = defaultdict(float)
    on: dict[str, set[str]] = defaultdict(set)
    holders: dict[tuple[str, int], dict[str, float | None]] = defaultdict(dict)
    for h in held:
        used[h.node_id] += h.milli_per_device * len(h.devices) / 1000
        on[h.node_id].add(h.workload_id)
        if who.may_use(h.queue):  # a member sees the holders of their queues' devices only
            for d in h.devices:
                holders[(h.node_id, d)][h.workload_id] = h.began
    board, now = board_for(ctx.store), ctx.clock.now()
    return [M.NodeInfo(
        id=n.id, provider=n.provider, gpu_model=n.gpu_model, gpu_count=n.gpu_count,
        gpu_memory_mib=n.gpu_memory_mib, cpu_milli=n.cpu_milli, memory_mib=n.memory_mib,
        price_per_gpu_hour=n.price_per_gpu_hour, capacity_kind=str(n.capacity_kind),
        region=n.region, zone=n.zone, rack=n.rack, labels=dict(n.labels),
        cordoned=n.cordoned, health=str(n.health), health_reason=why.get(n.id, ""),
        gpus_used=round(used[n.id], 3),
        workloads=sorted(on[n.id]) if who.is_admin else [],
        devices=_device_use(board.of(n.id), now, n.id, holders, board.cutoffs))
        for n in nodes]


def _device_use(samples: dict[int, UseSample], now: float, node_id: str,
                holders: dict[tuple[str, int], dict[str, float | None]],
                cutoffs: UseCutoffs) -> list[M.DeviceUseInfo]:
    """The node's measured use per device beside what holds it (`corral.control.device_use`):
    `holders` (name -> when the hold began) are the caller's to see (admins: all; members:
    their queues' work), and the "held, barely used" flag and the staleness are the server's
    cut-offs. A sample taken before one of them began judges none (`before_hold`)."""
    out = []
    for d, s in sorted(samples.items()):
        began = holders.get((node_id, d), {})
        before = any(not judges(s, b) for b in began.values())
        out.append(M.DeviceUseInfo(
            device=d, utilization=round(s.utilization, 4), memory_used_bytes=s.memory_used_bytes,
            memory_total_bytes=s.memory_total_bytes, age_s=round(max(0.0, now - s.at), 3),
            workloads=sorted(began), before_hold=before,
            idle_held=not before and cutoffs.idle_held(s, now, bool(began)),
            idle_below=cutoffs.idle_below, stale_after_s=cutoffs.stale_s))
    return out


class NodeGroupSummary(BaseModel):
    """The nodes of one provider, GPU model and state, counted on the server."""

    provider: str
    gpu_model: str
    state: str  # schedulable | cordoned | unhealthy
    nodes: int
    gpus: int
    gpus_used: float


@router.get("/nodes/summary", response_model=list[NodeGroupSummary], responses=_ERRORS,
            tags=["pool"])
def node_summary(ctx: Ctx, who: Caller) -> list[NodeGroupSummary]:
    """Node and GPU counts per (provider, GPU model, state): the pool at a glance, whatever
    its size; ask `/v1/nodes` with the same filters for the nodes themselves."""
    with ctx.store.read() as conn:
        groups = P.node_groups(conn)
        used = W.milli_used_by_group(conn)
    return [NodeGroupSummary(provider=g.provider, gpu_model=g.gpu_model, state=g.state,
                             nodes=g.nodes, gpus=g.gpus,
                             gpus_used=round(used.get((g.provider, g.gpu_model, g.state), 0)
                                             / MILLI_PER_GPU, 3))
            for g in groups]


def provider_infos(nodes: Sequence[Node], held: Sequence[W.Held]) -> list[M.ProviderInfo]:
    """One summary per provider of `nodes`, by name. Pure: no store, no clock.

    Counted in milli-GPU and divided once at the end, so shares add up exactly: a provider
    with one 4-GPU node holding 0.25 + 1 GPU has allocated 1.25, idle 2.75 (if schedulable).
    A provider without active nodes is not listed (nothing of it can be used).
    """
    used: dict[str, int] = defaultdict(int)
    for h in held:
        used[h.node_id] += h.milli_per_device * len(h.devices)
    by_provider: dict[str, list[Node]] = defaultdict(list)
    for n in nodes:
        by_provider[n.provider].append(n)
    return [_provider_info(name, group, used) for name, group in sorted(by_provider.items())]


def _provider_info(name: str, nodes: list[Node], used: dict[str, int]) -> M.ProviderInfo:
    models: dict[str, int] = defaultdict(int)
    allocated = idle = unavailable = 0
    for n in nodes:
        models[n.gpu_model] += n.gpu_count
        u = used[n.id]
        free = max(n.gpu_count * MILLI_PER_GPU - u, 0)
        allocated += u
        if n.schedulable:
            idle += free
        else:
            unavailable += free
    # a GPU-hour price means nothing on a node without GPUs (a CPU node's 0 is no bargain)
    prices = [n.price_per_gpu_hour for n in nodes if n.gpu_count] or [0.0]
    return M.ProviderInfo(
        name=name, capacity_kinds=sorted({str(n.capacity_kind) for n in nodes}),
        regions=sorted({n.region for n in nodes}),
        gpu_models={m: c for m, c in sorted(models.items()) if c},
        nodes=len(nodes), nodes_unavailable=sum(not n.schedulable for n in nodes),
        gpus_total=sum(n.gpu_count for n in nodes),
        gpus_allocated=allocated / MILLI_PER_GPU, gpus_idle=idle / MILLI_PER_GPU,
        gpus_unavailable=unavailable / MILLI_PER_GPU,
        price_per_gpu_hour_min=min(prices), price_per_gpu_hour_max=max(prices))


@router.get("/providers", response_model=list[M.ProviderInfo], responses=_ERRORS, tags=["pool"])
def list_providers(ctx: Ctx, who: Caller) -> list[M.ProviderInfo]:
    """Per provider: capacity kinds, regions, GPUs per model, nodes, GPUs allocated / idle /
    unavailable and the price range. Any signed-in user: the pool is shared, and no queue or
    workload is named."""
    with ctx.store.read() as conn:
        nodes = P.list_nodes(conn)
        held = W.holding_placements(conn)
    return provider_infos(nodes, held)


def _cordon(ctx: ApiContext, who: A.Principal, node_id: str, cordoned: bool) -> M.NodeInfo:
    require_admin(who)
    now = ctx.clock.now()
    with ctx.store.write() as conn:
        if not P.set_cordoned(conn, node_id, cordoned):
            raise not_found("node", node_id)
        verb = "cordoned" if cordoned else "uncordoned"
        W.append_event(conn, at=now, kind="node", subject=node_id,
                       reason="Cordoned" if cordoned else "Uncordoned",
                       message=f"{verb} by {who.name}")
        AU.record(conn, at=now, actor=who.name, action=f"node.{verb[:-2]}", target=node_id)
    ctx.submissions.invalidate()
    return next(n for n in list_nodes(ctx, who) if n.id == node_id)


@router.post("/nodes/{node_id}/cordon", response_model=M.NodeInfo, responses=_ERRORS,
             tags=["pool"])
def cordon(node_id: Name, ctx: Ctx, who: Caller) -> M.NodeInfo:
    """No new work lands on the node; what runs there keeps running."""
    return _cordon(ctx, who, node_id, True)


@router.post("/nodes/{node_id}/uncordon", response_model=M.NodeInfo, responses=_ERRORS,
             tags=["pool"])
def uncordon(node_id: Name, ctx: Ctx, who: Caller) -> M.NodeInfo:
    return _cordon(ctx, who, node_id, False)


# --- queues -------------------------------------------------------------------------------------


def _queue_infos(ctx: ApiContext, names: set[str] | None) -> list[M.QueueInfo]:
    with ctx.store.read() as conn:
        queues = P.list_queues(conn)
        counts = QU.count_by_queue_state(conn)
        # each queue's children's use included, as quotas and limits are checked, and as the
        # dashboard and /metrics say (web/queue_board): a parent is never 0 here while its
        # children hold GPUs (issue 14); the same sum a pending reason's view reads
        used = QueueUse.load(conn).gpus
    return [M.QueueInfo(
        name=q.name, parent=q.parent, quota_gpus=q.quota_gpus, limit_gpus=q.limit_gpus,
        weight=q.weight, priority=q.priority, quota_by_model=dict(q.quota_by_model),
        used_gpus=round(used.get(q.name, 0.0), 3),
        running=sum(counts.get((q.name, s), 0) for s in W.HOLDING_STATES),
        pending=counts.get((q.name, "pending"), 0))
        for q in queues if names is None or q.name in names]


@router.get("/queues", response_model=list[M.QueueInfo], responses=_ERRORS, tags=["queues"])
def list_queues(ctx: Ctx, who: Caller) -> list[M.QueueInfo]:
    """Queues with their quota, limit and current use (admins: all; users: their own)."""
    return _queue_infos(ctx, None if who.is_admin else set(who.queues))


@router.get("/queues/{name}", response_model=M.QueueInfo, responses=_ERRORS, tags=["queues"])
def get_queue(name: Name, ctx: Ctx, who: Caller) -> M.QueueInfo:
    if not who.may_use(name):
        raise not_found("queue", name)
    found = _queue_infos(ctx, {name})
    if not found:
        raise not_found("queue", name)
    return found[0]


def _validated(body: M.QueueIn) -> Queue:
    try:
        spec = QueueSpec.model_validate(body.model_dump())
    except ValidationError as e:
        raise SpecError.from_validation(e) from None
    return spec.to_core()


def _write_queue(ctx: ApiContext, who: A.Principal, q: Queue, *, create: bool) -> M.QueueInfo:
    require_admin(who)
    now = ctx.clock.now()
    with ctx.store.write() as conn:
        exists = P.get_queue(conn, q.name) is not None
        if create and exists:
            raise ApiError(409, "conflict", f"queue {q.name!r} exists; PUT /v1/queues/{q.name} "
                           "to change it", [("name", "already exists")])
        if q.parent is not None and (q.parent == q.name or P.get_queue(conn, q.parent) is None):
            raise SpecError([("parent", f"parent queue {q.parent!r} does not exist")])
        P.upsert_queue(conn, q)
        W.append_event(conn, at=now, kind="queue", subject=q.name,
                       reason="QueueUpdated" if exists else "QueueCreated",
                       message=f"by {who.name}: quota {q.quota_gpus:g}, limit {q.limit_gpus}")
        AU.record(conn, at=now, actor=who.name, action="queue.update" if exists else
                  "queue.create", target=q.name, queue=q.name,
                  detail={"quota_gpus": q.quota_gpus, "limit_gpus": q.limit_gpus})
    ctx.submissions.invalidate()
    return _queue_infos(ctx, {q.name})[0]


@router.post("/queues", status_code=201, response_model=M.QueueInfo,
             responses={**_ERRORS, 409: {"model": M.ErrorBody}}, tags=["queues"])
def create_queue(body: M.QueueIn, ctx: Ctx, who: Caller) -> M.QueueInfo:
    return _write_queue(ctx, who, _validated(body), create=True)


@router.put("/queues/{name}", response_model=M.QueueInfo, responses=_ERRORS, tags=["queues"])
def put_queue(name: Name, body: M.QueueIn, ctx: Ctx, who: Caller) -> M.QueueInfo:
    if body.name != name:
        raise SpecError([("name", f"the body names {body.name!r} but the path {name!r}")])
    return _write_queue(ctx, who, _validated(body), create=False)


@router.delete("/queues/{name}", status_code=204, responses={**_ERRORS, 409: {"model": M.ErrorBody}},
               tags=["queues"])
def delete_queue(name: Name, ctx: Ctx, who: Caller) -> None:
    """Only a queue with no active work and no child queues can go."""
    require_admin(who)
    with ctx.store.write() as conn:
        if P.get_queue(conn, name) is None:
            raise not_found("queue", name)
        active = sum(n for (q, _), n in QU.count_by_queue_state(conn).items() if q == name)
        children = [q.name for q in P.list_queues(conn) if q.parent == name]
        if active or children:
            raise ApiError(409, "conflict", f"queue {name!r} still has {active} active "
                           f"workload(s) and child queues {children}; cancel or move them first")
        P.delete_queue(conn, name)
        A.remove_queue_members(conn, name)  # a new queue of the same name starts empty
        W.append_event(conn, at=ctx.clock.now(), kind="queue", subject=name,
                       reason="QueueDeleted", message=f"by {who.name}")
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="queue.delete", target=name,
                  queue=name)
    ctx.submissions.invalidate()


# --- renting providers at run time (issue 11): add / rm / declared, in corral.api.providers ---
from corral.api.providers import router as _providers  # noqa: E402  (mounted here: /v1 prefix)

router.include_router(_providers)
