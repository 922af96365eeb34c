"""/v1/ledger in process, on both databases: roles, refusals that store nothing, idempotent
grants, transfers with the ledger's sentence, prices, and usage reports (JSON and CSV)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select
from tests.api.harness import Api, build

from corral.core.model import CapacityKind
from corral.ledger import EndReason, PriceRule, WorkerStarted
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store.ledger_tables import LedgerPrice, LedgerTransaction

pytestmark = pytest.mark.slow  # 24 tests, 96 s (-n 2 whole run, 2026-12-05, load 8-32)


def _count(store: Store) -> tuple[int, int]:
    with store.read() as c:
        return (c.execute(select(func.count()).select_from(LedgerTransaction)).scalar_one(),
                c.execute(select(func.count()).select_from(LedgerPrice)).scalar_one())


@pytest.fixture
def api(store: Store) -> Api:
    return build(store)


def test_admins_grant_and_members_read_their_queues_only(api: Api) -> None:
    r = api.client.post("/v1/ledger/grants", headers=api.admin,
                        json={"queue": "team-a", "amount": "500.00", "key": "g-1"})
    assert r.status_code == 201 and r.json()["left"] == "500.00"
    b = api.client.get("/v1/ledger/queues/team-a/balance", headers=api.ann).json()
    assert (b["available"], b["granted"], b["metered"]) == ("500.00", "500.00", True)
    assert api.client.get("/v1/ledger/queues/team-b/balance", headers=api.ann).status_code == 404
    assert [x["queue"] for x in api.client.get("/v1/ledger/balances", headers=api.ann).json()] \
        == ["team-a"]
    denied = api.client.post("/v1/ledger/grants", headers=api.ann,
                             json={"queue": "team-a", "amount": "5"})
    assert denied.status_code == 403
    grants = api.client.get("/v1/ledger/queues/team-a/grants", headers=api.ann).json()
    assert [g["key"] for g in grants] == ["g-1"]


def test_a_repeated_grant_key_grants_once_and_a_reused_one_is_a_conflict(api: Api) -> None:
    body = {"queue": "team-a", "amount": "10", "key": "same"}
    for _ in range(2):
        assert api.client.post("/v1/ledger/grants", headers=api.admin, json=body).status_code == 201
    r = api.client.post("/v1/ledger/grants", headers=api.admin, json={**body, "amount": "11"})
    assert r.status_code == 409 and r.json()["problems"][0]["field"] == "key"
    assert _count(api.store)[0] == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"queue": "team-a", "amount": "ten"}, "amount"),
    ({"queue": "team-a", "amount": "1.005"}, "amount"),
    ({"queue": "team-a", "amount": "-5"}, "amount"),
    ({"queue": "nope", "amount": "5"}, "queue"),
    ({"queue": "team-a", "amount": "5", "expires_at": 1.0}, "expires_at"),
    ({"queue": "team-a", "amount": "5", "key": "has space"}, "key"),
], ids=["not-a-number", "too-many-places", "negative", "unknown-queue", "expired-already",
        "bad-key"])
def test_bad_grants_name_the_field_and_store_nothing(api: Api, body: dict, field: str) -> None:
    r = api.client.post("/v1/ledger/grants", headers=api.admin, json=body)
    assert r.status_code == 422, r.text
    assert any(p["field"] == field for p in r.json()["problems"]), r.json()
    assert _count(api.store) == (0, 0)


def test_a_transfer_beyond_what_is_available_is_refused_with_the_sentence(api: Api) -> None:
    api.client.post("/v1/ledger/grants", headers=api.admin,
                    json={"queue": "team-a", "amount": "96.20"})
    r = api.client.post("/v1/ledger/transfers", headers=api.admin,
                        json={"source": "team-a", "target": "team-b", "amount": "412.50"})
    assert r.status_code == 409
    assert r.json()["message"] == "queue team-a needs 412.50 credits to transfer, 96.20 available"
    assert _count(api.store)[0] == 1
    ok = api.client.post("/v1/ledger/transfers", headers=api.admin,
                         json={"source": "team-a", "target": "team-b", "amount": "6.20"})
    assert ok.status_code == 201
    b = api.client.get("/v1/ledger/queues/team-b/balance", headers=api.admin).json()
    assert (b["available"], b["transferred_in"]) == ("6.20", "6.20")
    hist = api.client.get("/v1/ledger/queues/team-a/history", headers=api.admin).json()
    assert [(h["kind"], h["change"]) for h in hist] == [("transfer", "-6.20"), ("grant", "96.20")]


def test_prices_are_listed_added_refused_when_overlapping_and_deleted(api: Api) -> None:
    add = {"price_per_gpu_hour": "2.40", "gpu_model": "H100", "valid_until": 2000.0}
    r = api.client.post("/v1/ledger/prices", headers=api.admin, json=add)
    assert r.status_code == 201
    overlap = api.client.post("/v1/ledger/prices", headers=api.admin,
                              json={**add, "valid_until": None, "valid_from": 1000.0})
    assert overlap.status_code == 422 and overlap.json()["problems"][0]["field"] == "prices"
    bad_kind = api.client.post("/v1/ledger/prices", headers=api.admin,
                               json={"price_per_gpu_hour": "1", "capacity_kind": "cheap"})
    assert bad_kind.status_code == 422
    assert api.client.post("/v1/ledger/prices", headers=api.ann, json=add).status_code == 403
    listed = api.client.get("/v1/ledger/prices", headers=api.ann).json()
    assert [(p["price_per_gpu_hour"], p["source"]) for p in listed] == [("2.40", "api")]
    assert api.client.delete(f"/v1/ledger/prices/{listed[0]['id']}",
                             headers=api.admin).status_code == 204
    assert _count(api.store) == (0, 0)


def test_usage_reports_group_exactly_and_export_csv(api: Api) -> None:
    day = 86_400 * 20_000  # 2024-10-04 UTC
    with api.store.write() as c:
        LR.add_price(c, PriceRule.of("3.60", gpu_model="H100"), "api", 0.0)
        for wid, queue, milli in (("w1", "team-a", 2000), ("w2", "team-b", 500)):
            LR.record_start(c, WorkerStarted(wid, 0, 0, Decimal(day), queue, "ann", "local",
                                             "default", "n0", "H100", CapacityKind.OWNED, milli))
            LR.record_end(c, wid, 0, Decimal(day + 1800), EndReason.STOPPED)
    r = api.client.get("/v1/ledger/usage", headers=api.admin, params={"by": ["queue"]}).json()
    assert [(x["group"]["queue"], x["gpu_seconds"], x["cost"]) for x in r["rows"]] == [
        ("team-a", "3600", "3.60"), ("team-b", "900", "0.90")]
    assert r["total_cost"] == "4.50"
    mine = api.client.get("/v1/ledger/usage", headers=api.ann).json()
    assert {x["group"]["queue"] for x in mine["rows"]} == {"team-a"}
    csv = api.client.get("/v1/ledger/usage.csv", headers=api.ann,
                         params={"by": ["queue", "user", "day"]})
    assert csv.text.splitlines() == ["queue,user,day,gpu_seconds,gpu_hours,cost,currency",
                                     "team-a,ann,2024-10-04,3600,1.000000,3.60,CRD"]
    bad = api.client.get("/v1/ledger/usage", headers=api.admin, params={"by": ["colour"]})
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "by"


def test_a_usage_window_cuts_attempts_at_its_edges(api: Api) -> None:
    day = 86_400 * 20_000  # 2024-10-04 UTC
    with api.store.write() as c:
        LR.add_price(c, PriceRule.of("3.60", gpu_model="H100"), "api", 0.0)
        for wid, queue, milli, start, end in (
                ("before", "team-a", 1000, day - 7200, day - 3600),  # ends before the window
                ("across", "team-a", 2000, day - 1800, day + 1800),  # crosses both edges
                ("inside", "team-b", 500, day + 600, day + 1200)):
            LR.record_start(c, WorkerStarted(wid, 0, 0, Decimal(start), queue, "ann", "local",
                                             "default", "n0", "H100", CapacityKind.OWNED, milli))
            LR.record_end(c, wid, 0, Decimal(end), EndReason.STOPPED)
    window = {"since": day, "until": day + 1500}
    r = api.client.get("/v1/ledger/usage", headers=api.admin,
                       params={"by": ["workload"], **window}).json()
    # across: 2 GPUs x 1500 s inside; inside: 0.5 GPU x 600 s; at 0.001 per GPU-second
    assert [(x["group"]["workload"], x["gpu_seconds"], x["cost"]) for x in r["rows"]] == [
        ("across", "3000", "3.00"), ("inside", "300", "0.30")]
    assert (r["total_gpu_seconds"], r["total_cost"]) == ("3300", "3.30")
    csv = api.client.get("/v1/ledger/usage.csv", headers=api.ann,
                         params={"by": ["queue", "day"], "since": day - 900, "until": day + 900})
    assert csv.text.splitlines()[1:] == ["team-a,2024-10-03,1800,0.500000,1.80,CRD",
                                         "team-a,2024-10-04,1800,0.500000,1.80,CRD"]
    bad = api.client.get("/v1/ledger/usage", headers=api.admin,
                         params={"since": day, "until": day})
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "until"
