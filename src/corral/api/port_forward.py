"""WebSocket /v1/workloads/{id}/port-forward?port=P&worker=N: a TCP stream to a port a
running worker listens on, carried as binary WebSocket messages after a text "ok" (a refusal
is a close with code 44xx/45xx and the reason) (`corral port-forward`,
as `kubectl port-forward` carries a pod's port through the API server).

Rights: those of exec and logs (`corral.api.exec`), the token in the Authorization header of
the upgrade request. The port must be one the worker's own processes listen on
(`corral.backends.worker_ports`): never another port of the host. The local backend only (the
worker is on this host); elsewhere the upgrade is refused with close code 4501. Every forward
is in the audit log (`workload.port_forward`).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fastapi import FastAPI, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute

from corral.api.context import ApiContext
from corral.api.errors import ApiError
from corral.api.exec import allowed
from corral.backends.worker_exec import worker_pid
from corral.backends.worker_ports import listening_ports
from corral.store import audit as AU
from corral.store.auth import Principal

__all__ = ["PATH", "install"]

PATH = "/v1/workloads/{workload_id}/port-forward"
CHUNK = 64 * 1024
#: close codes: 4401 no or a bad token, 4403/4404/4409 as the HTTP statuses, 4501 not here
_CLOSE = {401: 4401, 403: 4403, 404: 4404, 409: 4409, 422: 4422, 501: 4501}


async def _principal(ctx: ApiContext, ws: WebSocket) -> Principal | None:
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    found = await run_in_threadpool(ctx.verify, token.strip())
    return None if found is None else found.principal


def _target(ctx: ApiContext, who: Principal, workload_id: str, port: int, worker: int) -> None:
    rec = allowed(ctx, who, workload_id)
    work_dir = getattr(ctx.logs, "work_dir", None)
    if ctx.backend_name != "local" or not isinstance(work_dir, Path):
        raise ApiError(501, "not_implemented", "port-forward reaches workers of the local "
                       "backend only")
    try:
        pid = worker_pid(work_dir, rec.id, rec.attempt, worker)
    except LookupError as e:
        raise ApiError(409, "conflict", str(e)) from None
    ports = listening_ports(pid)
    if port not in ports:
        raise ApiError(403, "forbidden", f"worker {worker} of {rec.id} does not listen on port "
                       f"{port} (it listens on {sorted(ports) or 'none'})")
    with ctx.store.write() as conn:
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="workload.port_forward",
                  target=rec.id, queue=rec.queue, detail={"port": port, "worker": worker})


def install(app: FastAPI) -> None:
    """A plain Starlette route: the app's own dependencies (corral.api.inputs) read an HTTP
    request, which a WebSocket is not; this endpoint checks its own inputs."""
    app.router.routes.append(WebSocketRoute(PATH, port_forward))


def _int(ws: WebSocket, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = ws.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


async def port_forward(ws: WebSocket) -> None:
    ctx: ApiContext = ws.app.state.corral
    workload_id = str(ws.path_params["workload_id"])
    port, worker = _int(ws, "port", None, 1, 65535), _int(ws, "worker", 0, 0, 4095)
    if port is None or worker is None:
        await _refuse(ws, 4422, "port: 1-65535 (required); worker: 0-4095")
        return
    who = await _principal(ctx, ws)
    if who is None:
        await _refuse(ws, 4401, "send Authorization: Bearer <token>")
        return
    try:
        await run_in_threadpool(_target, ctx, who, workload_id, port, worker)
    except ApiError as e:
        await _refuse(ws, _CLOSE.get(e.status, 4400), e.message)
        return
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        await _refuse(ws, 4502, f"cannot connect to port {port}: {e.strerror}")
        return
    await ws.accept()
    await ws.send_text("ok")  # the stream follows, as binary messages
    await _pipe(ws, reader, writer)


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    """Accepted, then closed with the reason: a close before the accept is an HTTP 403 to
    the client, which carries no reason."""
    await ws.accept()
    await ws.close(code=code, reason=reason[:120])


async def _pipe(ws: WebSocket, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    async def up() -> None:  # client -> worker
        while True:
            data = await ws.receive_bytes()
            writer.write(data)
            await writer.drain()

    async def down() -> None:  # worker -> client
        while data := await reader.read(CHUNK):
            await ws.send_bytes(data)

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await ws.close()
