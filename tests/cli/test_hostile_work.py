"""Poisoned work against a real `corral up` (issue 15, items 1 and 2).

A poisoned workload is one whose launch raises what no backend error covers: a NUL byte in a
command argument makes os.posix_spawn raise ValueError. Submission refuses that spec now, so
the rows are written to the store directly, as an older corral (or a client past the API)
could have left them. They must fail, each once, with their reason, while valid work submitted
with them starts in the very step that places it, as it does without them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.control import Submissions
from corral.control import lifecycle as L
from corral.sdk import Client
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store.database import sqlite_url

from .server_proc import CorralServer, stop_workers

PY = sys.executable


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CorralServer]:
    srv = CorralServer(tmp_path / "data").start()
    yield srv
    srv.stop()
    stop_workers(srv.data_dir)


def _valid(name: str) -> dict[str, Any]:
    return {"name": name, "queue": "default", "gpus": 1, "cpu": 0.1, "memory": 64,
            "command": [PY, "-c", "print('valid work ran')"]}


def _poison(srv: CorralServer, count: int) -> list[str]:
    """Rows a submission would refuse now, written past the API into the server's SQLite."""
    store = Store(sqlite_url(srv.data_dir / "corral.db"))
    try:
        subs = Submissions(store)
        ids = []
        for i in range(count):
            spec = WorkloadSpec.model_validate({**_valid(f"poisoned-{i}"), "priority": 100,
                                                "max_restarts": 1000})
            spec = spec.model_copy(update={"command": [PY, "-c", "print(1)", "a\x00b"]})
            ids += [r.id for r in subs.submit(spec, "admin", time.time())]
        return ids
    finally:
        store.close()


def _wait(c: Client, ids: list[str], states: set[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout  # guards a hang only; nothing asserts durations
    while time.monotonic() < deadline:
        if all(c.get(w).state in states for w in ids):
            return
        time.sleep(0.05)
    pytest.fail(f"{[(w, c.get(w).state) for w in ids]} never reached {states}")


def _transition_at(c: Client, wid: str, to_state: str) -> list[float]:
    return [e.at for e in c.events(wid).items if e.kind == "transition" and e.to_state == to_state]


def _start_figures(c: Client, ids: list[str]) -> list[float]:
    """Seconds from submission to launch (the transition to starting) of each."""
    return [round(_transition_at(c, w, "starting")[0] - c.get(w).submitted_at, 3) for w in ids]


def test_poisoned_work_fails_alone_and_valid_work_starts_in_the_step_that_places_it(
        server: CorralServer) -> None:
    with server.client() as c:
        # baseline: valid work alone
        alone = [c.submit(_valid(f"alone-{i}")).workloads[0].id for i in range(4)]
        _wait(c, alone, {"succeeded"})
        # chaos: poisoned rows first (higher priority: they launch first), valid work with them
        poisoned = _poison(server, 4)
        valid = [c.submit(_valid(f"valid-{i}")).workloads[0].id for i in range(4)]
        _wait(c, poisoned, {"failed"})
        _wait(c, valid, {"succeeded"})
        for w in poisoned:
            rec = c.get(w)
            assert rec.reason_code == L.LAUNCH_FAILED and "ValueError" in rec.reason_message
            assert rec.restart_count == 0 and rec.attempt == 0  # failed for good, launched once
            assert len(_transition_at(c, w, "starting")) == 1
        for w in valid:  # launched in the very step that scheduled it: no step was lost
            assert _transition_at(c, w, "starting") == _transition_at(c, w, "scheduled"), w
        figures = {"alone": _start_figures(c, alone), "with poison": _start_figures(c, valid)}
        print(f"start latency (s, submitted -> launched): {figures}")  # recorded, not asserted
        assert "valid work ran" in server.cli("logs", valid[0]).stdout


def test_a_job_cannot_read_the_admin_token_or_the_database(tmp_path: Path) -> None:
    """Run as root with per-queue worker users (corral up's default as root)."""
    import os
    import shutil
    import tempfile

    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("worker users need root and useradd")
    base = Path(tempfile.mkdtemp(prefix="corral-up-iso-"))  # tmp_path's base is root's 0700
    os.chmod(base, 0o711)
    srv = CorralServer(base / "data", worker_user=None).start()
    try:
        data = srv.data_dir
        probe = (f"cat {data}/admin-token; echo token=$?; cat {data}/corral.db >/dev/null; "
                 f"echo db=$?; ls {data}/work; echo list=$?; id -un")
        with srv.client() as c:
            wid = c.submit({"name": "thief", "queue": "default", "cpu": 0.1, "memory": 64,
                            "shell": probe}).workloads[0].id
            _wait(c, [wid], {"succeeded", "failed"})
        log = srv.cli("logs", wid).stdout
        assert srv.token not in log
        for line in ("token=1", "db=1", "list=2", "corral-q-default"):
            assert line in log, log
        for f in ("corral.db", "admin-token"):
            assert (data / f).stat().st_mode & 0o077 == 0
        assert data.stat().st_mode & 0o066 == 0
    finally:
        srv.stop()
        stop_workers(srv.data_dir)
        shutil.rmtree(base, ignore_errors=True)
