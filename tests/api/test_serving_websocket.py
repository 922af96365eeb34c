"""The API's header deadline (`corral.api.serving`) closes a connection whose request headers
are slow, but never a request that is running nor a WebSocket once upgraded: `corral ssh`,
port-forward and agent tunnels stay open past it (they were closed at 10 s). A kept-alive
connection gets the deadline again for its next request's headers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from corral.api.serving import header_deadline

DEADLINE_S = 0.3


async def _echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        await ws.send_text(await ws.receive_text())


async def _slow(request: Request) -> PlainTextResponse:
    import asyncio

    await asyncio.sleep(DEADLINE_S * 3)  # runs past the deadline: its headers were in
    return PlainTextResponse("done")


@pytest.fixture
def url() -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[WebSocketRoute("/echo", _echo), Route("/slow", _slow)])
    guarded, protocol = header_deadline(app, DEADLINE_S)
    server = uvicorn.Server(uvicorn.Config(guarded, http=protocol,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"ws://127.0.0.1:{sock.getsockname()[1]}/echo"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_websocket_outlives_the_header_deadline(url: str) -> None:
    from websockets.sync.client import connect

    with connect(url, open_timeout=5) as ws:
        time.sleep(DEADLINE_S * 4)  # idle past the deadline
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_a_connection_sending_no_headers_is_still_closed(url: str) -> None:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\n")  # and no more
        assert s.recv(1024) == b""  # closed by the server, within the socket's timeout


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _get_slow(s: socket.socket) -> bytes:
    """GET /slow on the connection, read until its body's end ("done")."""
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"done" not in got and (chunk := s.recv(1024)):
        got += chunk
    return got


def test_a_request_running_past_the_deadline_is_answered(url: str) -> None:
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as s:
        got = _get_slow(s)
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"done")


def test_trickling_headers_are_cut_off(url: str) -> None:
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\n")
        closed = False
        for _ in range(int(DEADLINE_S * 40)):  # a header byte every DEADLINE_S / 4
            time.sleep(DEADLINE_S / 4)
            try:
                s.sendall(b"X")
            except OSError:  # reset: the server closed it
                closed = True
                break
        if not closed:
            s.settimeout(0.5)
            try:
                closed = s.recv(1024) == b""
            except TimeoutError:
                closed = False
        assert closed, "a client trickling its headers kept the connection"


def test_a_kept_alive_connection_gets_the_deadline_again(url: str) -> None:
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as s:
        _get_slow(s)
        s.sendall(b"GET /slow HTTP/1.1\r\n")  # the next request's headers never end
        assert s.recv(1024) == b""  # closed by the server, within the socket's timeout
