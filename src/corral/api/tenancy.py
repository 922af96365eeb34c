"""/v1/users, /v1/tokens, /v1/queues/{queue}/members, /v1/audit, /v1/whoami: who may use corral.

    who                  may
    admin                everything below, for everyone; read the audit log
    queue_admin          list, add, change and remove the members of their queue
    anyone signed in     whoami; list, create and revoke their own tokens; list their queue's
                         members

Every change here is written to the audit log in its own transaction, and clears this process's
token cache, so a revoked token, a deleted user or a removed member is refused on the very next
request (`corral.api.context.ApiContext.forget_credentials`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from corral.api.context import ApiContext, Caller, context, require_admin
from corral.api.errors import ApiError, not_found
from corral.sdk import models as M
from corral.spec import SpecError
from corral.spec.workload import check_name
from corral.store import audit as AU
from corral.store import auth as A
from corral.store import pool as P
from corral.store.auth import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1")
Ctx = Annotated[ApiContext, Depends(context)]
UserName = Annotated[str, Path(min_length=1, max_length=63)]
QueueName = Annotated[str, Path(min_length=1, max_length=63)]
TokenId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": M.ErrorBody} for s in (401, 403, 404, 409, 422)}


def user_view(p: Principal) -> M.UserOut:
    return M.UserOut(name=p.name, role=p.role, queues=sorted(p.queues),
                     memberships=dict(sorted(p.queue_roles.items())))


def token_view(t: A.TokenRecord) -> M.TokenInfo:
    return M.TokenInfo(id=t.id, user=t.user, name=t.name, hint=t.hint, created_at=t.created_at,
                       expires_at=t.expires_at, revoked=t.revoked, rate_per_s=t.rate_per_s,
                       burst=t.burst)


@router.get("/whoami", response_model=M.UserOut, responses=_ERRORS, tags=["users"])
def whoami(who: Caller) -> M.UserOut:
    """The caller: name, role, and role in each of their queues."""
    return user_view(who)


# --- users --------------------------------------------------------------------------------------


@router.get("/users", response_model=list[M.UserOut], responses=_ERRORS, tags=["users"])
def list_users(ctx: Ctx, who: Caller) -> list[M.UserOut]:
    require_admin(who)
    with ctx.store.read() as conn:
        return [user_view(u) for u in A.list_users(conn)]


@router.post("/users", status_code=201, response_model=M.TokenOut, responses=_ERRORS,
             tags=["users"])
def create_user(body: M.UserIn, ctx: Ctx, who: Caller) -> M.TokenOut:
    """Create a user, a member of `queues`; the response carries their first API token (shown
    once)."""
    require_admin(who)
    try:
        check_name(body.name, "user name")
    except ValueError as e:
        raise SpecError([("name", str(e))]) from None
    now = ctx.clock.now()
    try:
        with ctx.store.write() as conn:
            _known_queues(conn, body.queues, "queues")
            if A.get_user(conn, body.name) is not None:
                raise ApiError(409, "conflict", f"user {body.name!r} exists",
                               [("name", "already exists")])
            A.create_user(conn, body.name, body.role, body.queues, now)
            token = A.create_token(conn, body.name, now)
            AU.record(conn, at=now, actor=who.name, action="user.create", target=body.name,
                      detail={"role": body.role, "queues": sorted(set(body.queues))})
            created = A.get_user(conn, body.name)
    except IntegrityError:  # a concurrent create of the same name
        raise ApiError(409, "conflict", f"user {body.name!r} exists") from None
    assert created is not None
    return M.TokenOut(user=user_view(created), token=token)


@router.get("/users/{name}", response_model=M.UserOut, responses=_ERRORS, tags=["users"])
def get_user(name: UserName, ctx: Ctx, who: Caller) -> M.UserOut:
    if name != who.name:
        require_admin(who)
    with ctx.store.read() as conn:
        found = A.get_user(conn, name)
    if found is None:
        raise not_found("user", name)
    return user_view(found)


@router.delete("/users/{name}", status_code=204, responses=_ERRORS, tags=["users"])
def delete_user(name: UserName, ctx: Ctx, who: Caller) -> Response:
    """The user's tokens stop working at once; their workloads stay (and keep their name)."""
    require_admin(who)
    if name == who.name:
        raise ApiError(409, "conflict", "you cannot delete yourself; ask another admin",
                       [("name", "is the caller")])
    now = ctx.clock.now()
    with ctx.store.write() as conn:
        if not A.delete_user(conn, name):
            raise not_found("user", name)
        AU.record(conn, at=now, actor=who.name, action="user.delete", target=name)
    ctx.forget_credentials()
    return Response(status_code=204)


def _known_queues(conn: Connection, queues: list[str], field: str) -> None:
    known = {q.name for q in P.list_queues(conn)}
    unknown = sorted(set(queues) - known)
    if unknown:
        raise SpecError([(field, f"unknown queue(s) {unknown}; create them first")])


# --- tokens -------------------------------------------------------------------------------------


@router.get("/tokens", response_model=list[M.TokenInfo], responses=_ERRORS, tags=["tokens"])
def list_tokens(ctx: Ctx, who: Caller,
                user: Annotated[str | None, Query(min_length=1, max_length=63,
                                                  description="admins: whose (default: all)")]
                = None) -> list[M.TokenInfo]:
    """Your tokens (admins: everyone's, or `user`'s); never the tokens themselves."""
    if not who.is_admin:
        if user not in (None, who.name):
            raise ApiError(403, "forbidden", "you may list only your own tokens")
        user = who.name
    with ctx.store.read() as conn:
        return [token_view(t) for t in A.list_tokens(conn, user)]


