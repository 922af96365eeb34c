"""What each standby server's gateway counted per autoscaled service, for the leader's
autoscaler (issue 12): clients may reach any server, so the load through a standby must scale
the service as the leader's own does.

One row per (gateway, service), overwritten by that gateway every few seconds: its gauges now
(in flight, running) and its cumulative counters (arrivals, the request-seconds histogram's
bucket counts). The leader diffs the counters against the last row it read (a write it missed
loses nothing) and counts a row only while it is fresh (`corral.control.gateway_loads`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, Float, Integer, String, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from corral.store.schema import Base

__all__ = ["GatewayLoadRow", "LoadTotals", "prune_loads", "read_loads", "write_loads"]


class GatewayLoadRow(Base):
    __tablename__ = "gateway_loads"

    gateway: Mapped[str] = mapped_column(String(200), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    #: grows with each write of this gateway: the reader sees a live writer by it changing
    seq: Mapped[int] = mapped_column(Integer)
    written_at: Mapped[float] = mapped_column(Float)
    in_flight: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)
    #: requests that arrived since the gateway started (finished + in flight)
    arrivals: Mapped[float] = mapped_column(Float)
    #: the request-seconds histogram's cumulative bucket counts (the gateway's bucket bounds)
    buckets: Mapped[list[Any]] = mapped_column(JSON)


@dataclass(frozen=True)
class LoadTotals:
    """One gateway's view of one service."""

    in_flight: int
    running: int
    arrivals: float
    #: (upper bound, cumulative count) pairs, None for +Inf
    buckets: tuple[tuple[float | None, float], ...]
    seq: int = 0
    written_at: float = 0.0


def write_loads(conn: Connection, gateway: str, totals: Mapping[str, LoadTotals],
                now: float) -> None:
    """Overwrite `gateway`'s rows with `totals` (per service id); its other rows are deleted
    (services it no longer routes)."""
    R = GatewayLoadRow
    conn.execute(delete(R).where(R.gateway == gateway, R.service_id.not_in(list(totals))))
    for sid, x in totals.items():
        values = {"written_at": now, "in_flight": x.in_flight, "running": x.running,
                  "arrivals": x.arrivals, "buckets": [list(p) for p in x.buckets]}
        done = conn.execute(update(R).where(R.gateway == gateway, R.service_id == sid)
                            .values(seq=R.seq + 1, **values))
        if done.rowcount == 0:
            conn.execute(insert(R).values(gateway=gateway, service_id=sid, seq=1, **values))


def read_loads(conn: Connection, services: Collection[str]
               ) -> dict[tuple[str, str], LoadTotals]:
    """(gateway, service id) -> its row, for `services`."""
    t = GatewayLoadRow.__table__
    rows = conn.execute(select(t).where(t.c.service_id.in_(list(services)))).all()
    return {(r.gateway, r.service_id): LoadTotals(r.in_flight, r.running, r.arrivals,
                                                  _pairs(r.buckets), r.seq, r.written_at)
            for r in rows}


def _pairs(buckets: object) -> tuple[tuple[float | None, float], ...]:
    """[bound, count] JSON pairs back to tuples; anything else reads as no histogram."""
    out: list[tuple[float | None, float]] = []
    for item in buckets if isinstance(buckets, list) else ():
        if not isinstance(item, list) or len(item) != 2:
            return ()
        bound, count = item
        out.append((None if bound is None else float(bound), float(count)))
    return tuple(out)


def prune_loads(conn: Connection, before: float) -> int:
    """Delete rows not written since `before` (gateways gone for good); how many."""
    R = GatewayLoadRow
    return int(conn.execute(delete(R).where(R.written_at < before)).rowcount or 0)
