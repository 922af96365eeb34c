"""WebSocket /v1/workloads/{id}/shell?worker=N&rows=R&cols=C: an interactive shell in a running
worker (`corral ssh`), on a pseudo-terminal, carried through the control plane.

The wire, after the upgrade (token in the Authorization header, as port-forward):
- server -> client: a text "ok", then the terminal's output as binary messages, and at the end
  one text message `{"exit": N}` (the shell's status; 128+signal when killed) before a 1000
  close. A refusal is a close with code 44xx/45xx and the reason, as port-forward's.
- client -> server: keystrokes as binary messages; `{"resize": [rows, cols]}` as text.
Kubernetes' remotecommand protocol carries the same three things on numbered channels (stdin,
stdout, an error/status channel 3 and a resize channel 4); here a text/binary split is enough,
since a terminal merges stdout and stderr.

Rights and audit: those of exec (`corral.api.exec.allowed`), audited as `workload.ssh`.
Where: the local backend (`corral.backends.worker_shell`). The agent relay carries exec and
TCP tunnels but no terminal yet, so the agent backend, as every other, is refused with 4501.
The client leaving hangs the shell up (SIGHUP to its session).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

from fastapi import FastAPI, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from corral.api.context import ApiContext
from corral.api.errors import ApiError
from corral.api.exec import allowed
from corral.api.websockets import open_checked, query_int, refuse
from corral.backends.worker_exec import worker_pid
from corral.backends.worker_shell import Shell, open_shell, resize
from corral.store import audit as AU
from corral.store.auth import Principal

__all__ = ["PATH", "install"]

PATH = "/v1/workloads/{workload_id}/shell"
CHUNK = 64 * 1024


def install(app: FastAPI) -> None:
    """A plain Starlette route, as port-forward's (the app's dependencies read HTTP requests)."""
    app.router.routes.append(WebSocketRoute(PATH, shell))


def _open(ctx: ApiContext, who: Principal, workload_id: str, worker: int, rows: int,
          cols: int) -> Shell:
    rec = allowed(ctx, who, workload_id)
    work_dir = getattr(ctx.logs, "work_dir", None)
    if ctx.backend_name != "local" or not isinstance(work_dir, Path):
        raise ApiError(501, "not_implemented", f"corral ssh reaches workers of the local "
                       f"backend only, not {ctx.backend_name or 'this replica'}'s; use "
                       "`corral exec ID -- CMD`")
    try:
        pid = worker_pid(work_dir, rec.id, rec.attempt, worker)
    except LookupError as e:
        raise ApiError(409, "conflict", str(e)) from None
    with ctx.store.write() as conn:
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="workload.ssh",
                  target=rec.id, queue=rec.queue, detail={"owner": rec.user, "worker": worker})
    try:
        return open_shell(pid, rows, cols)
    except OSError as e:
        raise ApiError(422, "invalid_request", f"cannot start a shell in worker {worker}: "
                       f"{e.strerror or e}") from None


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
    sh = opened.value
    await ws.accept()
    await ws.send_text("ok")
    status = await _carry(ws, sh)
    if status is None:  # the client left first
        await run_in_threadpool(sh.hang_up)
        return
    with contextlib.suppress(Exception):
        await ws.send_text(json.dumps({"exit": status}))
        await ws.close(code=1000)


async def _carry(ws: WebSocket, sh: Shell) -> int | None:
    """Bytes both ways until the shell ends (its status) or the client leaves (None)."""
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
            await ws.send_bytes(data)

    async def up() -> None:  # client -> shell
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("bytes"):
                await _write(sh.master, message["bytes"])
            elif message.get("text"):
                _control(sh, message["text"])

    os.set_blocking(sh.master, False)
    loop.add_reader(sh.master, readable)
    reader, writer = asyncio.create_task(down()), asyncio.create_task(up())
    try:
        await asyncio.wait([reader, writer], return_when=asyncio.FIRST_COMPLETED)
    finally:
        writer.cancel()
        loop.remove_reader(sh.master)
    if not reader.done() or reader.exception() is not None:
        reader.cancel()
        return None
    code = await run_in_threadpool(sh.proc.wait)
    with contextlib.suppress(OSError):
        os.close(sh.master)
    return code if code >= 0 else 128 - code


async def _write(master: int, data: bytes) -> None:
    # the master is non-blocking (for the reader): a full terminal buffer (a shell not
    # reading, a large paste) waits here instead of failing
    while data:
        try:
            data = data[os.write(master, data):]
        except BlockingIOError:
            await asyncio.sleep(0.01)


def _control(sh: Shell, text: str) -> None:
    """`{"resize": [rows, cols]}`; anything else is ignored (a newer client's message)."""
    with contextlib.suppress(ValueError, TypeError, KeyError, OSError):
        rows, cols = json.loads(text)["resize"]
        if 1 <= int(rows) <= 1000 and 1 <= int(cols) <= 1000:
            resize(sh.master, int(rows), int(cols))
