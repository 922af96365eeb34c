"""The dashboard's service page in headless Chromium against a real `corral up` (issue 12): a
service of two real HTTP replicas shows its endpoint URL (which answers through the gateway),
its replicas with their states, and a scale change as an event with its reason; a replica's
workload page links to it. Screenshot: test-artifacts/web/20-service.png.

Its own server and browser (module-scoped), so it runs alone or next to the other modules."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest

from .browsing import shot
from .server import CorralUp

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000

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


def test_the_service_page_shows_its_endpoint_replicas_and_scale_events(
        page: Any, server: CorralUp) -> None:
    spec = {"name": "echo", "queue": "prod", "kind": "service", "gpus": 0, "cpu": 0.1,
            "memory": "64MiB", "command": [sys.executable, "-c", REPLICA], "replicas": 2,
            "min_replicas": 1, "max_replicas": 3, "restart_backoff": 0.5,
            "readiness": {"path": "/", "period_s": 0.3}}
    with server.client() as c:
        sid = c.submit(spec).group_id
        page.goto(f"{server.url}/ui/#/services/{sid}")
        page.wait_for_selector("[data-testid=replica][data-state=ready] >> nth=1")
        endpoint = page.locator("[data-testid=endpoint]").inner_text()
        assert endpoint == f"{server.url}/serve/{sid}/"
        answer = httpx.get(endpoint, timeout=10)  # the URL shown is the gateway's, and serves
        assert answer.status_code == 200 and answer.text in (f"{sid}-r0", f"{sid}-r1")
        assert page.locator("[data-testid=service-state]").text_content() == "serving"
        rows = page.locator("[data-testid=replica]").evaluate_all(
            "rs => rs.map(r => [r.dataset.replica, r.dataset.state])")
        assert rows == [[f"{sid}-r0", "ready"], [f"{sid}-r1", "ready"]]

        c.scale(sid, 3)  # by hand: an event with its reason; a third replica starts
        page.wait_for_selector("[data-testid=scale-event][data-reason=Scaled]")
        event = page.locator("[data-testid=scale-event]").first.inner_text()
        assert "scaled from 2 to 3 by admin" in event
        page.wait_for_selector("[data-testid=replica][data-state=ready] >> nth=2")
        assert "3 desired: 3 ready" in page.locator("[data-testid=counts]").inner_text()
        assert "replica-hours" in page.locator("[data-testid=used]").inner_text()
        shot(page, "20-service")

        page.click(f"[data-testid=replica][data-replica={sid}-r0] a")  # to the replica's page
        page.wait_for_selector("[data-testid=service-link]")
        page.click("[data-testid=service-link]")  # and back to its service
        page.wait_for_selector("[data-testid=endpoint]")
        c.cancel_service(sid)

    page.goto(f"{server.url}/ui/#/services/no-such-service")
    page.wait_for_selector("[data-testid=not-found]")
