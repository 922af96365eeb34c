"""The API's header deadline (`corral.api.serving`) closes a connection whose request headers
are slow, but never a WebSocket once upgraded: `corral ssh`, port-forward and agent tunnels
stay open past it (they were closed at 10 s)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from corral.api.serving import guarded_protocol

DEADLINE_S = 0.3


async def _echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        await ws.send_text(await ws.receive_text())


@pytest.fixture
def url() -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[WebSocketRoute("/echo", _echo)])
    server = uvicorn.Server(uvicorn.Config(app, http=guarded_protocol(DEADLINE_S),
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
