"""`corral credits` and `corral usage` through typer's CliRunner against a real HTTP server in
this process (uvicorn on a free loopback port, the API harness's app), on both databases: the
bare command, balance, grants, holds, history, transfer, prices and usage, as tables and JSON,
and bad input that names the field."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import uvicorn
from rich.console import Console
from tests.api.harness import Api, build
from typer.testing import CliRunner, Result

from corral.cli import credits as credits_cli
from corral.cli.main import app
from corral.core.model import CapacityKind
from corral.ledger import EndReason, PriceRule, WorkerStarted, place_hold
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store.journal_sql import LedgerDb
from corral.testing.corral_up import free_port

pytestmark = pytest.mark.slow  # CLI runs: 28 tests, 44 s (-n 2 whole run, 2026-12-05, load 8-32)

DAY = 86_400 * 20_000  # 2024-10-04 UTC


@dataclass
class Served:
    api: Api
    url: str
    admin: str  # tokens
    ann: str  # member of team-a only

    def corral(self, *args: str, token: str | None = None) -> Result:
        env = {"CORRAL_URL": self.url, "CORRAL_TOKEN": token or self.admin}
        return CliRunner().invoke(app, list(args), env=env)

    def ok(self, *args: str, token: str | None = None) -> str:
        r = self.corral(*args, token=token)
        assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
        return r.stdout


@pytest.fixture
def served(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    # The module's console measured the terminal at import; a wide one keeps every column whole.
    monkeypatch.setattr(credits_cli, "out", Console(width=200))
    api = build(store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api.client.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="cli-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield Served(api, f"http://127.0.0.1:{port}", api.admin["Authorization"].split()[1],
                     api.ann["Authorization"].split()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """A rich table's header cells and body rows (cells stripped)."""
    lines = text.splitlines()
    header = next(ln for ln in lines if "┃" in ln)
    rows = [ln for ln in lines if "│" in ln]
    return (_cells(header, "┃"), [_cells(ln, "│") for ln in rows])


def _cells(line: str, bar: str) -> list[str]:
    return [c.strip() for c in line.strip().strip(bar).split(bar)]


def test_bare_credits_and_balance_show_every_visible_queue(served: Served) -> None:
    out = served.ok("credits", "grant", "team-a", "500", "--key", "g-1")
    assert out.strip() == "granted 500.00 to team-a (key g-1; expires -)"
    header, rows = _table(served.ok("credits"))
    assert header == ["QUEUE", "AVAILABLE", "BALANCE", "HELD", "SETTLED", "GRANTED", "EXPIRED",
                      "IN", "OUT", "DEBT"]
    assert rows == [
        ["team-a", "500.00", "500.00", "0.00", "0.00", "500.00", "0.00", "0.00", "0.00", "0.00"],
        ["team-b (unmetered)", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00",
         "0.00"]]
    assert [r[0] for r in _table(served.ok("credits", token=served.ann))[1]] == ["team-a"]
    assert [r[0] for r in _table(served.ok("credits", "balance", "team-a"))[1]] == ["team-a"]
    (b,) = json.loads(served.ok("credits", "balance", "team-a", "--json"))
    assert (b["queue"], b["available"], b["metered"]) == ("team-a", "500.00", True)
    hidden = served.corral("credits", "balance", "team-b", token=served.ann)
    assert hidden.exit_code == 1 and "team-b" in hidden.stderr


def test_grants_list_what_is_left_of_each_and_when_it_expires(served: Served) -> None:
    served.ok("credits", "grant", "team-a", "100", "--key", "g-1", "--expires", "2030-01-01")
    served.ok("credits", "grant", "team-a", "50.50", "--key", "g-2", "--memo", "top-up")
    header, rows = _table(served.ok("credits", "grants", "team-a", token=served.ann))
    assert header == ["KEY", "GRANTED", "AMOUNT", "LEFT", "EXPIRES", "MEMO"]
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("g-1", "100.00", "100.00", "2030-01-01 00:00", ""),
        ("g-2", "50.50", "50.50", "-", "top-up")]
    assert [g["key"] for g in json.loads(served.ok("credits", "grants", "team-a", "--json"))] \
        == ["g-1", "g-2"]


def test_transfer_moves_credits_and_is_refused_beyond_what_is_available(served: Served) -> None:
    served.ok("credits", "grant", "team-a", "96.20", "--key", "g-1")
    out = served.ok("credits", "transfer", "team-a", "team-b", "6.20", "--key", "t-1")
    assert out.strip() == "moved 6.20 from team-a to team-b (key t-1)"
    (b,) = json.loads(served.ok("credits", "balance", "team-b", "--json"))
    assert (b["available"], b["transferred_in"]) == ("6.20", "6.20")
    short = served.corral("credits", "transfer", "team-a", "team-b", "412.50")
    assert short.exit_code == 1
    assert "queue team-a needs 412.50 credits to transfer, 90.00 available" in short.stderr
    assert "amount" in short.stderr
    header, rows = _table(served.ok("credits", "history", "team-a"))
    assert header == ["WHEN", "KIND", "AMOUNT", "CREDITS", "WORKLOAD", "KEY"]
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("transfer", "6.20", "-6.20", "team-b", "t-1"), ("grant", "96.20", "96.20", "", "g-1")]


