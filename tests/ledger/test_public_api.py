"""The ledger's public surface is pinned, and the package stays pure (no I/O, no clock)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import corral.ledger

PACKAGE = Path(corral.ledger.__file__).parent
IMPURE = {
    "time",
    "random",
    "os",
    "socket",
    "subprocess",
    "pathlib",
    "threading",
    "asyncio",
    "logging",
    "secrets",
}
CLOCK_CALLS = ("datetime.now", "date.today", "utcnow", ".now(")


def test_public_names_are_pinned() -> None:
    assert sorted(corral.ledger.__all__) == sorted(
        [
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
    )
    for name in corral.ledger.__all__:
        assert hasattr(corral.ledger, name), name


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_ledger_imports_only_stdlib_and_the_core_model() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = (
                name == "corral.core.model"
                or name.startswith("corral.ledger")
                or (top in sys.stdlib_module_names and top not in IMPURE)
                or name == "__future__"
            )
            assert allowed, f"{path.name} imports {name}"


def test_ledger_never_reads_a_clock() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        assert not any(call in text for call in CLOCK_CALLS), path.name
