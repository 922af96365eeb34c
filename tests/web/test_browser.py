"""End to end in headless Chromium (Debian's, through Playwright) against a real `corral up`:
sign in, read the pool, submit through the SDK and watch the work appear and run, open its page
and live logs, cancel it, and check that a user of another queue cannot see it. Screenshots go
to test-artifacts/web/. /metrics of the same server is parsed and checked against the API."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .server import CorralUp

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
TICKER = ("import time\n"
          "for i in range(100000):\n"
          "    print(f'tick {i}', flush=True)\n"
          "    time.sleep(0.3)\n")


def job(name: str, queue: str, gpus: float, **fields: Any) -> dict[str, Any]:
    return {"name": name, "queue": queue, "gpus": gpus, "cpu": 0.1, "memory": "64MiB",
            "command": [sys.executable, "-c", TICKER], **fields}


@pytest.fixture
def page_for(browser: Any, server: CorralUp) -> Iterator[Any]:
    """page_for(token) -> a fresh signed-in page; uncaught page errors fail the test."""
    contexts, errors = [], []

    def open_page(token: str) -> Any:
        ctx = browser.new_context(viewport={"width": 1360, "height": 900})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.fill("#token", token)
        page.click("#login button[type=submit]")
        page.wait_for_selector("[data-testid=who]:has-text('·')")
        return page

    yield open_page
    for ctx in contexts:
        ctx.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sign_in_refuses_a_wrong_token_then_shows_the_pool(browser: Any, server: CorralUp
                                                          ) -> None:
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(server.url)  # `/` redirects to the dashboard
        assert page.url.endswith("/ui/")
        shot(page, "00-sign-in")
        page.fill("#token", "crl_not-a-token")
        page.click("#login button[type=submit]")
        page.wait_for_selector("#login-error:has-text('refused')")
        page.fill("#token", server.token)
        page.click("#login button[type=submit]")
        page.wait_for_selector("[data-testid=node]")
        assert page.locator("[data-testid=node]").count() == 4
        assert page.locator("[data-testid=gpu]").count() == 12
        page.wait_for_selector("[data-kpi=gpus] .kpi-value:text-is('12')")
        page.select_option("#filter-provider", "gcp-spot")
        # the filtered rows come from the server (pool/page): wait without eval (page CSP)
        from playwright.sync_api import expect

        expect(page.locator("[data-testid=node]")).to_have_count(2, timeout=20_000)
        assert page.locator("[data-testid=provider]").all_inner_texts()[0].startswith("gcp-spot")
    finally:
        ctx.close()


def test_submitted_work_appears_runs_shows_logs_and_can_be_cancelled(page_for: Any,
                                                                      server: CorralUp) -> None:
    page = page_for(server.token)
    with server.client() as c:
        wid = c.submit(job("llm-train", "research-nlp", 2, workers=2)).group_id
        frac = c.submit(job("vit-probe", "research-vision", 0.5)).group_id
    page.wait_for_selector("[data-testid=gpu][data-used='1'] [data-queue=research-nlp]")
    page.wait_for_selector("[data-testid=gpu][data-used='0.5'] [data-queue=research-vision]")
    shot(page, "01-pool-with-work")
    page.click("nav a[data-page=workloads]")
    row = page.locator(f"[data-testid=workload][data-workload='{wid}']")
    row.locator("[data-testid=state]:text-is('running')").wait_for()
    page.fill("#search", "vit-probe")
    page.wait_for_function("document.querySelectorAll('[data-testid=workload]').length === 1")
    assert page.locator(f"[data-testid=workload][data-workload='{frac}']").count() == 1
    page.fill("#search", "")
    shot(page, "02-workloads")
    row.click()
    page.wait_for_selector("[data-testid=workload-name]:text-is('llm-train')")
    page.wait_for_selector("[data-testid=placement] tbody tr >> nth=1")
    page.wait_for_selector("[data-testid=logs]:has-text('tick 3')")
    assert page.locator("[data-testid=event]").count() >= 4  # submitted .. running
    page.wait_for_selector("[data-testid=cost]:has-text('GPU-hours')")  # from /v1/ledger/usage
    shot(page, "03-workload-running")
    page.click("[data-testid=cancel]")
    page.click("[data-testid=confirm-cancel]")
    page.wait_for_selector("[data-testid=state]:text-is('cancelled')")
    assert page.locator("[data-testid=cancel]").count() == 0
    shot(page, "04-workload-cancelled")
    with server.client() as c:
        assert c.get(wid).state == "cancelled"
        c.cancel(frac)


def test_queues_show_use_fair_share_and_why_work_waits(page_for: Any, server: CorralUp) -> None:
    with server.client() as c:
        running = c.submit(job("serve", "prod", 1, gpu_models=["L4"])).group_id
        c.wait(running, states={"running"}, timeout_s=30)
        # two whole L4 nodes, while serve holds one L4 GPU: it must wait; research-nlp is owed
        # the GPUs by quota, but prod's serve is within prod's quota: nothing to reclaim
        waiting = c.submit(job("l4-gang", "research-nlp", 2, workers=2, gpu_models=["L4"])).group_id
        c.wait(waiting, states={"pending"}, timeout_s=20)
    page = page_for(server.token)
    page.click("nav a[data-page=queues]")
    page.wait_for_selector("[data-testid=queue][data-queue=research-nlp] .reason")
    names = page.locator("[data-testid=queue]").evaluate_all("rs => rs.map(r => r.dataset.queue)")
    assert names == ["prod", "research", "research-nlp", "research-vision"]
    pending = page.locator(f"[data-testid=pending] tr[data-workload='{waiting}']")
    pending.locator(".reason:text-is('ReclaimBlocked')").wait_for()
    shot(page, "05-queues")
    page.click(f"[data-testid=pending] tr[data-workload='{waiting}'] a")
    page.wait_for_selector("[data-testid=why]:has-text('Why it waits')")
    shot(page, "06-why-pending")
    with server.client() as c:
        c.cancel(waiting)
        c.cancel(running)


def test_a_user_of_another_queue_cannot_see_the_work(page_for: Any, server: CorralUp) -> None:
    with server.client() as c:
        hidden = c.submit(job("secret-run", "research-nlp", 1)).group_id
        c.wait(hidden, states={"running"}, timeout_s=30)
        bob = c.create_user("bob", queues=["research-vision"]).token
    page = page_for(bob)
    page.wait_for_selector("[data-testid=gpu] .seg.other")  # occupied, by someone else
    assert page.locator("[data-queue=research-nlp]").count() == 0
    shot(page, "07-other-user-pool")
    page.click("nav a[data-page=workloads]")
    page.click("[data-view=all]")
    page.wait_for_selector(".empty, [data-testid=workloads]")
    page.goto(f"{server.url}/ui/#/workloads/{hidden}")
    page.wait_for_selector(".callout.bad:has-text('not visible to you')")
    for name in ("pool", "queues", "workloads"):
        page.goto(f"{server.url}/ui/#/{name}")
        page.wait_for_selector("#live.ok")
        text = page.inner_text("body")
        assert "secret-run" not in text and hidden not in text and "research-nlp" not in text
    shot(page, "08-other-user-workloads")
    with server.client() as c:
        c.cancel(hidden)


def test_utilization_charts_and_simulator_reports(page_for: Any, server: CorralUp) -> None:
    with server.client() as c:
        wid = c.submit(job("charted", "research-vision", 1)).group_id
        c.wait(wid, states={"running"}, timeout_s=30)
    page = page_for(server.token)
    page.click("nav a[data-page=usage]")
    try:
        page.wait_for_selector("[data-testid=chart-queues] svg path.area[fill]")
    finally:
        shot(page, "09-utilization")
    assert page.locator("[data-testid=chart-provider]").count() == 2
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=report] img')].some(i => i.naturalWidth > 0)")
    page.wait_for_selector("[data-testid=report]:has-text('jct_p50_s')")
    shot(page, "09-utilization")
    with server.client() as c:
        c.cancel(wid)


def _scrape_until(server: CorralUp, ready: Any, timeout_s: float = 15.0
                  ) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Scrape until `ready(metrics)`: the metrics read the store through the dashboard's view,
    which may be up to a second stale by design (src/corral/web/README.md)."""
    deadline = time.monotonic() + timeout_s
    while True:
        m = _scrape(server)
        if ready(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.2)


