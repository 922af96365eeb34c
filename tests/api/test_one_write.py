"""A response's head and body leave in one write (`corral.api.serving.OneWrite`: what a pass of
the event loop writes on a connection leaves in one send at its end), and a stream's head is
still not held back until its body comes (the service gateway relays slow replicas)."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from corral.api.serving import OneWrite, header_deadline

RELEASE = threading.Event()  # the stream's body waits for it


async def plain(request: Request) -> Response:
    return JSONResponse({"ok": True, "body": (await request.body()).decode()}, status_code=201)


async def stream(request: Request) -> Response:
    async def body() -> Any:
        while not RELEASE.is_set():
            await asyncio.sleep(0.01)
        yield b"late"

    return StreamingResponse(body(), media_type="text/plain")


class Spy:
    """A transport that records what is written."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


HEAD = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n"


def test_the_head_goes_with_the_body_of_the_same_pass() -> None:
    async def run() -> list[bytes]:
        spy = Spy()
        t = OneWrite(spy, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(HEAD)
        t.write(b"{}")
        await asyncio.sleep(0)  # the pass ends: nothing more to write
        return spy.writes

    assert asyncio.run(run()) == [HEAD + b"{}"]


def test_a_head_whose_body_comes_later_is_written_at_the_end_of_the_pass() -> None:
    async def run() -> list[list[bytes]]:
        spy = Spy()
        t = OneWrite(spy, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(HEAD)
        seen = [list(spy.writes)]
        await asyncio.sleep(0)
        seen.append(list(spy.writes))
        t.write(b"{}")
        seen.append(list(spy.writes))
        await asyncio.sleep(0)
        seen.append(list(spy.writes))
        return seen

    assert asyncio.run(run()) == [[], [HEAD], [HEAD], [HEAD, b"{}"]]


def test_a_close_writes_what_is_held_first() -> None:
    async def run() -> tuple[list[bytes], bool]:
        spy = Spy()
        t = OneWrite(spy, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        t.write(HEAD)
        t.close()  # the app failed after starting its response
        await asyncio.sleep(0)
        return spy.writes, t.is_closing()

    assert asyncio.run(run()) == ([b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD], True)


def test_a_long_body_is_not_held_past_the_flow_control_mark() -> None:
    async def run() -> list[int]:
        spy = Spy()
        t = OneWrite(spy, asyncio.get_running_loop())  # type: ignore[arg-type]
        for _ in range(5):  # a stream that never pauses: 5 x 40 KiB in one pass
            t.write(b"x" * 40 * 1024)
        sizes = [len(w) for w in spy.writes]  # the transport saw them within the pass
        await asyncio.sleep(0)
        return [*sizes, len(spy.writes[-1])]

    assert asyncio.run(run()) == [80 * 1024, 80 * 1024, 40 * 1024]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, list[bytes]]]:
    """A real uvicorn with the API's protocol, on asyncio's own loop so that its socket
    transport's writes can be counted."""
    from asyncio import selector_events

    import uvicorn

    writes: list[bytes] = []
    transport: Any = getattr(selector_events, "_SelectorSocketTransport")  # noqa: B009
    real = transport.write

    def counted(self: Any, data: bytes) -> None:
        writes.append(bytes(data))
        real(self, data)

    monkeypatch.setattr(transport, "write", counted)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[Route("/plain", plain, methods=["POST"]), Route("/stream", stream)])
    guarded, protocol = header_deadline(app, 10.0)
    server = uvicorn.Server(uvicorn.Config(guarded, http=protocol, loop="asyncio",
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    RELEASE.clear()
    yield sock.getsockname()[1], writes
    RELEASE.set()
    server.should_exit = True
    thread.join(timeout=10)


def test_a_response_is_one_write_on_the_socket(served: tuple[int, list[bytes]]) -> None:
    port, writes = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for i in range(3):  # keep-alive: every response of the connection
            writes.clear()
            conn.request("POST", "/plain", body=f"spec {i}")
            r = conn.getresponse()
            assert (r.status, r.read()) == (201, b'{"ok":true,"body":"spec %d"}' % i)
            assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 201 ")
    finally:
        conn.close()


def test_a_stream_head_arrives_before_its_body(served: tuple[int, list[bytes]]) -> None:
    port, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/stream")
        r = conn.getresponse()  # the head, while the body still waits for RELEASE
        assert r.status == 200 and not RELEASE.is_set()
        RELEASE.set()
        assert r.read() == b"late"
    finally:
        conn.close()
