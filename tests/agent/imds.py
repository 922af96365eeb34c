"""A small EC2 instance metadata service for tests: the two endpoints a spot notice needs.

moto's server mode serves some instance metadata (an IMDSv2 token, instance-id, credentials) but
not `spot/instance-action` (it answers 500, "not implemented") and it can never announce an
interruption, so the tests run this instead, written from the AWS user guide ("Spot Instance
interruption notices", "Use IMDSv2"):

    PUT /latest/api/token  (X-aws-ec2-metadata-token-ttl-seconds: 1..21600) -> a token; 400 without
    GET /latest/meta-data/spot/instance-action  (X-aws-ec2-metadata-token) -> 401 without a valid
        token, 404 while no interruption is planned, 200 {"action": ..., "time": ...} once it is
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Imds:
    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.action: dict[str, str] | None = None
        self.body: str | None = None  # a raw body to serve instead (a broken service)
        self.requests: list[tuple[str, str]] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                imds.requests.append(("PUT", self.path))
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if self.path != "/latest/api/token" or not ttl.isdigit() or \
                        not 1 <= int(ttl) <= 21_600:
                    return self._send(400)
                token = secrets.token_urlsafe(16)
                imds.tokens.add(token)
                self._send(200, token)

            def do_GET(self) -> None:
                imds.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") not in imds.tokens:
                    return self._send(401)
                if self.path != "/latest/meta-data/spot/instance-action":
                    return self._send(404)
                if imds.body is not None:
                    return self._send(200, imds.body)
                if imds.action is None:
                    return self._send(404)
                self._send(200, json.dumps(imds.action))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Imds:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def interrupt(self, in_s: float = 120.0, action: str = "terminate") -> None:
        when = datetime.now(UTC) + timedelta(seconds=in_s)
        self.action = {"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def expire_tokens(self) -> None:
        self.tokens.clear()
