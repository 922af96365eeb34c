"""The usage report's read: record by record (the ledger's path, `usage_stream`, before issue
14's third pass) against grouped in SQL (`corral.store.usage_groups`), on the same table.

    .venv/bin/python bench/ledger_report.py --rows 200000 --days 30 --seed 1 [--postgres URL]

Fills `ledger_usage` with ROWS attempts of 1 to 120 minutes over DAYS days (1 in 50 still
running), 4 queues, 3 providers, one dated price change, then times each report (best of
--repeat) both ways and checks they give the same rows. Prints every size and seed.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from corral.core.model import CapacityKind
from corral.ledger import PriceRule, usage_report
from corral.ledger.prices import PriceCatalog
from corral.store import Store
from corral.store.ledger_tables import LedgerUsage
from corral.store.usage_groups import grouped_usage
from corral.store.usage_stream import stream_usage_records

DAY = 86400
T0 = 1_733_356_800  # 2024-12-05 00:00 UTC
REPORTS = (("queue", "day"), ("provider",), ("queue",))


def _rows(n: int, days: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = T0 + rng.uniform(0, days * DAY)
        end = None if rng.random() < 0.02 else start + rng.uniform(60, 7200)
        out.append({
            "workload_id": f"w{i}", "attempt": 0, "worker": 0, "queue": f"team-{i % 4}",
            "user": "ana", "provider": ("aws", "gcp", "onprem")[i % 3], "region": "eu",
            "node": f"n{i % 50}", "gpu_model": ("H100", "A100")[i % 2],
            "capacity_kind": CapacityKind.ON_DEMAND.value, "milli": (1000, 4000, 8000)[i % 3],
            "start": str(Decimal(repr(start))),
            "end": None if end is None else str(Decimal(repr(end))),
            "end_reason": "" if end is None else "stopped", "start_s": start})
    return out


def _catalog(days: int) -> PriceCatalog:
    edge = Decimal(T0 + days * DAY // 2)
    return PriceCatalog([
        PriceRule.of(Decimal("2.10"), provider="*", region="*", gpu_model="*"),
        PriceRule.of(Decimal("3.5"), provider="aws", gpu_model="H100", valid_until=edge),
        PriceRule.of(Decimal("2.25"), provider="aws", gpu_model="H100", valid_from=edge)])


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres", help="a PostgreSQL URL (default: a SQLite file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.postgres or f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.upgrade()
        with store.write() as c:
            c.execute(insert(LedgerUsage), _rows(args.rows, args.days, args.seed))
        catalog = _catalog(args.days)
        now = Decimal(T0 + (args.days + 1) * DAY)
        print(f"store={store.engine.dialect.name} rows={args.rows} days={args.days} "
              f"seed={args.seed} repeat={args.repeat}")
        for by in REPORTS:
            def streamed(by: tuple[str, ...] = by) -> Any:
                with store.read() as c, closing(stream_usage_records(c, now)) as records:
                    return usage_report(records, by=by, catalog=catalog)

            def grouped(by: tuple[str, ...] = by) -> Any:
                with store.read() as c:
                    return grouped_usage(c, now, by=by, catalog=catalog, max_rows=100_000)

            t_old, old = _best(streamed, args.repeat)
            t_new, new = _best(grouped, args.repeat)
            assert old == new, f"by={by}: the two reads differ"
            print(f"by={','.join(by):<10} groups={len(new):>4}  record by record {t_old:7.3f} s"
                  f"  grouped in SQL {t_new:7.3f} s  ({t_old / t_new:5.1f}x)  same rows: yes")
        store.close()


if __name__ == "__main__":
    main()
