"""Forwarding one request to a service's replicas: the ASGI endpoint behind `/serve/<service>/`.

Stages, in order (each says why it sits where it does):

1. route: the service must exist (404) and the path must hold no dot segment (400): both are
   client mistakes, answered before anything waits or counts as load;
2. auth: public, or a bearer token (401), before the request can queue for a replica;
3. admit: with no ready replica, wait in the service's bounded queue (503 + Retry-After when
   it is full or the wait runs out);
4. pick: power of two choices on outstanding requests (`balancing`);
5. send: connect, stream the request body (held up to `replay_buffer_bytes` so it can be sent
   again), wait for the response headers (first-byte timeout); a connect error, a reset before
   any response, or a 503 before any body for an idempotent request tries another replica
   (`corral.gateway.retries`: the method, the service's `RetryPolicy`, its retry budget);
6. stream: the response body goes to the client chunk by chunk as the replica sends it (server-
   sent events and chunked responses are never buffered), until it ends, the total timeout
   passes, or the client goes away (the replica's stream is then closed).

The replica's outstanding count covers 5 and 6 exactly: it is what balancing reads and what a
drain waits on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httpx

from corral.gateway.admission import Admission, QueueFull, QueueTimeout, ServiceGone
from corral.gateway.balancing import pick_replica
from corral.gateway.headers import request_headers, response_headers
from corral.gateway.limits import GatewayLimits
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.request_body import (
    ClientGone,
    RequestBody,
    body_declared,
    declared_length,
    framing_unknown,
    header_value,
    peek_body,
)
from corral.gateway.retries import IDEMPOTENT, Failure, RetryBudget, RetryPolicy, Skip, retry_skip
from corral.gateway.routes import SERVICE_NAME, Replica, RouteTable
from corral.sdk.models import ErrorBody, Problem

__all__ = ["IDEMPOTENT", "BrokenResponse", "Proxy", "error_response", "should_retry"]

log = logging.getLogger("corral.gateway")

Scope = dict[str, Any]
#: httpcore's trace event as an HTTP/1.1 request starts out on its connection
_SENDING = "http11.send_request_headers.started"
_DOT_SEGMENT = re.compile(rb"(^|/)(\.|%2e){1,2}(/|$)", re.IGNORECASE)


class _Refused(Exception):
    """A request the gateway answers itself, with the house error shape."""

    def __init__(self, status: int, code: str, message: str, field_: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field_
        self.headers = headers or {}


class BrokenResponse(RuntimeError):
    """A response cut after its headers went out (the replica broke it off, or it ran past the
    total timeout): the only honest signal left is to close the connection, so the client sees
    an incomplete body rather than a success."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def should_retry(method: str, *, connect_error: bool, status: int | None,
                 body_sent: bool, has_body: bool, limits: GatewayLimits,
                 reset: bool = False, policy: RetryPolicy | None = None) -> bool:
    """Whether a failed try may go to another replica, before counting tries and the budget
    (`corral.gateway.retries.retry_skip`). `body_sent`: the body went out and cannot be sent
    again (it outgrew the replay buffer). A timeout, or any status but a 503, may have had
    effects on the replica and is never retried."""
    if connect_error:
        failure = Failure.CONNECT
    elif reset:
        failure = Failure.RESET
    elif status == 503:
        failure = Failure.UNAVAILABLE
    else:
        return False
    return retry_skip(method, failure, replayable=not body_sent, has_body=has_body,
                      policy=policy or limits.retry,
                      unsent_non_idempotent=limits.retry_unsent_non_idempotent) is None


def error_response(status: int, code: str, message: str, field_: str = "") -> bytes:
    """The house error shape (the same as corral's API: `corral.api.errors`)."""
    problems = [Problem(field=field_, message=message)] if field_ else []
    body = ErrorBody(error=code, message=message, problems=problems).model_dump()
    return json.dumps(body).encode()


