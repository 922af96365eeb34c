"""GPU health reported by the hosts themselves (`corral agent`), kept as node events.

An agent checks its GPUs (`corral.agent.health`) and sends the verdict with its heartbeat when it
changed. The API appends it as a node event (``GpuHealthReported``, the checks in its data): the
evidence stays in the node's history, and the health monitor reads what is new since its last
step (`ReportedVerdicts`), in whichever process it runs. The monitor then cordons, drains and
uncordons as it does for a local NVML probe (`corral.control.health`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, select

from corral.backends.health import Check, NodeVerdict, Severity
from corral.core.model import Health
from corral.store import workloads as W
from corral.store.schema import Event

__all__ = ["GPU_HEALTH_REPORTED", "ReportedVerdicts", "record_gpu_health"]

GPU_HEALTH_REPORTED: Final = "GpuHealthReported"


def record_gpu_health(conn: Connection, *, node_id: str, at: float, health: str, reason: str,
                      checked: bool, checks: Sequence[Mapping[str, Any]]) -> None:
    """One host's new verdict, as a node event."""
    W.append_event(conn, at=at, kind="node", reason=GPU_HEALTH_REPORTED, subject=node_id,
                   message=f"{health}: {reason}"[:4000],
                   data={"health": health, "reason": reason, "checked": checked,
                         "checks": [dict(c) for c in checks]})


@dataclass
class ReportedVerdicts:
    """The latest reported verdict per node, read incrementally from the events."""

    last_id: int = 0
    verdicts: dict[str, NodeVerdict] = field(default_factory=dict)

    def read(self, conn: Connection) -> dict[str, NodeVerdict]:
        rows = conn.execute(
            select(Event.id, Event.subject, Event.data).where(
                Event.id > self.last_id, Event.kind == "node",
                Event.reason == GPU_HEALTH_REPORTED).order_by(Event.id))
        for row in rows:
            self.last_id = row.id
            verdict = _verdict(row.data)
            if verdict is not None:
                self.verdicts[row.subject] = verdict
        return dict(self.verdicts)


def _verdict(data: Mapping[str, Any] | None) -> NodeVerdict | None:
    """A stored report as a verdict; None for one that does not parse (never an error)."""
    try:
        checks = tuple(Check(str(c["name"]), Severity(c["severity"]), str(c["reason"]),
                             c.get("device")) for c in (data or {}).get("checks", []))
        return NodeVerdict(Health((data or {})["health"]), str((data or {})["reason"]),
                           checked=bool((data or {}).get("checked", True)), checks=checks)
    except (KeyError, TypeError, ValueError):
        return None
