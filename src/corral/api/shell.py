"""WebSocket /v1/workloads/{id}/shell?worker=N&rows=R&cols=C: an interactive shell in a running
worker (`corral ssh`), on a pseudo-terminal, carried through the control plane.

The wire, after the upgrade (token in the Authorization header, as port-forward):
- server -> client: a text "ok", then the terminal's output as binary messages, and at the end
  one text message `{"exit": N}` (the shell's status; 128+signal when killed) before a 1000
  close. A refusal is a close with code 44xx/45xx and the reason, as port-forward's; a
  shell over the server's idle or longest-session limit (1 h idle, 12 h at most by default:
  `CORRAL_API_SHELL_IDLE_S`, `CORRAL_API_SHELL_MAX_S`) is closed with code 4408 and the reason
  naming the limit (`corral.api.websockets.SessionClock`), and hung up.
- client -> server: keystrokes as binary messages; `{"resize": [rows, cols]}` as text.
Kubernetes' remotecommand protocol carries the same three things on numbered channels (stdin,
stdout, an error/status channel 3 and a resize channel 4); here a text/binary split is enough,
since a terminal merges stdout and stderr.

Rights and audit: those of exec (`corral.api.exec.allowed`), audited as `workload.ssh`.
Where: the local backend (`corral.backends.worker_shell`), and the agent backend through the
relay (`corral.api.agent_relay`): the worker's agent opens the shell the same way on its host
and dials back a WebSocket with its node credential, which carries the same messages (the
server passes them through and keeps the limits). Slurm: ``srun --jobid --overlap --pty`` on a
terminal of the server's, the shell started on the worker's node with its environment and cwd
(`corral.backends.slurm_exec`); the same wire and limits as the local backend's. Other
backends (Ray, Kubernetes) are refused with 4501.
The client leaving hangs the shell up (SIGHUP to its session; on Slurm, srun ends the step).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path

from fastapi import FastAPI, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from corral.agent.protocol import ShellOrder
from corral.api.agent_relay import RELAY, dial_back, node_of_worker
from corral.api.context import ApiContext
from corral.api.errors import ApiError
from corral.api.exec import allowed, step_of
from corral.api.websockets import (
    LIMIT_CLOSE,
    SessionClock,
    open_checked,
    over_limit,
    query_int,
    refuse,
    until_over,
)
from corral.backends.worker_exec import worker_pid
from corral.backends.worker_shell import (
    ContainerGone,
    Shell,
    apply_control,
    exit_status,
    open_shell,
)
from corral.store import audit as AU
from corral.store.auth import Principal
from corral.store.workloads import WorkloadRecord

__all__ = ["PATH", "install"]

PATH = "/v1/workloads/{workload_id}/shell"
CHUNK = 64 * 1024


def install(app: FastAPI) -> None:
    """A plain Starlette route, as port-forward's (the app's dependencies read HTTP requests)."""
    app.router.routes.append(WebSocketRoute(PATH, shell))


def _open(ctx: ApiContext, who: Principal, workload_id: str, worker: int, rows: int,
          cols: int) -> Shell | tuple[ShellOrder, str]:
    """Checks the rights and audits; the shell opened here (local backend), or the order to
    relay and the node of the worker's agent (which opens it on its host)."""
    rec = allowed(ctx, who, workload_id)
    if ctx.backend_name == "agent":
        try:
            node = node_of_worker(ctx.store, rec.id, rec.attempt, worker)
        except LookupError as e:
            raise ApiError(409, "conflict", str(e)) from None
        _audit(ctx, who, rec, worker)
        return ShellOrder(id=RELAY.new_id(), workload_id=rec.id, attempt=rec.attempt,
                          worker=worker, rows=rows, cols=cols), node
    if ctx.backend_name == "slurm" and ctx.logs is not None:
        return _slurm_shell(ctx, who, rec, worker, rows, cols)
    work_dir = getattr(ctx.logs, "work_dir", None)
    if ctx.backend_name != "local" or not isinstance(work_dir, Path):
        raise ApiError(501, "not_implemented", f"corral ssh reaches workers of the local, "
                       f"agent and Slurm backends only, not {ctx.backend_name or 'this replica'}"
                       "'s; use `corral exec ID -- CMD`")
    try:
        pid = worker_pid(work_dir, rec.id, rec.attempt, worker)
    except LookupError as e:
        raise ApiError(409, "conflict", str(e)) from None
    _audit(ctx, who, rec, worker)
    try:
        return open_shell(pid, rows, cols)
    except ContainerGone as e:  # not running, as a worker with no process: 409, not 422
        raise ApiError(409, "conflict", str(e)) from None
    except OSError as e:
        raise ApiError(422, "invalid_request", f"cannot start a shell in worker {worker}: "
                       f"{e.strerror or e}") from None


def _slurm_shell(ctx: ApiContext, who: Principal, rec: WorkloadRecord, worker: int,
                 rows: int, cols: int) -> Shell:
    from corral.backends.slurm_exec import open_shell_step
    step = step_of(ctx, rec, worker)
    _audit(ctx, who, rec, worker)
    try:
        return open_shell_step(step, rows, cols)
    except OSError as e:  # srun missing here, no terminal left
        raise ApiError(503, "unavailable", f"cannot start srun for a shell in worker "
                       f"{worker}: {e.strerror or e}") from None