async def _send_error(send: Any, refused: _Refused) -> None:
    body = error_response(refused.status, refused.code, refused.message, refused.field)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in refused.headers.items()]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Proxy:
    """The ASGI app mounted at `/serve/{service}` and `/serve/{service}/{path:path}`."""

    def __init__(self, table: RouteTable, limits: GatewayLimits, admission: Admission,
                 metrics: GatewayMetrics, transport: httpx.AsyncBaseTransport,
                 rng: random.Random | None = None) -> None:
        self.table, self.limits, self.admission, self.metrics = table, limits, admission, metrics
        self.transport = transport
        # read/write/pool timeouts stay off: the proxy bounds the first byte and the total
        # itself, and a stream may be silent between tokens for longer than any read timeout
        self._timeouts: dict[float, dict[str, float | None]] = {}
        self._bases: dict[str, httpx.URL] = {}
        self.rng = rng or random.Random()
        #: per service: its reset retries over the last seconds (`RetryBudget`)
        self._budgets: dict[str, RetryBudget] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        service = scope["path_params"]["service"]
        label = service if self.table.service(service) is not None else ""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.metrics.in_flight.labels(label).inc()
        status = 0
        try:
            status = await self._serve(scope, receive, send, service, started)
        except _Refused as refused:
            status = refused.status
            await _send_error(send, refused)
        except ClientGone:
            status = 499  # nginx's "client closed request": nothing was sent back
        except BrokenResponse as broken:
            status = broken.status
            raise
        finally:
            self.metrics.in_flight.labels(label).dec()
            if status:
                self.metrics.requests.labels(label, str(status)).inc()
                self.metrics.total.labels(label).observe(loop.time() - started)

    # ---- stages 1-3 ----------------------------------------------------------------------
    def _route(self, scope: Scope, service: str) -> tuple[bytes, bool]:
        route = self.table.service(service) if SERVICE_NAME.fullmatch(service) else None
        if route is None:
            shown = service if len(service) <= 80 else service[:60] + "..."
            raise _Refused(404, "not_found", f"service {shown!r} does not exist")
        rest = _rest_of_path(scope, service)
        if _DOT_SEGMENT.search(rest):
            raise _Refused(400, "bad_request", "the path holds a '.' or '..' segment; send the "
                           "path the service should see, already resolved", "path")
        header = header_value(scope, b"authorization")
        if not route.auth.allows(header.decode("latin-1") if header is not None else None):
            raise _Refused(401, "unauthorized", f"service {service!r} needs a bearer token "
                           "(Authorization: Bearer <token>)" if header is None else
                           f"the bearer token is not valid for service {service!r}",
                           headers={"WWW-Authenticate": "Bearer"})
        return rest, route.auth.is_public

    async def _admit(self, service: str, deadline: float, body: RequestBody) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        retry_after = {"Retry-After": str(self.limits.retry_after_s)}
        try:
            waiting = self.admission.wait_ready(
                service, min(self.admission.max_wait(service), max(remaining, 0.001)))
            if body.has_body:  # its body is still unread: nothing else may be received yet
                await waiting
            else:  # a client that gives up while it waits gives its queue slot back
                await _unless_gone(waiting, body.receive)
        except QueueFull:
            self.metrics.errors.labels(service, "queue_full").inc()
            raise _Refused(503, "unavailable", f"service {service!r} has no free replica and "
                           f"{self.admission.max_queue(service)} requests already wait for one; "
                           "retry later", headers=retry_after) from None
        except QueueTimeout:
            self.metrics.errors.labels(service, "queue_timeout").inc()
            raise _Refused(503, "unavailable", f"service {service!r} had no free replica within "
                           f"{self.admission.max_wait(service):g} s; retry later",
                           headers=retry_after) from None
        except ServiceGone:
            raise _Refused(404, "not_found", f"service {service!r} does not exist") from None

    # ---- stages 4-6 ----------------------------------------------------------------------
    async def _serve(self, scope: Scope, receive: Any, send: Any, service: str,
                     started: float) -> int:
        rest, public = self._route(scope, service)
        deadline = started + self._total_timeout(service)
        policy = self._policy(service)
        budget = self._budget(service, policy)
        budget.request(started)
        has_body = body_declared(scope)
        if not has_body and framing_unknown(scope):
            try:  # a client that opens a stream and never sends on it holds nothing for long
                async with asyncio.timeout_at(deadline):
                    has_body, receive = await peek_body(receive)
            except TimeoutError:
                raise _Refused(408, "request_timeout", "the request's body did not start "
                               f"within {self._total_timeout(service):g} s") from None
        body = RequestBody(receive, has_body, self._replay_limit(service),
                     lambda: self.metrics.bodies_over_buffer.labels(service).inc(),
                     declared_length(scope))
        try:
            return await self._forward(scope, send, service, started, rest, public, deadline,
                                       body, policy, budget)
        except _Refused as refused:  # the gateway's own answer says it too
            refused.headers.update((k.decode(), v.decode()) for k, v in body.retry_off())
            raise

    async def _forward(self, scope: Scope, send: Any, service: str, started: float,
                       rest: bytes, public: bool, deadline: float, body: RequestBody,
                       policy: RetryPolicy, budget: RetryBudget) -> int:
        """Stages 4-6: pick a replica, send, retry what may be retried, stream the answer."""
        receive = body.receive
        headers = request_headers(
            scope["headers"], client_ip=(scope.get("client") or (None,))[0],
            scheme=scope.get("scheme", "http"),
            prefix=scope.get("root_path", "") + f"/serve/{service}", keep_authorization=public)
        query = scope.get("query_string", b"")
        tried: list[str] = []
        resets = 0
        last: _Retry | None = None
        while True:
            replica = self._pick(service, tried)
            if replica is None and last is not None:  # the others went away meanwhile
                raise last.refusal
            if replica is None:
                await self._admit(service, deadline, body)
                continue
            request = self._request(scope["method"], replica, rest, query, headers, body,
                                    self._timeouts_for(service))
            response = await self._send(service, replica, request, body, deadline, tried)
            if isinstance(response, _Retry):
                skip = self._may_retry(service, scope["method"], response.failure, body,
                                       [*tried, replica.id], resets, policy, budget)
                if skip is not None:
                    self.metrics.retries_skipped.labels(service, skip.value).inc()
                    response.refusal.headers["X-Corral-Retry-Skipped"] = skip.value
                    raise response.refusal
                tried.append(replica.id)
                resets += response.failure is Failure.RESET
                last = response
                self.metrics.retries.labels(service).inc()
                continue
            self.metrics.first_byte.labels(service).observe(
                asyncio.get_running_loop().time() - started)
            return await self._stream(service, replica, response, receive, send, deadline,
                                      body.retry_off())

    def _may_retry(self, service: str, method: str, failure: Failure, body: RequestBody,
                   tried: list[str], resets: int, policy: RetryPolicy,
                   budget: RetryBudget) -> Skip | None:
        """None when the failed try goes to another replica (a reset retry spends one of the
        service's budget), else why not. Checked in order of cost: the rule, the request's
        tries, another ready replica, and last the budget (only spent on a retry that goes)."""
        skip = retry_skip(method, failure, replayable=body.replayable, has_body=body.has_body,
                          policy=policy,
                          unsent_non_idempotent=self.limits.retry_unsent_non_idempotent)
        if skip is not None:
            return skip
        resetting = failure is Failure.RESET
        if len(tried) >= self.limits.max_tries or (resetting and resets + 1 >= policy.attempts):
            return Skip.ATTEMPTS
        if self._pick(service, tried) is None:
            return Skip.NO_REPLICA
        if resetting and not budget.try_retry(asyncio.get_running_loop().time()):
            return Skip.BUDGET
        return None

    def _replay_limit(self, service: str) -> int:
        """Bytes of a request body held for a retry: the service's own, else the gateway's;
        never above the gateway's ceiling."""
        route = self.table.service(service)
        own = route.limits.replay_buffer_bytes if route is not None else None
        wanted = self.limits.replay_buffer_bytes if own is None else own
        return min(wanted, self.limits.max_replay_buffer_bytes)

    def _policy(self, service: str) -> RetryPolicy:
        route = self.table.service(service)
        own = route.limits.retry if route is not None else None
        return own or self.limits.retry

    def _budget(self, service: str, policy: RetryPolicy) -> RetryBudget:
        budget = self._budgets.get(service)
        if budget is None:
            if len(self._budgets) > 4096:  # services come and go: keep the map bounded
                self._budgets = {}
            budget = self._budgets[service] = RetryBudget(policy.budget,
                                                          self.limits.retry_reserve)
        budget.ratio = policy.budget  # an update of the service's spec takes effect at once
        return budget

    def _pick(self, service: str, tried: list[str]) -> Replica | None:
        """A ready replica, or None: none ready, or the service at its max_concurrent."""
        route = self.table.service(service)
        if route is None or not route.admits():
            return None
        return pick_replica(route.ready(), self.rng, tried, asyncio.get_running_loop().time())

    def _try_timeouts(self, service: str) -> tuple[float, float]:
        """(connect, first byte) for one try: the service's own where it set them."""
        route = self.table.service(service)
        own = route.limits if route is not None else None
        connect = own.connect_timeout_s if own and own.connect_timeout_s else None
        first = own.first_byte_timeout_s if own and own.first_byte_timeout_s else None
        return (connect or self.limits.connect_timeout_s,
                first or self.limits.first_byte_timeout_s)

    def _timeouts_for(self, service: str) -> dict[str, float | None]:
        connect = self._try_timeouts(service)[0]
        found = self._timeouts.get(connect)
        if found is None:  # one dict per distinct value, not one per request
            found = self._timeouts[connect] = {"connect": connect, "read": None,
                                               "write": None, "pool": None}
        return found

    def _total_timeout(self, service: str) -> float:
        route = self.table.service(service)
        own = route.limits.total_timeout_s if route is not None else None
        return self.limits.total_timeout_s if own is None else own

    def _request(self, method: str, replica: Replica, rest: bytes, query: bytes,
                 headers: list[tuple[bytes, bytes]], body: RequestBody,
                 timeouts: dict[str, float | None]) -> httpx.Request:
        base = self._bases.get(replica.url)
        if base is None:  # parsed once per replica URL, not once per request
            base = self._bases[replica.url] = httpx.URL(replica.url)
            if len(self._bases) > 4096:  # replicas come and go: keep the cache bounded
                self._bases = {replica.url: base}
        path = base.raw_path.split(b"?")[0].rstrip(b"/") + (rest or b"/")
        url = base.copy_with(raw_path=path + (b"?" + query if query else b""))
        content = body.stream() if body.has_body else None
        try:
            return httpx.Request(method, url, headers=headers, content=content,
                                 extensions={"timeout": timeouts})
        except (httpx.LocalProtocolError, ValueError, UnicodeError) as exc:
            raise _Refused(400, "bad_request", f"the request cannot be forwarded: {exc}",
                           "headers") from None

    async def _send(self, service: str, replica: Replica, request: httpx.Request, body: RequestBody,
                    deadline: float, tried: list[str]) -> httpx.Response | _Retry:
        """Stage 5 on one replica: the response (headers received), or a _Retry when the try
        failed in a way that may be retried (connect, reset, 503): `_may_retry` decides."""
        loop = asyncio.get_running_loop()
        connect_s, first_byte_s = self._try_timeouts(service)
        timeout = first_byte_s
        self.table.acquire(replica)
        try:
            # the connect has its own (httpx) timeout; the first byte is timed from the moment
            # the request starts out on a connection, new or kept alive (httpcore's trace)
            async with asyncio.timeout_at(min(loop.time() + connect_s + first_byte_s,
                                              deadline)) as window:
                async def trace(name: str, info: Any) -> None:
                    if name == _SENDING:
                        window.reschedule(min(loop.time() + first_byte_s, deadline))
                request.extensions["trace"] = trace
                response = await self.transport.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.table.release(service, replica)
            self.metrics.errors.labels(service, "connect").inc()
            return _Retry(_Refused(502, "bad_gateway", f"replica {replica.id} of service "
                                   f"{service!r} could not be reached ({type(exc).__name__})"),
                          Failure.CONNECT)
        except TimeoutError:
            self.table.release(service, replica)
            self.metrics.errors.labels(service, "first_byte_timeout").inc()
            raise _Refused(504, "gateway_timeout", f"replica {replica.id} of service "
                           f"{service!r} sent no response within {timeout:.3g} s (its "
                           "first-byte timeout; not retried: the replica may have run "
                           "it)") from None
        except ClientGone:
            self.table.release(service, replica)
            raise
        except httpx.LocalProtocolError as exc:
            self.table.release(service, replica)
            raise _Refused(400, "bad_request", f"the request cannot be forwarded: {exc}",
                           "headers") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            # the connection broke before any response header: a killed replica, or a kept-
            # alive connection it closed as the request went out. Nothing reached the client.
            self.table.release(service, replica)
            self.metrics.errors.labels(service, "upstream_reset").inc()
            return _Retry(_Refused(502, "bad_gateway", f"replica {replica.id} of service "
                                   f"{service!r} broke the connection before answering "
                                   f"({type(exc).__name__})"), Failure.RESET)
        except httpx.TransportError as exc:
            self.table.release(service, replica)
            self.metrics.errors.labels(service, "upstream_broken").inc()
            raise _Refused(502, "bad_gateway", f"replica {replica.id} of service {service!r} "
                           f"broke the exchange ({type(exc).__name__})") from None
        if response.status_code == 503 and request.method in IDEMPOTENT and body.replayable \
                and len(tried) + 1 < self.limits.max_tries \
                and self._pick(service, [*tried, replica.id]) is not None:
            # the replica refused the work; another may take it (else its own 503 goes back)
            await response.aclose()
            self.table.release(service, replica)
            return _Retry(_Refused(503, "unavailable", f"replica {replica.id} of service "
                                   f"{service!r} answered 503 and no other is ready", headers={
                                       "Retry-After": str(self.limits.retry_after_s)}),
                          Failure.UNAVAILABLE)
        return response

    async def _stream(self, service: str, replica: Replica, response: httpx.Response,
                      receive: Any, send: Any, deadline: float,
                      extra: list[tuple[bytes, bytes]]) -> int:
        """Stage 6. Owns the response and the replica's outstanding count from here on.
        `extra`: the gateway's own response headers (X-Corral-Retry-Off)."""
        relayed = [0]  # bytes of the body sent on to the client (the log of a cut says it)
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": response_headers(response.headers.raw) + extra})
            pump = asyncio.ensure_future(self._pump(response, send, relayed))
            gone = asyncio.ensure_future(_disconnected(receive))
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                self.metrics.errors.labels(service, "total_timeout").inc()
                raise self._lost(service, replica, response.status_code, "total_timeout",
                                 relayed[0], f"it ran past the total timeout "
                                 f"({self._total_timeout(service):g} s)") from None
            finally:
                for task in (pump, gone):
                    task.cancel()
                await asyncio.gather(pump, gone, return_exceptions=True)
            failure = pump.exception() if pump.done() and not pump.cancelled() else None
            if failure is not None:
                self.metrics.errors.labels(service, "upstream_broken").inc()
                # a closed or reset connection mid-body: the replica died (kill -9, OOM kill,
                # node lost) or its server gave up on the response
                closed = isinstance(failure, httpx.RemoteProtocolError | httpx.ReadError)
                raise self._lost(service, replica, response.status_code,
                                 "replica_reset" if closed else "replica_error", relayed[0],
                                 f"replica {replica.id} broke it off ({type(failure).__name__}: "
                                 f"{failure})") from failure
            return response.status_code if pump.done() and not pump.cancelled() else 499
        finally:
            await response.aclose()
            self.table.release(service, replica)

    def _lost(self, service: str, replica: Replica, status: int, cause: str, relayed: int,
              why: str) -> BrokenResponse:
        """A response cut after its headers went out. Nothing can be retried or said in a
        status any more: the client's connection is closed without the body's end (no last
        chunk, or fewer bytes than its Content-Length), which HTTP clients raise as an error;
        it is counted and logged here. A replica that broke it off is suspect: new requests
        avoid it from now on, not from its next failed probe. This is Envoy's outlier
        detection (passive health checking: eject a host for `base_ejection_time`, 30 s; a
        passing active check un-ejects it, `successful_active_health_check_uneject_host`),
        ejecting on the first such cut rather than after `consecutive_gateway_failure` (5): a
        connection lost mid-body is a dead process far more often than a bad request. A
        timeout is the service's limit, not the replica's fault."""
        self.metrics.streams_lost.labels(service, cause).inc()
        suspect = cause != "total_timeout"
        if suspect:
            self.table.mark_suspect(service, replica.id, asyncio.get_running_loop().time()
                                    + self.limits.suspect_s)
        log.warning("service %r: a %d response from replica %s was cut after %d bytes of its "
                    "body: %s; the client's connection is closed, so it sees an incomplete "
                    "response%s", service, status, replica.id, relayed, why,
                    f"; replica {replica.id} gets no new request for {self.limits.suspect_s:g}"
                    " s while another is trusted" if suspect else "")
        return BrokenResponse(status, f"service {service!r}: the response was cut ({why})")

    async def _pump(self, response: httpx.Response, send: Any, relayed: list[int]) -> None:
        # aiter_raw: bytes as the replica framed them (still compressed, Content-Length true)
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            relayed[0] += len(chunk)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass
class _Retry:
    refusal: _Refused
    failure: Failure


