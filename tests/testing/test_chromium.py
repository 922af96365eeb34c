"""The Chromium harness drives Debian's /usr/bin/chromium headless through Playwright (no
browser download) and through a plain command line, and both render and screenshot a page."""

from __future__ import annotations

import functools
import http.server
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.testing.chromium import CHROMIUM_FLAGS, chromium_command, find_chromium

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html><head><title>corral harness</title></head>
<body style="margin:0;background:#123456">
<h1 id="greeting" style="color:white">GPUs pooled</h1>
<script>document.getElementById("greeting").dataset.rendered = "yes";</script>
</body></html>
"""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean; requests are asserted through the page instead."""


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(PAGE)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # IHDR is always the first chunk
    return width, height


def test_launch_kwargs_point_playwright_at_the_system_browser(
    chromium_launch_kwargs: dict[str, Any],
) -> None:
    assert chromium_launch_kwargs["executable_path"] == find_chromium()
    assert chromium_launch_kwargs["headless"] is True
    assert set(CHROMIUM_FLAGS) <= set(chromium_launch_kwargs["args"])
    assert not any(a.startswith("--user-data-dir") for a in chromium_launch_kwargs["args"])


def test_playwright_renders_the_page_and_takes_a_screenshot(
    chromium_launch_kwargs: dict[str, Any], page_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    shot = tmp_path / "page.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs)
        try:
            page = browser.new_page(viewport={"width": 640, "height": 360})
            page.goto(page_url)
            title = page.title()
            text = page.text_content("#greeting")
            rendered = page.get_attribute("#greeting", "data-rendered")
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert (title, text, rendered) == ("corral harness", "GPUs pooled", "yes")
    assert _png_size(shot.read_bytes()) == (640, 360)


def test_plain_command_line_takes_a_screenshot(
    chromium_executable: str, page_url: str, tmp_path: Path
) -> None:
    shot = tmp_path / "cli.png"
    argv = chromium_command(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=400,300", page_url
    )
    assert argv[0] == chromium_executable
    subprocess.run(argv, capture_output=True, timeout=120, check=True)
    assert _png_size(shot.read_bytes()) == (400, 300)
