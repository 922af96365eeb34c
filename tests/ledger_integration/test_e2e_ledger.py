"""End to end with a real `corral up` (local backend, real short processes), through the CLI and
the SDK, on SQLite and PostgreSQL: grant, submit, watch the hold, the settlement and the report;
a budget denial in `corral why`; and kill -9 at random points and, for certain, inside
settlements (the accounting's test-only crash point), checked against the workloads' events."""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from corral.control.accounting import KILL_IN_SETTLEMENT_ENV, parse_ref
from corral.ledger import TxKind, statement
from corral.sdk.ledger import Ledger
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store import workloads as W
from corral.store.database import sqlite_url
from corral.store.journal_sql import LedgerDb
from corral.store.ledger_tables import LedgerPosting
from corral.testing.fixtures import postgres_server  # noqa: F401
from corral.testing.postgres import PostgresServer

from .corral_proc import PricedCorral

pytestmark = pytest.mark.slow  # a real `corral up`, both stores: ~13 s

PY = sys.executable
DBS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _server(request: pytest.FixtureRequest, root: Path, name: str) -> PricedCorral:
    db = None
    if request.param == "postgres":
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        db = pg.create_database(f"ledger_{name}_{int(time.time() * 1000) % 10**9}")
    return PricedCorral(root, db=db)


@pytest.fixture(scope="module", params=DBS)
def corral(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[PricedCorral]:
    srv = _server(request, tmp_path_factory.mktemp(f"ledger-{request.param}"), "e2e").start()
    yield srv
    srv.stop()
    srv.stop_workers()


def _job(name: str, seconds: float, **fields: object) -> dict[str, object]:
    return {"name": name, "queue": "research", "gpus": 1, "cpu": 0.1, "memory": 64,
            "command": [PY, "-c", f"import time; time.sleep({seconds})"], **fields}


def _until(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} not reached in {timeout}s")


#: The metered time must cover this much of the job's run; 3 s rather than 8 s: the check is
#: the same and each backend's run of the test is 5 s shorter.
RUNS_AT_LEAST_S = 3


def test_grant_hold_settle_report_through_cli_and_sdk(corral: PricedCorral,
                                                     tmp_path: Path) -> None:
    out = corral.cli("credits", "grant", "research", "10", "--key", "e2e-grant").stdout
    assert "granted 10.00 to research" in out
    # The job runs 3 s and then until the test has read its hold: under a heavy load the CLI call
    # below can take longer than any fixed sleep, and a job that ended has no hold to list.
    release = tmp_path / "release"
    wait_then_release = (f"import os, time; time.sleep({RUNS_AT_LEAST_S})\n"
                         f"while not os.path.exists({str(release)!r}): time.sleep(0.1)")
    with corral.client() as c:
        ledger = Ledger(c)
        wid = c.submit({**_job("paid", 0, max_runtime="60s"),
                        "command": [PY, "-c", wait_then_release]}).group_id
        _until(lambda: c.get(wid).state == "running", what="running")
        holds = json.loads(corral.cli("credits", "holds", "research", "--json").stdout)
        release.touch()
        assert [(h["workload_id"], h["amount"]) for h in holds] == [(wid, "0.60")]  # 60 s x 0.01
        assert c.wait(wid, timeout_s=60).state == "succeeded"
        _until(lambda: ledger.balance("research").held == "0.00", what="settlement")
        bal = ledger.balance("research")
        report = ledger.usage(by=["workload"])
    row = next(r for r in report.rows if r.group["workload"] == wid)
    gpu_s = Decimal(row.gpu_seconds)
    assert Decimal(RUNS_AT_LEAST_S) <= gpu_s < Decimal(60)  # at most its max_runtime
    assert Decimal(bal.settled) == (gpu_s * Decimal("0.01")).quantize(Decimal("0.01"))
    assert Decimal(bal.balance) == Decimal(10) - Decimal(bal.settled)
    csv = corral.cli("usage", "--by", "queue", "--by", "user", "--csv").stdout.splitlines()
    assert csv[0] == "queue,user,day,gpu_seconds,gpu_hours,cost,currency".replace("day,", "")
    assert csv[1].startswith("research,admin,") and csv[1].endswith(f",{bal.settled},CRD")
    history = corral.cli("credits", "history", "research", "--json").stdout
    assert [e["kind"] for e in json.loads(history)][:3] == ["settle", "hold", "grant"]


def test_work_beyond_the_budget_waits_with_the_sentence_in_why(corral: PricedCorral) -> None:
    with corral.client() as c:
        available = Ledger(c).balance("research").available
        wid = c.submit(_job("big", 1, gpus=4, max_runtime="1h")).group_id  # 4 x 3600 x 0.01
        _until(lambda: c.why(wid).code == "BudgetExceeded", what="BudgetExceeded")
        why = corral.cli("why", wid).stdout
        assert f"queue research needs 144.00 credits held, {available} available" in \
            " ".join(why.split())
        c.cancel(wid)
    bad = corral.cli("credits", "grant", "research", "1.005", check=False)
    assert bad.returncode == 1 and "amount" in bad.stderr and "Traceback" not in bad.stderr


# --- crash test ---------------------------------------------------------------------------------

CENT = Decimal("0.01")
PER_GPU_SECOND = Decimal("0.01")  # the priced pool: 36 credits per GPU-hour


def _spans_from_events(conn: Connection, wid: str) -> dict[int, tuple[Decimal, Decimal | None]]:
    """Each attempt's (start, end) read straight from the workload's transitions: from its
    `starting` transition to the first one that takes it out of starting/running. Written here
    again on purpose: it is the oracle the accounting code is checked against."""
    spans: dict[int, tuple[Decimal, Decimal | None]] = {}
    current: int | None = None
    for e in W.list_events(conn, workload_id=wid, limit=100_000):
        if e.kind != "transition":
            continue
        if e.to_state == "starting":
            current = e.attempt
            spans[current] = (Decimal(repr(e.at)), None)
        elif (current is not None and e.from_state in ("starting", "running")
              and e.to_state != "running"):
            spans[current] = (spans[current][0], Decimal(repr(e.at)))
            current = None
    return spans


def _ledger_units(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.sum(LedgerPosting.amount_units), 0)))
               .scalar_one())


