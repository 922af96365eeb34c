"""/v1/health and /v1/version: unauthenticated, for probes and clients."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import text

from corral.api.context import ApiContext, context
from corral.sdk import models as M

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["meta"])


@router.get("/health", response_model=M.Health)
def health(ctx: Annotated[ApiContext, Depends(context)]) -> M.Health:
    """`ok` when the database answers; `leader` says whether this process schedules."""
    try:
        with ctx.store.read() as conn:
            conn.execute(text("SELECT 1"))
        db = "ok"
    except Exception as e:  # a probe reports the failure instead of failing itself
        db = f"error: {e.__class__.__name__}"
    leading = ctx.leadership is not None and ctx.leadership.leading
    return M.Health(status="ok" if db == "ok" else "degraded", database=db, leader=leading,
                    backend=ctx.backend_name)


@router.get("/version", response_model=M.Version)
def version() -> M.Version:
    try:
        v = package_version("corral")
    except PackageNotFoundError:  # running from a source tree that was never installed
        v = "0+unknown"
    return M.Version(version=v)
