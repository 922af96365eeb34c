"""/v1/workloads: submit, list, get, cancel, logs, events, why; and /v1/dry-run."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi import Path as PathParam
from fastapi.routing import APIRoute
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from corral.api.context import ApiContext, Caller, context
from corral.api.errors import ApiError, not_found
from corral.api.views import QueueUse, event_view, reason_now, workload_view
from corral.backends.containers import ContainerRuntime, dry_run_note
from corral.backends.errors import BackendError
from corral.control import cancel, elastic
from corral.control.future_nodes import IMAGE_RUNNERS
from corral.control.lifecycle import State
from corral.control.packaging import packaging_refusals
from corral.control.submission import stored_form
from corral.core.reasons import UNRESOLVABLE
from corral.sdk import models as M
from corral.spec import WorkloadSpec
from corral.spec.service import service_notes
from corral.store import audit as AU
from corral.store import idempotency as I
from corral.store import workloads as W
from corral.store.auth import Principal
from corral.store.workloads import WorkloadRecord

__all__ = ["SUBMIT_ROUTE", "router"]

router = APIRouter(prefix="/v1", tags=["workloads"])
Ctx = Annotated[ApiContext, Depends(context)]
_ERRORS = {401: {"model": M.ErrorBody}, 403: {"model": M.ErrorBody},
           404: {"model": M.ErrorBody}, 422: {"model": M.ErrorBody}}


def _visible(ctx: ApiContext, who: Principal, workload_id: str) -> WorkloadRecord:
    with ctx.store.read() as conn:
        rec = W.get_workload(conn, workload_id)
    if rec is None or not who.may_use(rec.queue):
        raise not_found("workload", workload_id)
    return rec


def _may_submit(who: Principal, queue: str) -> None:
    """Members and queue admins submit; viewers only read. A user outside the queue hears the
    same whether it exists or not (the names of other teams' queues are not theirs to learn)."""
    if who.may_submit(queue):
        return
    if who.role_in(queue) == "viewer":
        raise ApiError(403, "forbidden", f"{who.name} is a viewer of queue {queue!r}: viewers "
                       "read, members submit; ask its queue admin",
                       [("queue", "viewer: may not submit")])
    raise ApiError(403, "forbidden", f"{who.name} is not a member of queue {queue!r} (or it "
                   "does not exist); `corral queues` lists yours",
                   [("queue", "not a member of this queue")])


def _may_act_on(who: Principal, rec: WorkloadRecord, verb: str) -> None:
    """Cancel and logs: your own work as a member, all of the queue's as its queue admin."""
    if not who.may_act_on(rec.queue, rec.user):
        role = who.role_in(rec.queue)
        raise ApiError(403, "forbidden", f"{who.name} is a {role} of queue {rec.queue!r} and may "
                       f"not {verb} {rec.user}'s workload; members {verb} their own work, queue "
                       "admins all of the queue's")


def _audit_cross_user(ctx: ApiContext, who: Principal, rec: WorkloadRecord, action: str) -> None:
    if rec.user != who.name:
        with ctx.store.write() as conn:
            AU.record(conn, at=ctx.clock.now(), actor=who.name, action=action, target=rec.id,
                      queue=rec.queue, detail={"owner": rec.user})


IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[!-~]+$",
    description="a key of your choosing (printable ASCII, no spaces): a retry with the same key "
                "and the same spec returns the first submission (200) instead of a second one; "
                "the same key with another spec is 409")]


def _launchable_here(ctx: ApiContext, spec: WorkloadSpec) -> None:
    """On the local backend the workers run on this host: a working directory that is not here
    would only fail at launch, so it is refused now (other backends' hosts are not visible from
    the API: there the launch refuses it, failing that workload with the field named)."""
    if (ctx.backend_name == "local" and spec.working_dir is not None
            and not Path(spec.working_dir).is_dir()):
        raise ApiError(422, "invalid_request", "the spec cannot run on this pool",
                       [("working_dir", f"{spec.working_dir!r} is not a directory on this host: "
                                        "create it or fix the path")])
    # image, setup, workdir; a backend may say what its cluster honours (Slurm: pyxis or not)
    refused = packaging_refusals(spec, ctx.backend_name or "", IMAGE_RUNNERS.honoured(
        ctx, getattr(ctx.logs, "packaging_fields", None)))  # may join later: future_nodes
    if refused:
        raise ApiError(422, "invalid_request", "the spec cannot run on this pool", refused)
    path = spec.plain_env().get("PATH") or None  # empty: the backend uses its own PATH
    program = spec.command[0] if spec.command and spec.shell is None else None
    if (ctx.backend_name == "local" and path is not None and program is not None
            and "/" not in program and shutil.which(program, path=path) is None):
        # the local backend looks a bare program up on the spec's own PATH when it sets one
        raise ApiError(422, "invalid_request", "the spec cannot run on this pool",
                       [("env.PATH", f"program {program!r} is not found on this PATH "
                                     f"({path!r}) on this host: add its directory to PATH, give "
                                     "its full path in command, or leave PATH unset")])


