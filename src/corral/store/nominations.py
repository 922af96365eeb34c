"""Nominations: room a plan freed for a workload that has not started there yet, kept for a
bounded time (`corral.core.nominations` says why and how the core holds it).

One row per nominee: the exact devices (as the core's `WorkerAssignment`s, JSON), the CPU and
RAM per worker held with them, and `until`, after which the row is ignored. The table is
small (one row per workload moved in the last moments) and is rewritten by each applied plan
to what that plan says is in force (`Plan.nominations`), in the plan's own transaction, so a
nomination the core dropped (its nominee placed, running elsewhere, or the room taken) is
gone with the plan that dropped it, and a stale plan writes none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, BigInteger, Connection, Float, Integer, String, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from corral.core.model import Nomination, WorkerAssignment
from corral.store.schema import Base

__all__ = ["NominationRow", "add_absent", "load_nominations", "replace_nominations"]


class NominationRow(Base):
    __tablename__ = "nominations"

    workload_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    assignments: Mapped[list[Any]] = mapped_column(JSON)
    cpu_milli: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(BigInteger)
    made_at: Mapped[float] = mapped_column(Float)
    held_until: Mapped[float] = mapped_column(Float)


def replace_nominations(conn: Connection, nominations: Iterable[Nomination], now: float,
                        hold_s: float) -> int:
    """Store exactly `nominations`; a new one (`until` None) is held for `hold_s` from `now`,
    one carried over keeps its `until`. Returns how many are stored."""
    conn.execute(delete(NominationRow))
    rows = [{"workload_id": n.workload_id, "assignments": [_encode(a) for a in n.assignments],
             "cpu_milli": n.cpu_milli, "memory_mib": n.memory_mib, "made_at": now,
             "held_until": now + hold_s if n.until is None else n.until} for n in nominations]
    if rows:
        conn.execute(insert(NominationRow), rows)
    return len(rows)


def add_absent(conn: Connection, nominations: Iterable[Nomination], now: float) -> int:
    """Store each nomination (its `until` set) whose workload has none stored; one already
    stored (a plan's own) is kept. Returns how many are added (corral.control.join_hold)."""
    wanted = {n.workload_id: n for n in nominations}
    there = set(conn.execute(select(NominationRow.workload_id)
                             .where(NominationRow.workload_id.in_(list(wanted)))).scalars())
    rows = [{"workload_id": n.workload_id, "assignments": [_encode(a) for a in n.assignments],
             "cpu_milli": n.cpu_milli, "memory_mib": n.memory_mib, "made_at": now,
             "held_until": n.until} for wid, n in sorted(wanted.items()) if wid not in there]
    if rows:
        conn.execute(insert(NominationRow), rows)
    return len(rows)


def load_nominations(conn: Connection, now: float) -> tuple[Nomination, ...]:
    """The nominations not expired at `now`, by workload id."""
    t = NominationRow.__table__
    rows = conn.execute(select(t).where(t.c.held_until > now).order_by(t.c.workload_id)).all()
    return tuple(Nomination(r.workload_id, tuple(_decode(a) for a in r.assignments),
                            r.cpu_milli, r.memory_mib, r.held_until) for r in rows)


def _encode(a: WorkerAssignment) -> dict[str, Any]:
    return {"worker": a.worker, "node_id": a.node_id, "devices": list(a.devices),
            "milli": a.milli_per_device, "mem": a.gpu_memory_mib_per_device}


def _decode(d: dict[str, Any]) -> WorkerAssignment:
    return WorkerAssignment(int(d["worker"]), str(d["node_id"]),
                            tuple(int(x) for x in d["devices"]), int(d["milli"]), int(d["mem"]))