def _check_atomic(url: str, killed: str) -> None:
    """Right after a kill inside the settlement of `killed` (the server is down): nothing of that
    settlement was kept, and every attempt's usage rows are closed exactly when it is settled."""
    store = Store(url)
    try:
        with LedgerDb(store).read() as s:
            assert _ledger_units(s.conn) == 0
            assert s.journal.get(f"settle:{killed}") is None
            hold = s.journal.hold(killed)
            assert hold is not None and hold.open
            usage = LR.usage_records(s.conn, Decimal(10**10))
            wid, attempt = parse_ref(killed)
            # its rows are open, or absent when the settlement was also to write its start (the
            # attempt started and ended while no server watched): all of it or nothing
            assert all(u.open for u in usage if (u.workload_id, u.attempt) == (wid, attempt))
            for u in usage:
                settled = s.journal.get(f"settle:{u.workload_id}@{u.attempt}") is not None
                assert settled is not u.open, (u.workload_id, u.attempt)
    finally:
        store.close()


def _check_ledger(url: str, ids: list[str]) -> tuple[set[str], Decimal]:
    """The ledger balances to the cent, every hold is closed by exactly one settlement, and each
    settlement charges its attempt's time between the events that started and ended it.
    Returns (the settled attempts, total charged)."""
    store = Store(url)
    try:
        with LedgerDb(store).read() as s:
            assert _ledger_units(s.conn) == 0
            st = statement(s.journal, "research", Decimal(10**10))
            assert st.balanced and st.held == 0
            assert s.journal.holds(open_only=True) == ()
            txs = list(s.journal.transactions())
            settles = {t.intent.workload: t for t in txs if t.intent.kind is TxKind.SETTLE}
            holds = [t.intent.workload for t in txs if t.intent.kind is TxKind.HOLD]
            assert len(settles) == len([t for t in txs if t.intent.kind is TxKind.SETTLE])
            assert sorted(settles) == sorted(holds)
            usage = {(u.workload_id, u.attempt): u for u in LR.usage_records(s.conn, Decimal(0))}
            started = set()
            for wid in ids:
                for attempt, (start, end) in _spans_from_events(s.conn, wid).items():
                    ref = f"{wid}@{attempt}"
                    started.add(ref)
                    assert end is not None, ref
                    u = usage[(wid, attempt)]
                    assert (u.start, u.end, u.milli, u.open) == (start, end, 1000, False), ref
                    charge = ((end - start) * PER_GPU_SECOND).quantize(CENT, ROUND_HALF_EVEN)
                    assert settles[ref].intent.amount == charge, ref
            # attempts that were held but never launched were released, charging nothing
            assert all(tx.intent.amount == 0 for ref, tx in settles.items() if ref not in started)
            return set(settles), st.settled
    finally:
        store.close()


