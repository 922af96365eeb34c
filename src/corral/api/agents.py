"""The agents' API: join tokens for admins (/v1/agent-tokens) and the agent wire (/agent/v1).

    POST /v1/agent-tokens              admin   a join token (shown once), good for `uses` joins
    GET  /v1/agent-tokens              admin   list them (digests are never shown)
    POST /v1/agent-tokens/{id}/revoke  admin   no more joins with it (joined nodes keep working)

    POST /agent/v1/join    Bearer <join token>        register a host -> its node credential
    POST /agent/v1/sync    Bearer <node credential>   heartbeat, worker states, long poll for
                                                      assignments (`corral.agent.protocol`)
    POST /agent/v1/logs    Bearer <node credential>   worker output, by byte offset
    POST /agent/v1/execs/{id}  Bearer <node credential>   a relayed exec's answer
                                                      (`corral.api.agent_relay`)

The agent wire lives outside /v1 because its callers are hosts, not users: the request guard's
API-token check does not apply, each endpoint checks its own secret (a join token, or a node
credential, both stored as digests) before it reads the body's content. An admin token is never
needed on a host, and a node credential can do nothing but speak for its own node.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from corral.agent.protocol import (
    AssignmentOut,
    ExecDone,
    JoinIn,
    JoinOut,
    LogsIn,
    LogsOut,
    SyncIn,
    SyncOut,
)
from corral.api.agent_relay import RELAY
from corral.api.context import ApiContext, Caller, context, require_admin
from corral.api.errors import ApiError, not_found
from corral.backends.agent import DEFAULT_HEARTBEAT_TIMEOUT_S, AgentNode, WorkerReport
from corral.backends.progress import Progress
from corral.control.device_use import UseSample, board_for
from corral.control.gpu_reports import record_gpu_health
from corral.control.progress import PROGRESS
from corral.core.model import LABEL_CONTAINER_RUNTIME
from corral.sdk import models as M
from corral.store import agents as AG
from corral.store import audit as AU
from corral.store.agents import JoinRefused, JoinTokenRecord

__all__ = ["admin_router", "agent_router"]

admin_router = APIRouter(prefix="/v1")
agent_router = APIRouter(prefix="/agent/v1", tags=["agents"])
Ctx = Annotated[ApiContext, Depends(context)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": M.ErrorBody} for s in (401, 403, 404, 409, 422)}
_POLL_S = 0.25  # how often a long poll looks for a new assignment version


def _token_view(t: JoinTokenRecord, token: str | None = None) -> dict[str, Any]:
    out = {"id": t.id, "name": t.name, "hint": t.hint, "created_by": t.created_by,
           "created_at": t.created_at, "expires_at": t.expires_at, "uses_left": t.uses_left,
           "revoked": t.revoked}
    if token is not None:
        out["token"] = token
    return out


class JoinTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=63)
    # strict: `true` is not a count or a duration (lax pydantic would take it as 1)
    uses: int = Field(default=1, ge=1, le=100_000, strict=True)
    expires_in_s: float | None = Field(default=None, gt=0, le=10 * 365 * 86400, strict=True,
                                       allow_inf_nan=False)


@admin_router.post("/agent-tokens", status_code=201, responses=_ERRORS, tags=["agents"])
def create_join_token(body: JoinTokenIn, who: Caller, ctx: Ctx) -> dict[str, Any]:
    """A join token for `corral agent --join-token` (admins); the token is in this answer only."""
    require_admin(who)
    now = ctx.clock.now()
    expires = None if body.expires_in_s is None else now + body.expires_in_s
    with ctx.store.write() as conn:
        record, token = AG.create_join_token(conn, who.name, now, name=body.name,
                                             uses=body.uses, expires_at=expires)
        AU.record(conn, at=now, actor=who.name, action="agent_token.create",
                  target=str(record.id), detail={"name": body.name, "uses": body.uses})
    return _token_view(record, token)


@admin_router.get("/agent-tokens", responses=_ERRORS, tags=["agents"])
def list_join_tokens(who: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    """Every join token (admins), without the secrets."""
    require_admin(who)
    with ctx.store.read() as conn:
        return [_token_view(t) for t in AG.list_join_tokens(conn)]


@admin_router.post("/agent-tokens/{token_id}/revoke", responses=_ERRORS, tags=["agents"])
def revoke_join_token(token_id: Annotated[int, Path(ge=1, le=2**63 - 1)], who: Caller,
                      ctx: Ctx) -> dict[str, Any]:
    """No more joins with this token; nodes that joined with it keep their credentials."""
    require_admin(who)
    with ctx.store.write() as conn:
        record = AG.revoke_join_token(conn, token_id)
        if record is not None:
            AU.record(conn, at=ctx.clock.now(), actor=who.name, action="agent_token.revoke",
                      target=str(token_id))
    if record is None:
        raise not_found("join token", str(token_id))
    return _token_view(record)


# --- the agent wire ------------------------------------------------------------------------------


def _bearer(authorization: str | None) -> str:
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "unauthorized", "send the join token or node credential: "
                       "Authorization: Bearer <secret>", headers={"WWW-Authenticate": "Bearer"})
    return secret.strip()


async def _node(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> AgentNode:
    secret = _bearer(authorization)

    def find() -> AgentNode | None:
        with ctx.store.read() as conn:
            return AG.node_by_credential(conn, secret)

    node = await run_in_threadpool(find)
    if node is None:
        raise ApiError(401, "unauthorized", "the node credential is unknown or was replaced by "
                       "a later join: join again with a new join token",
                       headers={"WWW-Authenticate": "Bearer"})
    return node


NodeCaller = Annotated[AgentNode, Depends(_node)]


def _timeout_s(ctx: ApiContext) -> float:
    return float(getattr(ctx.logs, "heartbeat_timeout_s", DEFAULT_HEARTBEAT_TIMEOUT_S))


@agent_router.post("/join", response_model=JoinOut, responses=_ERRORS)
def join(body: JoinIn, ctx: Ctx,
         authorization: Annotated[str | None, Header()] = None) -> JoinOut:
    """Exchange a join token for this node's credential (one use of the token)."""
    token = _bearer(authorization)
    try:
        with ctx.store.write() as conn:
            credential = AG.join(conn, token, body.node_id, body.facts.model_dump(),
                                 ctx.clock.now(), live_for_s=_timeout_s(ctx))
    except JoinRefused as e:
        raise ApiError(e.status, e.code, e.message) from None
    return JoinOut(node_id=body.node_id, credential=credential)


