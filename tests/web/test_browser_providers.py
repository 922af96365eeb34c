"""The Providers page in headless Chromium against a real `corral up` (issue 11): each provider
with its nodes and lifecycle, the instances corral rented with their state and price, and the
money spent per provider, as /v1/dashboard/providers says, updated live.

The server runs the local backend (nothing is rented), so the test writes into its store what
the autoscaler writes when it rents (`autoscale.launch` with the offer, `autoscale.drain`,
`autoscale.terminate`: corral.control.autoscale) and adds a renting provider through the API;
the page is read from those. Screenshots go to test-artifacts/web/ (20-...)."""

from __future__ import annotations

from typing import Any

import pytest

from corral.store import Store, audit
from corral.store.database import sqlite_url

from .browsing import shot
from .server import CorralUp

pytestmark = pytest.mark.browser

TIMEOUT_MS = 20_000
AWS = {"name": "aws-use1", "kind": "aws", "max_nodes": 4,
       "settings": {"region": "us-east-1", "image_id": "ami-0123abcd",
                    "instance_types": ["g6.xlarge"], "profile": "corral-prod"}}


def _offer(kind: str, price: str) -> dict[str, str]:
    return {"provider": "aws-use1", "instance_type": "g6.xlarge", "zone": "us-east-1a",
            "capacity_kind": kind, "price_per_hour": price, "source": "test", "as_of": "x"}


def _record(server: CorralUp, at: float, action: str, target: str,
            detail: dict[str, Any]) -> None:
    store = Store(sqlite_url(server.data_dir / "corral.db"))
    try:
        with store.write() as conn:
            audit.record(conn, at=at, actor="autoscaler", action=f"autoscale.{action}",
                         target=target, detail=detail)
    finally:
        store.close()


def test_providers_instances_and_money(page: Any, server: CorralUp) -> None:
    import time

    with server.client() as c:
        c.add_provider(AWS)
        pool = {p.name for p in c.providers()}
    page.click("nav a[data-page=providers]")
    page.wait_for_selector("[data-testid=provider][data-provider=aws-use1]")
    shown = set(page.locator("[data-testid=provider]").evaluate_all(
        "rs => rs.map(r => r.dataset.provider)"))
    assert shown == pool | {"aws-use1"}  # the pool file's providers and the added one
    row = page.locator("[data-testid=provider][data-provider=aws-use1]")
    assert row.locator("[data-testid=lifecycle]").text_content() == "active"
    page.wait_for_selector("[data-testid=instances], .card .empty:has-text('rented nothing')")

    # the autoscaler rents two instances an hour ago; one is drained and returned after 30 min
    t0 = time.time() - 3600
    _record(server, t0, "launch", "i-od,i-spot2", {"reason": "launch 1 x g6.xlarge: 1 job waits",
                                                   "offer": _offer("on-demand", "0.80")})
    _record(server, t0, "launch", "i-spot", {"reason": "launch 1 x g6.xlarge spot",
                                             "offer": _offer("spot", "0.30")})
    _record(server, t0 + 1500, "drain", "node-x", {"reason": "drain node-x: idle",
                                                   "instance": "i-spot2"})
    _record(server, t0 + 1800, "terminate", "i-spot2", {"reason": "terminate i-spot2: drained"})
    page.wait_for_selector("[data-testid=instance][data-instance=i-spot2][data-state=terminated]")
    states = dict(page.locator("[data-testid=instance]").evaluate_all(
        "rs => rs.map(r => [r.dataset.instance, r.dataset.state])"))
    assert states == {"i-od": "provisioning", "i-spot": "provisioning", "i-spot2": "terminated"}
    spot2 = page.locator("[data-testid=instance][data-instance=i-spot2]")
    assert spot2.locator("[data-testid=price]").text_content() == "0.80/h"
    assert spot2.locator("[data-testid=instance-spent]").text_content() == "0.40"  # 0.80 x 0.5 h
    # money per provider: what the page shows is what the API says, 2 live instances
    with server.client() as c:
        api = c._call("GET", "/v1/dashboard/providers").json()
    (aws,) = [p for p in api["providers"] if p["name"] == "aws-use1"]
    assert aws["live_instances"] == 2 and aws["spend_per_hour"] == pytest.approx(1.10)
    assert 0.40 + 0.80 + 0.30 - 0.01 <= aws["spent"] <= 0.40 + 1.10 * 1.1  # about an hour up
    row.locator("[data-testid=live]:text-is('2')").wait_for()
    assert row.locator("[data-testid=rate]").text_content() == "1.10/h"
    shot(page, "20-providers-instances-and-money")
