"""corral.ledger: GPU-seconds metered, priced and charged against credits, by double entry.

Pure code: no I/O, no clock (every time is passed in as seconds since the epoch), only the
standard library and `corral.core.model`. See README.md in this package for the concepts, the
account chart, the flow (admit -> hold -> meter -> settle -> release) and a worked example.
"""

from corral.ledger.accounts import Account, AccountKind, QueueChart
from corral.ledger.admission import INSUFFICIENT_CREDITS, Admit, Deny, decide
from corral.ledger.credits import expire_due, grant, transfer
from corral.ledger.entries import Hold, Intent, Lot, Posting, Transaction, TxKind
from corral.ledger.errors import (
    ConflictingEventError,
    HoldStateError,
    IdempotencyConflictError,
    LedgerError,
    LedgerInputError,
    NoPriceError,
    UnbalancedTransactionError,
)
from corral.ledger.funding import available
from corral.ledger.holds import (
    HoldPlaced,
    expected_cost,
    place_hold,
    release,
    rolling_top_up,
    settle,
    settle_usage,
    top_up,
)
from corral.ledger.instants import to_instant
from corral.ledger.journal import Journal
from corral.ledger.metering import (
    EndReason,
    MeterLog,
    UsageRecord,
    WorkerEnded,
    WorkerStarted,
    meter,
    usage_cost,
)
from corral.ledger.money import DEFAULT_CURRENCY, Currency
from corral.ledger.prices import PriceCatalog, PricedSegment, PriceKey, PriceRule
from corral.ledger.reports import ReportRow, usage_report, write_csv
from corral.ledger.statements import Statement, rollup, statement
from corral.ledger.storage import InMemoryJournalStore, JournalStore

__all__ = [
    "DEFAULT_CURRENCY",
    "INSUFFICIENT_CREDITS",
    "Account",
    "AccountKind",
    "Admit",
    "ConflictingEventError",
    "Currency",
    "Deny",
    "EndReason",
    "Hold",
    "HoldPlaced",
    "HoldStateError",
    "IdempotencyConflictError",
    "InMemoryJournalStore",
    "Intent",
    "Journal",
    "JournalStore",
    "LedgerError",
    "LedgerInputError",
    "Lot",
    "MeterLog",
    "NoPriceError",
    "Posting",
    "PriceCatalog",
    "PriceKey",
    "PriceRule",
    "PricedSegment",
    "QueueChart",
    "ReportRow",
    "Statement",
    "Transaction",
    "TxKind",
    "UnbalancedTransactionError",
    "UsageRecord",
    "WorkerEnded",
    "WorkerStarted",
    "available",
    "decide",
    "expected_cost",
    "expire_due",
    "grant",
    "meter",
    "place_hold",
    "release",
    "rolling_top_up",
    "rollup",
    "settle",
    "settle_usage",
    "statement",
    "to_instant",
    "top_up",
    "transfer",
    "usage_cost",
    "usage_report",
    "write_csv",
]
