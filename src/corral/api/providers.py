"""Renting providers at run time: `corral providers add FILE | rm NAME | ls --declared`.

    GET    /v1/providers/declared          admin   the renting providers, with their lifecycle
    POST   /v1/providers/declared          admin   add one (kind aws or ssh; a ProviderSpec)
    DELETE /v1/providers/declared/{name}   admin   remove one: drained, its capacity returned
           ?timeout_s=S                            work still running S seconds later is stopped
           ?force=true                             the same with S = 0: stop its work now

(`/v1/providers` itself is the pool's summary per provider, `corral.api.pool`; the declared
ones are a collection of their own, so no provider name can shadow a path.)

Added providers live in the store (`corral.control.pool_providers`): the autoscaler reads them
at its next pass and a restart keeps them. A remove never stops work that may not be preempted:
its nodes are cordoned at once, preemptible work leaves with the preemption contract (grace to
checkpoint, requeued elsewhere), each instance is returned once nothing runs there, and the
provider is marked removed when its last instance is. Specs never carry secrets (the spec
refuses unknown keys; keys and AWS credentials are named, never given), so a spec is safe to
return. Mounted under the pool router (`corral.api.pool`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import ValidationError

from corral.api.context import ApiContext, Caller, context, require_admin
from corral.api.errors import ApiError, not_found
from corral.control import pool_providers as PP
from corral.sdk import models as M
from corral.sdk.providers import DeclaredProvider
from corral.spec import SpecError
from corral.spec.pool import ProviderSpec

__all__ = ["router"]

router = APIRouter()
Ctx = Annotated[ApiContext, Depends(context)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": M.ErrorBody} for s in (401, 403, 404, 409, 422)}
Name = Annotated[str, Path(max_length=63)]


def _view(d: PP.Declared) -> DeclaredProvider:
    s = d.spec
    return DeclaredProvider(name=s.name, kind=s.kind, origin=d.origin, lifecycle=d.lifecycle,
                            region=s.region, capacity_kind=str(s.capacity_kind),
                            min_nodes=s.min_nodes, max_nodes=s.max_nodes,
                            max_spend_per_hour=s.max_spend_per_hour, settings=dict(s.settings))


@router.get("/providers/declared", response_model=list[DeclaredProvider], responses=_ERRORS,
            tags=["pool"])
def declared(ctx: Ctx, who: Caller) -> list[DeclaredProvider]:
    """The renting providers (kind aws or ssh) and where each is in its life (admin: the
    settings name hosts and key paths)."""
    require_admin(who)
    with ctx.store.read() as conn:
        return [_view(d) for d in PP.declared_providers(conn, include_removed=True)]


@router.post("/providers/declared", status_code=201, response_model=DeclaredProvider, responses=_ERRORS,
             tags=["pool"])
def add(ctx: Ctx, who: Caller, body: Annotated[dict[str, Any], Body()]) -> DeclaredProvider:
    """Add a renting provider: the pool file's `providers:` entry (kind aws or ssh)."""
    require_admin(who)
    spec = _validated(body)
    try:
        with ctx.store.write() as conn:
            added = PP.add_provider(conn, spec, by=who.name, now=ctx.clock.now())
    except PP.ProviderConflict as e:
        raise ApiError(409, "conflict", str(e), [("name", "already exists")]) from None
    ctx.submissions.invalidate()  # what could be rented changed: so does what may wait
    return _view(added)


@router.delete("/providers/declared/{name}", status_code=202, response_model=DeclaredProvider,
               responses=_ERRORS, tags=["pool"])
def remove(name: Name, ctx: Ctx, who: Caller,
           force: Annotated[bool, Query(description="stop the work on its nodes now (its "
                                                    "capacity is returned once it stopped)")]
           = False,
           timeout_s: Annotated[float | None, Query(
               ge=0, le=30 * 86_400, allow_inf_nan=False,
               description="work still running this long from now is stopped")] = None,
           ) -> DeclaredProvider:
    """Start removing a renting provider (202: it drains; `lifecycle` says when it is gone).
    Without a timeout, work that may not be preempted runs to its end first."""
    require_admin(who)
    with ctx.store.write() as conn:
        retiring = PP.retire_provider(conn, name, by=who.name, now=ctx.clock.now(),
                                      timeout_s=0.0 if force else timeout_s)
    if retiring is None:
        raise not_found("renting provider", name)
    ctx.submissions.invalidate()
    return _view(retiring)


def _validated(body: dict[str, Any]) -> ProviderSpec:
    kind = body.get("kind", "static")
    if kind not in PP.RENTING:
        shown = repr(kind)[:40]
        raise SpecError([("kind", f"{shown}: only providers that rent (aws, ssh) are added at "
                          "run time; a static provider's nodes are declared in the pool file")])
    try:
        return ProviderSpec.model_validate(body)
    except ValidationError as e:
        raise SpecError.from_validation(e) from None