def _audit(ctx: ApiContext, who: Principal, rec: WorkloadRecord, worker: int) -> None:
    with ctx.store.write() as conn:
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="workload.ssh",
                  target=rec.id, queue=rec.queue, detail={"owner": rec.user, "worker": worker})


def _clock(ws: WebSocket) -> SessionClock:
    limits = ws.app.state.corral.limits
    return SessionClock(limits.shell_idle_s, limits.shell_max_s, time.monotonic(), "SHELL")


async def shell(ws: WebSocket) -> None:
    workload_id = str(ws.path_params["workload_id"])
    worker = query_int(ws, "worker", 0, 0, 4095)
    rows, cols = query_int(ws, "rows", 24, 1, 1000), query_int(ws, "cols", 80, 1, 1000)
    if worker is None or rows is None or cols is None:
        await refuse(ws, 4422, "worker: 0-4095; rows, cols: 1-1000")
        return
    opened = await open_checked(
        ws, lambda ctx, who: _open(ctx, who, workload_id, worker, rows, cols))
    if opened is None:
        return
    if not isinstance(opened.value, Shell):
        await _relayed(ws, *opened.value)
        return
    sh = opened.value
    await ws.accept()
    await ws.send_text("ok")
    status = await _carry(ws, sh, _clock(ws))
    if not isinstance(status, int):  # the client left first, or a limit: hang up
        await run_in_threadpool(sh.hang_up)
        if status is not None:
            with contextlib.suppress(Exception):
                await ws.close(code=LIMIT_CLOSE, reason=status[:120])
        return
    with contextlib.suppress(Exception):
        await ws.send_text(json.dumps({"exit": status}))
        await ws.close(code=1000)


async def _carry(ws: WebSocket, sh: Shell, clock: SessionClock) -> int | str | None:
    """Bytes both ways until the shell ends (its status), a limit is reached (its reason) or
    the client leaves (None)."""
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(sh.master, CHUNK)
        except OSError:  # EIO: every process holding the terminal has ended
            data = b""
        if not data:
            loop.remove_reader(sh.master)
        output.put_nowait(data)

    async def down() -> None:  # shell -> client
        while data := await output.get():
            clock.touch(time.monotonic())
            await ws.send_bytes(data)

    async def up() -> None:  # client -> shell
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            clock.touch(time.monotonic())
            if message.get("bytes"):
                await _write(sh.master, message["bytes"])
            elif message.get("text"):
                apply_control(sh.master, message["text"])

    os.set_blocking(sh.master, False)
    loop.add_reader(sh.master, readable)
    reader, writer = asyncio.create_task(down()), asyncio.create_task(up())
    limit = asyncio.create_task(over_limit(clock))
    try:
        await asyncio.wait([reader, writer, limit], return_when=asyncio.FIRST_COMPLETED)
    finally:
        writer.cancel()
        loop.remove_reader(sh.master)
    if not reader.done() or reader.exception() is not None:
        reader.cancel()
        if limit.done():
            return limit.result()
        limit.cancel()
        return None
    limit.cancel()
    code = await run_in_threadpool(sh.proc.wait)
    with contextlib.suppress(OSError):
        os.close(sh.master)
    return exit_status(code)


async def _write(master: int, data: bytes) -> None:
    # the master is non-blocking (for the reader): a full terminal buffer (a shell not
    # reading, a large paste) waits here instead of failing
    while data:
        try:
            data = data[os.write(master, data):]
        except BlockingIOError:
            await asyncio.sleep(0.01)


async def _relayed(ws: WebSocket, order: ShellOrder, node: str) -> None:
    """Order the shell from the worker's agent, wait for it to dial back, then carry the
    messages both ways as they are (the agent speaks this endpoint's wire)."""
    dialed = await dial_back(ws, node, order)
    if dialed is None:
        return
    agent_ws, ended = dialed
    try:
        await ws.accept()
        await ws.send_text("ok")
        reason = await _between(ws, agent_ws, _clock(ws))
        with contextlib.suppress(Exception):  # the agent's end first: the shell ended
            await ws.close(code=1000 if reason is None else LIMIT_CLOSE,
                           reason=(reason or "")[:120])
    finally:
        with contextlib.suppress(Exception):  # the agent hangs up a shell still running
            await agent_ws.close()
        ended.set()


async def _between(client: WebSocket, agent: WebSocket, clock: SessionClock) -> str | None:
    """Messages both ways until either side leaves (None) or a limit is reached (why)."""
    async def one_way(src: WebSocket, dst: WebSocket) -> None:
        while (message := await src.receive())["type"] != "websocket.disconnect":
            clock.touch(time.monotonic())
            if message.get("bytes") is not None:
                await dst.send_bytes(message["bytes"])
            elif message.get("text") is not None:
                await dst.send_text(message["text"])

    return await until_over(clock, [asyncio.create_task(one_way(client, agent)),
                                    asyncio.create_task(one_way(agent, client))])
