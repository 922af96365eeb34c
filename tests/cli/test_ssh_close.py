"""`corral ssh` closed by the server at the shell's idle limit exits 255 and says why on
stderr in one line, even when the line is wider than the terminal (it was wrapped at 80
columns): the real CLI in a subprocess, the real API on uvicorn, a real shell on a terminal
beside a stand-in worker process."""

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
