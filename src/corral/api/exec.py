"""POST /v1/workloads/{id}/exec: run a command beside a running worker (`corral exec`).

Who may: whoever may read the workload's logs and cancel it (its owner as a member, every
workload of the queue as its queue admin, an admin); anyone else hears 404 or 403 as for logs.
Every exec is in the audit log (`workload.exec`, the program's name only: arguments may hold
secrets). Where: the local backend, on the worker's own host (`corral.backends.worker_exec`);
the agent backend, relayed to the worker's host through its sync (`corral.api.agent_relay`; the
host runs it the same way, output up to 64 KiB per stream); Slurm, as a step inside the
worker's job on its node (`corral.backends.slurm_exec`: ``srun --jobid --overlap``, the same
environment, cwd, timeout and output bounds); other backends (Ray, Kubernetes) answer 501.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from corral.agent.protocol import ExecDone, ExecOrder
from corral.api.agent_relay import RELAY, node_of_worker
from corral.api.context import ApiContext, Caller, context
from corral.api.errors import ApiError, not_found
from corral.backends.worker_exec import exec_beside, worker_pid
from corral.sdk import models as M
from corral.store import audit as AU
from corral.store import workloads as W
from corral.store.auth import Principal
from corral.store.workloads import WorkloadRecord

if TYPE_CHECKING:
    from corral.backends.slurm_exec import WorkerStep

__all__ = ["ExecIn", "ExecOut", "allowed", "router", "step_of"]

router = APIRouter(prefix="/v1", tags=["workloads"])
Ctx = Annotated[ApiContext, Depends(context)]
MAX_OUTPUT_BYTES = 1 << 20
#: relayed through an agent: the answer is one JSON body under the API's body cap
AGENT_MAX_OUTPUT_BYTES = 64 * 1024
#: how long past its timeout an exec waits for the host's answer (the next sync, the upload)
AGENT_ANSWER_SLACK_S = 15.0
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": M.ErrorBody} for s in (401, 403, 404, 409, 422, 501, 503, 504)}


class ExecIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    argv: list[Annotated[str, Field(max_length=16384)]] = Field(
        min_length=1, max_length=1024, description="the program and its arguments (no shell: "
        "give [sh, -c, '...'] for one)")
    worker: int = Field(0, ge=0, le=4095, strict=True, description="which worker of the gang")
    timeout_s: float = Field(30.0, gt=0, le=120, allow_inf_nan=False, strict=True,
                             description="then its process group is killed (at most 120 s)")


class ExecOut(BaseModel):
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool


def allowed(ctx: ApiContext, who: Principal, workload_id: str) -> WorkloadRecord:
    with ctx.store.read() as conn:
        rec = W.get_workload(conn, workload_id)
    if rec is None or not who.may_use(rec.queue):
        raise not_found("workload", workload_id)
    if not who.may_act_on(rec.queue, rec.user):
        raise ApiError(403, "forbidden", f"{who.name} is a {who.role_in(rec.queue)} of queue "
                       f"{rec.queue!r} and may not exec in {rec.user}'s workload; members exec "
                       "in their own work, queue admins in all of the queue's")
    if rec.state != "running":
        raise ApiError(409, "conflict", f"workload {rec.id} is {rec.state}: exec reaches a "
                       "running worker; `corral describe` says why it is not running")
    return rec


def _audit(ctx: ApiContext, who: Principal, rec: WorkloadRecord, body: ExecIn) -> None:
    with ctx.store.write() as conn:
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="workload.exec",
                  target=rec.id, queue=rec.queue,
                  detail={"owner": rec.user, "program": Path(body.argv[0]).name,
                          "worker": body.worker})


def _run(ctx: ApiContext, who: Principal, rec: WorkloadRecord, body: ExecIn) -> ExecOut:
    if ctx.backend_name == "agent":
        return _relayed(ctx, who, rec, body)
    if ctx.backend_name == "slurm" and ctx.logs is not None:
        return _in_slurm_step(ctx, who, rec, body)
    work_dir = getattr(ctx.logs, "work_dir", None)
    if ctx.backend_name != "local" or not isinstance(work_dir, Path):
        raise ApiError(501, "not_implemented", f"corral exec reaches workers of the local, "
                       f"agent and Slurm backends only; on {ctx.backend_name or 'this replica'} "
                       "read `corral logs`")
    _audit(ctx, who, rec, body)
    try:
        pid = worker_pid(work_dir, rec.id, rec.attempt, body.worker)
    except LookupError as e:
        raise ApiError(409, "conflict", str(e), [("worker", "no live process")]) from None
    try:
        done = exec_beside(pid, list(body.argv), timeout_s=body.timeout_s,
                           max_bytes=MAX_OUTPUT_BYTES)
    except FileNotFoundError:
        raise ApiError(422, "invalid_request", f"program {body.argv[0]!r} is not found in the "
                       "worker's PATH", [("argv[0]", "not found")]) from None
    except PermissionError as e:
        raise ApiError(422, "invalid_request", f"cannot run {body.argv[0]!r}: {e.strerror}",
                       [("argv[0]", "not executable")]) from None
    return ExecOut(**vars(done))


def step_of(ctx: ApiContext, rec: WorkloadRecord, worker: int) -> WorkerStep:
    """The Slurm step that reaches that worker (`corral.backends.slurm_exec.locate`), or the
    API's refusal: 409 when it has no running process, 503 when Slurm's controller does not
    answer the question which job it runs in (an array task's or a pilot's: `squeue`), the
    backend's own for the rest."""
    from corral.backends.errors import BackendUnavailable
    from corral.backends.slurm_exec import StepRefused, locate
    try:
        return locate(ctx.logs, rec.id, rec.attempt, worker)  # type: ignore[arg-type]
    except LookupError as e:
        raise ApiError(409, "conflict", str(e), [("worker", "no live process")]) from None
    except StepRefused as e:
        raise ApiError(e.status, "not_implemented", e.message) from None
    except BackendUnavailable as e:
        raise ApiError(503, "unavailable", f"Slurm's controller did not answer which job "
                       f"worker {worker} runs in ({e}); try again when `squeue` answers"
                       ) from None


