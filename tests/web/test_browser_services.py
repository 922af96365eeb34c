"""The dashboard's Services page in headless Chromium against a real `corral up` (issue 12): a
service of two real HTTP replicas is listed with its endpoint and 2/2 ready, and the requests
sent through the gateway show as requests/s, p50 / p99 latency and 0 errors, with its traffic
charts. Screenshot: test-artifacts/web/21-services.png.

It shares one server with test_browser_service.py (SHARED_SERVER): each reads only its own
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
REQUESTS = 30


def test_the_services_page_lists_each_service_with_its_traffic_and_charts(
        page: Any, server: CorralUp) -> None:
    with server.client() as c:
        sid = c.submit(echo_service()).group_id
        page.goto(f"{server.url}/ui/#/services")
        row = f"[data-testid=service-row][data-service={sid}]"
        page.wait_for_selector(f"{row} [data-testid=service-replicas]:has-text('2/2')")
        assert page.locator("nav a.current").inner_text() == "Services"
        assert page.locator(f"{row} [data-testid=service-endpoint]").inner_text() == \
            f"/serve/{sid}/"
        with httpx.Client(base_url=f"{server.url}/serve/{sid}", timeout=10) as gateway:
            codes = [gateway.get("/").status_code for _ in range(REQUESTS)]
        assert codes == [200] * REQUESTS
        # the gateway's counters are sampled every few seconds: wait for the requests to show
        page.wait_for_function(
            "s => { const c = document.querySelector(s); return c && parseFloat(c.textContent) > 0 }",
            arg=f"{row} [data-testid=service-rps]")
        assert page.locator(f"{row} [data-testid=service-p50]").inner_text().endswith(" ms")
        assert page.locator(f"{row} [data-testid=service-p99]").inner_text().endswith(" ms")
        assert page.locator(f"{row} [data-testid=service-errors]").inner_text().startswith("0 ")
        charts = f"[data-testid=service-charts][data-service={sid}]"
        page.wait_for_selector(f"{charts} [data-testid=chart-requests] svg")
        page.wait_for_selector(f"{charts} [data-testid=chart-latency] svg")
        shot(page, "21-services")
        page.click(f"{row} a[href='#/services/{sid}']")  # to the service's own page
        page.wait_for_selector("[data-testid=endpoint]")
        c.cancel_service(sid)
