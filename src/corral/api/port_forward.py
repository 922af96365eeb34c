"""WebSocket /v1/workloads/{id}/port-forward?port=P&worker=N: a TCP stream to a port a
running worker listens on, carried as binary WebSocket messages after a text "ok" (a refusal
is a close with code 44xx/45xx and the reason) (`corral port-forward`,
as `kubectl port-forward` carries a pod's port through the API server).

Rights: those of exec and logs (`corral.api.exec`), the token in the Authorization header of
the upgrade request. The port must be one the worker's own processes listen on
(`corral.backends.worker_ports`): never another port of the host. On the local backend the
worker is on this host; on the agent backend the forward is relayed (`corral.api.agent_relay`):
the worker's agent checks the port against its worker's sockets, connects to it and dials
WS /agent/v1/tunnels/{id} (its node credential), and the two WebSockets are piped together. On Slurm a relay step runs on the worker's node
inside its job (`corral.backends.slurm_exec`: ``srun --jobid --overlap``): it checks the port
against the worker's sockets there, connects to it and carries the stream on its standard
input and output, which the server pipes to the WebSocket. Elsewhere (Ray, Kubernetes) the
upgrade is refused with close code 4501. Every forward is in the audit log
(`workload.port_forward`). Each forwarded connection is closed (code 4408, the reason naming
the setting) when idle for `CORRAL_API_FORWARD_IDLE_S` (4 h, the kubelet's default streaming
idle timeout) or open for `CORRAL_API_FORWARD_MAX_S` (12 h) (`corral.api.websockets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute

from corral.agent.protocol import TunnelOrder
from corral.api.agent_relay import RELAY, dial_back, node_of_worker
from corral.api.context import ApiContext
from corral.api.errors import ApiError
from corral.api.exec import allowed, step_of
from corral.api.websockets import (
    LIMIT_CLOSE,
    SessionClock,
    close_code,
    open_checked,
    query_int,
    refuse,
    until_over,
)
from corral.backends.worker_exec import worker_pid
from corral.backends.worker_ports import listening_ports
from corral.store import agents as AG
from corral.store import audit as AU
from corral.store.auth import Principal

if TYPE_CHECKING:
    from corral.backends.slurm_exec import WorkerStep

__all__ = ["PATH", "install"]

PATH = "/v1/workloads/{workload_id}/port-forward"
AGENT_PATH = "/agent/v1/tunnels/{order_id}"
CHUNK = 64 * 1024


def _target(ctx: ApiContext, who: Principal, workload_id: str, port: int,
            worker: int) -> tuple[TunnelOrder, str] | WorkerStep | None:
    """Checks the rights and audits; None: the port is on this host (local backend), else
    the order to relay and the node of the worker's agent, or the Slurm step to start (both
    check the port themselves, on the worker's node)."""
    rec = allowed(ctx, who, workload_id)
    if ctx.backend_name == "slurm" and ctx.logs is not None:
        step = step_of(ctx, rec, worker)
        _audit(ctx, who, rec.id, rec.queue, port, worker)
        return step
    if ctx.backend_name == "agent":
        try:
            node = node_of_worker(ctx.store, rec.id, rec.attempt, worker)
        except LookupError as e:
            raise ApiError(409, "conflict", str(e)) from None
        _audit(ctx, who, rec.id, rec.queue, port, worker)
        order = TunnelOrder(id=RELAY.new_id(), workload_id=rec.id, attempt=rec.attempt,
                            worker=worker, port=port)
        return order, node
    work_dir = getattr(ctx.logs, "work_dir", None)
    if ctx.backend_name != "local" or not isinstance(work_dir, Path):
        raise ApiError(501, "not_implemented", "port-forward reaches workers of the local, "
                       f"agent and Slurm backends only, not {ctx.backend_name or 'this replica'}"
                       "'s")
    try:
        pid = worker_pid(work_dir, rec.id, rec.attempt, worker)
    except LookupError as e:
        raise ApiError(409, "conflict", str(e)) from None
    ports = listening_ports(pid)
    if port not in ports:
        raise ApiError(403, "forbidden", f"worker {worker} of {rec.id} does not listen on port "
                       f"{port} (it listens on {sorted(ports) or 'none'})")
    _audit(ctx, who, rec.id, rec.queue, port, worker)
    return None


def _audit(ctx: ApiContext, who: Principal, workload_id: str, queue: str, port: int,
           worker: int) -> None:
    with ctx.store.write() as conn:
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="workload.port_forward",
                  target=workload_id, queue=queue, detail={"port": port, "worker": worker})


def install(app: FastAPI) -> None:
    """A plain Starlette route: the app's own dependencies (corral.api.inputs) read an HTTP
    request, which a WebSocket is not; this endpoint checks its own inputs."""
    app.router.routes.append(WebSocketRoute(PATH, port_forward))
    app.router.routes.append(WebSocketRoute(AGENT_PATH, agent_tunnel))


