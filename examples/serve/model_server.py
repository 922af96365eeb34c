"""A small model server for trying corral's serving on a CPU: it "generates" tokens with a
configurable delay per token, like an LLM server whose decode step takes that long.

    python examples/serve/model_server.py --port 8000 --token-delay 0.02 --prefill-delay 0.05

    GET  /healthz              200 once started (503 during --startup-delay, or when unhealthy);
                               its body says the completions in flight
    POST /v1/completions       {"prompt": "...", "max_tokens": 16, "stream": false}
                               OpenAI-like completion; with "stream": true, server-sent events
                               (one `data: {...}` per token, then `data: [DONE]`)
    GET  /v1/models            the one model it serves
    GET  /debug/request        the method, path, query and headers it received (to see what a
                               proxy in front of it sends); ?set_cookie=k=v sets a cookie

Every response carries `X-Replica: <id>` (--replica-id, else $CORRAL_WORKLOAD_ID, else the
port). The port is --port, else $PORT or $CORRAL_PORT (the port corral gives a service
replica and records as its URL), else $CORRAL_MASTER_PORT, else 8000. Needs corral[server]
(FastAPI, uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

MODEL = "corral-toy-1"
TokenGate = Callable[[int], Awaitable[None]]


class CompletionIn(BaseModel):
    prompt: str = Field("", max_length=100_000)
    max_tokens: int = Field(16, ge=1, le=4096)
    stream: bool = False
    model: str | None = None


@dataclass
class ModelState:
    replica_id: str
    token_delay_s: float = 0.0
    prefill_delay_s: float = 0.0
    startup_delay_s: float = 0.0
    started_at: float = 0.0
    healthy: bool = True
    #: tests only: awaited before token i is produced (i from 0), so a test can hold a stream
    #: at a known point without timing anything
    token_gate: TokenGate | None = None
    in_flight: int = 0
    served: int = 0

    def ready(self) -> bool:
        return self.healthy and time.monotonic() - self.started_at >= self.startup_delay_s


def token(prompt: str, i: int) -> str:
    """The i-th token for a prompt: deterministic, so a test can check the whole text."""
    words = prompt.split() or ["corral"]
    return f" {words[i % len(words)]}{i}"


def create_app(state: ModelState) -> FastAPI:
    state.started_at = time.monotonic()
    app = FastAPI(title="corral toy model server", docs_url=None, redoc_url=None)
    app.state.model = state
    app.add_middleware(_Tag, replica_id=state.replica_id)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = state.ready()
        return JSONResponse({"status": "ok" if ok else "unavailable",
                             "replica": state.replica_id, "in_flight": state.in_flight},
                            200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.api_route("/debug/request", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def debug(request: Request) -> JSONResponse:
        body = await request.body()
        seen = {"method": request.method, "path": request.scope.get("raw_path", b"").decode(
            "latin-1"), "query": request.url.query, "body_bytes": len(body),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                        for k, v in request.headers.raw], "replica": state.replica_id}
        response = JSONResponse(seen)
        for cookie in request.query_params.getlist("set_cookie"):  # a session cookie, to see
            name, _, value = cookie.partition("=")                  # that a proxy keeps none
            response.set_cookie(name, value)
        return response

    @app.post("/v1/completions")
    async def completions(body: CompletionIn) -> Response:
        if not state.ready():  # still loading, or marked unhealthy: refuse before any work
            return JSONResponse({"error": "unavailable", "message": "not ready"}, 503,
                                headers={"Retry-After": "1"})
        state.in_flight += 1
        state.served += 1
        if body.stream:
            return StreamingResponse(_sse(state, body), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            text = "".join([t async for t in _tokens(state, body)])
        finally:
            state.in_flight -= 1
        return JSONResponse(_completion(state, body, text, "length"))

    return app


async def _tokens(state: ModelState, body: CompletionIn) -> AsyncIterator[str]:
    if state.prefill_delay_s:
        await asyncio.sleep(state.prefill_delay_s)
    for i in range(body.max_tokens):
        if state.token_gate is not None:
            await state.token_gate(i)
        if state.token_delay_s:
            await asyncio.sleep(state.token_delay_s)
        yield token(body.prompt, i)


async def _sse(state: ModelState, body: CompletionIn) -> AsyncIterator[bytes]:
    try:
        async for t in _tokens(state, body):
            chunk = _completion(state, body, t, None)
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        state.in_flight -= 1


def _completion(state: ModelState, body: CompletionIn, text: str,
                finish: str | None) -> dict[str, Any]:
    return {"object": "text_completion", "model": body.model or MODEL,
            "replica": state.replica_id,
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
            "usage": {"prompt_tokens": len(body.prompt.split()),
                      "completion_tokens": body.max_tokens}}


class _Tag:
    """Adds X-Replica to every response (a plain ASGI middleware: it never holds a stream)."""

    def __init__(self, app: Any, replica_id: str) -> None:
        self.app, self.tag = app, (b"x-replica", replica_id.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.tag]}
            await send(message)

        await self.app(scope, receive, tagged if scope["type"] == "http" else send)


def _port(arg: int | None) -> int:
    if arg is not None:
        return arg
    for name in ("PORT", "CORRAL_PORT", "CORRAL_MASTER_PORT"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 8000


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--replica-id", default=None)
    parser.add_argument("--token-delay", type=float, default=0.02,
                        help="seconds per generated token (decode step)")
    parser.add_argument("--prefill-delay", type=float, default=0.0,
                        help="seconds before the first token (prefill)")
    parser.add_argument("--startup-delay", type=float, default=0.0,
                        help="seconds /healthz answers 503 after start (loading weights)")
    args = parser.parse_args(argv)
    port = _port(args.port)
    replica = args.replica_id or os.environ.get("CORRAL_WORKLOAD_ID") or str(port)
    state = ModelState(replica, args.token_delay, args.prefill_delay, args.startup_delay)
    uvicorn.run(create_app(state), host=args.host, port=port, log_level="warning",
                timeout_graceful_shutdown=30)


if __name__ == "__main__":
    main()
