"""Crash safety of a real `corral up`, on SQLite and on PostgreSQL: kill -9 at random moments
(seeded) of start-up and of live runs, restart, and check that no accepted workload was lost,
none ran twice, and the one run of each was its final attempt (running work re-adopted, or
restarted cleanly without its earlier attempt having run); and that a second `corral up` on the
same PostgreSQL database serves the API without scheduling, so every job runs exactly once."""

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

pytestmark = pytest.mark.slow  # a second corral up: 13 s (-n 2 whole run, 2026-12-05, load 8-32)

SEED = 20240611
# Nine kills: one during the very first start (migrations of an empty database), one in a live
# run (which measures how long a start-up takes), then in a seeded order three more during
# start-ups (pool sync, re-adoption of the workers' records, the first cycles, before the API
# answers) and four more during live runs with submissions.
FIRST_START_KILL_S = (0.5, 2.5)
STARTUP_KILLS, LIVE_KILLS = 3, 5
# A start-up kill lands at this fraction of the last measured start-up: the later part of it,
# after the imports, is where the store is migrated and the workers' records are re-adopted.
STARTUP_FRACTION = (0.4, 1.0)
LIVE_KILL_S = (0.1, 1.5)
JOBS_PER_ROUND = 4


def _spec(marker: Path, i: int) -> dict:
    # Each run appends one line naming its workload and attempt: a second run would show.
    pause = 0.3 + (i % 4) * 0.4
    code = (f"import os,time; open({str(marker)!r},'a').write(os.environ['CORRAL_WORKLOAD_ID']"
            f"+' '+os.environ['CORRAL_ATTEMPT']+'\\n'); time.sleep({pause})")
    # No backoff: a restart after a launch the crash interrupted must not stretch the test.
    return {"name": f"crash-{i}", "queue": "default", "gpus": 1, "cpu": 0.1, "memory": 64,
            "restart_backoff": 0, "command": [sys.executable, "-c", code]}


def _runs(marker: Path) -> list[tuple[str, int]]:
    """(workload id, attempt) of every run the marker file recorded."""
    if not marker.exists():
        return []
    return [(wid, int(attempt)) for wid, attempt in
            (line.split() for line in marker.read_text().splitlines() if line.strip())]


def _submit_round(server: CorralServer, marker: Path, start: int, accepted: list[str]) -> None:
    """Submit until the server dies; keep the ids of the submissions it accepted (201)."""
    try:
        with server.client() as c:
            for i in range(start, start + JOBS_PER_ROUND):
                accepted.append(c.submit(_spec(marker, i)).group_id)
                time.sleep(0.05)
    except CorralError:
        pass  # killed mid-request: that one was not accepted (or was: then it must exist)


def _kill_during_startup(server: CorralServer, after_s: float) -> str:
    """Start `corral up` and kill -9 it `after_s` seconds later, whatever it is doing then.
    Returns what it was doing: "starting" (its API did not answer yet) or "ready"."""
    begun = time.monotonic()
    try:
        server.start(timeout=after_s)
    except TimeoutError:
        server.kill9()
        return "starting"
    time.sleep(max(0.0, after_s - (time.monotonic() - begun)))
    server.kill9()
    return "ready"


def _live_round(server: CorralServer, marker: Path, first_job: int, accepted: list[str],
                kill_after_s: float) -> float:
    """Start, submit a round of jobs meanwhile, kill -9 after `kill_after_s`; return how long
    the start-up took (the scale of the next start-up kills)."""
    begun = time.monotonic()
    server.start()
    startup_s = time.monotonic() - begun
    submitter = threading.Thread(target=_submit_round,
                                 args=(server, marker, first_job, accepted))
    submitter.start()
    time.sleep(kill_after_s)
    server.kill9()
    submitter.join(timeout=30)
    return startup_s


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_at_random_points_loses_nothing_and_runs_nothing_twice(
        fresh_db: str | None, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    marker = tmp_path / "runs.txt"
    server = CorralServer(tmp_path / "data", db=fresh_db)
    later = ["startup"] * STARTUP_KILLS + ["live"] * (LIVE_KILLS - 1)
    rng.shuffle(later)
    accepted: list[str] = []
    kills = [_kill_during_startup(server, rng.uniform(*FIRST_START_KILL_S))]
    startup_s, jobs = 0.0, 0
    try:
        for kind in ["live", *later]:
            if kind == "live":
                startup_s = _live_round(server, marker, jobs, accepted, rng.uniform(*LIVE_KILL_S))
                jobs += JOBS_PER_ROUND
                kills.append("live")
            else:
                kills.append(_kill_during_startup(
                    server, rng.uniform(*STARTUP_FRACTION) * startup_s))
        server.start()
        with server.client() as c:
            known = {w.id: w for w in c.iter_workloads()}
            assert set(accepted) <= set(known), f"an accepted workload was lost; kills {kills}"
            finals = {wid: c.wait(wid, timeout_s=120) for wid in known}
    finally:
        server.stop()
        stop_workers(server.data_dir)
    assert len(kills) == 1 + STARTUP_KILLS + LIVE_KILLS
    assert accepted, "no submission was accepted: the test exercised nothing"
    assert {w.state for w in finals.values()} == {"succeeded"}, (kills, finals)
    runs = _runs(marker)
    per_workload = Counter(wid for wid, _ in runs)
    assert set(per_workload) == set(known), (kills, per_workload)
    assert set(per_workload.values()) == {1}, f"ran more than once: {per_workload}; {kills}"
    # The one run is the final attempt: a kill never left an earlier attempt running beside it.
    assert dict(runs) == {wid: w.attempt for wid, w in finals.items()}, kills


@pytest.mark.postgres
def test_a_second_corral_up_on_the_same_database_does_not_schedule(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    db = postgres_server.create_database("two_schedulers")
    marker = tmp_path / "m.txt"
    first = CorralServer(tmp_path / "a", db=db).start()
    second = CorralServer(tmp_path / "b", db=db)
    try:
        second.data_dir.mkdir(parents=True)
        (second.data_dir / "admin-token").write_text(first.token)  # same users: same DB
        second.start()
        with first.client() as c1, second.client() as c2:
            time.sleep(1.0)  # a few cycles of both
            assert [c1.health().leader, c2.health().leader] == [True, False]
            # Half through the standby, half through the leader; all go to the one scheduler.
            wids = [(c2 if i % 2 else c1).submit(_spec(marker, i)).group_id for i in range(6)]
            finals = {wid: c1.wait(wid, timeout_s=60) for wid in wids}
    finally:
        for s in (second, first):
            s.stop()
            stop_workers(s.data_dir)
    assert {w.state for w in finals.values()} == {"succeeded"}
    # Each job ran exactly once, as its first attempt, and only the leader launched anything.
    assert sorted(_runs(marker)) == sorted((wid, 0) for wid in wids)
    assert list((second.data_dir / "work").glob("*/*/launch.json")) == []
    assert len(list((first.data_dir / "work").glob("*/*/launch.json"))) == len(wids)
