"""GET /v1/ledger/usage's `limit` bounds the read, not only the answer (issue 14 "Money", the
review's finding): the report is grouped in the database (`corral.store.usage_groups`), and
only the attempts it cannot sum there (open, or crossing a midnight) are streamed record by
record (`corral.store.usage_stream`); it stops at its (limit + 1)th row with the same 422; the
streamed records are the ones `ledger_rows.usage_records` returns."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from tests.api.harness import Api, build

from corral.core.model import CapacityKind
from corral.ledger import EndReason, LedgerInputError, PriceRule, WorkerStarted, usage_report
from corral.store import Store, usage_groups
from corral.store import ledger_rows as LR
from corral.store.usage_stream import stream_usage_records

DAY = 86_400 * 20_000  # 2024-10-04 UTC
WORKLOADS = 40


@pytest.fixture
def api(store: Store) -> Api:
    """40 workloads, each one attempt of an hour, every tenth still running, over three days."""
    api = build(store)
    with store.write() as c:
        LR.add_price(c, PriceRule.of("3.60", gpu_model="H100"), "api", 0.0)
        for i in range(WORKLOADS):
            start = DAY + i * 5_000
            LR.record_start(c, WorkerStarted(f"w{i:02d}", 0, 0, Decimal(start),
                                             ("team-a", "team-b")[i % 2], "ann", "local",
                                             "default", "n0", "H100", CapacityKind.OWNED, 1000))
            if i % 10:
                LR.record_end(c, f"w{i:02d}", 0, Decimal(start + 3_600), EndReason.STOPPED)
    clock: Any = api.client.app.state.corral.clock  # type: ignore[attr-defined]
    clock.advance(DAY + 400_000 - clock.now())  # the running ones metered up to now
    return api


@pytest.mark.parametrize("window", [
    {}, {"since": DAY + 20_000}, {"until": DAY + 20_000}, {"since": DAY + 50_000,
                                                           "until": DAY + 120_000},
    {"queues": ["team-b"]}, {"workload_id": "w10"}], ids=str)
def test_the_stream_holds_the_records_usage_records_returns(api: Api,
                                                            window: dict[str, Any]) -> None:
    now = Decimal(DAY + 400_000)
    with api.store.read() as c:
        listed = LR.usage_records(c, now, **window)
        streamed = list(stream_usage_records(c, now, chunk=7, **window))
    assert sorted(streamed, key=str) == sorted(listed, key=str) and listed


def _counting(seen: list[int]) -> Any:
    def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for record in stream_usage_records(*args, **kwargs):
            seen.append(1)
            yield record
    return stream


def test_a_report_over_its_limit_stops_reading(api: Api,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    monkeypatch.setattr(usage_groups, "stream_usage_records", _counting(seen))
    for path in ("/v1/ledger/usage", "/v1/ledger/usage.csv"):
        seen.clear()
        r = api.client.get(path, headers=api.admin, params={"by": "workload", "limit": 5})
        assert r.status_code == 422, r.text
        assert r.json()["problems"][0]["field"] == "limit"
        assert "more than 5 rows" in r.json()["message"]
        assert len(seen) <= 6
    seen.clear()
    whole = api.client.get("/v1/ledger/usage", headers=api.admin,
                           params={"by": "workload", "limit": WORKLOADS})
    assert whole.status_code == 200 and len(whole.json()["rows"]) == WORKLOADS
    # record by record: the 4 running and the 2 across a midnight; the other 34 summed in SQL
    assert len(seen) == 6


def test_the_report_is_the_same_read_whole_or_streamed(api: Api) -> None:
    now = Decimal(DAY + 400_000)
    with api.store.read() as c:
        for by in (["queue", "day"], ["workload"], ["provider"]):
            assert (usage_report(stream_usage_records(c, now), by=by)
                    == usage_report(LR.usage_records(c, now), by=by))


def test_max_rows_refuses_at_the_first_group_past_it() -> None:
    def records() -> Iterator[Any]:
        yield from LR_records[:3]
        raise AssertionError("read past the refusal")

    with pytest.raises(LedgerInputError) as refused:
        usage_report(records(), by=["workload"], max_rows=2)
    assert refused.value.field == "limit"
    assert len(usage_report(LR_records[:2], by=["workload"], max_rows=2)) == 2


def _record(i: int) -> Any:
    from corral.ledger import meter

    return meter([WorkerStarted(f"w{i}", 0, 0, Decimal(DAY), "q", "u", "p", "r", "n", "H100",
                                CapacityKind.OWNED, 1000)], Decimal(DAY + 10))[0]


LR_records = [_record(i) for i in range(3)]