@agent_router.post("/sync", response_model=SyncOut, responses=_ERRORS,
                   # an agent of the last release refuses fields it does not know (extra=
                   # forbid): send the relay's (issue 13) only when there are orders
                   response_model_exclude_defaults=True)
async def sync(body: SyncIn, node: NodeCaller, ctx: Ctx) -> SyncOut:
    """Heartbeat and worker states in; the node's assignments out, once their version differs
    from `known_seq` or `wait_s` has passed (a long poll)."""
    reports = [WorkerReport(r.workload_id, r.attempt, r.worker, r.state, r.reason, r.exit_code,
                            r.ended_s_ago, r.message) for r in body.workers]

    def beat() -> int:
        with ctx.store.write() as conn:
            AG.record_heartbeat(conn, node.node_id, ctx.clock.now(), reports)
            _record_reports(conn, ctx, node.node_id, body)  # issue 17: GPU health, progress
            return AG.node_seq(conn, node.node_id)

    seq = await run_in_threadpool(beat)
    deadline = time.monotonic() + body.wait_s
    # a relayed exec or port-forward (issue 13) ends the wait as a new assignment does
    while (seq == body.known_seq and not RELAY.has_orders(node.node_id)
           and time.monotonic() < deadline):
        await RELAY.wait(node.node_id, min(_POLL_S, max(0.0, deadline - time.monotonic())))
        seq = await run_in_threadpool(_seq, ctx, node.node_id)
    out = await run_in_threadpool(_assignments, ctx, node.node_id)
    out.execs, out.tunnels, out.shells = RELAY.take(node.node_id)
    return out