async def submit(spec: WorkloadSpec, ctx: Ctx, who: Caller, response: Response,
                 idempotency_key: IdempotencyKey = None) -> M.Submitted:
    """Submit a job, service or interactive session. Refused (nothing stored) when the spec is
    malformed, the queue unknown, or the request can never fit the pool."""
    # async: the checks are cached and the write is group-committed by one writer thread, so a
    # submission holds no threadpool thread while it waits for its commit (corral.control.submission)
    _may_submit(who, spec.queue)
    _launchable_here(ctx, spec)
    now = ctx.clock.now()
    if idempotency_key is None:
        records = await ctx.submissions.submit_async(spec, who.name, now, visible=who.may_use)
        return _submitted(records)
    digest = hashlib.sha256(json.dumps(stored_form(spec), sort_keys=True).encode()).hexdigest()
    prior = await run_in_threadpool(_remembered, ctx, who.name, idempotency_key)
    if prior is None:
        def claim(conn: Connection, group_id: str) -> None:
            I.claim(conn, who.name, idempotency_key, digest, group_id, now)
        try:
            return _submitted(await ctx.submissions.submit_async(spec, who.name, now, claim,
                                                                 visible=who.may_use))
        except I.KeyTaken:  # a concurrent request with this key committed first
            prior = await run_in_threadpool(_remembered, ctx, who.name, idempotency_key)
    assert prior is not None
    if prior.body_hash != digest:
        raise ApiError(409, "conflict", "this Idempotency-Key was used for another spec; use a "
                       "new key for a new submission", [("Idempotency-Key", "used before")])
    response.status_code = 200
    return await run_in_threadpool(_group, ctx, prior.group_id)


# plain requests are answered by corral.api.submit_route.SubmitShortcut, before the router
router.add_api_route(
    "/workloads", submit, methods=["POST"], status_code=201, response_model=M.Submitted,
    responses={**_ERRORS, 200: {"model": M.Submitted, "description": "a retry with the same "
               "Idempotency-Key and spec: the first submission"}, 409: {"model": M.ErrorBody}})
SUBMIT_ROUTE = router.routes[-1]
assert isinstance(SUBMIT_ROUTE, APIRoute)


def _submitted(records: list[WorkloadRecord]) -> M.Submitted:
    return M.Submitted(group_id=records[0].group_id,
                       workloads=[workload_view(r) for r in records])


def _remembered(ctx: ApiContext, user: str, key: str) -> I.Remembered | None:
    with ctx.store.read() as conn:
        return I.find(conn, user, key)


def _group(ctx: ApiContext, group_id: str) -> M.Submitted:
    with ctx.store.read() as conn:
        records = W.list_workloads(conn, group_id=group_id, limit=10_000)
    return _submitted(sorted(records, key=lambda r: r.seq))


@router.post("/dry-run", response_model=M.DryRunResult, responses=_ERRORS)
def dry_run(spec: WorkloadSpec, ctx: Ctx, who: Caller) -> M.DryRunResult:
    """What would happen if this were submitted now: where it starts, what it evicts, or why
    it waits. Stores nothing."""
    _may_submit(who, spec.queue)
    result = ctx.submissions.dry_run(spec, ctx.clock.now(), visible=who.may_use)
    runtime = getattr(ctx.logs, "containers", None)  # the local backend's podman, if any
    image = ([dry_run_note(runtime, spec.image, spec.gpus > 0)]
             if spec.image is not None and isinstance(runtime, ContainerRuntime) else [])
    hosts = getattr(ctx.logs, "image_note", None)  # the agent backend: which hosts run it
    if spec.image is not None and callable(hosts):
        image = [str(hosts(spec.image))]
    return M.DryRunResult(
        outcome=result.outcome, placements=result.placements, evictions=result.evictions,
        reason_code=result.reason.code if result.reason else None,
        reason_message=result.reason.message if result.reason else None,
        notes=service_notes(spec) + result.notes + image)


