"""/v1/secrets: named values a spec's env refers to (`env: {HF_TOKEN: {secret: hf-token}}`).

    who                     may
    admin                   set, list and remove global secrets and any queue's
    queue_admin             set and remove their queue's secrets
    anyone signed in        list the names of global secrets and of their queues' secrets

No route returns a value: a value is sealed on the way in (`corral.store.secrets`) and opened
only to launch a worker. Every set and removal is in the audit log, by name only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from corral.api.context import ApiContext, Caller, context
from corral.api.errors import ApiError, not_found
from corral.sdk import models as M
from corral.sdk.secrets import SecretIn, SecretInfo
from corral.spec.workload import check_name
from corral.store import audit as AU
from corral.store import pool as P
from corral.store import secrets as S
from corral.store.auth import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["secrets"])
Ctx = Annotated[ApiContext, Depends(context)]
SecretName = Annotated[str, Path(min_length=1, max_length=63)]
QueueQuery = Annotated[str | None, Query(min_length=1, max_length=63,
                                         description="the queue's secret; none: the global one")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": M.ErrorBody} for s in (401, 403, 404, 422, 503)}


def _name(name: str) -> str:
    try:
        return check_name(name, "a secret's name")
    except ValueError as e:
        raise ApiError(422, "invalid_request", "bad secret name", [("name", str(e))]) from None


def _may_change(who: Principal, queue: str | None) -> None:
    if queue is None:
        if not who.is_admin:
            raise ApiError(403, "forbidden", "a global secret (no queue) needs the admin role; "
                           f"{who.name} is a {who.role}: give --queue for your queue's own")
        return
    if who.may_manage(queue):
        return
    if not who.may_use(queue):
        raise not_found("queue", queue)
    raise ApiError(403, "forbidden", f"the secrets of {queue!r} are set by its queue_admin or "
                   f"an admin; {who.name} is a {who.role_in(queue)} there")


def _box(ctx: ApiContext) -> S.SecretBox:
    try:
        return S.box_of(ctx.store)
    except S.SecretsUnavailable as e:
        raise ApiError(503, "unavailable", str(e)) from None


def _info(s: S.SecretInfo, created: bool | None = None) -> SecretInfo:
    return SecretInfo(name=s.name, queue=s.queue, created_by=s.created_by,
                      created_at=s.created_at, updated_at=s.updated_at, created=created)


@router.put("/secrets/{name}", response_model=SecretInfo, responses=_ERRORS)
async def put_secret(name: SecretName, body: SecretIn, ctx: Ctx, who: Caller) -> SecretInfo:
    """Set a secret (or replace its value): a queue's (its queue_admin or an admin) or a global
    one (admins). The answer and the audit log carry the name, never the value."""
    name = _name(name)
    _may_change(who, body.queue)
    box = _box(ctx)
    return await run_in_threadpool(_put, ctx, who, name, body, box)


def _put(ctx: ApiContext, who: Principal, name: str, body: SecretIn,
         box: S.SecretBox) -> SecretInfo:
    now = ctx.clock.now()
    with ctx.store.write() as conn:
        if body.queue is not None and P.get_queue(conn, body.queue) is None:
            raise not_found("queue", body.queue)
        created = S.put_secret(conn, box, name, body.value, queue=body.queue, by=who.name,
                               now=now)
        AU.record(conn, at=now, actor=who.name, action="secret.set", target=name,
                  queue=body.queue or "", detail={"created": created})
        found = S.list_secrets(conn, [body.queue] if body.queue else [], include_global=True)
    mine = next(s for s in found if s.name == name and s.queue == body.queue)
    return _info(mine, created)


@router.get("/secrets", response_model=list[SecretInfo], responses=_ERRORS)
def list_secrets(ctx: Ctx, who: Caller, queue: QueueQuery = None) -> list[SecretInfo]:
    """The names of the secrets the caller's work may use: global ones and those of the
    caller's queues (admins: every queue's); `queue`: that queue's and the global ones."""
    if queue is not None and not who.may_use(queue):
        raise not_found("queue", queue)
    queues = [queue] if queue is not None else (None if who.is_admin else sorted(who.queues))
    with ctx.store.read() as conn:
        return [_info(s) for s in S.list_secrets(conn, queues)]


@router.delete("/secrets/{name}", status_code=204, responses=_ERRORS)
def delete_secret(name: SecretName, ctx: Ctx, who: Caller, queue: QueueQuery = None
                  ) -> Response:
    """Remove a secret. Work already submitted that names it fails at its next launch, with
    the variable and the secret named."""
    _may_change(who, queue)
    with ctx.store.write() as conn:
        if not S.delete_secret(conn, name, queue=queue):
            raise not_found("secret", name if queue is None else f"{name} of queue {queue}")
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="secret.remove",
                  target=name, queue=queue or "")
    return Response(status_code=204)
