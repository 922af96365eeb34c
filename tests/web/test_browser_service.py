"""The dashboard's service page in headless Chromium against a real `corral up` (issue 12): a
service of two real HTTP replicas shows its endpoint URL (which answers through the gateway),
its replicas with their states, and a scale change as an event with its reason; a replica's
workload page links to it. Screenshot: test-artifacts/web/20-service.png.

It shares one server with test_browser_services.py (SHARED_SERVER): each reads only its own
service, found by its id, and cancels it at the end."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .browsing import shot
from .echo_service import echo_service
from .server import CorralUp

# its replicas listen on endpoint ports (20000 + seq, the same seqs in every store): on the
# worker of the other modules that bind them (tests/control/test_service_rollout.py saw one of
# these accept on a port it expects closed, under -n 3 --dist loadgroup)
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("replica-ports")]

TIMEOUT_MS = 30_000
SHARED_SERVER = True


def test_the_service_page_shows_its_endpoint_replicas_and_scale_events(
        page: Any, server: CorralUp) -> None:
    with server.client() as c:
        sid = c.submit(echo_service()).group_id
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