@router.post("/tokens", status_code=201, response_model=M.TokenCreated, responses=_ERRORS,
             tags=["tokens"])
def create_token(body: M.TokenIn, ctx: Ctx, who: Caller) -> M.TokenCreated:
    """A new token for yourself (admins: for anyone). Only admins may raise a token's rate
    above the server's default."""
    user = body.user or who.name
    if user != who.name or (body.rate_per_s is not None and (
            body.rate_per_s == 0 or body.rate_per_s > ctx.limits.rate_per_s)) or (
            body.burst is not None and body.burst > ctx.limits.burst):
        require_admin(who)
    now = ctx.clock.now()
    expires = now + body.expires_in_s if body.expires_in_s is not None else None
    with ctx.store.write() as conn:
        if A.get_user(conn, user) is None:
            raise not_found("user", user)
        info, token = A.issue_token(conn, user, now, name=body.name, expires_at=expires,
                                    rate_per_s=body.rate_per_s, burst=body.burst)
        AU.record(conn, at=now, actor=who.name, action="token.create", target=str(info.id),
                  detail={"user": user, "name": body.name, "expires_at": expires,
                          "rate_per_s": body.rate_per_s, "burst": body.burst})
    return M.TokenCreated(token=token, info=token_view(info))


@router.delete("/tokens/{token_id}", response_model=M.TokenInfo, responses=_ERRORS,
               tags=["tokens"])
def revoke_token(token_id: TokenId, ctx: Ctx, who: Caller) -> M.TokenInfo:
    """Revoke one of your tokens (admins: anyone's). Refused on the very next request."""
    now = ctx.clock.now()
    with ctx.store.write() as conn:
        found = A.get_token(conn, token_id)
        if found is None or (found.user != who.name and not who.is_admin):
            raise not_found("token", str(token_id))
        A.revoke_token(conn, token_id)
        AU.record(conn, at=now, actor=who.name, action="token.revoke", target=str(token_id),
                  detail={"user": found.user})
        revoked = A.get_token(conn, token_id)
    ctx.forget_credentials()
    assert revoked is not None
    return token_view(revoked)


# --- memberships --------------------------------------------------------------------------------


@router.get("/queues/{queue}/members", response_model=list[M.Member], responses=_ERRORS,
            tags=["queues"])
def list_members(queue: QueueName, ctx: Ctx, who: Caller) -> list[M.Member]:
    """Anyone in the queue may see who else is."""
    if not who.may_use(queue):
        raise not_found("queue", queue)
    with ctx.store.read() as conn:
        if P.get_queue(conn, queue) is None:
            raise not_found("queue", queue)
        return [M.Member(user=u, queue=queue, role=r) for u, r in A.list_members(conn, queue)]


@router.put("/queues/{queue}/members/{user}", response_model=M.Member, responses=_ERRORS,
            tags=["queues"])
def put_member(queue: QueueName, user: UserName, body: M.MemberIn, ctx: Ctx,
               who: Caller) -> M.Member:
    """Add `user` to the queue, or change their role (admins and the queue's admins)."""
    _may_manage(who, queue)
    now = ctx.clock.now()
    with ctx.store.write() as conn:
        if P.get_queue(conn, queue) is None:
            raise not_found("queue", queue)
        if A.get_user(conn, user) is None:
            raise not_found("user", user)
        before = A.set_membership(conn, user, queue, body.role)
        AU.record(conn, at=now, actor=who.name, action="member.set", target=user, queue=queue,
                  detail={"role": body.role, "before": before})
    ctx.forget_credentials()
    return M.Member(user=user, queue=queue, role=body.role)


@router.delete("/queues/{queue}/members/{user}", status_code=204, responses=_ERRORS,
               tags=["queues"])
def delete_member(queue: QueueName, user: UserName, ctx: Ctx, who: Caller) -> Response:
    """Remove `user` from the queue (admins and the queue's admins); their work stays."""
    _may_manage(who, queue)
    with ctx.store.write() as conn:
        if not A.remove_membership(conn, user, queue):
            raise not_found("member", f"{user} of {queue}")
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="member.remove",
                  target=user, queue=queue)
    ctx.forget_credentials()
    return Response(status_code=204)


def _may_manage(who: Principal, queue: str) -> None:
    if who.may_manage(queue):
        return
    if not who.may_use(queue):
        raise not_found("queue", queue)
    raise ApiError(403, "forbidden", f"changing the members of {queue!r} needs its queue_admin "
                   f"role or admin; {who.name} is a {who.role_in(queue)} there")


# --- audit --------------------------------------------------------------------------------------


@router.get("/audit", response_model=M.AuditPage, responses=_ERRORS, tags=["audit"])
def audit(ctx: Ctx, who: Caller,
          after: Annotated[int, Query(ge=0, le=2**62, description="next_after of the last page")]
          = 0,
          actor: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
          action: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> M.AuditPage:
    """Admin actions and actions on other users' work, oldest first (admins only)."""
    require_admin(who)
    with ctx.store.read() as conn:
        found = AU.list_audit(conn, after_id=after, actor=actor, action=action, limit=limit)
    return M.AuditPage(items=[M.AuditEntry(id=e.id, at=e.at, actor=e.actor, action=e.action,
                                           target=e.target, queue=e.queue, detail=e.detail)
                              for e in found],
                       next_after=found[-1].id if found else after)
