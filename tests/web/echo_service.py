"""The service both service browser tests submit (test_browser_service: its own page;
test_browser_services: the Services list): two real HTTP replicas that answer with their id."""

from __future__ import annotations

import sys
from typing import Any

# A replica: answers every GET with its id once it listens on $PORT (also its readiness probe)
REPLICA = ("import http.server, os\n"
           "class H(http.server.BaseHTTPRequestHandler):\n"
           "    def do_GET(self):\n"
           "        body = os.environ['CORRAL_WORKLOAD_ID'].encode()\n"
           "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
           "        self.end_headers(); self.wfile.write(body)\n"
           "    def log_message(self, *a): pass\n"
           "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H)"
           ".serve_forever()\n")


def echo_service() -> dict[str, Any]:
    """The spec: 2 replicas (1 to 3), no GPU, in queue prod, ready once `/` answers."""
    return {"name": "echo", "queue": "prod", "kind": "service", "gpus": 0, "cpu": 0.1,
            "memory": "64MiB", "command": [sys.executable, "-c", REPLICA], "replicas": 2,
            "min_replicas": 1, "max_replicas": 3, "restart_backoff": 0.5,
            "readiness": {"path": "/", "period_s": 0.3}}
