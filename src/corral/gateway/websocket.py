"""WebSocket sessions through the gateway: `/serve/<service>/<path>` upgraded to a WebSocket on
one ready replica, messages relayed both ways as they come, until either side closes.

    1 route    service known? path free of dot segments?          refused: 404 / 400
    2 auth     public, or Bearer token (as for HTTP)                 refused: 401
    3 pick     power of two choices on outstanding requests; none ready, or the service at
               its max_concurrent: wait in the service's queue, the one HTTP requests wait in
               (same bound and wait: a scale from zero serves a WebSocket too); a full queue or
               a wait past its limit: 503 with Retry-After
    4 connect  the replica's WebSocket (the service's connect timeout covers the handshake);
               a refused or timed-out handshake never reached the application: the next ready
               replica is tried, up to `max_tries`
    5 relay    the client's subprotocol choice as the replica made it; text and binary frames
               both ways, unbuffered; a close on either side closes the other with its code;
               no message either way for `ws_idle_timeout_s`, or a session older than
               `ws_max_session_s` (the service's own, else the gateway's): both sides closed
               with 1001 and a reason naming the limit

A refusal before the upgrade is an HTTP response in the house error shape where the server
supports ASGI's `websocket.http.response` extension (uvicorn does), else a close before accept
(the client sees 403). A client that leaves while queued gives its slot back at once (counted
as a 499, nginx's "client closed request"). The session counts as one outstanding request on its replica for its
whole life, so balancing sees it and a drain waits for it (within the replica's grace).
Metrics: a session counts as a request with code 101 once upgraded; a session closed by a limit
counts under errors (reason `ws_idle_timeout`, `ws_session_timeout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from corral.gateway.admission import Admission, QueueFull, QueueTimeout, ServiceGone
from corral.gateway.balancing import pick_replica
from corral.gateway.headers import request_headers
from corral.gateway.limits import GatewayLimits
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.proxy import (
    _DOT_SEGMENT,
    _rest_of_path,
    _unless_gone,
    error_response,
)
from corral.gateway.request_body import ClientGone, header_value
from corral.gateway.routes import SERVICE_NAME, Replica, RouteTable

__all__ = ["WebSocketProxy"]

log = logging.getLogger("corral.gateway")

Scope = dict[str, Any]
#: headers the client library writes itself for the replica's handshake
_OWN = frozenset({b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
                  b"sec-websocket-protocol", b"sec-websocket-accept"})
#: close codes that may not be sent in a close frame (RFC 6455 7.4.1): reported as 1011
_RESERVED = frozenset({1005, 1006, 1015})


#: the close code of a session ended by the gateway's limits: "going away"
GOING_AWAY = 1001


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class WebSocketProxy:
    """The ASGI app for websocket scopes under `/serve/{service}/{path:path}`."""

    def __init__(self, table: RouteTable, limits: GatewayLimits, metrics: GatewayMetrics,
                 rng: Any, admission: Admission | None = None) -> None:
        self.table, self.limits, self.metrics, self.rng = table, limits, metrics, rng
        self.admission = admission or Admission(table, limits.max_queue,
                                                limits.max_queue_wait_s)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        service = scope["path_params"]["service"]
        label = service if self.table.service(service) is not None else ""
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            rest, public = self._route(scope, service)
            upstream, replica = await self._connect(scope, service, rest, public, receive)
        except ClientGone:
            self.metrics.requests.labels(label, "499").inc()
            return
        except _Refused as refused:
            self.metrics.requests.labels(label, str(refused.status)).inc()
            await _deny(scope, send, refused)
            return
        self.metrics.in_flight.labels(label).inc()
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
            self.metrics.requests.labels(label, "101").inc()
            idle_s, max_s = self._session_limits(service)
            ended = await _relay(upstream, receive, send, idle_s, max_s)
            if ended is not None:
                self.metrics.errors.labels(label, ended).inc()
        finally:
            self.metrics.in_flight.labels(label).dec()
            self.table.release(service, replica)
            await upstream.close()

    def _session_limits(self, service: str) -> tuple[float, float]:
        """(idle, whole session) in seconds: the service's own where it set them."""
        route = self.table.service(service)
        own = route.limits if route is not None else None
        idle = own.ws_idle_timeout_s if own and own.ws_idle_timeout_s else None
        whole = own.ws_max_session_s if own and own.ws_max_session_s else None
        return idle or self.limits.ws_idle_timeout_s, whole or self.limits.ws_max_session_s

    async def _admit(self, service: str, deadline: float, receive: Any) -> None:
        """Wait in the service's queue (shared with HTTP requests) for a free ready replica;
        ClientGone if the client goes away meanwhile (its slot is given back at once)."""
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.001)
        retry_after = {"Retry-After": str(self.limits.retry_after_s)}
        try:
            await _unless_gone(self.admission.wait_ready(
                service, min(self.admission.max_wait(service), remaining)), receive,
                "websocket.disconnect")
        except QueueFull:
            self.metrics.errors.labels(service, "queue_full").inc()
            raise _Refused(503, "unavailable", f"service {service!r} has no ready replica "
                           f"free to take a WebSocket and {self.admission.max_queue(service)} "
                           "requests already wait for one; retry later", retry_after) from None
        except QueueTimeout:
            self.metrics.errors.labels(service, "queue_timeout").inc()
            raise _Refused(503, "unavailable", f"service {service!r} had no ready replica free "
                           f"to take a WebSocket within {self.admission.max_wait(service):g} "
                           "s; retry later", retry_after) from None
        except ServiceGone:
            raise _Refused(404, "not_found", f"service {service!r} does not exist") from None

    def _route(self, scope: Scope, service: str) -> tuple[bytes, bool]:
        route = self.table.service(service) if SERVICE_NAME.fullmatch(service) else None
        if route is None:
            raise _Refused(404, "not_found", f"service {service[:80]!r} does not exist")
        rest = _rest_of_path(scope, service)
        if _DOT_SEGMENT.search(rest):
            raise _Refused(400, "bad_request", "the path holds a '.' or '..' segment")
        header = header_value(scope, b"authorization")
        if not route.auth.allows(header.decode("latin-1") if header is not None else None):
            raise _Refused(401, "unauthorized", f"service {service!r} needs a valid bearer "
                           "token (Authorization: Bearer <token>)")
        return rest, route.auth.is_public

    async def _connect(self, scope: Scope, service: str, rest: bytes, public: bool,
                       receive: Any) -> tuple[ClientConnection, Replica]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request_headers(
            scope["headers"], client_ip=(scope.get("client") or (None,))[0],
            scheme="https" if scope.get("scheme") == "wss" else "http",
            prefix=scope.get("root_path", "") + f"/serve/{service}", keep_authorization=public)
            if k not in _OWN]
        query = scope.get("query_string", b"")
        tried: list[str] = []
        deadline = asyncio.get_running_loop().time() + self.admission.max_wait(service)
        while True:
            route = self.table.service(service)
            replica = pick_replica(route.ready(), self.rng, tried,
                                   asyncio.get_running_loop().time()) \
                if route and route.admits() else None
            if replica is None and tried:  # every ready one was tried and not reached
                raise _Refused(502, "bad_gateway", f"no replica of service {service!r} could "
                               "be reached for a WebSocket")
            if replica is None:
                await self._admit(service, deadline, receive)
                continue
            url = "ws" + replica.url.removeprefix("http").rstrip("/") + \
                (rest or b"/").decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
            connect_s = (route.limits.connect_timeout_s if route and
                         route.limits.connect_timeout_s else self.limits.connect_timeout_s)
            self.table.acquire(replica)
            try:
                upstream = await connect(url, additional_headers=headers, open_timeout=connect_s,
                                         subprotocols=scope.get("subprotocols") or None,
                                         compression=None, max_size=None, ping_interval=None,
                                         user_agent_header=None)
                return upstream, replica
            except InvalidStatus as exc:  # the replica answered the upgrade: it saw it
                self.table.release(service, replica)
                raise _Refused(502, "bad_gateway", f"replica {replica.id} of service "
                               f"{service!r} refused the WebSocket upgrade "
                               f"({exc.response.status_code})") from None
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                self.table.release(service, replica)
                self.metrics.errors.labels(service, "connect").inc()
                tried.append(replica.id)
                if len(tried) >= self.limits.max_tries:
                    raise _Refused(502, "bad_gateway", f"replica {replica.id} of service "
                                   f"{service!r} could not be reached "
                                   f"({type(exc).__name__})") from None


