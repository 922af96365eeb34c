"""Admission: the seam where the ledger (budgets, credit holds) can keep work pending.

The control loop asks its `Admission` about every eligible pending workload before the core
plans; those refused stay pending with the returned reason (code `BudgetExceeded` by convention)
and the core never sees them, so it cannot evict anything on their behalf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from corral.core.model import Workload
from corral.core.reasons import Reason

__all__ = ["Admission", "AdmitAll"]


class Admission(Protocol):
    def refuse(self, pending: Sequence[Workload], now: float) -> Mapping[str, Reason]:
        """Reasons for the pending workloads that may not start now; the others are admitted.
        Called once per cycle from the loop thread; must not block on the network for long."""
        ...


class AdmitAll:
    def refuse(self, pending: Sequence[Workload], now: float) -> Mapping[str, Reason]:
        return {}
