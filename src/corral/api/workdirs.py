"""/v1/workdirs: uploaded workdirs, by content digest, for backends whose hosts do not see the
submitter's files (the agent backend). `corral.backends.workdir` says how they are packed,
checked, kept and unpacked; `corral.sdk.workdirs` is the client side.

    GET  /v1/workdirs                       {upload: does this server want them, max_bytes}
    GET  /v1/workdirs/sha256:<hex>          200 when stored (a rerun uploads nothing), else 404
    PUT  /v1/workdirs/sha256:<hex>          the gzipped tar; its SHA-256 must be the digest
    GET  /agent/v1/workdirs/sha256:<hex>    the archive, to an agent (its node credential)

Kept as a bounded cache: after each new upload the folder is pruned
(`corral.backends.workdir_cache`: unused 30 days, or least recently used over 20 GiB), never an
archive that a workload not yet ended names.

Who may upload: a user who may submit to some queue (members, queue admins, admins); viewers
may not. Archives are named by their content, so one user's upload can neither replace nor
alter another's, and reading one needs its digest (256 bits: not guessed).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from corral.api.agents import NodeCaller
from corral.api.context import ApiContext, Caller, context
from corral.api.errors import ApiError
from corral.backends.errors import InvalidLaunchSpec
from corral.backends.workdir import MAX_WORKDIR_BYTES, WorkdirArchives, is_archive
from corral.sdk import models as M
from corral.store.schema import WorkloadRow

__all__ = ["MAX_UPLOAD_BYTES", "PATH_PREFIX", "agent_router", "router"]

router = APIRouter(prefix="/v1", tags=["workloads"])
agent_router = APIRouter(prefix="/agent/v1", tags=["agents"])
Ctx = Annotated[ApiContext, Depends(context)]
Digest = Annotated[str, Path(pattern=r"^sha256:[0-9a-f]{64}$",
                             description="sha256:<64 lowercase hex digits> of the archive")]
PATH_PREFIX = "/v1/workdirs/"
#: the body of a PUT: an archive of at most MAX_WORKDIR_BYTES of files compresses to less,
#: but tar's headers add up for many small files
MAX_UPLOAD_BYTES = MAX_WORKDIR_BYTES + 16 * 1024 * 1024
#: backends whose workers run on hosts that do not see this server's files but take uploads
UPLOADING_BACKENDS = frozenset({"agent"})
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": M.ErrorBody} for s in (401, 403, 404, 409, 413, 422)}


def archives_of(request: Request) -> WorkdirArchives | None:
    found = getattr(request.app.state, "workdirs", None)
    return found if isinstance(found, WorkdirArchives) else None


@router.get("/workdirs")
def workdir_uploads(request: Request, ctx: Ctx, who: Caller) -> dict[str, Any]:
    """Whether `corral submit` should upload workdirs to this server, and the most it takes."""
    wanted = archives_of(request) is not None and ctx.backend_name in UPLOADING_BACKENDS
    return {"upload": wanted, "max_bytes": MAX_WORKDIR_BYTES}


@router.get("/workdirs/{digest}", responses=_ERRORS)
def workdir_stored(digest: Digest, request: Request, who: Caller) -> dict[str, Any]:
    archives = archives_of(request)
    if archives is None or not archives.has(digest):
        raise ApiError(404, "not_found", f"no uploaded workdir {digest}")
    return {"digest": digest, "bytes": archives.path(digest).stat().st_size}


@router.put("/workdirs/{digest}", status_code=201, responses=_ERRORS)
async def upload_workdir(digest: Digest, request: Request, who: Caller,
                         ctx: Ctx) -> dict[str, Any]:
    """Store a workdir archive (a gzipped tar of at most 100 MiB of files) under its digest;
    200-like and idempotent: one already stored is not written again."""
    archives = archives_of(request)
    if archives is None:
        raise ApiError(409, "conflict", "this server keeps no uploaded workdirs (it is not run "
                       "by `corral up`): give workdir as a path its workers see")
    if not who.is_admin and not any(who.may_submit(q) for q in who.queues):
        raise ApiError(403, "forbidden", f"{who.name} may submit to no queue, so has no "
                       "workdir to upload; ask a queue admin to make you a member")
    data = await request.body()
    try:
        created = await run_in_threadpool(archives.put, digest, data)
    except InvalidLaunchSpec as e:
        raise ApiError(422, "invalid_request", "the archive is refused",
                       [("workdir", str(e).split(": ", 1)[-1])]) from None
    if created:  # the cache grew: keep it bounded (corral.backends.workdir_cache)
        await run_in_threadpool(_prune, ctx, archives, digest)
    return {"digest": digest, "bytes": len(data), "created": created}


#: states after which a workload never launches again
_ENDED = ("succeeded", "failed", "cancelled")


def in_use(ctx: ApiContext) -> set[str]:
    """The archives a workload not yet ended names (its next launch fetches it)."""
    with ctx.store.read() as conn:
        specs = conn.execute(select(WorkloadRow.spec).where(WorkloadRow.state.not_in(_ENDED)))
        return {str(spec["workdir"]) for (spec,) in specs
                if isinstance(spec, dict) and is_archive(str(spec.get("workdir") or ""))}


def _prune(ctx: ApiContext, archives: WorkdirArchives, uploaded: str) -> None:
    """Never the archive just uploaded: its submission follows the upload."""
    archives.prune(in_use(ctx) | {uploaded})


@agent_router.get("/workdirs/{digest}", responses=_ERRORS)
def agent_workdir(digest: Digest, request: Request, node: NodeCaller) -> FileResponse:
    """The archive, for an agent about to launch a worker whose spec names it."""
    archives = archives_of(request)
    if archives is None or not archives.has(digest):
        raise ApiError(404, "not_found", f"no uploaded workdir {digest}")
    return FileResponse(archives.path(digest), media_type="application/x-tar")
