"""The scheduler lease: one row per lease name, held by one process until it expires.

A holder renews before expiry; anyone may take an expired lease, and taking it bumps `epoch`.
The epoch is a fencing token: every plan is applied in a transaction that first re-checks
(holder, epoch) with `fence`, so a paused old leader that wakes up after losing the lease cannot
write a plan (after Kleppmann's fencing tokens, and Kubernetes' lease-based leader election).
Times come from the callers' clocks, so the machines' clocks must agree to well within the TTL.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from corral.store.schema import Lease

__all__ = ["LeaseState", "acquire", "fence", "read_lease", "release", "take_over"]


@dataclass(frozen=True, slots=True)
class LeaseState:
    holder: str
    epoch: int
    expires_at: float


def read_lease(conn: Connection, name: str) -> LeaseState | None:
    r = conn.execute(select(Lease).where(Lease.name == name)).first()
    return LeaseState(r.holder, r.epoch, r.expires_at) if r is not None else None


def acquire(conn: Connection, name: str, holder: str, now: float, ttl: float) -> LeaseState | None:
    """Take or renew the lease for `holder`; None when someone else holds it unexpired.

    Run it in a write transaction of its own: on PostgreSQL a lost insert race raises
    IntegrityError, which ends the transaction (the caller reports "not leader").
    """
    row = conn.execute(select(Lease).where(Lease.name == name).with_for_update()).first()
    expires = now + ttl
    if row is None:
        try:
            conn.execute(insert(Lease).values(name=name, holder=holder, epoch=1, expires_at=expires))
        except IntegrityError:
            return None
        return LeaseState(holder, 1, expires)
    if row.holder == holder and row.expires_at >= now:
        conn.execute(update(Lease).where(Lease.name == name, Lease.epoch == row.epoch)
                     .values(expires_at=expires))
        return LeaseState(holder, row.epoch, expires)
    if row.expires_at < now:
        done = conn.execute(update(Lease).where(Lease.name == name, Lease.epoch == row.epoch)
                            .values(holder=holder, epoch=row.epoch + 1, expires_at=expires))
        return LeaseState(holder, row.epoch + 1, expires) if done.rowcount == 1 else None
    return None


def fence(conn: Connection, name: str, holder: str, epoch: int, now: float) -> bool:
    """True when `holder` still holds the lease at `epoch`, unexpired. Locks the row (PostgreSQL)
    so that no one can take the lease before this transaction commits."""
    r = conn.execute(select(Lease).where(Lease.name == name).with_for_update()).first()
    return r is not None and r.holder == holder and r.epoch == epoch and r.expires_at >= now


def release(conn: Connection, name: str, holder: str) -> None:
    """Give the lease up at once (on a clean shutdown), so a standby takes over without waiting."""
    conn.execute(update(Lease).where(Lease.name == name, Lease.holder == holder)
                 .values(expires_at=0.0))


def take_over(conn: Connection, name: str, holder: str, expected: LeaseState, now: float,
              ttl: float) -> LeaseState | None:
    """Take the lease from a holder known to be dead, without waiting for expiry; only if it is
    still exactly as `expected` (nobody else took it meanwhile)."""
    done = conn.execute(update(Lease).where(
        Lease.name == name, Lease.holder == expected.holder, Lease.epoch == expected.epoch)
        .values(holder=holder, epoch=expected.epoch + 1, expires_at=now + ttl))
    return LeaseState(holder, expected.epoch + 1, now + ttl) if done.rowcount == 1 else None