async def _disconnected(receive: Any, disconnect: str = "http.disconnect") -> None:
    """Return when the client goes away. Called once the request body is consumed (or, for a
    WebSocket, before the upgrade), so every message left to receive is (an empty request body
    or) the disconnect."""
    while (await receive())["type"] != disconnect:
        pass


async def _unless_gone(waiting: Awaitable[None], receive: Any,
                       disconnect: str = "http.disconnect") -> None:
    """Await `waiting`, or raise ClientGone if the client disconnects first (`disconnect`:
    the ASGI message type that says so, `websocket.disconnect` for a WebSocket)."""
    wait = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnected(receive, disconnect))
    try:
        await asyncio.wait({wait, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (wait, gone):
            task.cancel()
        await asyncio.gather(wait, gone, return_exceptions=True)
    if not wait.cancelled() and wait.done() and wait.exception() is None:
        return
    if gone.done() and not gone.cancelled():
        raise ClientGone
    wait.result()  # QueueFull, QueueTimeout, ServiceGone


def _rest_of_path(scope: Scope, service: str) -> bytes:
    """The path after `/serve/<service>`, as the client sent it (percent-encoding kept, so
    `%2F` stays `%2F` for the replica). The service segment is skipped as a segment, not by its
    decoded name: `/serve/%74oy/x` is service "toy" and path "/x"."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    root = len(scope.get("root_path", "").encode())  # a mount prefix comes first
    at = raw.find(b"/serve/", root)
    at = raw.find(b"/serve/") if at < 0 else at
    end = raw.find(b"/", at + len(b"/serve/")) if at >= 0 else -1
    return raw[end:] if end >= 0 else b"/"
