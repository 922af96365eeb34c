"""Requests as an HTTP/2 (or 3) ASGI server hands them over: a body may come with neither
Content-Length nor Transfer-Encoding (the protocol frames it). uvicorn speaks HTTP/1.1 only, so
these drive the gateway app directly with such scopes (as hypercorn makes them), against a
real replica. Seen under hypercorn with an httpx HTTP/2 client before the fix: a streamed POST
reached the replica with an empty body and a 200."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from corral.gateway import ReplicaState, RouteTable, create_gateway_app

from .harness import replica, run


def scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "2", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [(b"host", b"gateway"), *headers],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 443)}


async def call(app: Any, method: str, path: str, messages: list[dict[str, Any]],
               headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    """One request through the ASGI app: `messages` are what the server would receive.
    Returns (status, body); (0, b"") when nothing was sent back."""
    inbox = list(messages)
    left = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await left.wait()  # the client stays until the response is whole
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            left.set()

    await app(scope(method, path, headers or []), receive, send)
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), 0)
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def body(chunk: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": chunk, "more_body": more}


def test_an_http2_body_without_length_or_chunking_reaches_the_replica_whole() -> None:
    async def main() -> dict[str, Any]:
        async with replica("r") as (url, _):
            table = RouteTable()
            table.set_service("toy")
            table.set_replica("toy", "r", url, ReplicaState.READY)
            app = create_gateway_app(table, rng=random.Random(1))
            gateway = app.state.gateway
            try:
                streamed = await call(app, "POST", "/serve/toy/debug/request",
                                      [body(b"a" * 1000, True), body(b"b" * 500, True),
                                       body(b"", False)])
                bodiless = await call(app, "GET", "/serve/toy/debug/request",
                                      [body(b"", False)])
                sized = await call(app, "POST", "/serve/toy/debug/request",
                                   [body(b"c" * 10, False)], [(b"content-length", b"10")])
                gone = await call(app, "POST", "/serve/toy/debug/request",
                                  [{"type": "http.disconnect"}])
            finally:
                await gateway.aclose()
            return {"streamed": streamed, "bodiless": bodiless, "sized": sized,
                    "gone": gone}

    out = run(main())
    for name, size in (("streamed", 1500), ("bodiless", 0), ("sized", 10)):
        status, text = out[name]
        assert status == 200, (name, text)
        assert json.loads(text)["body_bytes"] == size, name
    seen = dict(json.loads(out["bodiless"][1])["headers"])
    assert "transfer-encoding" not in seen  # a bodiless request is sent bodiless
    assert out["gone"] == (0, b"")  # the client left before its body began: nothing sent
