"""Crash safety of a real `corral up`: kill -9 at random moments of a real run, restart, and
check that no accepted workload was lost and none ran twice; and that a second `corral up` on the
same PostgreSQL database serves the API without scheduling."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from corral.sdk import CorralError
from corral.testing.postgres import PostgresServer

from .server_proc import CorralServer, stop_workers

KILLS = 5
JOBS_PER_ROUND = 4


def _spec(marker: Path, i: int) -> dict:
    # Each run appends one line naming its workload and attempt: a second run would show.
    pause = 0.3 + (i % 4) * 0.4
    code = (f"import os,time; open({str(marker)!r},'a').write(os.environ['CORRAL_WORKLOAD_ID']"
            f"+' '+os.environ['CORRAL_ATTEMPT']+'\\n'); time.sleep({pause})")
    return {"name": f"crash-{i}", "queue": "default", "gpus": 1, "cpu": 0.1, "memory": 64,
            "command": [sys.executable, "-c", code]}


def _submit_round(server: CorralServer, marker: Path, start: int, accepted: list[str]) -> None:
    """Submit until the server dies; keep the ids of the submissions it accepted (201)."""
    try:
        with server.client() as c:
            for i in range(start, start + JOBS_PER_ROUND):
                accepted.append(c.submit(_spec(marker, i)).group_id)
                time.sleep(0.05)
    except CorralError:
        pass  # killed mid-request: that one was not accepted (or was: then it must exist)


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    marker = tmp_path / "runs.txt"
    server = CorralServer(tmp_path / "data")
    accepted: list[str] = []
    try:
        for k in range(KILLS):
            server.start()
            submitter = threading.Thread(target=_submit_round,
                                         args=(server, marker, k * JOBS_PER_ROUND, accepted))
            submitter.start()
            time.sleep(rng.uniform(0.1, 1.5))  # a random moment of a live run
            server.kill9()
            submitter.join(timeout=30)
        server.start()
        with server.client() as c:
            known = {w.id: w for w in c.iter_workloads()}
            assert set(accepted) <= set(known), "an accepted workload was lost"
            finals = {wid: c.wait(wid, timeout_s=120) for wid in known}
    finally:
        server.stop()
        stop_workers(server.data_dir)
    assert {w.state for w in finals.values()} == {"succeeded"}
    runs = Counter(line.split()[0] for line in marker.read_text().splitlines())
    assert set(runs) == set(known) and set(runs.values()) == {1}, runs


@pytest.mark.postgres
def test_a_second_corral_up_on_the_same_database_does_not_schedule(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    db = postgres_server.create_database("two_schedulers")
    first = CorralServer(tmp_path / "a", db=db).start()
    second = CorralServer(tmp_path / "b", db=db)
    try:
        second.data_dir.mkdir(parents=True)
        (second.data_dir / "admin-token").write_text(first.token)  # same users: same DB
        second.start()
        with first.client() as c1:
            time.sleep(1.0)  # a few cycles of both
            leaders = [c1.health().leader]
            with second.client() as c2:
                leaders.append(c2.health().leader)
                wid = c2.submit(_spec(tmp_path / "m.txt", 0)).group_id  # via the standby
            assert leaders == [True, False]
            assert c1.wait(wid, timeout_s=60).state == "succeeded"
    finally:
        for s in (second, first):
            s.stop()
            stop_workers(s.data_dir)
