"""Measured GPU use on the Pool page, in headless Chromium against a real `corral up` whose own
host is the local backend's node: its NVML is `corral.testing.fake_pynvml` (a fake pynvml first
on the server's PYTHONPATH: two GPUs, 2% busy), probed every 0.5 s. A job holds one GPU: its
cell is outlined "held, barely used" with the measured use in its tooltip; the free GPU is not
outlined; /v1/nodes says the same per device. No GPU is used (a real one: backends/README.md)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.testing.corral_up import CorralServer, up_on_fake_gpus
from corral.testing.fake_pynvml import FakeGpu

from .browsing import shot

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           chromium_launch_kwargs: dict[str, Any]) -> Iterator[CorralServer]:
    gpus = [FakeGpu(utilization_pct=2, memory_used_mib=300) for _ in range(2)]
    with up_on_fake_gpus(tmp_path_factory.mktemp("gpu-use"), gpus) as s:
        yield s


def test_a_held_gpu_measured_idle_is_outlined_on_the_pool_page(
        page: Any, server: CorralServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with server.client() as c:
        [node] = c.nodes()
        assert node.gpu_count == 2, "the fake NVML's two GPUs are the local inventory"
        wid = c.submit({"name": "holds-idle", "queue": "default", "gpus": 1, "cpu": 0.1,
                        "memory": 64, "command": [sys.executable, "-c",
                                                  "import time; time.sleep(600)"]}).group_id
        try:
            page.goto(f"{server.url}/#/pool")
            held = page.locator("[data-testid=gpu].idle-held")
            expect(held).to_have_count(1, timeout=TIMEOUT_MS)
            assert held.get_attribute("data-busy") == "2"
            assert "measured: 2% busy · 0.3 / " in (held.get_attribute("title") or "")
            free = page.locator("[data-testid=gpu]:not(.idle-held)")
            assert free.count() == 1 and "measured: 2% busy" in (free.get_attribute("title") or "")
            shot(page, "30-pool-held-but-idle")
            devices = {d.device: d for d in next(iter(c.nodes())).devices}
            assert sorted(devices) == [0, 1]
            assert [devices[i].utilization for i in (0, 1)] == [0.02, 0.02]
            assert sorted(len(d.workloads) for d in devices.values()) == [0, 1]
            # members: the holder's queue sees the outline, another tenant the use only
            c.create_queue("elsewhere", quota_gpus=0)
            mine = c.create_user("e-ann", queues=["default"]).token
            theirs = c.create_user("e-bob", queues=["elsewhere"]).token
            assert _outlined(page, server.url, mine) == (1, "2")
            assert _outlined(page, server.url, theirs) == (0, "2")
        finally:
            c.cancel(wid)


def _outlined(admin_page: Any, url: str, token: str) -> tuple[int, str]:
    """Signed in with `token` in a fresh context: the pool page's outlined cells, once each
    cell shows its measured use, and the busy figure of the first cell."""
    ctx = admin_page.context.browser.new_context(viewport={"width": 1360, "height": 900})
    try:
        p = ctx.new_page()
        p.set_default_timeout(TIMEOUT_MS)
        p.goto(url)
        p.fill("#token", token)
        p.click("#login button[type=submit]")
        p.wait_for_selector("[data-testid=who]:has-text('·')")
        p.goto(f"{url}/#/pool")
        p.wait_for_selector("[data-testid=gpu][data-busy='2']")
        legend = p.locator("[data-testid=idle-held-legend]").get_attribute("title") or ""
        assert "under 10% busy" in legend and "300 s" in legend, legend
        cells = p.locator("[data-testid=gpu]")
        return p.locator("[data-testid=gpu].idle-held").count(), cells.first.get_attribute(
            "data-busy") or ""
    finally:
        ctx.close()
