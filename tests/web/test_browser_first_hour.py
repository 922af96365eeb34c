"""The pages a first-hour user opens, checked against what the API says (issue 14), in headless
Chromium against a real `corral up`: the Credits page (credits per queue, open holds, grants,
what GPU time was charged per queue and day and per provider: every figure as /v1/ledger
answers it), the Allocation page's label (it shows allocation, not measured use, and says so),
the strip of numbers on every page (as GET /v1/providers and /v1/workloads count) and the
Queues page (as GET /v1/queues).
Screenshots go to test-artifacts/web/ (30-...)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from corral.sdk.ledger import Ledger

from .browsing import shot
from .server import CorralUp

pytestmark = pytest.mark.browser

TIMEOUT_MS = 20_000
QUEUE = "research-vision"
SLEEPER = "import time; time.sleep(600)"
T = TypeVar("T")


def _job(name: str, gpus: float = 1) -> dict[str, Any]:
    return {"name": name, "queue": QUEUE, "gpus": gpus, "cpu": 0.1, "memory": "64MiB",
            "command": [sys.executable, "-c", SLEEPER]}


@pytest.fixture
def running(server: CorralUp) -> Iterator[str]:
    """A metered job running in QUEUE (credits granted first, so it holds some); cancelled
    after the test, however it ends."""
    with server.client() as c:
        Ledger(c).grant(QUEUE, "500", memo="first-hour test")
        wid = c.submit(_job("credits-run")).workloads[0].id
    try:
        with server.client() as c:
            c.wait(wid, states={"running"}, timeout_s=30)
            deadline = time.monotonic() + 15
            while not Ledger(c).holds(QUEUE, open_only=True) and time.monotonic() < deadline:
                time.sleep(0.2)
        yield wid
    finally:
        with server.client() as c:
            if c.get(wid).state not in {"succeeded", "failed", "cancelled"}:
                c.cancel(wid)


def _cells(page: Any, row: str, testids: list[str]) -> dict[str, str]:
    return {t: page.locator(f"{row} [data-testid={t}]").text_content() for t in testids}


def _agreed(read: Callable[[], tuple[T, T]], timeout_s: float = 10.0) -> tuple[T, T]:
    """(what the API says, what the page shows), read again until they agree or the time is
    up: the page re-reads every 2 s from a reading cached up to 1 s, so work that just ended
    may still be drawn for a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        api, shown = read()
        if api == shown or time.monotonic() > deadline:
            return api, shown
        time.sleep(0.5)


def _open_credits(page: Any) -> None:
    page.click("nav a[data-page=pool]")  # (re)mounted: the page reads the ledger at once
    page.click("nav a[data-page=credits]")
    page.wait_for_selector(f"[data-testid=balance][data-queue={QUEUE}]")