@agent_router.post("/execs/{order_id}", responses=_ERRORS)
def exec_done(order_id: Annotated[str, Path(max_length=64)], body: ExecDone,
              node: NodeCaller) -> dict[str, bool]:
    """The host's answer to a relayed `corral exec` ordered to it (`corral.api.agent_relay`);
    404 for an order that is not this node's or was given up on."""
    if not RELAY.answer(node.node_id, order_id, body):
        raise not_found("exec order", order_id)
    return {"ok": True}


def _record_reports(conn: Any, ctx: ApiContext, node_id: str, body: SyncIn) -> None:
    """What the host says of its GPUs (a node event when it changed) and of its workers'
    progress (`corral.control.progress`)."""
    now = ctx.clock.now()
    if body.container_runtime is not None:  # image: placed only where one runs (issue 13)
        AG.set_label(conn, node_id, LABEL_CONTAINER_RUNTIME, body.container_runtime)
    if body.gpu_health is not None:
        h = body.gpu_health
        record_gpu_health(conn, node_id=node_id, at=now, health=h.health, reason=h.reason,
                          checked=h.checked, checks=[c.model_dump() for c in h.checks])
    if body.gpu_use:  # measured use: kept in memory, the latest per device (issue 14/17)
        board_for(ctx.store).record(node_id, [UseSample(
            u.device, u.utilization, u.memory_used_bytes, u.memory_total_bytes, now - u.age_s)
            for u in body.gpu_use])
    progress = {(r.workload_id, r.attempt, r.worker): Progress(
        r.progress.steps, r.progress.steps_per_s, r.progress.total_steps)
        for r in body.workers if r.progress is not None}
    if progress:
        PROGRESS.record(conn, now, progress, node_id=node_id)


def _seq(ctx: ApiContext, node_id: str) -> int:
    with ctx.store.read() as conn:
        return AG.node_seq(conn, node_id)


def _assignments(ctx: ApiContext, node_id: str) -> SyncOut:
    now = ctx.clock.now()
    with ctx.store.read() as conn:
        seq, workers = AG.assignments_for(conn, node_id)
    return SyncOut(seq=seq, assignments=[AssignmentOut(
        workload_id=w.workload_id, attempt=w.attempt, worker=w.worker,
        spec=AG.opened_spec(ctx.store, w.spec),
        master_addr=w.master_addr, master_port=w.master_port,
        stop_grace_left_s=None if w.stop_deadline is None else max(0.0, w.stop_deadline - now),
        stop_reason=w.stop_reason, fenced=w.fenced, state=w.state) for w in workers])


@agent_router.post("/logs", response_model=LogsOut, responses=_ERRORS)
def logs(body: LogsIn, node: NodeCaller, ctx: Ctx) -> LogsOut:
    """Worker output from byte `offset`; answers the next offset wanted per chunk (resent bytes
    are dropped, so an agent may always resend from what it last confirmed)."""
    decoded = []
    for i, chunk in enumerate(body.chunks):
        try:
            decoded.append(base64.b64decode(chunk.data_b64, validate=True))
        except (binascii.Error, ValueError):
            raise ApiError(422, "invalid_request", "data_b64 is not base64",
                           [(f"chunks.{i}.data_b64", "not base64")]) from None
    out, now = [], ctx.clock.now()
    with ctx.store.write() as conn:
        mine = {(w.workload_id, w.attempt, w.worker)
                for w in AG.assignments_for(conn, node.node_id)[1]}
        for chunk, data in zip(body.chunks, decoded, strict=True):
            key = (chunk.workload_id, chunk.attempt, chunk.worker)
            if key not in mine:  # a node writes only the logs of its own, unreleased workers
                out.append(chunk.offset + len(data))
                continue
            out.append(AG.append_log(conn, *key, chunk.offset, data))
            if chunk.times:  # `corral logs --timestamps` (issue 13), on the server's clock
                AG.append_log_times(conn, *key, [(size, now - ago)
                                                 for size, ago in chunk.times])
    return LogsOut(next_offsets=out)
