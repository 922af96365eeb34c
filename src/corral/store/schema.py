"""The tables of the control plane (SQLAlchemy 2). Migrations in `migrations/` create them.

    providers ─< nodes                      the pool
    queues ─< memberships >─ users ─< api_tokens
    audit_log                               admin and cross-user actions (who, what, when)
    idempotency_keys                        (user, Idempotency-Key) -> the submission it made
    workloads ─< placements (per attempt, per worker)
    events                                  append-only history of every change, with reasons
    leases                                  who leads the scheduler (with a fencing epoch)

Workloads carry `version` for optimistic concurrency: every state change bumps it, and a plan built
from a snapshot only applies where the versions it saw are still current. Times are unix seconds
(floats) from the control plane's injectable clock, never the database's clock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Event",
    "IdempotencyKey",
    "Lease",
    "Membership",
    "NodeRow",
    "Placement",
    "Provider",
    "QueueRow",
    "User",
    "WorkloadRow",
]

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for an event log.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Provider(Base):
    __tablename__ = "providers"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    capacity_kind: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)


class NodeRow(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    provider: Mapped[str] = mapped_column(String(63), ForeignKey("providers.name"))
    gpu_model: Mapped[str] = mapped_column(String(63))
    gpu_count: Mapped[int] = mapped_column(Integer)
    gpu_memory_mib: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(BigInteger)
    price_per_gpu_hour: Mapped[float] = mapped_column(Float)
    capacity_kind: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(63))
    zone: Mapped[str] = mapped_column(String(63))
    rack: Mapped[str] = mapped_column(String(127))
    nvlink_domain: Mapped[str] = mapped_column(String(127))
    cordoned: Mapped[bool] = mapped_column(Boolean, default=False)
    health: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: False once the pool file no longer declares the node; kept for the history of placements
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: the change feed's number of the last write to this row (corral.store.changes)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", index=True)


class QueueRow(Base):
    __tablename__ = "queues"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(63), nullable=True)
    quota_gpus: Mapped[float] = mapped_column(Float)
    limit_gpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    weight: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer)
    quota_by_model: Mapped[dict[str, Any]] = mapped_column(JSON)


class User(Base):
    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | user
    created_at: Mapped[float] = mapped_column(Float)


class Membership(Base):
    """A user's role in one queue: queue_admin | member | viewer (see corral.store.auth)."""

    __tablename__ = "memberships"
    user: Mapped[str] = mapped_column(String(63), ForeignKey("users.name"), primary_key=True)
    queue: Mapped[str] = mapped_column(String(63), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="member", server_default="member")


class ApiToken(Base):
    """Only a SHA-256 of the token is stored; the token itself is shown once, at creation."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(63), ForeignKey("users.name"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the last characters, to tell tokens apart
    created_at: Mapped[float] = mapped_column(Float)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(63), default="", server_default="")
    #: unix seconds after which the token no longer authenticates; None: never
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: this token's request rate and burst; None: the server's default (corral.api.limits)
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    burst: Mapped[int | None] = mapped_column(Integer, nullable=True)


class AuditEntry(Base):
    """Append-only: an admin action or one user acting on another's work. `target` names the
    object (a user, a token id, a workload); `queue` the queue it concerns, if any."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(63), index=True)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(63), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IdempotencyKey(Base):
    """A submission's `Idempotency-Key`, per user: a retry with the same key and body gets the
    same workloads back. Written in the submission's own transaction."""

    __tablename__ = "idempotency_keys"
    user: Mapped[str] = mapped_column(String(63), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    group_id: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[float] = mapped_column(Float)


class WorkloadRow(Base):
    """One schedulable unit: a job, an interactive session, or one replica of a service.

    `seq` orders listings and pages (newest first) without sorting by strings. `attempt` names
    the current launch (the backend's idempotency key); `restart_count` counts relaunches after
    failures only (what `max_restarts` limits). `stop_reason` is set while a stop is requested and
    the workers have not all ended yet.
    """

    __tablename__ = "workloads"
    seq: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(80), unique=True)
    group_id: Mapped[str] = mapped_column(String(80), index=True)  # the submission (service)
    name: Mapped[str] = mapped_column(String(63))
    queue: Mapped[str] = mapped_column(String(63))
    user: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str] = mapped_column(String(64), default="")
    reason_message: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    submitted_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    not_before: Mapped[float] = mapped_column(Float, default=0.0)  # restart backoff
    stop_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stop_message: Mapped[str] = mapped_column(Text, default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: what a reader adds to the pending sentence at read time (`core.reasons.stored_refs`:
    #: the queues it names, whether it waits behind reservations), written with it
    reason_refs: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: the change feed's number of the last write to this row (corral.store.changes)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", index=True)

    __table_args__ = (
        Index("ix_workloads_state_seq", "state", "seq"),
        Index("ix_workloads_queue_seq", "queue", "seq"),
    )


class Placement(Base):
    """Where one worker of one attempt runs, and what the backend last said about it."""

    __tablename__ = "placements"
    workload_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(200), index=True)
    devices: Mapped[list[Any]] = mapped_column(JSON)
    milli_per_device: Mapped[int] = mapped_column(Integer)
    gpu_memory_mib_per_device: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # planned | starting | running | ended
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(64), default="")


class Event(Base):
    """Append-only. `kind`: transition | eviction | node | queue | restart | info."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16))
    workload_id: Mapped[str | None] = mapped_column(String(80), nullable=True, index=True)
    subject: Mapped[str] = mapped_column(String(200), default="")  # node or queue name
    from_state: Mapped[str] = mapped_column(String(16), default="")
    to_state: Mapped[str] = mapped_column(String(16), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Lease(Base):
    """The scheduler lease. `epoch` grows with each new holder: a fencing token."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float)
