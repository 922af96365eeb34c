"""The Credits page's spend over time (issue 14), in headless Chromium against a real `corral up`:
the two day charts (credits charged and GPU-hours per queue and UTC day) draw exactly the
figures of the ledger's report by day and queue, their legend gives the server's totals and the
table its rows; and the page asks the same few requests whatever the number of queues (a member
of 2 queues, then of 20: one ledger request, /v1/ledger/summary, never one per queue), showing only the
queues that member may see. Screenshots go to test-artifacts/web/ (32-...)."""

from __future__ import annotations

import calendar
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from corral.sdk.ledger import Ledger, UsageReport

from .browsing import shot
from .server import CorralUp

pytestmark = pytest.mark.browser

TIMEOUT_MS = 20_000
QUEUE = "research-vision"
CHARGED = (QUEUE, "prod")
DAY = 86400
#: what one refresh of the page asks the ledger, whatever the number of queues
LEDGER_REQUESTS = 1


def _charged_runs(server: CorralUp) -> None:
    """Metered jobs in two queues that run a few seconds and are cancelled: usage on today's
    rows, at a price (1 credit per GPU-second) that makes the seconds show in credits."""
    with server.client() as c:
        Ledger(c).add_price("3600")
        wids = []
        for queue in CHARGED:
            Ledger(c).grant(queue, "100000", memo="credits chart test")
            job = {"name": f"credits-chart-{queue}", "queue": queue, "gpus": 1, "cpu": 0.1,
                   "memory": "64MiB", "command": [sys.executable, "-c", "import time; time.sleep(600)"]}
            wids.append(c.submit(job).workloads[0].id)
        for wid in wids:
            c.wait(wid, states={"running"}, timeout_s=30)
        time.sleep(2)
        for wid in wids:
            c.cancel(wid)
            c.wait(wid, timeout_s=30)
        deadline = time.monotonic() + 15
        while Ledger(c).holds(open_only=True) and time.monotonic() < deadline:
            time.sleep(0.2)


def _open_credits(page: Any) -> None:
    page.click("nav a[data-page=pool]")  # (re)mounted: the page reads the ledger at once
    page.click("nav a[data-page=credits]")
    page.wait_for_selector("[data-testid=balance]")


def _series(page: Any, chart: str) -> dict[str, list[float]]:
    """Each queue's figures per day as the chart drew them (the area's data-values)."""
    from playwright.sync_api import expect  # drawn once its box has a width (ResizeObserver)
    areas = page.locator(f"[data-testid={chart}] svg [data-layer]")
    expect(areas.first).to_be_attached()
    return {a.get_attribute("data-layer"): [float(v) for v in a.get_attribute("data-values").split(",")]
            for a in areas.all()}


def _expected(report: UsageReport, since: float, days: int, field: str) -> dict[str, list[float]]:
    """The report's rows laid out as the page lays them: one figure per day since `since`."""
    out: dict[str, list[float]] = {}
    for r in report.rows:
        day = calendar.timegm(time.strptime(r.group["day"], "%Y-%m-%d"))
        out.setdefault(r.group["queue"], [0.0] * days)[int((day - since) // DAY)] += \
            float(getattr(r, field))
    return out


def test_the_day_charts_draw_the_ledgers_figures(page: Any, server: CorralUp) -> None:
    _charged_runs(server)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/ledger/" in r.url else None)
    _open_credits(page)
    cost = _series(page, "usage-days-chart")
    hours = _series(page, "usage-days-hours-chart")
    assert {urlsplit(u).path for u in asked} == {"/v1/ledger/summary"}  # drawn from it alone
    [days_asked] = {parse_qs(urlsplit(u).query)["days"][0] for u in asked}
    with server.client() as c:
        summary = Ledger(c).summary(days=int(days_asked))
        since = summary.since
        report = Ledger(c).usage(by=["day", "queue"], since=since, totals=["queue"])
    assert summary.by_day == report
    days = len(next(iter(cost.values())))
    assert {t.group["queue"] for t in report.totals if float(t.cost) > 0} == set(CHARGED)
    assert cost == _expected(report, since, days, "cost")
    assert hours == _expected(report, since, days, "gpu_hours")
    for t in report.totals:  # the legend: the server's totals, not sums of rounded rows
        chip = page.locator(f"[data-testid=usage-day][data-queue={t.group['queue']}]")
        assert chip.locator("[data-testid=cost]").text_content() == t.cost
        assert chip.locator("[data-testid=gpu-hours]").text_content() == t.gpu_hours
    assert page.locator("[data-testid=usage-day]").count() == len(report.totals)
    rows = page.locator("[data-testid=usage-day-row]")  # the exact figures, row for row
    assert rows.count() == len(report.rows)
    for r in report.rows:
        row = page.locator(f"[data-testid=usage-day-row][data-day='{r.group['day']}']"
                           f"[data-queue={r.group['queue']}]")
        assert row.locator("[data-testid=cost]").text_content() == r.cost
        assert row.locator("[data-testid=gpu-hours]").text_content() == r.gpu_hours
    shot(page, "32-credits-days")


def _ledger_requests_as(browser: Any, server: CorralUp, token: str, queues: set[str]
                        ) -> tuple[set[str], int]:
    """(the distinct ledger requests, how many) of the Credits page opened by `token`'s user,
    until it shows that user's queues and their grants."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    asked: list[str] = []
    try:
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.url)
        page.fill("#token", token)
        page.click("#login button[type=submit]")
        page.wait_for_selector("[data-testid=who]:has-text('·')")
        page.on("request", lambda r: asked.append(r.url) if "/v1/ledger/" in r.url else None)
        page.click("nav a[data-page=credits]")
        page.wait_for_selector("[data-testid=grants]")
        shown = {b.get_attribute("data-queue")
                 for b in page.locator("[data-testid=balance]").all()}
        assert shown == queues  # a member sees only their queues
        if len(queues) > 2:
            shot(page, "33-credits-member-20-queues")
        distinct = {u.split("/v1/ledger/", 1)[1] for u in asked}
        return distinct, len(asked)
    finally:
        ctx.close()


def test_as_many_requests_for_20_queues_as_for_2(browser: Any, server: CorralUp) -> None:
    mine = {QUEUE, "prod"}
    with server.client() as c:
        token = c.create_user("carol", queues=sorted(mine)).token
        for q in mine:
            Ledger(c).grant(q, "10", memo="carol's")
    two, count_two = _ledger_requests_as(browser, server, token, mine)
    with server.client() as c:
        for i in range(18):
            name = f"team-{i:02d}"
            c.create_queue(name)
            c.add_member(name, "carol")
            Ledger(c).grant(name, "10", memo="carol's")
            mine.add(name)
    twenty, count_twenty = _ledger_requests_as(browser, server, token, mine)
    assert len(mine) == 20
    assert not [u for u in twenty if u.startswith("queues/")], twenty  # never one per queue
    assert twenty == two, (two, twenty)
    assert len(twenty) == LEDGER_REQUESTS, twenty
    # one refresh asked it all (a second, 10 s later, would ask the same again)
    assert count_two % LEDGER_REQUESTS == 0 and count_twenty % LEDGER_REQUESTS == 0