async def _deny(scope: Scope, send: Any, refused: _Refused) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_response(refused.status, refused.code, refused.message)
        await send({"type": "websocket.http.response.start", "status": refused.status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())] +
                    [(k.lower().encode(), v.encode()) for k, v in refused.headers.items()]})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": refused.message[:120]})


async def _relay(upstream: ClientConnection, receive: Any, send: Any, idle_s: float,
                 max_s: float) -> str | None:
    """Both directions at once; the first side to close ends the session, or a limit does:
    then both sides are closed with 1001 and the limit's name is returned (for metrics)."""
    loop = asyncio.get_running_loop()
    started = last = loop.time()

    async def from_client() -> None:
        nonlocal last
        while True:
            message = await receive()
            last = loop.time()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=_sendable(message.get("code", 1000)))
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def from_replica() -> None:
        nonlocal last
        try:
            async for data in upstream:
                last = loop.time()
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except ConnectionClosed:
            pass
        code = upstream.close_code if upstream.close_code is not None else 1011
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "websocket.close", "code": _sendable(code),
                        "reason": upstream.close_reason or ""})

    tasks = [asyncio.ensure_future(from_client()), asyncio.ensure_future(from_replica())]
    ended: tuple[str, str] | None = None
    try:
        while True:
            idle_at, end_at = last + idle_s, started + max_s
            now = loop.time()
            if now >= end_at:
                ended = ("ws_session_timeout", f"session longer than {max_s:g} s")
                break
            if now >= idle_at:
                ended = ("ws_idle_timeout", f"no message for {idle_s:g} s")
                break
            done, _ = await asyncio.wait(tasks, timeout=min(idle_at, end_at) - now,
                                         return_when=asyncio.FIRST_COMPLETED)
            if done:
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if ended is None:
        return None
    with contextlib.suppress(Exception):  # either side may be gone already
        await upstream.close(code=GOING_AWAY, reason=ended[1])
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": GOING_AWAY, "reason": ended[1]})
    return ended[0]


def _sendable(code: int) -> int:
    return 1011 if code in _RESERVED else code
