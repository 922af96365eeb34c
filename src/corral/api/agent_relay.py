"""`corral exec`, `corral port-forward` and `corral ssh` to a worker on an agent's host, relayed
by the server.

    corral exec ──> POST /v1/workloads/{id}/exec ──> RELAY.order(node, ExecOrder) ─┐
                                                   (waits for the answer)          │
    agent: POST /agent/v1/sync (long poll) <── SyncOut.execs ─────────────────────┘ (at once)
    agent: runs it beside the worker (worker_exec) ──> POST /agent/v1/execs/{id} ──> answer

    corral port-forward ──> WS /v1/workloads/{id}/port-forward ──> RELAY.order(node, Tunnel)
    agent: SyncOut.tunnels ──> checks the worker listens on it (worker_ports), connects to it,
           dials WS /agent/v1/tunnels/{id} ──> the server pipes the two WebSockets together

    corral ssh ──> WS /v1/workloads/{id}/shell ──> RELAY.order(node, ShellOrder)
    agent: SyncOut.shells ──> opens a shell on a terminal beside the worker (worker_shell),
           dials WS /agent/v1/tunnels/{id} ──> the server carries keys, output, resizes and
           the exit status between the two WebSockets (`corral.api.shell`)

The server never dials a host (hosts behind NAT work, as for assignments): an order waits in
this process until the node's next sync takes it (its long poll answers at once when it has
one), and the host comes back with the answer or the stream. Orders live in the memory of the
API process the user reached, so the agent must sync with that process: one API replica serving
agents (the agent README's limit). Authorisation, audit and the rules of what may be reached
(the worker's own user and environment, only ports its processes listen on) are the local
backend's: the host applies them to its own processes, the server applies the `corral logs`
rights before it orders anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fastapi import WebSocket
from sqlalchemy import select

from corral.agent.protocol import ExecOrder, ShellOrder, TunnelOrder
from corral.api.websockets import CLOSE, refuse
from corral.store import Store
from corral.store.agents import AgentWorker

__all__ = ["AGENT_DIAL_S", "RELAY", "AgentRelay", "Orders", "dial_back", "node_of_worker"]

Order = ExecOrder | TunnelOrder | ShellOrder
#: how long a relayed stream (a forward, a shell) waits for the worker's agent to dial back
#: (its next sync)
AGENT_DIAL_S = 15.0


class Orders(NamedTuple):
    execs: list[ExecOrder]
    tunnels: list[TunnelOrder]
    shells: list[ShellOrder]


@dataclass
class _Pending:
    node_id: str
    order: Order
    answer: Future[Any] = field(default_factory=Future)


class AgentRelay:
    """Orders for nodes, handed out once each by the node's sync; answers wait on a Future."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, _Pending] = {}
        self._queued: dict[str, list[str]] = {}  # node -> order ids not yet taken
        #: the node's long polls waiting now: an order wakes them at once (no poll interval)
        self._waiting: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(16)

    def order(self, node_id: str, order: Order) -> Future[Any]:
        with self._lock:
            pending = _Pending(node_id, order)
            self._by_id[order.id] = pending
            self._queued.setdefault(node_id, []).append(order.id)
            waiting = list(self._waiting.get(node_id, []))
        for loop, event in waiting:  # orders come from worker threads; polls wait on a loop
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)
        return pending.answer

    async def wait(self, node_id: str, timeout_s: float) -> None:
        """Sleep up to `timeout_s`, less when an order for the node arrives meanwhile."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiting.setdefault(node_id, []).append(entry)
        try:
            if not self.has_orders(node_id):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout_s)
        finally:
            with self._lock:
                waiting = self._waiting.get(node_id, [])
                if entry in waiting:
                    waiting.remove(entry)
                if not waiting:
                    self._waiting.pop(node_id, None)

    def has_orders(self, node_id: str) -> bool:
        with self._lock:
            return bool(self._queued.get(node_id))

    def take(self, node_id: str) -> Orders:
        """The node's orders not yet handed out (each is handed out once)."""
        with self._lock:
            ids = self._queued.pop(node_id, [])
            orders = [self._by_id[i].order for i in ids if i in self._by_id]
        return Orders([o for o in orders if isinstance(o, ExecOrder)],
                      [o for o in orders if isinstance(o, TunnelOrder)],
                      [o for o in orders if isinstance(o, ShellOrder)])

    def answer(self, node_id: str, order_id: str, value: Any) -> bool:
        """The node's answer to one of its own orders; False when it is not one (unknown, given
        up on, or another node's: a credential speaks for its own node only)."""
        with self._lock:
            pending = self._by_id.get(order_id)
            if pending is None or pending.node_id != node_id:
                return False
            del self._by_id[order_id]
        if not pending.answer.done():
            pending.answer.set_result(value)
        return True

    def forget(self, order_id: str) -> None:
        """Given up on (the user went away, the host did not answer in time)."""
        with self._lock:
            pending = self._by_id.pop(order_id, None)
            if pending is not None:
                queued = self._queued.get(pending.node_id, [])
                if order_id in queued:
                    queued.remove(order_id)


#: one per API process (module docstring)
RELAY = AgentRelay()


def node_of_worker(store: Store, workload_id: str, attempt: int, worker: int) -> str:
    """The node an agent runs that worker on; LookupError when none runs it."""
    with store.read() as conn:
        row = conn.execute(select(AgentWorker.node_id, AgentWorker.state, AgentWorker.fenced)
                           .where(AgentWorker.workload_id == workload_id,
                                  AgentWorker.attempt == attempt, AgentWorker.worker == worker,
                                  AgentWorker.released.is_(False))).first()
    if row is None or row.fenced or row.state not in ("starting", "running"):
        raise LookupError(f"worker {worker} of {workload_id} (attempt {attempt}) is not running "
                          "on any agent's host")
    return str(row.node_id)



async def dial_back(client: WebSocket, node: str,
                    order: TunnelOrder | ShellOrder) -> tuple[WebSocket, asyncio.Event] | None:
    """Order a stream, wait for the node's agent to dial back, read its verdict. The agent's
    WebSocket and the event that releases its handler (set it when done with the stream);
    None once the client was refused (no dial-back in time, or the host's own refusal)."""
    answer = RELAY.order(node, order)
    try:
        agent_ws, ended = await asyncio.wait_for(asyncio.wrap_future(answer), AGENT_DIAL_S)
    except TimeoutError:
        RELAY.forget(order.id)
        await refuse(client, 4504, f"the agent on {node} did not dial back within "
                     f"{AGENT_DIAL_S:g} s: is it running? (`corral nodes`)")
        return None
    try:
        verdict = await agent_ws.receive_text()
    except Exception:  # the agent went away before saying
        ended.set()
        await refuse(client, 4502, f"the agent on {node} closed the stream before it opened")
        return None
    if verdict != "ok":  # "refused <status> <why>", the host's own check
        ended.set()
        _, status, why = ([*verdict.split(" ", 2), "", ""])[:3]
        await refuse(client, CLOSE.get(int(status) if status.isdigit() else 0, 4502), why)
        return None
    return agent_ws, ended