async def port_forward(ws: WebSocket) -> None:
    workload_id = str(ws.path_params["workload_id"])
    port, worker = query_int(ws, "port", None, 1, 65535), query_int(ws, "worker", 0, 0, 4095)
    if port is None or worker is None:
        await refuse(ws, 4422, "port: 1-65535 (required); worker: 0-4095")
        return
    opened = await open_checked(
        ws, lambda ctx, who: _target(ctx, who, workload_id, port, worker))
    if opened is None:
        return
    if isinstance(opened.value, tuple):
        await _relayed(ws, *opened.value)
        return
    if opened.value is not None:
        await _stepped(ws, opened.value, port)
        return
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        await refuse(ws, 4502, f"cannot connect to port {port}: {e.strerror}")
        return
    await ws.accept()
    await ws.send_text("ok")  # the stream follows, as binary messages
    await _pipe(ws, reader, writer)


def _clock(ws: WebSocket) -> SessionClock:
    limits = ws.app.state.corral.limits
    return SessionClock(limits.forward_idle_s, limits.forward_max_s, time.monotonic(),
                        "FORWARD")


async def _within_limits(ws: WebSocket, clock: SessionClock,
                         tasks: list[asyncio.Task[None]]) -> None:
    """Until a side leaves, or the client is closed at a limit (4408 and the reason)."""
    reason = await until_over(clock, tasks)
    if reason is not None:
        with contextlib.suppress(Exception):
            await ws.close(code=LIMIT_CLOSE, reason=reason[:120])


async def _pipe(ws: WebSocket, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    clock = _clock(ws)

    async def up() -> None:  # client -> worker
        while True:
            data = await ws.receive_bytes()
            clock.touch(time.monotonic())
            writer.write(data)
            await writer.drain()

    async def down() -> None:  # worker -> client
        while data := await reader.read(CHUNK):
            clock.touch(time.monotonic())
            await ws.send_bytes(data)

    try:
        await _within_limits(ws, clock, [asyncio.create_task(up()),
                                         asyncio.create_task(down())])
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await ws.close()


async def _stepped(ws: WebSocket, step: WorkerStep, port: int) -> None:
    """Through a relay step on the worker's Slurm node: refused with the step's own reason
    (not the worker's port, nothing listening), else its output and input piped as a socket's."""
    from corral.backends.slurm_exec import StepRefused, end_relay, open_relay
    try:
        reader, writer, proc = await open_relay(step, port)
    except StepRefused as e:
        await refuse(ws, close_code(e.status), e.message)
        return
    except OSError as e:  # srun missing on this host
        await refuse(ws, 4503, f"cannot start srun: {e.strerror or e}")
        return
    try:
        await ws.accept()
        await ws.send_text("ok")
        await _pipe(ws, reader, writer)
    finally:
        await end_relay(proc)


# --- relayed through the worker's agent -----------------------------------------------------


async def _relayed(ws: WebSocket, order: TunnelOrder, node: str) -> None:
    """Order the tunnel, wait for the agent to dial back, pipe the two WebSockets."""
    dialed = await dial_back(ws, node, order)
    if dialed is None:
        return
    agent_ws, ended = dialed
    try:
        await ws.accept()
        await ws.send_text("ok")
        await _pipe_ws(ws, agent_ws)
    finally:
        ended.set()


async def _pipe_ws(client: WebSocket, agent: WebSocket) -> None:
    clock = _clock(client)

    async def one_way(src: WebSocket, dst: WebSocket) -> None:
        while True:
            data = await src.receive_bytes()
            clock.touch(time.monotonic())
            await dst.send_bytes(data)

    try:
        await _within_limits(client, clock, [asyncio.create_task(one_way(client, agent)),
                                             asyncio.create_task(one_way(agent, client))])
    finally:
        for side in (client, agent):
            with contextlib.suppress(Exception):
                await side.close()


async def agent_tunnel(ws: WebSocket) -> None:
    """The agent dials back for an order of its own node (node credential); the connection is
    handed to the user's forward, and held until that ends."""
    ctx: ApiContext = ws.app.state.corral
    scheme, _, secret = ws.headers.get("authorization", "").partition(" ")

    def find() -> str | None:
        with ctx.store.read() as conn:
            node = AG.node_by_credential(conn, secret.strip())
        return None if node is None else node.node_id

    node_id = await run_in_threadpool(find) if scheme.lower() == "bearer" and secret else None
    if node_id is None:
        await refuse(ws, 4401, "send Authorization: Bearer <node credential>")
        return
    await ws.accept()
    ended = asyncio.Event()
    if not RELAY.answer(node_id, str(ws.path_params["order_id"]), (ws, ended)):
        await ws.close(code=4404, reason="no such tunnel order for this node")
        return
    await ended.wait()
