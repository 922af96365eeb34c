"""The webhook outbox: one row per delivery owed, written in the transition's own transaction.

    transition txn:  UPDATE workloads ... ; INSERT events ... ; INSERT webhook_deliveries (pending)
    sender:          claim (pending, due, unclaimed) -> POST -> delivered | retry later | failed

The row is committed with the state change or not at all (the transactional outbox pattern),
so a crash between the change and the POST loses no notification and never sends one for a
change that was rolled back. The POST happens outside any transaction, by the sender
(`corral.control.webhooks`); a claim is a guarded UPDATE with a deadline (`claimed_until`), so
several API replicas may run senders without posting a delivery twice at once, and a sender
that died mid-POST leaves its claim to expire.

States: pending (owed; `next_at` says when to try), delivered (a 2xx), failed (attempts used
up, or a 4xx other than 408/429: the receiver refused the body), dropped (over the cap of
pending deliveries per URL, the oldest first: a dead endpoint cannot grow the table forever).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    JSON,
    Connection,
    Float,
    Index,
    Integer,
    String,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from corral.store.schema import Base

__all__ = [
    "DELIVERED",
    "DROPPED",
    "FAILED",
    "PENDING",
    "Delivery",
    "DeliveryRow",
    "claim",
    "deliveries_of",
    "drop_over_cap",
    "due",
    "enqueue",
    "finish",
]

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
DROPPED: Final = "dropped"


class DeliveryRow(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workload_id: Mapped[str] = mapped_column(String(80))
    queue: Mapped[str] = mapped_column(String(63))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str | None] = mapped_column(String(63), nullable=True)
    timeout_s: Mapped[float] = mapped_column(Float)
    event: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[float] = mapped_column(Float)
    claimed_until: Mapped[float] = mapped_column(Float)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_at"),
        Index("ix_webhook_deliveries_workload", "workload_id"),
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    workload_id: str
    queue: str
    url: str
    secret: str | None
    timeout_s: float
    event: str
    payload: dict[str, Any]
    created_at: float
    state: str
    attempts: int
    next_at: float
    last_status: int | None
    last_error: str
    finished_at: float | None

    @classmethod
    def of(cls, row: Any) -> Delivery:
        return cls(**{f: getattr(row, f) for f in cls.__slots__})


def enqueue(conn: Connection, rows: Sequence[dict[str, Any]], now: float) -> None:
    """Owe these deliveries (keys: workload_id, queue, url, secret, timeout_s, event,
    payload), in the caller's transaction; one statement."""
    if rows:
        conn.execute(insert(DeliveryRow), [
            {**r, "created_at": now, "state": PENDING, "attempts": 0, "next_at": now,
             "claimed_until": 0.0, "last_status": None, "last_error": "",
             "finished_at": None} for r in rows])


def due(conn: Connection, now: float, limit: int) -> list[Delivery]:
    """Pending deliveries whose time has come and that no sender holds, oldest first."""
    q = (select(DeliveryRow.__table__)
         .where(DeliveryRow.state == PENDING, DeliveryRow.next_at <= now,
                DeliveryRow.claimed_until <= now)
         .order_by(DeliveryRow.id).limit(limit))
    return [Delivery.of(r) for r in conn.execute(q)]


def claim(conn: Connection, delivery_id: int, now: float, until: float) -> bool:
    """Take a delivery for one POST (until `until`); False when another sender holds it or
    it is no longer pending."""
    done = conn.execute(update(DeliveryRow).where(
        DeliveryRow.id == delivery_id, DeliveryRow.state == PENDING,
        DeliveryRow.claimed_until <= now).values(claimed_until=until))
    return bool(done.rowcount)


def finish(conn: Connection, delivery_id: int, *, state: str, attempts: int, now: float,
           next_at: float, status: int | None, error: str) -> None:
    """Record one POST's outcome: delivered, failed, or pending again from `next_at`."""
    conn.execute(update(DeliveryRow).where(DeliveryRow.id == delivery_id).values(
        state=state, attempts=attempts, next_at=next_at, claimed_until=0.0,
        last_status=status, last_error=error[:1000],
        finished_at=None if state == PENDING else now))


def drop_over_cap(conn: Connection, cap: int, now: float) -> int:
    """Per URL, drop the oldest pending deliveries beyond `cap`; how many were dropped."""
    over = conn.execute(
        select(DeliveryRow.url, func.count()).where(DeliveryRow.state == PENDING)
        .group_by(DeliveryRow.url).having(func.count() > cap)).all()
    dropped = 0
    for url, n in over:
        ids = conn.execute(
            select(DeliveryRow.id).where(DeliveryRow.state == PENDING, DeliveryRow.url == url)
            .order_by(DeliveryRow.id).limit(int(n) - cap)).scalars().all()
        conn.execute(update(DeliveryRow).where(DeliveryRow.id.in_(ids)).values(
            state=DROPPED, finished_at=now, claimed_until=0.0,
            last_error=f"dropped: more than {cap} deliveries to this URL were pending"))
        dropped += len(ids)
    return dropped


def deliveries_of(conn: Connection, workload_ids: Sequence[str], limit: int = 200
                  ) -> list[Delivery]:
    """The delivery log of these workloads, oldest first."""
    q = (select(DeliveryRow.__table__).where(DeliveryRow.workload_id.in_(list(workload_ids)))
         .order_by(DeliveryRow.id).limit(limit))
    return [Delivery.of(r) for r in conn.execute(q)]

