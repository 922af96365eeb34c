"""GET /v1/ledger/usage?totals=: the server sums a report's rows over some of its dimensions
(issue 14: the Credits page's legend, each queue's cost over the days shown, summed in the
browser from rounded rows before). A total is the same as the report grouped by those
dimensions alone: exact, its cost rounded once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.api.harness import Api, build

from corral.core.model import CapacityKind
from corral.ledger import EndReason, PriceRule, WorkerStarted
from corral.store import Store
from corral.store import ledger_rows as LR

DAY = 86_400 * 20_000  # 2024-10-04 UTC


@pytest.fixture
def api(store: Store) -> Api:
    api = build(store)
    with store.write() as c:
        LR.add_price(c, PriceRule.of("3.60", gpu_model="H100"), "api", 0.0)  # 0.001 / GPU-s
        # 5 s on each side of midnight: 0.005 a day, 0.010 in all (rounded rows sum to 0.02)
        for wid, queue, milli, start, end in (("a1", "team-a", 1000, DAY - 5, DAY + 5),
                                              ("b1", "team-b", 2000, DAY + 60, DAY + 3660)):
            LR.record_start(c, WorkerStarted(wid, 0, 0, Decimal(start), queue, "ann", "local",
                                             "default", "n0", "H100", CapacityKind.OWNED, milli))
            LR.record_end(c, wid, 0, Decimal(end), EndReason.STOPPED)
    return api


def _usage(api: Api, **params: object) -> dict:
    r = api.client.get("/v1/ledger/usage", headers=api.admin, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_totals_are_the_report_by_those_dimensions_alone(api: Api) -> None:
    days = _usage(api, by=["day", "queue"], totals=["queue"])
    by_queue = _usage(api, by=["queue"])
    assert days["totals"] == by_queue["rows"]
    assert [(t["group"], t["gpu_seconds"], t["cost"]) for t in days["totals"]] == [
        ({"queue": "team-a"}, "10", "0.01"), ({"queue": "team-b"}, "7200", "7.20")]
    rounded_rows = sum(Decimal(r["cost"]) for r in days["rows"]
                       if r["group"]["queue"] == "team-a")
    assert rounded_rows != Decimal("0.01")  # why the browser's sum was not the ledger's
    assert _usage(api, by=["day", "queue"])["totals"] == []  # only when asked
    both = _usage(api, by=["day", "queue"], totals=["queue", "day"])
    assert both["totals"] == _usage(api, by=["queue", "day"])["rows"]


@pytest.mark.parametrize("totals", [["user"], ["queue", "queue"]], ids=["not-in-by", "twice"])
def test_totals_outside_the_reports_dimensions_are_refused_naming_the_field(
        api: Api, totals: list[str]) -> None:
    r = api.client.get("/v1/ledger/usage", headers=api.admin,
                       params={"by": ["day", "queue"], "totals": totals})
    assert r.status_code == 422, r.text
    assert r.json()["problems"][0]["field"] == "totals"
    assert "day, queue" in r.json()["message"]


def test_a_report_past_its_limit_is_refused_naming_limit(api: Api) -> None:
    """A bound on what one report answers: more rows than `limit` (at most 100,000, the
    default) is a 422 naming limit and how to narrow the report, never a report cut short."""
    assert len(_usage(api, by=["day", "queue"], limit=3)["rows"]) == 3  # at the limit: all
    for path in ("/v1/ledger/usage", "/v1/ledger/usage.csv"):
        r = api.client.get(path, headers=api.admin, params={"by": ["day", "queue"], "limit": 2})
        assert r.status_code == 422, r.text
        assert r.json()["problems"][0]["field"] == "limit"
        assert "more than 2 rows" in r.json()["message"] and "since/until" in r.json()["message"]
    too_big = api.client.get("/v1/ledger/usage", headers=api.admin, params={"limit": 100_001})
    assert too_big.status_code == 422 and too_big.json()["problems"][0]["field"] == "limit"


def test_one_workloads_usage_is_its_own_rows_within_the_callers_rights(api: Api) -> None:
    """The workload page's cost line asks for one workload (`workload=`), not its queue's whole
    report: a busy queue's report is refused over `limit` (422) and the line went missing."""
    one = _usage(api, by=["workload"], workload="a1")
    assert [(r["group"], r["gpu_seconds"]) for r in one["rows"]] == [({"workload": "a1"}, "10")]
    assert _usage(api, by=["workload"], workload="nobody")["rows"] == []
    # limit counts this workload's rows, not the queue's: two workloads, limit 1
    r = api.client.get("/v1/ledger/usage", headers=api.admin,
                       params={"by": ["workload"], "workload": "b1", "limit": 1})
    assert r.status_code == 200 and len(r.json()["rows"]) == 1, r.text
    # a member sees only their queues' workloads, named or not
    theirs = api.client.get("/v1/ledger/usage", headers=api.ann,
                            params={"by": ["workload"], "workload": "b1"})
    assert theirs.status_code == 200 and theirs.json()["rows"] == [], theirs.text
    csv = api.client.get("/v1/ledger/usage.csv", headers=api.admin,
                         params={"by": ["workload"], "workload": "a1"})
    assert csv.status_code == 200 and "a1" in csv.text and "b1" not in csv.text, csv.text