def test_holds_show_the_running_attempts_of_a_queue(served: Served) -> None:
    served.ok("credits", "grant", "team-a", "100", "--key", "g-1")
    with LedgerDb(served.api.store).write() as s:
        place_hold(s.journal, workload="train-1@0", queue="team-a", amount="7.20", at=DAY)
    header, rows = _table(served.ok("credits", "holds", "team-a", token=served.ann))
    assert header == ["WORKLOAD", "ATTEMPT", "HELD", "PAID BY", "SINCE", "CHARGED"]
    assert rows == [["train-1", "0", "7.20", "team-a", "2024-10-04 00:00", "open"]]
    assert "the newest" not in served.ok("credits", "holds", "team-a", token=served.ann)
    with LedgerDb(served.api.store).write() as s:
        place_hold(s.journal, workload="train-2@0", queue="team-a", amount="1", at=DAY + 1)
    text = served.ok("credits", "holds", "team-a", "--limit", "1", token=served.ann)
    assert [r[0] for r in _table(text)[1]] == ["train-2"]
    assert "the newest 1 holds; older ones: --limit" in " ".join(text.split())


def test_prices_list_every_rule_with_wildcards(served: Served) -> None:
    with served.api.store.write() as c:
        LR.add_price(c, PriceRule.of("2.40", gpu_model="H100", valid_until=DAY), "api", 0.0)
        LR.add_price(c, PriceRule.of("0.30", provider="gcp", capacity_kind="spot"), "pool", 0.0)
    header, rows = _table(served.ok("credits", "prices", token=served.ann))
    assert header == ["ID", "PRICE", "PROVIDER", "REGION", "GPU", "KIND", "FROM", "UNTIL",
                      "SOURCE"]
    assert [r[1:] for r in rows] == [
        ["2.40", "*", "*", "H100", "*", "-", "2024-10-04 00:00", "api"],
        ["0.30", "gcp", "*", "*", "spot", "-", "-", "pool"]]
    listed = json.loads(served.ok("credits", "prices", "--json"))
    assert [(p["price_per_gpu_hour"], p["gpu_model"]) for p in listed] == [
        ("2.40", "H100"), ("0.30", None)]


def test_usage_prints_a_table_with_a_total_and_cuts_at_the_window(served: Served) -> None:
    with served.api.store.write() as c:
        LR.add_price(c, PriceRule.of("3.60", gpu_model="H100"), "api", 0.0)
        LR.record_start(c, WorkerStarted("w1", 0, 0, Decimal(DAY - 1800), "team-a", "ann",
                                         "local", "default", "n0", "H100", CapacityKind.OWNED,
                                         1000))
        LR.record_end(c, "w1", 0, Decimal(DAY + 1800), EndReason.STOPPED)
    header, rows = _table(served.ok("usage", "--by", "queue", "--by", "day"))
    assert header == ["QUEUE", "DAY", "GPU-SECONDS", "GPU-HOURS", "COST (CRD)"]
    assert rows == [["team-a", "2024-10-03", "1800", "0.500000", "1.80"],
                    ["team-a", "2024-10-04", "1800", "0.500000", "1.80"],
                    ["total", "", "3600", "1.000000", "3.60"]]
    csv = served.ok("usage", "--by", "queue", "--since", "2024-10-04", "--csv")
    assert csv.splitlines() == ["queue,gpu_seconds,gpu_hours,cost,currency",
                                "team-a,1800,0.500000,1.80,CRD"]


@pytest.mark.parametrize(("args", "code", "named"), [
    (("credits", "grant", "team-a", "1.005"), 1, "error: amount: 1.005 has more than 2 decimal"),
    (("credits", "grant", "team-a", "ten"), 1, "error: amount: 'ten' is not a number"),
    (("credits", "grant", "nope", "5"), 1, "error: queue: unknown queue 'nope'"),
    (("credits", "grant", "team-a", "5", "--expires", "soon"), 2, "--expires: 'soon' is not a"),
    (("credits", "transfer", "--", "team-a", "team-b", "-1"), 1, "error: amount: -1.00 is not"),
    (("usage", "--by", "colour"), 1, "error: by: ['colour'] is not a list"),
    (("usage", "--since", "last week"), 2, "--since: 'last week' is not a time"),
], ids=["too-many-places", "not-a-number", "unknown-queue", "bad-expiry", "negative-transfer",
        "unknown-dimension", "bad-since"])
def test_bad_input_names_the_field_and_changes_nothing(
        served: Served, args: tuple[str, ...], code: int, named: str) -> None:
    before = served.ok("credits", "--json")
    r = served.corral(*args)
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert named in r.stderr and "Traceback" not in r.stderr
    assert served.ok("credits", "--json") == before


def test_members_cannot_grant(served: Served) -> None:
    r = served.corral("credits", "grant", "team-a", "5", token=served.ann)
    assert r.exit_code == 1 and "admin" in r.stderr.lower()
    assert json.loads(served.ok("credits", "balance", "team-a", "--json"))[0]["granted"] == "0.00"
