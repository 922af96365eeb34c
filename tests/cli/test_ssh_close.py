"""`corral ssh` closed by the server at the shell's idle limit exits 255 and says why on
stderr in one line, even when the line is wider than the terminal (it was wrapped at 80
columns): the real CLI in a subprocess, the real API on uvicorn, a real shell on a terminal
beside a stand-in worker process. Refused because the workload or its container is not
running (4409), it says the state and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from api.harness import build
from corral.api.limits import ApiLimits
from corral.store import Store

from .live_api import served

LONG_ID = "a-workload-with-a-rather-long-name-0123abcd"


@pytest.fixture
def worker() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "60"], env={**os.environ, "SHELL": "/bin/sh"})
    yield proc.pid
    proc.kill()
    proc.wait()


def test_the_idle_limit_is_said_in_one_line(sqlite_store_url: str, worker: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import corral.api.shell as shell_api
    from corral.backends.worker_shell import open_shell

    monkeypatch.setattr(shell_api, "_open", lambda *_: open_shell(worker, 24, 80))
    store = Store(sqlite_store_url)
    store.upgrade()
    api = build(store, limits=ApiLimits(shell_idle_s=0.5))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")},
           "COLUMNS": "80"}
    try:
        with served(api.client.app) as url:
            cli = subprocess.Popen(  # stdin open and silent: no key reaches the shell
                [sys.executable, "-m", "corral.cli.main", "ssh", LONG_ID, "--url", url,
                 "--token", api.ann["Authorization"].split()[1]],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True)
            cli.wait(timeout=60)  # stdin is left open until then: closing it is Ctrl-D
            _, stderr = cli.communicate()
    finally:
        store.close()
    assert cli.returncode == 255
    assert stderr.splitlines() == [f"connection to {LONG_ID} closed: idle for 0.5 s "
                                   "(the server's CORRAL_API_SHELL_IDLE_S)"]


def _cli_ssh(url: str, token: str, workload_id: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")},
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "corral.cli.main", "ssh", workload_id,
                           "--url", url, "--token", token], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


def test_a_shell_refused_as_not_running_says_the_state_and_what_to_do(
        sqlite_store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """A pending workload, then a running one whose container is not running: exit 1, the
    server's reason (naming the state), then where to look and when to try again."""
    from sqlalchemy import update
    from tests.api.test_shell_api import _container_gone

    from api.harness import job
    from corral.store.schema import WorkloadRow

    store = Store(sqlite_store_url)
    store.upgrade()
    api = build(store, backend_name="local")
    token = api.ann["Authorization"].split()[1]
    wid = api.client.post("/v1/workloads", json=job(), headers=api.ann).json()[
        "workloads"][0]["id"]
    hint = (f"a shell opens in a running worker only: `corral describe {wid}` shows its "
            "state and why; try again once it runs")
    try:
        with served(api.client.app) as url:
            pending = _cli_ssh(url, token, wid)
            with store.write() as c:
                c.execute(update(WorkloadRow).where(WorkloadRow.id == wid)
                          .values(state="running"))
            _container_gone(monkeypatch, api, tmp_path)
            gone = _cli_ssh(url, token, wid)
    finally:
        store.close()
    assert pending.returncode == 1
    assert pending.stderr.splitlines() == [
        f"error: cannot open a shell in {wid}: workload {wid} is pending: exec reaches a "
        "running worker; `corral describe` says why it is not running", hint], pending.stderr
    assert gone.returncode == 1
    assert gone.stderr.splitlines() == [
        f"error: cannot open a shell in {wid}: container corral-x-0-0 is not running (its "
        "image may still be pulling, or the worker is ending)", hint], gone.stderr