def _scrape(server: CorralUp) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 200
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def _sum(m: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for ls, v in m.get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


def test_metrics_of_the_real_server_agree_with_its_api(server: CorralUp) -> None:
    with server.client() as c:
        for w in list(c.iter_workloads()):  # earlier tests' work: ended, not ending
            c.wait(w.id, timeout_s=30)
        wid = c.submit(job("metered", "prod", 0.5)).group_id
        c.wait(wid, states={"running"}, timeout_s=30)
        nodes, queues = c.nodes(), c.queues()

        # /metrics serves a reading up to 1 s old by design (src/corral/web/README.md): one
        # taken before the earlier work was released can still be served. Wait (bounded) for
        # a reading of the state the API just reported; a /metrics that never agrees fails below.
        def caught_up(m: dict[str, list[tuple[dict[str, str], float]]]) -> bool:
            return all(_sum(m, "corral_gpus_allocated", queue=q.name) == pytest.approx(q.used_gpus)
                       for q in queues)

        m = _scrape_until(server, caught_up)
        c.cancel(wid)
    assert _sum(m, "corral_gpus") == sum(n.gpu_count for n in nodes) == 12
    for q in queues:
        assert _sum(m, "corral_gpus_allocated", queue=q.name) == pytest.approx(q.used_gpus), q.name
        assert _sum(m, "corral_pending_workloads", queue=q.name) == q.pending, q.name
    assert _sum(m, "corral_gpus_allocated", queue="prod", provider="gcp-spot") >= 0.5
    assert _sum(m, "corral_workloads_submitted_total") >= 1
    assert _sum(m, "corral_api_request_duration_seconds_count", route="/v1/workloads",
                method="POST") >= 1
    assert _sum(m, "corral_schedule_cycles_total") > 0
    assert _sum(m, "corral_schedule_cycle_duration_seconds_count") > 0
    assert _sum(m, "corral_placements_total") >= 1