def _in_slurm_step(ctx: ApiContext, who: Principal, rec: WorkloadRecord,
                   body: ExecIn) -> ExecOut:
    from corral.backends.slurm_exec import StepRefused, exec_in_step
    step = step_of(ctx, rec, body.worker)
    _audit(ctx, who, rec, body)
    try:
        done = exec_in_step(step, list(body.argv), timeout_s=body.timeout_s,
                            max_bytes=MAX_OUTPUT_BYTES)
    except StepRefused as e:
        code = {409: "conflict", 422: "invalid_request", 504: "timeout"}.get(
            e.status, "unavailable")
        raise ApiError(e.status, code, e.message) from None
    return ExecOut(**vars(done))


def _relayed(ctx: ApiContext, who: Principal, rec: WorkloadRecord, body: ExecIn) -> ExecOut:
    """Through the worker's agent (`corral.api.agent_relay`): ordered at the node's next
    sync, run there as on the local backend, answered with ExecDone."""
    try:
        node = node_of_worker(ctx.store, rec.id, rec.attempt, body.worker)
    except LookupError as e:
        raise ApiError(409, "conflict", str(e), [("worker", "no live process")]) from None
    _audit(ctx, who, rec, body)
    order = ExecOrder(id=RELAY.new_id(), workload_id=rec.id, attempt=rec.attempt,
                      worker=body.worker, argv=list(body.argv), timeout_s=body.timeout_s,
                      max_bytes=AGENT_MAX_OUTPUT_BYTES)
    answer = RELAY.order(node, order)
    try:
        done: ExecDone = answer.result(timeout=body.timeout_s + AGENT_ANSWER_SLACK_S)
    except TimeoutError:
        RELAY.forget(order.id)
        raise ApiError(504, "timeout", f"the agent on {node} did not answer within "
                       f"{body.timeout_s + AGENT_ANSWER_SLACK_S:g} s: is it running and "
                       "reaching this server? (`corral nodes`)") from None
    if done.error == "conflict":
        raise ApiError(409, "conflict", done.message, [("worker", "no live process")])
    if done.error == "invalid":
        raise ApiError(422, "invalid_request", done.message, [("argv[0]", "cannot run")])
    return ExecOut(exit_code=done.exit_code, stdout=done.stdout, stderr=done.stderr,
                   timed_out=done.timed_out, truncated=done.truncated)


@router.post("/workloads/{workload_id}/exec", response_model=ExecOut, responses=_ERRORS)
async def exec_in_worker(workload_id: str, body: ExecIn, ctx: Ctx, who: Caller) -> ExecOut:
    """Run `argv` beside worker `worker` of a running workload: its environment, working
    directory and user; no terminal, empty standard input; output up to 1 MiB per stream."""
    rec = await run_in_threadpool(allowed, ctx, who, workload_id)
    return await run_in_threadpool(_run, ctx, who, rec, body)
