"""Credits in /metrics: what each queue was granted, holds for running work, has spent, and may
still spend, from the ledger's journal (`corral.ledger.statement`).

    corral_credits_granted_total{queue}    counter  credits granted to the queue, ever
    corral_credits_spent_total{queue}      counter  credits settled for finished attempts
    corral_credits_held{queue}             gauge    credits reserved for running work
    corral_credits_available{queue}        gauge    what new work may still hold
    corral_credits_debt{queue}             gauge    settled beyond the credits (ledger.enforce off)

The journal is read through the store's `LedgerDb` (cached in memory, caught up with the
database on each read), so a scrape costs the new ledger transactions since the last one.
A queue without any credits in its chain is unmetered: it shows zeros, not an absence.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from corral.control.clock import Clock
from corral.ledger import statement
from corral.store import Store
from corral.store.journal_sql import LedgerDb

__all__ = ["CreditCollector"]

_FIELDS = (
    ("granted", "corral_credits_granted", "credits granted to the queue", CounterMetricFamily),
    ("settled", "corral_credits_spent", "credits settled (spent) for finished attempts",
     CounterMetricFamily),
    ("held", "corral_credits_held", "credits reserved for running work", GaugeMetricFamily),
    ("available", "corral_credits_available", "credits new work may still hold",
     GaugeMetricFamily),
    ("debt", "corral_credits_debt", "settled beyond the queue's credits", GaugeMetricFamily),
)


class CreditCollector(Collector):
    def __init__(self, store: Store, clock: Clock) -> None:
        self.ledger = LedgerDb(store)
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        families = {f: cls(name, doc, labels=["queue"]) for f, name, doc, cls in _FIELDS}
        now = Decimal(repr(float(self.clock.now())))
        with self.ledger.read() as s:
            for queue in sorted(s.journal.chart.queues):
                st = statement(s.journal, queue, now)
                for field, family in families.items():
                    family.add_metric([queue], float(getattr(st, field)))
        yield from families.values()
