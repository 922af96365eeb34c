"""The usage report grouped in SQL (`corral.store.usage_groups`) gives the rows the ledger's own
report gives for the same records, on SQLite and PostgreSQL, and reads record by record only
the rows it cannot sum in SQL (open, or near a midnight, a window edge or a price change)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert

from corral.core.model import CapacityKind
from corral.ledger import LedgerInputError, PriceRule, usage_report
from corral.ledger.prices import PriceCatalog
from corral.store import Store
from corral.store import usage_groups as UG
from corral.store.ledger_tables import LedgerUsage
from corral.store.usage_stream import stream_usage_records

DAY = 86400
T0 = 1_733_356_800  # 2024-12-05 00:00 UTC
NOW = Decimal(T0 + 9 * DAY)
QUEUES = ("research", "prod", "team-a")
PROVIDERS = ("aws", "onprem")
MODELS = ("H100", "A100")
KINDS = (CapacityKind.ON_DEMAND, CapacityKind.SPOT)
#: a dated price: A100 on aws costs 3.5 until day 4 at noon, 2.25 after (an edge to cut at)
EDGE = Decimal(T0 + 4 * DAY + DAY // 2)
CATALOG = PriceCatalog([
    PriceRule.of(Decimal("1.10"), provider="*", region="*", gpu_model="*"),
    PriceRule.of(Decimal("3.5"), provider="aws", gpu_model="A100", valid_until=EDGE),
    PriceRule.of(Decimal("2.25"), provider="aws", gpu_model="A100", valid_from=EDGE),
    PriceRule.of(Decimal("0.7"), provider="onprem", capacity_kind=CapacityKind.SPOT),
])


def _time(rng: random.Random, t: float) -> str:
    """How the store writes times (`str(Decimal(repr(float)))`), and a few other exact forms."""
    form = rng.random()
    if form < 0.1:
        return str(int(t))
    if form < 0.15:
        return f"{t:.12f}"  # more places than SQLite sums: the ledger's path
    return str(Decimal(repr(t)))


def _rows(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        start = T0 + rng.uniform(0, 8 * DAY)
        length = rng.choice([rng.uniform(1, 3600), rng.uniform(3600, 30 * 3600), 0.0])
        start_text = _time(rng, start)
        end_text = None if rng.random() < 0.08 else _time(rng, start + length)
        if end_text is not None and Decimal(end_text) < Decimal(start_text):
            end_text = start_text
        rows.append({
            "workload_id": f"w{i % 97}", "attempt": i, "worker": 0, "queue": rng.choice(QUEUES),
            "user": rng.choice(("ana", "bo")), "provider": rng.choice(PROVIDERS),
            "region": rng.choice(("eu", "us")), "node": f"n{rng.randrange(5)}",
            "gpu_model": rng.choice(MODELS), "capacity_kind": rng.choice(KINDS).value,
            "milli": rng.choice((250, 1000, 4000, 8000)), "start": start_text, "end": end_text,
            "end_reason": "" if end_text is None else "stopped", "start_s": float(start_text)})
    return rows


@pytest.fixture
def filled(store: Store) -> Iterator[Store]:
    with store.write() as c:
        c.execute(insert(LedgerUsage), _rows(seed=7, n=1500))
    yield store


def _reference(store: Store, by: list[str], **kw: Any) -> Any:
    with store.read() as c, closing(stream_usage_records(
            c, NOW, queues=kw.get("queues"), workload_id=kw.get("workload_id"),
            since=kw.get("since"), until=kw.get("until"))) as records:
        return usage_report(records, by=by, catalog=CATALOG, since=kw.get("since"),
                            until=kw.get("until"))


def _grouped(store: Store, by: list[str], max_rows: int = 100_000, **kw: Any) -> Any:
    with store.read() as c:
        return UG.grouped_usage(c, NOW, by=by, catalog=CATALOG, max_rows=max_rows, **kw)


CASES = [
    pytest.param(["queue", "day"], {}, id="queue-day"),
    pytest.param(["provider"], {}, id="provider"),
    pytest.param(["day", "queue"], {"since": float(T0 + 2 * DAY + 40_000.5)}, id="since"),
    pytest.param(["gpu_model", "capacity_kind", "region"],
                 {"since": float(T0 + DAY), "until": float(T0 + 5 * DAY + 43_207.25)}, id="window"),
    pytest.param(["user", "node", "workload", "day"], {"queues": ["prod", "research"]},
                 id="queues"),
    pytest.param(["day"], {"workload_id": "w3"}, id="workload"),
]


@pytest.mark.parametrize(("by", "kw"), CASES)
def test_the_sql_groups_are_the_ledgers_report(filled: Store, by: list[str],
                                               kw: dict[str, Any]) -> None:
    want = _reference(filled, by, **kw)
    assert want, "the case reports nothing: it proves nothing"
    assert _grouped(filled, by, **kw) == want


def test_rows_summed_in_sql_are_not_read_one_by_one(store: Store,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 closed attempts inside one day each: none reaches the record-by-record path."""
    rows = [{"workload_id": f"w{i}", "attempt": 0, "worker": 0, "queue": QUEUES[i % 3],
             "user": "ana", "provider": "aws", "region": "eu", "node": "n1", "gpu_model": "H100",
             "capacity_kind": "spot", "milli": 1000, "start": str(T0 + 60 + i),
             "end": str(Decimal(T0 + 3660 + i) + Decimal("0.125")), "end_reason": "stopped",
             "start_s": float(T0 + 60 + i)} for i in range(2000)]
    with store.write() as c:
        c.execute(insert(LedgerUsage), rows)
    read: list[object] = []
    real = UG.stream_usage_records

    def counted(*a: Any, **kw: Any) -> Iterator[Any]:
        for r in real(*a, **kw):
            read.append(r)
            yield r

    monkeypatch.setattr(UG, "stream_usage_records", counted)
    got = _grouped(store, ["queue"])
    assert read == []
    assert [(r.group, r.gpu_seconds) for r in got] == [
        ((q,), Decimal("3600.125") * 667 if q != "team-a" else Decimal("3600.125") * 666)
        for q in sorted(QUEUES)]
    assert got == _reference(store, ["queue"])


