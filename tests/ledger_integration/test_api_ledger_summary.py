"""GET /v1/ledger/summary: the Credits page in one request (issue 14). It answers what the five
requests it replaces answer (balances, usage by day and queue with totals, by provider over the
same window, open holds, grants), for the caller's queues only, bounded in days and items."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from tests.api.harness import Api, build

from corral.core.model import CapacityKind
from corral.ledger import EndReason, PriceRule, WorkerStarted
from corral.sdk import Client
from corral.sdk.ledger import Ledger
from corral.store import Store
from corral.store import ledger_rows as LR

DAY = 86_400 * 20_000  # 2024-10-04 UTC


@pytest.fixture
def api(store: Store) -> Api:
    api = build(store)
    with store.write() as c:
        LR.add_price(c, PriceRule.of("3.60", gpu_model="H100"), "api", 0.0)
        for wid, queue, start, end in (("a1", "team-a", DAY - 5 * 86_400, DAY - 5 * 86_400 + 60),
                                       ("a2", "team-a", DAY + 100, DAY + 3700),
                                       ("b1", "team-b", DAY + 60, DAY + 3660)):
            LR.record_start(c, WorkerStarted(wid, 0, 0, Decimal(start), queue, "ann", "local",
                                             "default", "n0", "H100", CapacityKind.OWNED, 1000))
            LR.record_end(c, wid, 0, Decimal(end), EndReason.STOPPED)
    clock: Any = api.client.app.state.corral.clock  # type: ignore[attr-defined]
    clock.advance(DAY + 7200 - clock.now())
    for queue, amount in (("team-a", "50"), ("team-b", "20")):
        r = api.client.post("/v1/ledger/grants", headers=api.admin,
                            json={"queue": queue, "amount": amount})
        assert r.status_code == 201, r.text
    return api


def _get(api: Api, who: dict[str, str], path: str, **params: Any) -> Any:
    r = api.client.get(path, headers=who, params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("who", ["admin", "ann"])
def test_the_summary_is_the_five_answers_it_replaces(api: Api, who: str) -> None:
    h = getattr(api, who)
    got = _get(api, h, "/v1/ledger/summary", days=3)
    since = got["since"]
    assert since == (DAY // 86_400 - 2) * 86_400 and got["days"] == 3
    assert got["balances"] == _get(api, h, "/v1/ledger/balances")
    assert got["by_day"] == _get(api, h, "/v1/ledger/usage", by=["day", "queue"], since=since,
                                 totals="queue")
    assert got["by_provider"] == _get(api, h, "/v1/ledger/usage", by="provider", since=since)
    assert got["holds"] == _get(api, h, "/v1/ledger/holds", open_only=True)
    assert got["grants"] == _get(api, h, "/v1/ledger/grants")[::-1]  # newest first
    queues = {r["group"]["queue"] for r in got["by_day"]["rows"]}
    assert queues == ({"team-a", "team-b"} if who == "admin" else {"team-a"})
    # a1 ran 5 days ago: outside the 3 days, so not in the window's spend
    assert got["by_provider"]["total_gpu_seconds"] == ("7200" if who == "admin" else "3600")


def test_the_summary_is_bounded_in_days_and_named_when_refused(api: Api) -> None:
    for days in (0, 93):
        r = api.client.get("/v1/ledger/summary", headers=api.admin, params={"days": days})
        assert r.status_code == 422 and "days" in r.text, r.text
    assert "/v1/ledger/summary" in api.client.get("/openapi.json").json()["paths"]


def test_the_sdk_reads_it(api: Api) -> None:
    token = api.admin["Authorization"].split()[1]
    with Client("http://testserver", token, transport=api.client._transport) as c:
        got = Ledger(c).summary(days=3)
    assert got.by_provider.total_gpu_seconds == "7200" and got.grants_total == 2
    assert [g.queue for g in got.grants] == ["team-b", "team-a"]
