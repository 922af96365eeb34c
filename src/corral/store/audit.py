"""The audit log: admin actions and one user acting on another's work, append-only.

Written in the same transaction as the change it records, so an entry exists exactly when the
change does. Read by admins (`GET /v1/audit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from corral.store.schema import AuditEntry

__all__ = ["AuditRecord", "list_audit", "record"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: float
    actor: str
    action: str
    target: str
    queue: str
    detail: dict[str, Any]


def record(conn: Connection, *, at: float, actor: str, action: str, target: str,
           queue: str = "", detail: dict[str, Any] | None = None) -> None:
    conn.execute(insert(AuditEntry).values(at=at, actor=actor, action=action, target=target,
                                           queue=queue, detail=detail or {}))


def list_audit(conn: Connection, *, after_id: int = 0, actor: str | None = None,
               action: str | None = None, limit: int = 200) -> list[AuditRecord]:
    """Oldest first from `after_id` (exclusive): page with the last id seen."""
    q = select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id).limit(limit)
    if actor is not None:
        q = q.where(AuditEntry.actor == actor)
    if action is not None:
        q = q.where(AuditEntry.action == action)
    return [AuditRecord(r.id, r.at, r.actor, r.action, r.target, r.queue, r.detail)
            for r in conn.execute(q)]
