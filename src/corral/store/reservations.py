"""Reservations: the nodes the last applied plan held back for blocked big work, and until
when (`corral.core.plan.Reservation`).

A few rows (at most `max_reservations`), replaced by each applied plan in its own transaction
and only when they changed. They are read by the API, which adds them at read time to the
sentence of each workload that waits behind them (`corral.api.views.reason_now`): the stored
sentence does not name them, since they move (issue 16).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import JSON, Connection, Float, String, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from corral.core.plan import Reservation
from corral.store.schema import Base

__all__ = ["ReservationRow", "load_reservations", "replace_reservations"]


class ReservationRow(Base):
    __tablename__ = "reservations"

    workload_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    node_ids: Mapped[list[str]] = mapped_column(JSON)
    held_until: Mapped[float | None] = mapped_column(Float, nullable=True)


def replace_reservations(conn: Connection, reservations: Sequence[Reservation]) -> bool:
    """Store exactly `reservations`; write nothing when they are what is stored. True if
    written."""
    wanted = tuple(sorted(reservations, key=lambda r: r.workload_id))
    if load_reservations(conn) == wanted:
        return False
    conn.execute(delete(ReservationRow))
    if wanted:
        conn.execute(insert(ReservationRow), [
            {"workload_id": r.workload_id, "node_ids": list(r.node_ids), "held_until": r.until}
            for r in wanted])
    return True


def load_reservations(conn: Connection) -> tuple[Reservation, ...]:
    """The stored reservations, by holder."""
    t = ReservationRow.__table__
    return tuple(Reservation(r.workload_id, tuple(r.node_ids), r.held_until)
                 for r in conn.execute(select(t).order_by(t.c.workload_id)))
