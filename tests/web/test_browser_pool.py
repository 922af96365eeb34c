"""More of the dashboard in headless Chromium against a real `corral up` (issue 7): a cordoned
node carries its badge on the Pool page until it is uncordoned (and its free GPUs count as
unavailable, on the page as in /v1/providers); the region and GPU-model filters keep exactly
the matching nodes of /v1/nodes; a workload that failed once and was restarted shows its spec
and its restart count. Screenshots go to test-artifacts/web/ (10-...).

Its own server and browser (module-scoped), so it runs alone or next to test_browser.py."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from .browsing import shot
from .server import CorralUp

pytestmark = pytest.mark.browser

TIMEOUT_MS = 20_000

# Fails its first attempt, succeeds on the restart: the checkpoint dir (the same on every
# attempt) remembers that it already ran once.
FAILS_ONCE = ("import os, pathlib, sys\n"
              "d = pathlib.Path(os.environ['CORRAL_CHECKPOINT_DIR'])\n"
              "if (d / 'ckpt-1').exists():\n"
              "    print('resumed from', os.environ['CORRAL_RESUME_FROM'], flush=True)\n"
              "    sys.exit(0)\n"
              "d.mkdir(parents=True, exist_ok=True)\n"
              "(d / 'ckpt-1').write_text('step 1')\n"
              "print('first attempt: failing on purpose', flush=True)\n"
              "sys.exit(3)\n")


def shown_nodes(page: Any) -> list[str]:
    return sorted(page.locator("[data-testid=node]").evaluate_all(
        "rows => rows.map(r => r.dataset.node)"))


def wait_for_rows(page: Any, n: int) -> None:
    # the page now loads each filter's nodes from the server: the rows arrive later, and
    # wait_for_function's polling would eval a string (refused by the page's CSP)
    from playwright.sync_api import expect

    expect(page.locator("[data-testid=node]")).to_have_count(n, timeout=TIMEOUT_MS)


def wait_for_nodes(page: Any, want: list[str]) -> None:
    """Until the rows shown are exactly `want` (sorted): a filter's rows come from the server,
    and the rows of the last filter may have the same count."""
    for _ in range(TIMEOUT_MS // 50):
        if shown_nodes(page) == want:
            return
        page.wait_for_timeout(50)
    assert shown_nodes(page) == want


CORDONED_BADGE = "[data-testid=badge][data-badge=cordoned]"


def test_a_cordoned_node_carries_a_badge_until_uncordoned(page: Any, server: CorralUp) -> None:
    with server.client() as c:
        nodes = c.nodes()
        target = nodes[0].id
        page.wait_for_selector("[data-testid=node]")
        assert page.locator(f"[data-testid=node] {CORDONED_BADGE}").count() == 0
        row = page.locator(f"[data-testid=node][data-node='{target}']")
        try:
            assert c.cordon(target).cordoned
            row.locator(CORDONED_BADGE).wait_for()  # the page polls every 2 s
            assert row.locator(CORDONED_BADGE).text_content() == "cordoned"
            assert "cordoned" in (row.get_attribute("class") or "")
            marked = page.locator(f"[data-testid=node]:has({CORDONED_BADGE})")
            assert marked.evaluate_all("rs => rs.map(r => r.dataset.node)") == [target]
            # the strip and /v1/providers count the cordoned node's idle GPUs as unavailable
            out = sum(p.gpus_unavailable for p in c.providers())
            assert out == nodes[0].gpu_count - nodes[0].gpus_used
            page.wait_for_selector(f"[data-kpi=unavailable] .kpi-value:text-is('{out:g}')")
            shot(page, "10-pool-cordoned-node")
        finally:
            c.uncordon(target)
        row.locator(CORDONED_BADGE).wait_for(state="detached")
        assert page.locator(f"[data-testid=node] {CORDONED_BADGE}").count() == 0
        assert "cordoned" not in (row.get_attribute("class") or "")
        shot(page, "11-pool-uncordoned-node")


def test_region_and_gpu_model_filters_keep_the_matching_nodes(page: Any, server: CorralUp
                                                             ) -> None:
    with server.client() as c:
        nodes = c.nodes()
    regions = sorted({n.region for n in nodes})
    models = sorted({n.gpu_model for n in nodes})
    assert len(regions) >= 2 and len(models) >= 2  # else a filter proves nothing
    page.wait_for_selector("[data-testid=node]")
    wait_for_rows(page, len(nodes))
    assert page.locator("#filter-region option").evaluate_all(
        "os => os.map(o => o.value)") == ["", *regions]
    assert page.locator("#filter-gpu_model option").evaluate_all(
        "os => os.map(o => o.value)") == ["", *models]

    for region in regions:
        want = sorted(n.id for n in nodes if n.region == region)
        page.select_option("#filter-region", region)
        wait_for_nodes(page, want)
    shot(page, "12-pool-filter-region")
    page.select_option("#filter-region", "")
    wait_for_rows(page, len(nodes))

    for model in models:
        want = sorted(n.id for n in nodes if n.gpu_model == model)
        page.select_option("#filter-gpu_model", model)
        wait_for_nodes(page, want)
        assert all(t.startswith(model) for t in page.locator(
            "[data-testid=node] .node-name .sub").all_inner_texts()), model
    shot(page, "13-pool-filter-gpu-model")

    # both at once: a model that the region does not have leaves no row, and says so
    model = models[-1]
    region = next((r for r in regions
                   if not any(n.region == r and n.gpu_model == model for n in nodes)), None)
    assert region is not None, "the test pool (server.py) has a region without some model"
    page.select_option("#filter-region", region)
    wait_for_rows(page, 0)
    page.wait_for_selector(".pool .empty:has-text('No node matches')")
    page.select_option("#filter-region", "")
    page.select_option("#filter-gpu_model", "")
    wait_for_rows(page, len(nodes))


def test_a_restarted_workload_shows_its_spec_and_restart_count(page: Any, server: CorralUp
                                                              ) -> None:
    spec = {"name": "flaky-once", "queue": "prod", "gpus": 0.25, "cpu": 0.1, "memory": "64MiB",
            "max_restarts": 2, "restart_backoff": "1s", "restart_on": [{"exit_code": [3]}],
            "command": [sys.executable, "-c", FAILS_ONCE]}
    with server.client() as c:
        wid = c.submit(spec).group_id
        done = c.wait(wid, timeout_s=60)
        events = c.events(wid).items
    assert (done.state, done.restart_count, done.attempt) == ("succeeded", 1, 1), done
    page.goto(f"{server.url}/ui/#/workloads/{wid}")
    page.wait_for_selector("[data-testid=workload-name]:text-is('flaky-once')")
    page.wait_for_selector("[data-testid=restarts]:text-is('1 of 2 allowed')")
    page.wait_for_selector("[data-testid=spec]:has-text('CORRAL_CHECKPOINT_DIR')")
    text = page.inner_text("[data-testid=spec]")
    assert '"max_restarts": 2' in text and "failing on purpose" in text
    # the timeline shows the failed attempt and the restart, as the API recorded them
    page.wait_for_function(f"document.querySelectorAll('[data-testid=event]').length >= {len(events)}")
    timeline = " ".join(page.locator("[data-testid=event]").all_inner_texts())
    assert "attempt 1" in timeline
    page.wait_for_selector("[data-testid=logs]:has-text('resumed from')")
    page.wait_for_selector("[data-kpi=running] .kpi-value:text-is('0')")  # the strip caught up
    # a finished workload never reads "not yet": a start time, or why there is none (a worker
    # that ends between two polls of the control loop is never seen running)
    started = page.inner_text("dl.facts dt:text-is('Started') + dd")
    assert started != "not yet"
    assert ("not observed" in started) == (done.started_at is None), (started, done.started_at)
    shot(page, "14-workload-restarted")


def test_the_pool_page_is_drawn_page_by_page_from_summaries(page: Any, server: CorralUp) -> None:
    """Issue 16: the Pool page asks the server for one page of matching nodes with each
    provider's sums (/v1/dashboard/pool/page), never for the whole pool view; paging shows
    every node exactly once, and a filter pages the matching nodes only."""
    from playwright.sync_api import expect

    with server.client() as c:
        nodes = c.nodes()
    assert len(nodes) > 2, "the test's pool must be larger than its page"
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(f"{server.url}/ui/?pool_page=2#/pool")
    seen: list[str] = []
    while True:
        page.wait_for_selector("[data-testid=pager-status]")
        page.wait_for_selector("[data-testid=node]")
        rows = shown_nodes(page)
        assert 1 <= len(rows) <= 2
        seen += rows
        status = page.locator("[data-testid=pager-status]").inner_text()
        assert status.endswith(f"of {len(nodes)}"), status
        nxt = page.locator("[data-testid=pager-next]")
        if nxt.is_disabled():
            break
        nxt.click()
        expect(page.locator(f"[data-testid=node][data-node='{rows[0]}']")).to_have_count(
            0, timeout=TIMEOUT_MS)
    shot(page, "16-pool-paged")
    assert sorted(seen) == sorted(n.id for n in nodes)  # each once, none missing
    groups = page.locator("[data-testid=provider] .use").all_inner_texts()
    assert groups and all("GPUs allocated" in g for g in groups)
    assert not any(u.split("?")[0].endswith("/v1/dashboard/pool") for u in asked)
    assert any("/v1/dashboard/pool/page" in u for u in asked)

    model = sorted({n.gpu_model for n in nodes})[0]
    page.select_option("#filter-gpu_model", model)
    want = sorted(n.id for n in nodes if n.gpu_model == model)
    if len(want) > 2:  # still paged: the first page of the matching nodes
        expect(page.locator("[data-testid=pager-status]")).to_have_text(
            f"nodes 1–2 of {len(want)}", timeout=TIMEOUT_MS)
        assert set(shown_nodes(page)) <= set(want) and len(shown_nodes(page)) == 2
    else:  # one page: no pager
        wait_for_nodes(page, want)
        # the same nodes may still be on the page from the last unfiltered page: wait for
        # the filtered answer's render, which has no pager
        expect(page.locator("[data-testid=pager-status]")).to_have_count(
            0, timeout=TIMEOUT_MS)