def _die_in_settlement(srv: PricedCorral) -> str:
    """Start the server with the test-only crash point: it SIGKILLs itself inside its first
    settlement (postings written, not committed). Returns the attempt it was settling."""
    marker = srv.data_dir / "killed-in-settlement"
    marker.unlink(missing_ok=True)
    srv.extra_env[KILL_IN_SETTLEMENT_ENV] = str(marker)
    try:
        srv.start()
    except RuntimeError:  # it may settle (and die) before its API answered
        pass
    finally:
        del srv.extra_env[KILL_IN_SETTLEMENT_ENV]
    assert srv.proc is not None
    assert srv.proc.wait(timeout=120) == -signal.SIGKILL, srv.log()
    return marker.read_text()


@pytest.fixture(params=DBS)
def crash_corral(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PricedCorral]:
    srv = _server(request, tmp_path / "crash", "crash")
    yield srv
    srv.stop()
    srv.stop_workers()


@pytest.mark.slow
def test_kill_9_with_settlements_in_flight_never_charges_twice(
        crash_corral: PricedCorral) -> None:
    """Three waves of work, each: a kill -9 at a random point, then a restart that is killed
    inside a settlement for certain (the test-only crash point), then a plain restart."""
    rng = random.Random(6)
    srv = crash_corral.start()
    url = srv.db or sqlite_url(srv.data_dir / "corral.db")
    with srv.client() as c:
        Ledger(c).grant("research", "1000", key="crash-grant")
    ids: list[str] = []
    killed: list[str] = []
    for wave in range(3):
        with srv.client() as c:
            # Each job runs longer than the random kill below waits, so the restart that follows
            # always has this wave's settlements to do (and dies in the first of them).
            ids += [c.submit(_job(f"w{wave}-{i}", rng.choice([3, 4]),
                                  **({"max_runtime": "30s"} if i % 2 else {}))).group_id
                    for i in range(3)]
        time.sleep(rng.uniform(0.3, 2.0))  # a kill -9 at a random point: holds, launches, ...
        srv.kill9()
        killed.append(_die_in_settlement(srv))
        _check_atomic(url, killed[-1])
        srv.start()
    with srv.client() as c:
        ended = {"succeeded", "failed", "cancelled"}
        _until(lambda: all(c.get(w).state in ended for w in ids), timeout=120, what="all ended")
        assert all(c.get(w).state == "succeeded" for w in ids)
        _until(lambda: Ledger(c).balance("research").held == "0.00", what="all settled")
    srv.stop()  # nothing moves while the ledger is checked
    settled, charged = _check_ledger(url, ids)
    # three different settlements were cut short, and each was finished once after a restart
    assert len(set(killed)) == 3 and set(killed) <= settled
    assert {f"{w}@0" for w in ids} <= settled and charged > 0
