"""POST /v1/workloads straight to its endpoint, for the common case: `SubmitShortcut`.

Profiled at 16 concurrent submissions (issue 14), the layers between the request guard and the
endpoint were a quarter of the app's time on the submit path (cProfile of `corral up`, 3,000
submissions): Starlette's exception middleware and FastAPI's exit stack, then the router, which
in FastAPI 0.16x matches the path twice (once to pick the included router, once inside it) over
every route of every router included before `workloads`, then the route's dependency resolution
(six nodes: `reject_nul`, `check_query`, the context, the caller and its bearer scheme, the
endpoint, each checking path, query, header and cookie parameters) and the response's
re-validation against its model. (Until issue 14's second pass this was a route class; it
skipped the last two, not the routing.)

`SubmitShortcut` is a pure ASGI middleware, the innermost of the app's own (inside the guard and
the request timer, so the token, its rate, the body's size and read time are checked as before,
and the latency is recorded under the route's template), and it answers a plain request itself:

- `POST /v1/workloads`, no query string (`check_query` would refuse any: the route declares
  none), no `Idempotency-Key`, `Content-Type: application/json`, no FastAPI telemetry on the
  request (FastAPI records the route it selected there);
- the caller verified by `corral.api.guard` (it leaves the credential in the scope);
- no dependency overridden on the app (tests that override one get FastAPI's resolution);
- a body without an escaped NUL (`reject_nul`) that parses as a JSON object and validates as a
  `WorkloadSpec` exactly as FastAPI would (`json.loads`, then validation of the parsed value).

It then calls the same endpoint function (every check the route makes, in the same order) and
dumps its result with pydantic's serializer of the response model, as FastAPI does after a
validation that, for an instance of the response model, returns it unchanged. An exception the
endpoint raises is answered by the app's own handler for it (the one error shape); anything
else, every refusal of a request that is not plain included, goes on, untouched (its body
replayed), through FastAPI (both answers compared in `tests/api/test_submit_route.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.context import CREDENTIAL
from corral.spec import WorkloadSpec
from corral.spec import limits as LIM
from corral.spec.workload import WITHIN_LIMITS

__all__ = ["SUBMIT_PATH", "SubmitShortcut"]

SUBMIT_PATH = "/v1/workloads"


class SubmitShortcut:
    """The submit endpoint for plain requests (see the module's list); the app for the rest.

    `route` is the `APIRoute` of `POST /v1/workloads`: its endpoint is called, its response
    model dumps the answer, and it is left in the scope (`scope["route"]`) as the router would,
    so the request timer labels the request with its template."""

    def __init__(self, app: ASGIApp, route: APIRoute) -> None:
        assert route.response_model is not None
        self.app, self.route = app, route
        self.dump: Callable[[Any], bytes] = _dumper(route.response_model)
        self.status = route.status_code or 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _may_be_plain(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except Exception as exc:  # the guard's 408/413 from inside the read
            await _answer_error(scope, receive, send, exc)
            return
        spec = _valid_spec(body)
        if spec is None:  # FastAPI says how it is wrong, from the same bytes
            await self.app(scope, _replay(body, receive), send)
            return
        await self._submit(scope, receive, send, spec)

    async def _submit(self, scope: Scope, receive: Receive, send: Send,
                      spec: WorkloadSpec) -> None:
        scope["route"] = self.route
        found = scope["state"][CREDENTIAL]
        sub = _Sub()  # what the endpoint may set (status, headers), as FastAPI passes
        try:
            result = await self.route.endpoint(spec=spec, ctx=scope["app"].state.corral,
                                               who=found.principal, response=sub,
                                               idempotency_key=None)
        except Exception as exc:
            await _answer_error(scope, receive, send, exc)
            return
        if isinstance(result, Response):
            await result(scope, receive, send)
            return
        payload = self.dump(result)
        headers = [(b"content-length", str(len(payload)).encode()),
                   (b"content-type", b"application/json"), *sub.headers.raw]
        await send({"type": "http.response.start", "status": sub.status_code or self.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class _Sub(Response):
    """The `response` FastAPI gives an endpoint (no status, no headers), made without
    `Response.__init__`'s rendering of a body and its headers, which FastAPI then deletes."""

    def __init__(self) -> None:  # no super().__init__: nothing of it is wanted here
        self.status_code = None  # type: ignore[assignment]
        self.raw_headers = []
        self.background = None


def _may_be_plain(scope: Scope) -> bool:
    """What the headers and the scope say before any body is read."""
    if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != SUBMIT_PATH
            or scope.get("query_string") or "fastapi.telemetry" in scope
            or scope.get("state", {}).get(CREDENTIAL) is None):
        return False
    app = scope.get("app")
    if app is None or getattr(app, "dependency_overrides", None):
        return False
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            return False
        if name == b"content-type":
            content_type = value
    return content_type.partition(b";")[0].strip().lower() == b"application/json"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: nothing to answer
            raise _ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class _ClientGone(Exception):
    pass


def _valid_spec(body: bytes) -> WorkloadSpec | None:
    if not body or b"\\u0000" in body:
        return None
    try:
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            return None
        # the size, depth and NUL walk judged from the bytes when they suffice (spec.limits)
        within = LIM.json_within_limits(body)
        return WorkloadSpec.model_validate(parsed, context=WITHIN_LIMITS if within else None)
    except (ValueError, ValidationError):  # not JSON, or not a valid spec
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then whatever the connection says next (a disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


async def _answer_error(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """The app's handler for `exc` (by its class's MRO, as Starlette's exception middleware
    looks one up), short of the catch-all: an exception without its own handler goes on up, to
    the server-error middleware, which logs it and answers 500 as for any other route."""
    if isinstance(exc, _ClientGone):
        return
    handlers = getattr(scope.get("app"), "exception_handlers", {})
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        response = await handlers[exc.status_code](Request(scope, receive), exc)
        await response(scope, receive, send)
        return
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        handler = handlers.get(cls)
        if handler is not None:
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
    raise exc


def _dumper(model: Any) -> Callable[[Any], bytes]:
    """JSON of the endpoint's result as the response model says, by alias (FastAPI's default)."""
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    return lambda value: adapter.dump_json(value, by_alias=True)
