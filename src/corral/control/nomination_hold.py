"""How long a nomination made by the control plane holds its room.

Below `apply` (a plan's moves), `migration` and `elastic` (a resize's members keep their
devices while they restart), so that all import it at the top: `apply` imports the snapshot,
which imports `elastic`.
"""

from __future__ import annotations

__all__ = ["nomination_hold_s"]


def nomination_hold_s(stop_grace_s: float, interval_s: float) -> float:
    """How long a new nomination holds its room: the moved workload's stop (at most the stop
    grace), then a few cycles for it to be planned again, and never under 30 s."""
    return stop_grace_s + max(3 * interval_s, 30.0)
