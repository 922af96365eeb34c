"""The readiness probe's HTTP GET against a real server: 2xx and 3xx pass; 4xx, 5xx, a closed
port and a server slower than the timeout fail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from corral.control.probes import http_get

_RELEASE = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            _RELEASE.wait(5)
        code = {"/ok": 200, "/moved": 302, "/missing": 404, "/broken": 500}.get(self.path, 200)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/elsewhere")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _RELEASE.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("path", "passes"), [
    ("/ok", True), ("/moved", True), ("/missing", False), ("/broken", False), ("/slow", False),
], ids=["200", "302", "404", "500", "slower-than-timeout"])
def test_http_get(base: str, path: str, passes: bool) -> None:
    assert http_get(base + path, 0.5) is passes


def test_a_closed_port_fails() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert http_get(f"http://127.0.0.1:{port}/health", 0.5) is False
