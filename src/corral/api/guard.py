"""The request guard: an ASGI middleware that runs before any body is read.

In order, for every HTTP request:

1. under /v1 (but /v1/health and /v1/version) the bearer token is checked on the headers
   alone: 401 without reading a byte of the body, so an unauthenticated client cannot make the
   server buffer or parse anything. The verified credential goes into the request's state, where
   `corral.api.context.caller` picks it up (one check per request);
2. the token's bucket is charged: 429 with `Retry-After` when it is empty;
3. a declared body (`Content-Length`) over its limit is refused with 413, unread;
4. the body is read through a counter and a clock: a chunked body that grows past its limit is
   refused with 413 as soon as it does, and a body not complete within `body_timeout_s` of
   its first read (a client trickling bytes) with 408 and the connection closed.

Limits and their defaults: `corral.api.limits`. The header read timeout cannot live here (the
app is only called once headers are complete): `corral.api.serving` arms it on the connection.
"""

from __future__ import annotations

import asyncio
import math
import time

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.context import CREDENTIAL, ApiContext
from corral.api.errors import error_body
from corral.store.auth import Credential

__all__ = ["CREDENTIAL", "PUBLIC_PATHS", "SPEC_PATHS", "BodyRefused", "RequestGuard"]

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/version"})
#: bodies that are workload specs: held to the (smaller) spec limit
SPEC_PATHS = frozenset({"/v1/workloads", "/v1/dry-run"})
#: uploaded workdirs: their own cap (corral.api.workdirs.MAX_UPLOAD_BYTES; not imported here,
#: the guard loads before the routes)
WORKDIR_PATH = "/v1/workdirs/"
WORKDIR_UPLOAD_BYTES = 116 * 1024 * 1024


class BodyRefused(HTTPException):
    """Raised from inside the body read; an HTTPException so FastAPI passes it on untouched and
    the API's handler answers it in the one error shape."""

    def __init__(self, status: int, code: str, message: str, field: str = "") -> None:
        headers = {"Connection": "close"}
        super().__init__(status, message, headers)
        self.code, self.field = code, field


class RequestGuard:
    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = await self._refusal(scope)
        if refused is not None:
            if _has_body(scope):  # left unread: the connection cannot carry another request
                refused.headers["Connection"] = "close"
            await refused(scope, receive, send)
            return
        await self.app(scope, self._bounded(scope, receive), send)

    async def _refusal(self, scope: Scope) -> JSONResponse | None:
        """The early answer for this request, if it gets one; None lets it through."""
        headers = _headers(scope)
        path = scope["path"]
        if path.startswith("/v1/") and path not in PUBLIC_PATHS:
            found = await self._credential(headers.get(b"authorization", b""))
            if isinstance(found, JSONResponse):
                return found
            scope.setdefault("state", {})[CREDENTIAL] = found
            refused = self._rate_limited(found)
            if refused is not None:
                return refused
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return _refuse(400, "bad_request", "Content-Length is not a number")
            if int(declared) > self._cap(scope):
                return _too_large(self._cap(scope), scope)
        return None

    def _rate_limited(self, found: Credential) -> JSONResponse | None:
        limits, token = self.ctx.limits, found.token
        rate = token.rate_per_s if token.rate_per_s is not None else limits.rate_per_s
        burst = token.burst if token.burst is not None else limits.burst
        wait = self.ctx.buckets.take(token.id, time.monotonic(), rate, burst)
        if wait <= 0:
            return None
        return _refuse(429, "rate_limited", f"this token may make {rate:g} requests/s (bursts "
                       f"of {burst}); retry in {wait:.2f} s",
                       {"Retry-After": str(max(1, math.ceil(wait)))})

    async def _credential(self, authorization: bytes) -> Credential | JSONResponse:
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _refuse(401, "unauthorized", "send an API token: Authorization: Bearer <token>",
                           {"WWW-Authenticate": "Bearer"})
        found: Credential | None = self.ctx.cached_credential(token)
        if found is None:
            found = await run_in_threadpool(self.ctx.verify, token)
        if found is None:
            return _refuse(401, "unauthorized", "the API token is unknown, expired or revoked",
                           {"WWW-Authenticate": "Bearer"})
        return found

    def _cap(self, scope: Scope) -> int:
        limits = self.ctx.limits
        if scope["method"] == "POST" and scope["path"] in SPEC_PATHS:
            return int(limits.max_spec_bytes)
        if scope["method"] == "PUT" and scope["path"].startswith(WORKDIR_PATH):
            return WORKDIR_UPLOAD_BYTES  # an uploaded workdir (corral.api.workdirs, issue 13)
        return int(limits.max_body_bytes)

    def _bounded(self, scope: Scope, receive: Receive) -> Receive:
        cap, timeout = self._cap(scope), self.ctx.limits.body_timeout_s
        seen, deadline, done = 0, 0.0, False

        async def guarded() -> Message:
            nonlocal seen, deadline, done
            if done:  # the body is in: later reads wait for a disconnect, unbounded
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + timeout
            try:
                async with asyncio.timeout_at(deadline):  # no task per read, as wait_for has
                    message = await receive()
            except TimeoutError:
                raise BodyRefused(408, "request_timeout", f"the request body did not arrive "
                                  f"within {timeout:g} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise BodyRefused(413, "too_large", _too_large_message(cap, scope),
                                      "spec" if cap < self.ctx.limits.max_body_bytes else "")
                done = not message.get("more_body", False)
            return message

        return guarded


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope["headers"])


def _has_body(scope: Scope) -> bool:
    headers = _headers(scope)
    return headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers


def _too_large_message(cap: int, scope: Scope) -> str:
    what = "a workload spec" if scope["path"] in SPEC_PATHS else "a request body"
    return f"{what} may be at most {cap:,} bytes"


def _too_large(cap: int, scope: Scope) -> JSONResponse:
    field = "spec" if scope["path"] in SPEC_PATHS and scope["method"] == "POST" else ""
    return _refuse(413, "too_large", _too_large_message(cap, scope), field=field)


def _refuse(status: int, code: str, message: str, headers: dict[str, str] | None = None,
            field: str = "") -> JSONResponse:
    problems = [(field, message)] if field else []
    return JSONResponse(error_body(code, message, problems), status, headers)