@router.get("/workloads", response_model=M.WorkloadPage, responses=_ERRORS)
def list_workloads(
    ctx: Ctx, who: Caller,
    queue: Annotated[list[str] | None, Query(description="only these queues")] = None,
    state: Annotated[list[State] | None, Query(description="only these states")] = None,
    user: Annotated[str | None, Query(max_length=63)] = None,
    group: Annotated[str | None, Query(max_length=80, description="a submission's group id")] = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**62, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> M.WorkloadPage:
    """Newest first, paged by cursor."""
    queues: set[str] | None = set(queue) if queue else None
    if not who.is_admin:
        queues = (queues or set(who.queues)) & set(who.queues)
    with ctx.store.read() as conn:
        rows = W.list_workloads(conn, queues=queues, states=[str(s) for s in state or []],
                                user=user, group_id=group, before_seq=cursor, limit=limit)
        use = QueueUse.read(conn, rows)  # the queues' use now, for the reasons that name one
    nxt = str(rows[-1].seq) if len(rows) == limit else None
    return M.WorkloadPage(items=[workload_view(r, use=use) for r in rows], next_cursor=nxt)


@router.get("/workloads/{workload_id}", response_model=M.Workload, responses=_ERRORS)
def get_workload(workload_id: str, ctx: Ctx, who: Caller) -> M.Workload:
    rec = _visible(ctx, who, workload_id)
    with ctx.store.read() as conn:
        placements = W.placements_of(conn, rec.id, rec.attempt)
        view = workload_view(rec, placements, QueueUse.read(conn, [rec]))
        view.elastic = _elastic_world(conn, rec)
    return view


def _elastic_world(conn: Connection, rec: WorkloadRecord) -> M.ElasticWorld | None:
    """An elastic job's bounds (its spec) and current world (the latest ElasticWorld event on
    its core gang's row, as its launches read it): derived, never stored twice. The same for
    the core gang and each of its extras."""
    bounds = rec.spec.get("elastic")
    if not isinstance(bounds, dict):
        return None
    core = elastic.core_id(rec)
    world = elastic.load_worlds(conn, [core]).get(core)
    low = int(bounds["min_workers"])
    return M.ElasticWorld(min_workers=low, max_workers=int(bounds["max_workers"]),
                          world_size=None if world is None else world.size(low),
                          generation=None if world is None else world.generation)


@router.post("/workloads/{workload_id}/cancel", response_model=M.Workload,
             responses={**_ERRORS, 409: {"model": M.ErrorBody}})
def cancel_workload(workload_id: str, ctx: Ctx, who: Caller) -> M.Workload:
    """Pending work ends at once; running work is stopped (SIGTERM, grace, SIGKILL) and becomes
    cancelled when its workers have ended. Idempotent."""
    _may_act_on(who, _visible(ctx, who, workload_id), "cancel")
    rec = cancel(ctx.store, workload_id, ctx.clock.now(), who.name)
    if rec is None:
        raise not_found("workload", workload_id)
    _audit_cross_user(ctx, who, rec, "workload.cancel")
    return workload_view(rec)


@router.get("/workloads/{workload_id}/events", response_model=M.EventPage, responses=_ERRORS)
def events(
    workload_id: str, ctx: Ctx, who: Caller,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> M.EventPage:
    _visible(ctx, who, workload_id)
    with ctx.store.read() as conn:
        found = W.list_events(conn, workload_id=workload_id, after_id=after, limit=limit)
    return M.EventPage(items=[event_view(e) for e in found],
                       next_after=found[-1].id if found else after)


@router.get("/workloads/{workload_id}/why", response_model=M.WhyPending, responses=_ERRORS)
def why(workload_id: str, ctx: Ctx, who: Caller) -> M.WhyPending:
    """Why it waits (the scheduler's reason code and sentence, with the current use of the
    queue it names), or what it is doing."""
    rec = _visible(ctx, who, workload_id)
    with ctx.store.read() as conn:
        use = QueueUse.read(conn, [rec])
    return M.WhyPending(id=rec.id, state=rec.state, code=rec.reason_code,
                        message=reason_now(rec, use),
                        unresolvable=rec.reason_code in UNRESOLVABLE,
                        stopping=rec.stop_reason)


@router.get("/workloads/{workload_id}/logs", response_model=M.LogChunk,
            responses={**_ERRORS, 503: {"model": M.ErrorBody}})
def logs(
    workload_id: str, ctx: Ctx, who: Caller,
    worker: Annotated[int, Query(ge=0, le=4095)] = 0,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    attempt: Annotated[int | None, Query(ge=0, le=10**6)] = None,
    max_bytes: Annotated[int, Query(ge=1, le=1 << 20)] = 65536,
    timestamps: Annotated[bool, Query(description="add each line's time (`times`)")] = False,
) -> M.LogChunk:
    """A chunk of a worker's output from byte `offset`; poll with `next_offset` to follow.
    Members read their own workloads' logs, queue admins every one of the queue."""
    rec = _visible(ctx, who, workload_id)
    _may_act_on(who, rec, "read the logs of")
    if offset == 0:  # once per read from the start, not once per poll of a follow
        _audit_cross_user(ctx, who, rec, "workload.logs")
    if ctx.logs is None:
        raise ApiError(503, "unavailable", "this API replica has no backend; read logs from "
                       "the replica that runs the scheduler")
    try:
        with ctx.log_lock:
            data, nxt = ctx.logs.read_logs(workload_id, worker, offset, attempt=attempt,
                                           max_bytes=max_bytes)
            times = _line_times(ctx, workload_id, worker, offset, data, attempt, timestamps)
    except LookupError:  # not launched yet, or no such worker/attempt: nothing to show
        data, nxt, times = b"", offset, [] if timestamps else None
    except BackendError as e:
        raise ApiError(422, "invalid_request", str(e)) from None
    return M.LogChunk(workload_id=workload_id, worker=worker, attempt=attempt, offset=offset,
                      next_offset=nxt, data=data.decode("utf-8", errors="replace"), times=times)


def _line_times(ctx: ApiContext, workload_id: str, worker: int, offset: int, data: bytes,
                attempt: int | None, wanted: bool) -> list[float | None] | None:
    """Issue 14: each line's time where the backend records them (the local one's runners);
    None where it does not (the field is then absent, not a list of nulls)."""
    dated = getattr(ctx.logs, "log_line_times", None) if wanted else None
    return None if dated is None else dated(workload_id, worker, offset, data, attempt=attempt)


GroupId = Annotated[str, PathParam(max_length=80, description="a submission's group id (what "
                              "`corral submit` printed for an array: its tasks share it)")]


def _visible_group(ctx: ApiContext, who: Principal, group_id: str) -> list[WorkloadRecord]:
    with ctx.store.read() as conn:
        records = W.list_workloads(conn, group_id=group_id, limit=10_000)
    if not records or not who.may_use(records[0].queue):
        raise not_found("group", group_id)
    return sorted(records, key=lambda r: r.seq)


@router.get("/groups/{group_id}", response_model=M.Submitted, responses=_ERRORS)
def get_group(group_id: GroupId, ctx: Ctx, who: Caller) -> M.Submitted:
    """Every unit of one submission, oldest first: an array's tasks (listed and reported as
    one group), a service's replicas, or a job alone."""
    return _submitted(_visible_group(ctx, who, group_id))


@router.post("/groups/{group_id}/cancel", response_model=M.Submitted,
             responses={**_ERRORS, 409: {"model": M.ErrorBody}})
def cancel_group(group_id: GroupId, ctx: Ctx, who: Caller) -> M.Submitted:
    """Cancel every unit of one submission that has not ended (an array's held, pending and
    running tasks alike); units that ended stay as they ended. Idempotent."""
    records = _visible_group(ctx, who, group_id)
    for rec in records:  # all or none: refused before any is cancelled
        _may_act_on(who, rec, "cancel")
    now = ctx.clock.now()
    for rec in records:
        if rec.state in W.ACTIVE_STATES:
            cancel(ctx.store, rec.id, now, who.name)
    _audit_cross_user(ctx, who, records[0], "group.cancel")
    return _submitted(_visible_group(ctx, who, group_id))