def test_more_groups_than_the_limit_is_refused(filled: Store) -> None:
    groups = len(_reference(filled, ["workload", "day"]))
    assert len(_grouped(filled, ["workload", "day"], max_rows=groups)) == groups
    with pytest.raises(LedgerInputError) as e:
        _grouped(filled, ["workload", "day"], max_rows=groups - 1)
    assert e.value.field == "limit"


def test_hourly_prices_over_the_whole_history_are_metered_not_refused(filled: Store) -> None:
    """A month of hourly spot prices is ~720 price changes: one OR each made SQLite refuse the
    query ("Expression tree is too large") and the report a 500 (review R of b877f1e). Past
    MAX_SQL_EDGES inside the window the rows are metered one by one; the sums are the same."""
    hourly = [PriceRule.of(Decimal("0.5") + Decimal(i % 7) / 10, provider="aws",
                           gpu_model="A100", capacity_kind=CapacityKind.SPOT,
                           valid_from=Decimal(T0 + i * 3600), valid_until=Decimal(T0 + (i + 1) * 3600))
              for i in range(-800, 12 * 24)]
    catalog = PriceCatalog([*CATALOG.rules, *hourly])
    assert len(UG._edges(catalog)) > 1000 > UG.MAX_SQL_EDGES
    for kw in ({}, {"since": float(T0 + 3 * DAY), "until": float(T0 + 3 * DAY + 7200)}):
        with filled.read() as c, closing(stream_usage_records(c, NOW, **kw)) as records:
            want = usage_report(records, by=["queue", "day"], catalog=catalog, **kw)
        with filled.read() as c:
            got = UG.grouped_usage(c, NOW, by=["queue", "day"], catalog=catalog,
                                   max_rows=100_000, **kw)
        assert want and got == want
