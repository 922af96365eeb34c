"""A real HTTP server that receives webhooks, for tests (`corral.control.webhook_sender`).

    /ok...  -> 200        /fail -> 500        /gone -> 404        /slow -> 200 after slow_s

Every request is recorded as (path, headers, body). Runs ThreadingHTTPServer on 127.0.0.1 on a
free port in a daemon thread; `close()` releases the slow handlers and stops it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Receiver"]


class Receiver:
    def __init__(self, slow_s: float = 2.0) -> None:
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.got.append((self.path, dict(self.headers), body))
                if self.path == "/slow":
                    outer.release.wait(slow_s)
                status = {"/fail": 500, "/gone": 404}.get(self.path, 200)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet: tests read `got`
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
