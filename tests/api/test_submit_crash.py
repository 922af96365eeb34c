"""Group commit keeps the promise of a plain commit: a submission the API acknowledged survives
kill -9 of the server, even when it shared its transaction with others (real `corral up`)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cli.server_proc import CorralServer
from corral.sdk import CorralError

pytestmark = pytest.mark.slow

JOB = {"name": "crash", "queue": "default", "gpus": 1, "command": ["true"]}


def _submit_until_killed(server: CorralServer, clients: int, kill_after: int) -> list[str]:
    """`clients` threads submit until the server dies; it is killed after `kill_after` acks."""
    acked: list[str] = []
    lock, enough = threading.Lock(), threading.Event()

    def client() -> None:
        with server.client() as c:
            while True:
                try:
                    wid = c.submit(JOB).workloads[0].id
                except CorralError:  # the server is gone (or going): stop
                    return
                with lock:
                    acked.append(wid)
                    if len(acked) >= kill_after:
                        enough.set()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    assert enough.wait(timeout=120), server.log()
    server.kill9()  # while the other clients' submissions are in flight
    for t in threads:
        t.join(timeout=60)
    return acked


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_acknowledged_submissions_survive_kill_9(db: str, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_database_url") if db == "postgres" else None
    server = CorralServer(tmp_path / "data", db=url).start("--no-scheduler")
    try:
        acked = _submit_until_killed(server, clients=8, kill_after=150)
        server.start("--no-scheduler")
        with server.client() as c:
            stored = {w.id for w in c.iter_workloads()}
            assert set(acked) <= stored
            for wid in acked[:: max(1, len(acked) // 20)]:  # a sample: each has its event
                assert [e.reason for e in c.events(wid).items] == ["Submitted"]
    finally:
        server.stop()
