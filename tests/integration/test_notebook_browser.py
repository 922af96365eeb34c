"""The example notebook (examples/notebook.yaml) reached in a browser through the control plane:
a real `corral up`, the token stored as a secret, the session submitted, `corral port-forward`
to its port, JupyterLab opened in headless Chromium, one cell (6*7) run through the kernel,
whose WebSocket goes through the same forward, and 42 seen in its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.testing.corral_up import CorralServer, free_port
from web.browsing import shot

pytest.importorskip("jupyterlab")  # the dev extra's; a bare install skips this module
pytestmark = pytest.mark.slow  # JupyterLab's start and page on 2 cores: ~20-30 s

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notebook.yaml"
TOKEN = "nb-token-7c1e5a0b9d"
NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "id": "calc",
                       "metadata": {}, "outputs": [], "source": "6*7"}],
            "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                        "display_name": "Python 3 (ipykernel)"}},
            "nbformat": 4, "nbformat_minor": 5}


def _submit_example(server: CorralServer, tmp_path: Path, port: int) -> str:
    made = subprocess.run([sys.executable, "-m", "corral.cli.main", "secrets", "set",
                           "notebook-token", "--queue", "default", "-"], input=TOKEN + "\n",
                          env=server.env(), capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    spec = yaml.safe_load(EXAMPLE.read_text())
    # this test's interpreter (jupyter may not be on the server's PATH) and a free port
    spec["shell"] = (spec["shell"].replace("jupyter lab", f"{sys.executable} -m jupyterlab", 1)
                     .replace("8888", str(port)))
    if os.geteuid() == 0:  # Jupyter refuses root unless told (a CI container's user)
        spec["shell"] += " --allow-root"
    spec.update(working_dir=str(tmp_path), memory="256MiB")
    (tmp_path / "calc.ipynb").write_text(json.dumps(NOTEBOOK))
    path = tmp_path / "notebook.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(server.cli_json("submit", str(path))[0]["workloads"][0]["id"])  # type: ignore[index]


def _forward(server: CorralServer, wid: str, port: int) -> tuple[subprocess.Popen[str], int]:
    """`corral port-forward ID 0:PORT` once the notebook listens (refused before)."""
    deadline = time.monotonic() + 90
    while True:
        fwd = subprocess.Popen([sys.executable, "-m", "corral.cli.main", "port-forward", wid,
                                f"0:{port}"], env=server.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        assert fwd.stdout is not None and fwd.stderr is not None
        line = fwd.stdout.readline()
        if line.startswith("Forwarding from 127.0.0.1:"):
            return fwd, int(line.split()[2].rsplit(":", 1)[1])
        _, why = fwd.communicate(timeout=10)
        assert time.monotonic() < deadline, why + server.cli("logs", wid, check=False).stdout
        time.sleep(0.5)  # not running or not listening yet


def _run_first_cell(page: Any, patience_s: float = 60.0) -> Any:
    """Shift+Enter in the first cell until its output shows 42. A run pressed before Lab's
    kernel connection is up is dropped (the page says idle before that), and where the kernel
    has not started yet Lab first asks which one: its own is the default, accepted."""
    from playwright.sync_api import TimeoutError as PageTimeout

    out = page.locator(".jp-OutputArea-output:has-text('42')")
    choose = page.locator(".jp-Dialog .jp-mod-accept")
    deadline = time.monotonic() + patience_s
    while True:
        page.locator(".jp-Cell .cm-content").first.click()
        page.keyboard.press("Shift+Enter")
        try:
            out.or_(choose).first.wait_for(timeout=5_000)
        except PageTimeout:
            assert time.monotonic() < deadline, "the cell never ran"
            continue
        if not choose.is_visible():
            return out
        choose.click()


def test_the_example_notebook_runs_a_cell_through_port_forward(
        server: CorralServer, tmp_path: Path, chromium_launch_kwargs: dict[str, Any]) -> None:
    run_example_in_chromium(server, tmp_path, chromium_launch_kwargs,
                            "notebook-through-port-forward")


def run_example_in_chromium(server: CorralServer, tmp_path: Path,
                            launch_kwargs: dict[str, Any], shot_name: str,
                            patience_s: float = 60.0, forward_exit_s: float = 10.0) -> None:
    """examples/notebook.yaml submitted to `server`, opened in headless Chromium through
    `corral port-forward`, its first cell (6*7) run: 42 shown (a screenshot `shot_name` if
    not); the forward stopped and the session cancelled after. Also on Slurm
    (tests/integration/test_interactive_slurm.py)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    wid = _submit_example(server, tmp_path, port)
    fwd = None
    try:
        fwd, local = _forward(server, wid, port)
        with sync_playwright() as p:
            browser = p.chromium.launch(**launch_kwargs)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            try:
                page.goto(f"http://127.0.0.1:{local}/lab/tree/calc.ipynb?token={TOKEN}")
                out = _run_first_cell(page, patience_s=patience_s)
                assert out.inner_text().strip() == "42"
            except BaseException:
                shot(page, shot_name)
                raise
            finally:
                browser.close()
    finally:
        if fwd is not None:
            fwd.terminate()
            fwd.communicate(timeout=forward_exit_s)
        server.cli("cancel", wid, check=False)