def test_credits_page_says_what_the_ledger_says(page: Any, server: CorralUp,
                                               running: str) -> None:
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/ledger/" in r.url else None)
    _open_credits(page)
    with server.client() as c:
        ledger = Ledger(c)
        [hold] = ledger.holds(QUEUE, open_only=True)
        balance = ledger.balance(QUEUE)
        grants = ledger.grants(QUEUE)
    row = f"[data-testid=hold][data-workload='{running}']"
    page.wait_for_selector(row)
    assert page.locator(f"{row} [data-testid=hold-amount]").text_content() == hold.amount
    assert page.locator(f"{row} a").get_attribute("href") == f"#/workloads/{running}"
    shown = _cells(page, f"[data-testid=balance][data-queue={QUEUE}]",
                   ["granted", "held", "available"])
    assert shown == {"granted": balance.granted, "held": balance.held,
                     "available": balance.available}
    grant_rows = page.locator(f"[data-testid=grant][data-queue={QUEUE}]")
    assert grant_rows.count() == len(grants)
    assert grant_rows.first.locator("[data-testid=grant-amount]").text_content() == "500.00"
    # one request a refresh for all of it (the summary), not two per queue
    paths = [u.split("/v1/ledger/", 1)[1].split("?")[0] for u in asked]
    assert set(paths) == {"summary"}, paths
    assert page.locator("[data-testid=balance]").count() > 1  # several queues to ask about
    shot(page, "30-credits-running")

    with server.client() as c:  # ended: settled, and the figures stop moving
        c.cancel(running)
        c.wait(running, timeout_s=30)
        deadline = time.monotonic() + 15
        while Ledger(c).holds(QUEUE, open_only=True) and time.monotonic() < deadline:
            time.sleep(0.2)
    _open_credits(page)
    page.wait_for_selector("[data-testid=usage-provider]")
    with server.client() as c:
        ledger = Ledger(c)
        balances = {b.queue: b for b in ledger.balances()}
        window = ledger.summary(days=14).since  # the page's: the last 14 UTC days
        by_provider = ledger.usage(by=["provider"], since=window)
        total = ledger.usage(by=["queue"], since=window)
    for queue, b in balances.items():
        shown = _cells(page, f"[data-testid=balance][data-queue={queue}]",
                       ["available", "held", "charged", "granted", "debt"])
        assert shown == {"available": b.available, "held": b.held, "charged": b.settled,
                         "granted": b.granted, "debt": b.debt}, queue
    assert any(float(r.gpu_hours) > 0 for r in by_provider.rows)  # the run was metered
    for r in by_provider.rows:
        prov = f"[data-testid=usage-provider][data-provider={r.group['provider']}]"
        assert page.locator(f"{prov} [data-testid=cost]").text_content() == r.cost
        assert page.locator(f"{prov} [data-testid=gpu-hours]").text_content() == \
            f"{float(r.gpu_hours):.3f}"
    assert page.locator("[data-testid=usage-provider]").count() == len(by_provider.rows)
    assert f"Charged in the last 14 days: {total.total_cost} {total.currency}" in \
        page.locator("[data-testid=spent-total]").text_content()
    # what each queue was charged per day: a chart, its legend each queue's total over the
    # days as the server sums it (totals=queue), the same as the report by queue alone
    since = (time.time() // 86400 - 13) * 86400
    with server.client() as c:
        days = Ledger(c).usage(by=["day", "queue"], since=since, totals=["queue"])
        by_queue = Ledger(c).usage(by=["queue"], since=since)
    assert days.totals == by_queue.rows
    by_day = {t.group["queue"]: t.cost for t in days.totals}
    from playwright.sync_api import expect  # drawn once its box has a width (ResizeObserver)
    expect(page.locator("[data-testid=usage-days-chart] svg [data-layer]")).to_have_count(
        len(by_day))
    chip = page.locator(f"[data-testid=usage-day][data-queue={QUEUE}]")
    assert chip.count() == 1
    assert chip.locator("[data-testid=cost]").text_content() == by_day[QUEUE]
    assert page.locator("[data-testid=hold]").count() == 0
    shot(page, "31-credits-settled")


def test_allocation_is_not_called_utilization(page: Any) -> None:
    link = page.locator("nav a[data-page=usage]")
    assert link.text_content() == "Allocation"
    assert "Utilization" not in page.locator("nav").inner_text()
    link.click()
    note = page.locator("[data-testid=allocation-note]")
    note.wait_for()
    assert "Allocated is not measured use" in note.text_content()
    assert page.locator("h1").text_content() == "GPU allocation"


def test_the_number_strip_agrees_with_the_api(page: Any, server: CorralUp) -> None:
    with server.client() as c:
        wid = c.submit(_job("strip-run", gpus=0.5)).workloads[0].id
        c.wait(wid, states={"running"}, timeout_s=30)

    def strip_from_api() -> dict[str, float]:
        with server.client() as c:
            providers = c.providers()
            running = sum(1 for _ in c.iter_workloads(state=["running"]))
            pending = sum(1 for _ in c.iter_workloads(state=["pending"]))
        return {"gpus": sum(p.gpus_total for p in providers),
                "allocated": sum(p.gpus_allocated for p in providers),
                "idle": sum(p.gpus_idle for p in providers),
                "running": running, "pending": pending}

    try:
        want, shown = _agreed(lambda: (strip_from_api(), {
            k: float(page.locator(f"[data-kpi={k}] .kpi-value").text_content())
            for k in ("gpus", "allocated", "idle", "running", "pending")}))
        assert shown == want
        assert want["allocated"] >= 0.5
    finally:
        with server.client() as c:
            c.cancel(wid)


def test_the_queues_page_agrees_with_the_api(page: Any, server: CorralUp) -> None:
    """A child queue's work counts in its parent's use on both (issue 14's audit found the
    API's parent at 0 while the dashboard said 24.5)."""
    with server.client() as c:
        wid = c.submit({**_job("queue-run"), "queue": "research-nlp"}).workloads[0].id
        c.wait(wid, states={"running"}, timeout_s=30)
    try:
        page.click("nav a[data-page=queues]")
        page.wait_for_selector("[data-testid=queue][data-queue=research-nlp] "
                               "[data-testid=running]:text-is('1')")

        def both() -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
            with server.client() as c:
                queues = c.queues()
            api = {q.name: {"used": f"{q.used_gpus:g}", "quota": f"{q.quota_gpus:g}",
                            "limit": "none" if q.limit_gpus is None else f"{q.limit_gpus:g}",
                            "running": str(q.running)} for q in queues}
            shown = {name: _cells(page, f"[data-testid=queue][data-queue={name}]",
                                  ["used", "quota", "limit", "running"]) for name in api}
            return api, shown

        api, shown = _agreed(both)
        assert shown == api
        assert float(api["research"]["used"]) >= 1  # the child's GPU counts in its parent
        shot(page, "32-queues-against-api")
    finally:
        with server.client() as c:
            c.cancel(wid)
