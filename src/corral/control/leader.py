"""Leadership: only the holder of the scheduler lease plans and acts; everyone serves the API.

Portable across SQLite and PostgreSQL (a lease row, not an advisory lock), so the same code
and tests cover both; the fencing epoch makes a deposed leader's late plan fail (`fence`).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from corral.store import Store
from corral.store import lease as LS

__all__ = ["Leadership", "default_holder"]

log = logging.getLogger(__name__)


def default_holder() -> str:
    """Unique per process: host, pid and a random suffix (pids repeat across restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership:
    def __init__(self, store: Store, *, holder: str | None = None, name: str = "scheduler",
                 ttl_s: float = 15.0) -> None:
        self.store, self.name, self.ttl_s = store, name, ttl_s
        self.holder = holder or default_holder()
        self.epoch: int | None = None
        #: when this process last wrote the lease (its clock); renewals closer than
        #: `renew_every_s` are skipped: the lease then still has most of its TTL to run, and
        #: a write transaction per step was 9% of the loop's CPU on Slurm (bench/README)
        self.renewed_at: float | None = None
        self.renew_every_s = ttl_s / 5

    @property
    def leading(self) -> bool:
        return self.epoch is not None

    def ensure(self, now: float) -> bool:
        """Take or renew the lease; True while this process leads. A lease renewed less
        than `renew_every_s` ago is not written again: nobody else can take it before it
        expires, and a plan is still fenced in its own transaction (`fence`)."""
        if (self.epoch is not None and self.renewed_at is not None
                and 0 <= now - self.renewed_at < self.renew_every_s):
            return True
        try:
            with self.store.write() as conn:
                state = LS.acquire(conn, self.name, self.holder, now, self.ttl_s)
                if state is None:
                    state = self._from_dead_local_holder(conn, now)
        except SQLAlchemyError as e:  # a lost insert race, or the database is away
            log.info("lease not taken: %s", e.__class__.__name__)
            state = None
        was = self.epoch
        self.epoch = state.epoch if state is not None else None
        self.renewed_at = now if state is not None else None
        if was != self.epoch:
            log.info("scheduler lease %s: %s", self.name,
                     f"leading (epoch {self.epoch})" if self.epoch else "standing by")
        return self.epoch is not None

    def _from_dead_local_holder(self, conn: Connection, now: float) -> LS.LeaseState | None:
        """After a crash (kill -9) the lease names a process that no longer exists. When that
        process was on this machine we can know it is dead, and restart without waiting out the
        TTL; a holder on another machine is only presumed dead once its lease expires."""
        current = LS.read_lease(conn, self.name)
        if current is None or not _dead_here(current.holder):
            return None
        log.info("taking the lease from %s, which is no longer running", current.holder)
        return LS.take_over(conn, self.name, self.holder, current, now, self.ttl_s)

    def fence(self, conn: Connection, now: float) -> bool:
        return self.epoch is not None and LS.fence(conn, self.name, self.holder, self.epoch, now)

    def resign(self) -> None:
        if self.epoch is None:
            return
        try:
            with self.store.write() as conn:
                LS.release(conn, self.name, self.holder)
        except SQLAlchemyError:
            pass  # it expires on its own
        self.epoch, self.renewed_at = None, None


def _dead_here(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # an earlier Leadership of this very process: not dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
