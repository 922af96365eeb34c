"""End to end with a real `corral up` (local backend, real short processes), through the CLI and
the SDK, on SQLite and PostgreSQL: grant, submit, watch the hold, the settlement and the report;
a budget denial in `corral why`; and kill -9 at random points with settlements in flight."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import func, select

from corral.control.accounting import parse_ref
from corral.control.ledger_prices import build_catalog
from corral.ledger import TxKind, statement, usage_cost
from corral.sdk.ledger import Ledger
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store import pool as P
from corral.store.database import sqlite_url
from corral.store.journal_sql import LedgerDb
from corral.store.ledger_tables import LedgerPosting
from corral.testing.fixtures import postgres_server  # noqa: F401
from corral.testing.postgres import PostgresServer

from .corral_proc import PricedCorral

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


def test_grant_hold_settle_report_through_cli_and_sdk(corral: PricedCorral) -> None:
    out = corral.cli("credits", "grant", "research", "10", "--key", "e2e-grant").stdout
    assert "granted 10.00 to research" in out
    with corral.client() as c:
        ledger = Ledger(c)
        wid = c.submit(_job("paid", 8, max_runtime="60s")).group_id
        _until(lambda: c.get(wid).state == "running", what="running")
        holds = json.loads(corral.cli("credits", "holds", "research", "--json").stdout)
        assert [(h["workload_id"], h["amount"]) for h in holds] == [(wid, "0.60")]  # 60 s x 0.01
        assert c.wait(wid, timeout_s=60).state == "succeeded"
        _until(lambda: ledger.balance("research").held == "0.00", what="settlement")
        bal = ledger.balance("research")
        report = ledger.usage(by=["workload"])
    row = next(r for r in report.rows if r.group["workload"] == wid)
    gpu_s = Decimal(row.gpu_seconds)
    assert Decimal(8) <= gpu_s < Decimal(40)
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


def _check_ledger(url: str) -> tuple[int, Decimal]:
    """The ledger balances to the cent and every settlement equals its attempt's metered cost.
    Returns (settlements, total charged)."""
    store = Store(url)
    try:
        with LedgerDb(store).read() as s:
            units = s.conn.execute(select(func.sum(LedgerPosting.amount_units))).scalar_one()
            assert units == 0
            st = statement(s.journal, "research", Decimal(10**10))
            assert st.balanced and st.held == 0
            assert s.journal.holds(open_only=True) == ()
            catalog = build_catalog([p.rule for p in LR.list_prices(s.conn)],
                                    P.list_nodes(s.conn, include_inactive=True))
            settles = [tx for tx in s.journal.transactions() if tx.intent.kind is TxKind.SETTLE]
            holds = [tx for tx in s.journal.transactions() if tx.intent.kind is TxKind.HOLD]
            assert sorted(t.intent.workload for t in settles) == sorted(
                t.intent.workload for t in holds)
            for tx in settles:
                wid, attempt = parse_ref(tx.intent.workload)
                usage = LR.usage_records(s.conn, Decimal(10**10), workload_id=wid,
                                         attempt=attempt)
                assert all(not u.open for u in usage)
                cost = sum((usage_cost(u, catalog) for u in usage), Fraction(0))
                assert s.journal.currency.charge(cost) == tx.intent.amount, tx.intent.workload
            return len(settles), st.settled
    finally:
        store.close()


@pytest.fixture(params=DBS)
def crash_corral(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PricedCorral]:
    srv = _server(request, tmp_path / "crash", "crash")
    yield srv
    srv.stop()
    srv.stop_workers()


@pytest.mark.slow
def test_kill_9_with_settlements_in_flight_never_charges_twice(
        crash_corral: PricedCorral) -> None:
    rng = random.Random(6)
    srv = crash_corral.start()
    with srv.client() as c:
        Ledger(c).grant("research", "1000", key="crash-grant")
        ids = [c.submit(_job(f"j{i}", rng.choice([0.5, 1, 2]),
                             **({"max_runtime": "30s"} if i % 2 else {}))).group_id
               for i in range(10)]
    for _ in range(4):  # kill -9 at a random point, restart, repeat
        time.sleep(rng.uniform(0.3, 2.0))
        srv.kill9()
        srv.start()
    with srv.client() as c:
        ended = {"succeeded", "failed", "cancelled"}
        _until(lambda: all(c.get(w).state in ended for w in ids), timeout=120, what="all ended")
        assert all(c.get(w).state == "succeeded" for w in ids)
        _until(lambda: Ledger(c).balance("research").held == "0.00", what="all settled")
    url = srv.db or sqlite_url(srv.data_dir / "corral.db")
    settlements, charged = _check_ledger(url)
    assert settlements >= len(ids) and charged > 0
