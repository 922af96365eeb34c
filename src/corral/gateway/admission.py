"""Holding requests while a service has no ready replica (scale from zero, a rollout's gap), or
holds its `max_concurrent` requests already.

A request that finds no ready replica waits in its service's queue, bounded in length and in
time, like Knative's activator buffers requests for a revision with no endpoints. The queue is
woken by the route table: as soon as one replica of the service is ready, every waiter is
released at once (they are then balanced over whatever is ready). Under a `max_concurrent`, a
freed slot releases the oldest waiters, one per free slot (Knative's container concurrency
enforced at the activator). A full queue, or a wait past its limit, is refused with 503 and
Retry-After by the caller. The service's own `ServiceLimits` override the queue's length and
wait where they are set.
"""

from __future__ import annotations

import asyncio
from collections import deque

from corral.gateway.routes import RouteTable

__all__ = ["Admission", "QueueFull", "QueueTimeout", "ServiceGone"]


class QueueFull(Exception):
    """The service's queue holds its maximum of waiting requests."""


class QueueTimeout(Exception):
    """No replica became ready within the wait limit."""


class ServiceGone(Exception):
    """The service was removed while the request waited."""


class Admission:
    def __init__(self, table: RouteTable, max_queue: int, max_wait_s: float) -> None:
        self._table, self._max_queue, self._max_wait_s = table, max_queue, max_wait_s
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        table.subscribe(self._changed)

    def queued(self, service: str) -> int:
        return len(self._waiters.get(service, ()))

    @property
    def max_wait_s(self) -> float:
        return self._max_wait_s

    def max_wait(self, service: str) -> float:
        """The service's own queue wait, else the gateway's."""
        route = self._table.service(service)
        own = route.limits.queue_wait_s if route is not None else None
        return self._max_wait_s if own is None else own

    def max_queue(self, service: str) -> int:
        route = self._table.service(service)
        own = route.limits.max_queue if route is not None else None
        return self._max_queue if own is None else own

    async def wait_ready(self, service: str, timeout_s: float | None = None) -> None:
        """Return once `service` has a ready replica; raise QueueFull, QueueTimeout (after
        `timeout_s`, by default the queue's wait limit) or ServiceGone. Returns at once when one
        is ready already."""
        route = self._table.service(service)
        if route is None:
            raise ServiceGone(service)
        if route.admits():
            return
        queue = self._waiters.setdefault(service, deque())
        if len(queue) >= self.max_queue(service):
            raise QueueFull(service)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter),
                                   self.max_wait(service) if timeout_s is None else timeout_s)
        except TimeoutError:
            raise QueueTimeout(service) from None
        finally:
            if waiter in queue:  # timed out or cancelled (the client left): give up the slot
                queue.remove(waiter)
            if not queue:
                self._waiters.pop(service, None)
        if self._table.service(service) is None:
            raise ServiceGone(service)

    def _changed(self, service: str) -> None:
        queue = self._waiters.get(service)
        if not queue:
            return
        route = self._table.service(service)
        if route is not None and not route.admits():
            return
        cap = route.limits.max_concurrent if route is not None else None
        free = len(queue) if cap is None else max(0, cap - route.outstanding()) if route else 0
        while queue and free > 0:  # ready (or gone): release waiters, oldest first
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
