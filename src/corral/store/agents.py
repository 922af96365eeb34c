"""The agents' tables and the mailbox the `agent` backend and `corral agent` talk through.

    agent_join_tokens        admin-made, single- or few-use secrets a host joins with
    agent_nodes ─< agent_workers      one row per registered host; one per assigned worker
    agent_logs               worker output shipped by the agents, in chunks by byte offset
    agent_log_times          when each worker's log reached a size (its runner's samples,
                             placed on the server's clock; `corral logs --timestamps`)

Nothing flows directly between the control loop and an agent: the backend writes assignments and
stop requests here (`StoreMailbox`, the store side of `corral.backends.agent.Mailbox`); the API
(`corral.api.agents`) hands them to the agent that long-polls for them and writes back its
heartbeat, its workers' states and their logs. So the API can run in other processes than the
scheduler (PostgreSQL), and either side can restart without the other noticing more than a gap.

Secrets (join tokens, node credentials) are stored as SHA-256 digests only, as API tokens are
(`corral.store.auth`). A launch's secret values (`LaunchSpec.secret_env`) are stored sealed with
the server's key (`sealed_env`, `corral.store.secrets`) and opened only to hand them to the
agent that runs the worker (`opened_spec`). Times are the server's clock; an agent's own times never enter (an end is
reported as "so many seconds ago" and placed on the server's clock when it arrives).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from corral.backends.agent import AgentNode, AssignedWorker, WorkerReport
from corral.backends.base import LaunchSpec
from corral.store import Store
from corral.store.changes import next_node_seq
from corral.store.schema import Base, NodeRow

__all__ = [
    "AgentJoinToken",
    "AgentLog",
    "AgentLogTime",
    "AgentNodeRow",
    "AgentWorker",
    "JoinRefused",
    "JoinTokenRecord",
    "StoreMailbox",
    "append_log",
    "assignments_for",
    "create_join_token",
    "join",
    "list_join_tokens",
    "node_by_credential",
    "record_heartbeat",
    "revoke_join_token",
    "set_label",
]

JOIN_PREFIX: Final = "cjt_"  # join token
NODE_PREFIX: Final = "cnc_"  # node credential
_BigId = BigInteger().with_variant(Integer(), "sqlite")
_ENDED: Final = frozenset({"succeeded", "failed", "stopped", "lost"})


class AgentJoinToken(Base):
    __tablename__ = "agent_join_tokens"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(63))
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    uses_left: Mapped[int] = mapped_column(Integer)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class AgentNodeRow(Base):
    __tablename__ = "agent_nodes"
    node_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(Integer)
    instance_id: Mapped[str] = mapped_column(String(200))
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    joined_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    lost_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: bumped on every change to the node's assignments: what an agent's long poll waits for
    seq: Mapped[int] = mapped_column(Integer, default=0)


class AgentWorker(Base):
    __tablename__ = "agent_workers"
    workload_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(200), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    master_addr: Mapped[str] = mapped_column(String(255))
    master_port: Mapped[int] = mapped_column(Integer)
    assigned_at: Mapped[float] = mapped_column(Float)
    stop_deadline: Mapped[float | None] = mapped_column(Float, nullable=True)
    stop_reason: Mapped[str] = mapped_column(Text, default="")
    fenced: Mapped[bool] = mapped_column(Boolean, default=False)
    released: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class AgentLog(Base):
    __tablename__ = "agent_logs"
    __table_args__ = (Index("ix_agent_logs_worker", "workload_id", "attempt", "worker", "offset"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    workload_id: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class AgentLogTime(Base):
    """At `at` (server clock) the worker's log held `size` bytes (`corral.backends.log_times`)."""

    __tablename__ = "agent_log_times"
    __table_args__ = (Index("ix_agent_log_times_worker", "workload_id", "attempt", "worker",
                            "size"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    workload_id: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[float] = mapped_column(Float)


class JoinRefused(Exception):
    """A join the server will not accept: `status` and `code` as the API answers them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True, slots=True)
class JoinTokenRecord:
    id: int
    name: str
    hint: str
    created_by: str
    created_at: float
    expires_at: float | None
    uses_left: int
    revoked: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- join tokens ---------------------------------------------------------------------------------


def create_join_token(conn: Connection, by: str, now: float, *, name: str = "", uses: int = 1,
                      expires_at: float | None = None) -> tuple[JoinTokenRecord, str]:
    """A new join token (returned once, stored as a digest) good for `uses` joins."""
    token = JOIN_PREFIX + secrets.token_urlsafe(32)
    values = {"token_hash": _digest(token), "hint": token[-6:], "name": name, "created_by": by,
              "created_at": now, "expires_at": expires_at, "uses_left": uses, "revoked": False}
    token_id = conn.execute(insert(AgentJoinToken).values(**values)
                            .returning(AgentJoinToken.id)).scalar_one()
    return JoinTokenRecord(int(token_id), name, token[-6:], by, now, expires_at, uses,
                           False), token


def _token_record(row: Any) -> JoinTokenRecord:
    return JoinTokenRecord(row.id, row.name, row.hint, row.created_by, row.created_at,
                           row.expires_at, row.uses_left, row.revoked)


def list_join_tokens(conn: Connection) -> list[JoinTokenRecord]:
    return [_token_record(r) for r in conn.execute(select(AgentJoinToken)
                                                   .order_by(AgentJoinToken.id))]


def revoke_join_token(conn: Connection, token_id: int) -> JoinTokenRecord | None:
    conn.execute(update(AgentJoinToken).where(AgentJoinToken.id == token_id)
                 .values(revoked=True))
    row = conn.execute(select(AgentJoinToken).where(AgentJoinToken.id == token_id)).first()
    return _token_record(row) if row is not None else None


def join(conn: Connection, token: str, node_id: str, facts: Mapping[str, Any], now: float, *,
         live_for_s: float) -> str:
    """Spend one use of `token` on registering `node_id`; returns the node's credential.

    A node id already registered may join again (a host that lost its data dir, a replacement
    with the same name) only once it has not been heard from for `live_for_s`: a join token must
    not let anyone take over a live node and its work. Its old credential stops working, and
    its unfinished workers are fenced (`fence`) so the old host, if it comes back, kills them.
    """
    row = conn.execute(select(AgentJoinToken).where(
        AgentJoinToken.token_hash == _digest(token))).first()
    if row is None or row.revoked or (row.expires_at is not None and row.expires_at <= now):
        raise JoinRefused(401, "unauthorized", "the join token is unknown, revoked or expired: "
                          "ask an admin for a new one (corral agent-tokens create)")
    if row.uses_left <= 0:
        raise JoinRefused(401, "unauthorized", f"the join token {row.name or row.hint!r} is "
                          "used up: ask an admin for a new one (corral agent-tokens create)")
    known = conn.execute(select(AgentNodeRow).where(AgentNodeRow.node_id == node_id)).first()
    if known is not None and known.lost_at is None and now - known.last_seen < live_for_s:
        raise JoinRefused(409, "conflict", f"node {node_id!r} is registered and alive (heard "
                          f"from {now - known.last_seen:.0f} s ago): give this host another "
                          "--node-id, or stop the other agent first")
    credential = NODE_PREFIX + secrets.token_urlsafe(32)
    conn.execute(update(AgentJoinToken).where(AgentJoinToken.id == row.id)
                 .values(uses_left=AgentJoinToken.uses_left - 1))
    values = {"credential_hash": _digest(credential), "token_id": row.id,
              "instance_id": str(facts.get("instance_id") or ""), "facts": dict(facts),
              "joined_at": now, "last_seen": now, "lost_at": None}
    if known is None:
        conn.execute(insert(AgentNodeRow).values(node_id=node_id, seq=0, **values))
    else:
        fence(conn, node_id, now, "the node joined again as a new host")
        conn.execute(update(AgentNodeRow).where(AgentNodeRow.node_id == node_id).values(**values))
    return credential


def node_by_credential(conn: Connection, credential: str) -> AgentNode | None:
    row = conn.execute(select(AgentNodeRow).where(
        AgentNodeRow.credential_hash == _digest(credential))).first()
    return _node(row) if row is not None else None


def _node(row: Any) -> AgentNode:
    return AgentNode(row.node_id, dict(row.facts), row.last_seen, row.lost_at, row.seq,
                     row.instance_id)


# --- what an agent sends and receives -----------------------------------------------------------


def record_heartbeat(conn: Connection, node_id: str, now: float,
                     reports: Iterable[WorkerReport]) -> None:
    """The agent is alive now; its workers stand as reported. A node that was declared lost is
    back (its fenced workers stay fenced: the agent kills them when it reads its assignments).
    Only the first end of a worker counts; reports about fenced, released or unknown workers are
    ignored (the agent learns from its assignments that it must kill them)."""
    conn.execute(update(AgentNodeRow).where(AgentNodeRow.node_id == node_id)
                 .values(last_seen=now, lost_at=None))
    for r in reports:
        values: dict[str, Any] = {"state": r.state, "reason": r.reason[:32],
                                  "exit_code": r.exit_code, "message": r.message}
        if r.state in _ENDED:
            values["finished_at"] = now - max(0.0, r.ended_s_ago or 0.0)
        conn.execute(update(AgentWorker).where(
            AgentWorker.workload_id == r.workload_id, AgentWorker.attempt == r.attempt,
            AgentWorker.worker == r.worker, AgentWorker.node_id == node_id,
            AgentWorker.fenced.is_(False), AgentWorker.released.is_(False),
            AgentWorker.state.not_in(_ENDED)).values(**values))


def set_label(conn: Connection, node_id: str, key: str, value: str) -> bool:
    """One label of a node's facts, as its agent reports it at sync (its container runtime,
    found at each start, where the join's facts were found once); True when it changed."""
    facts = conn.execute(select(AgentNodeRow.facts).where(AgentNodeRow.node_id == node_id)
                         ).scalar()
    labels = dict((facts or {}).get("labels") or {})
    if facts is None or labels.get(key) == value:
        return False
    conn.execute(update(AgentNodeRow).where(AgentNodeRow.node_id == node_id)
                 .values(facts={**facts, "labels": {**labels, key: value}}))
    # the pool's copy, made when the node joined the pool, is what the scheduler reads
    pooled = conn.execute(select(NodeRow.labels).where(NodeRow.id == node_id)).first()
    if pooled is not None:
        conn.execute(update(NodeRow).where(NodeRow.id == node_id).values(
            labels={**dict(pooled.labels or {}), key: value}, change_seq=next_node_seq(conn)))
    return True


def assignments_for(conn: Connection, node_id: str) -> tuple[int, list[AssignedWorker]]:
    """The node's assignment version and every worker assigned to it and not yet released."""
    seq = conn.execute(select(AgentNodeRow.seq).where(AgentNodeRow.node_id == node_id)).scalar()
    rows = conn.execute(select(AgentWorker).where(
        AgentWorker.node_id == node_id, AgentWorker.released.is_(False))
        .order_by(AgentWorker.workload_id, AgentWorker.attempt, AgentWorker.worker))
    return int(seq or 0), [_assigned(r) for r in rows]


def node_seq(conn: Connection, node_id: str) -> int:
    seq = conn.execute(select(AgentNodeRow.seq).where(AgentNodeRow.node_id == node_id)).scalar()
    return int(seq or 0)


SEALED_ENV: Final = "sealed_env"


def _sealed(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    """A launch record as stored: its secret values sealed (none: as it is)."""
    values = record.get("secret_env")
    if not values:
        return record
    from corral.store import secrets as S  # cryptography, only for work that uses secrets

    return {**record, "secret_env": {}, SEALED_ENV: S.seal_env(S.box_of(store), values)}


def opened_spec(store: Store, stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored launch record as `LaunchSpec.from_record` reads it: its secrets opened."""
    record = dict(stored)
    sealed = record.pop(SEALED_ENV, None)
    if sealed is None:
        return record
    from corral.store import secrets as S

    return {**record, "secret_env": S.open_env(S.box_of(store), sealed)}


def _assigned(r: Any) -> AssignedWorker:
    return AssignedWorker(
        workload_id=r.workload_id, attempt=r.attempt, worker=r.worker, node_id=r.node_id,
        spec=dict(r.spec), master_addr=r.master_addr, master_port=r.master_port,
        stop_deadline=r.stop_deadline, stop_reason=r.stop_reason, fenced=r.fenced,
        state=r.state, reason=r.reason, exit_code=r.exit_code, finished_at=r.finished_at,
        message=r.message)


def log_length(conn: Connection, workload_id: str, attempt: int, worker: int) -> int:
    end = conn.execute(select(func.max(AgentLog.offset + func.length(AgentLog.data))).where(
        AgentLog.workload_id == workload_id, AgentLog.attempt == attempt,
        AgentLog.worker == worker)).scalar()
    return int(end or 0)


def append_log(conn: Connection, workload_id: str, attempt: int, worker: int, offset: int,
               data: bytes) -> int:
    """Store the bytes of a worker's log from `offset`; returns the next offset the server
    wants. A resent chunk (the agent restarted, a response was lost) is trimmed to what is new,
    so shipping is idempotent; a chunk that would leave a hole is refused (the answer says where
    to resume)."""
    have = log_length(conn, workload_id, attempt, worker)
    if offset > have:
        return have
    new = data[have - offset:]
    if new:
        conn.execute(insert(AgentLog).values(workload_id=workload_id, attempt=attempt,
                                             worker=worker, offset=have, data=new))
    return have + len(new)


def append_log_times(conn: Connection, workload_id: str, attempt: int, worker: int,
                     samples: Sequence[tuple[int, float]]) -> None:
    """Keep the (size, time) samples beyond the largest size already kept: a resent batch (the
    agent restarted) adds nothing, and sizes stay increasing."""
    key = (AgentLogTime.workload_id == workload_id, AgentLogTime.attempt == attempt,
           AgentLogTime.worker == worker)
    have = conn.execute(select(func.max(AgentLogTime.size)).where(*key)).scalar()
    rows, top = [], -1 if have is None else int(have)
    for size, at in sorted(samples):
        if size > top:
            rows.append({"workload_id": workload_id, "attempt": attempt, "worker": worker,
                         "size": size, "at": at})
            top = size
    if rows:
        conn.execute(insert(AgentLogTime), rows)


def log_times(conn: Connection, workload_id: str, attempt: int, worker: int, start: int,
              end: int) -> list[tuple[int, float]]:
    """The samples that date the bytes [start, end): those with a size in (start, end], and
    the first beyond `end` (it dates a line that ends after the last sample inside)."""
    key = (AgentLogTime.workload_id == workload_id, AgentLogTime.attempt == attempt,
           AgentLogTime.worker == worker)
    inside = conn.execute(select(AgentLogTime.size, AgentLogTime.at).where(
        *key, AgentLogTime.size > start, AgentLogTime.size <= end)
        .order_by(AgentLogTime.size)).all()
    after = conn.execute(select(AgentLogTime.size, AgentLogTime.at).where(
        *key, AgentLogTime.size > end).order_by(AgentLogTime.size).limit(1)).all()
    return [(int(r.size), float(r.at)) for r in [*inside, *after]]


def read_log(conn: Connection, workload_id: str, attempt: int, worker: int, offset: int,
             max_bytes: int) -> bytes:
    rows = conn.execute(select(AgentLog.offset, AgentLog.data).where(
        AgentLog.workload_id == workload_id, AgentLog.attempt == attempt,
        AgentLog.worker == worker, AgentLog.offset + func.length(AgentLog.data) > offset)
        .order_by(AgentLog.offset))
    out = bytearray()
    for start, data in rows:
        out += data[max(0, offset - start):]
        if len(out) >= max_bytes:
            break
    return bytes(out[:max_bytes])


def fence(conn: Connection, node_id: str, now: float, why: str) -> list[AssignedWorker]:
    """Declare the node lost: its unfinished workers become LOST (NodeLost) and fenced, for good
    (a later report does not revive them; the agent, once back, kills them). Returns them."""
    conn.execute(update(AgentNodeRow).where(AgentNodeRow.node_id == node_id,
                                            AgentNodeRow.lost_at.is_(None))
                 .values(lost_at=now))
    cond = and_(AgentWorker.node_id == node_id, AgentWorker.released.is_(False),
                AgentWorker.fenced.is_(False), AgentWorker.state.not_in(_ENDED))
    fenced = [_assigned(r) for r in conn.execute(select(AgentWorker).where(cond))]
    if fenced:
        conn.execute(update(AgentWorker).where(cond).values(
            fenced=True, state="lost", reason="NodeLost", exit_code=None, finished_at=now,
            message=f"node {node_id} lost: {why}"))
        _bump(conn, [node_id])
    return fenced


def _bump(conn: Connection, node_ids: Iterable[str]) -> None:
    ids = sorted(set(node_ids))
    if ids:
        conn.execute(update(AgentNodeRow).where(AgentNodeRow.node_id.in_(ids))
                     .values(seq=AgentNodeRow.seq + 1))


class StoreMailbox:
    """`corral.backends.agent.Mailbox` over the store: what the agent backend reads and writes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def nodes(self) -> list[AgentNode]:
        with self.store.read() as conn:
            return [_node(r) for r in conn.execute(select(AgentNodeRow)
                                                   .order_by(AgentNodeRow.node_id))]

    def workers(self) -> list[AssignedWorker]:
        with self.store.read() as conn:
            rows = conn.execute(select(AgentWorker).where(AgentWorker.released.is_(False))
                                .order_by(AgentWorker.workload_id, AgentWorker.attempt,
                                          AgentWorker.worker))
            return [_assigned(r) for r in rows]

    def assigned_spec(self, workload_id: str, attempt: int) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = conn.execute(select(AgentWorker.spec).where(
                AgentWorker.workload_id == workload_id, AgentWorker.attempt == attempt)).first()
        return opened_spec(self.store, row.spec) if row is not None else None

    def assign(self, spec: LaunchSpec, master_addr: str, master_port: int, now: float) -> None:
        record = _sealed(self.store, spec.as_record())
        with self.store.write() as conn:
            conn.execute(insert(AgentWorker), [
                {"workload_id": spec.workload_id, "attempt": spec.attempt, "worker": a.worker,
                 "node_id": a.node_id, "spec": record, "master_addr": master_addr,
                 "master_port": master_port, "assigned_at": now, "stop_deadline": None,
                 "stop_reason": "", "fenced": False, "released": False, "state": "starting",
                 "reason": "Starting", "exit_code": None, "finished_at": None, "message": ""}
                for a in spec.assignments])
            _bump(conn, [a.node_id for a in spec.assignments])

    def request_stop(self, workload_id: str, attempt: int, deadline: float, reason: str) -> bool:
        """Record the stop (an earlier deadline wins, the first reason stays); False when there
        was nothing to change."""
        key = and_(AgentWorker.workload_id == workload_id, AgentWorker.attempt == attempt)
        with self.store.write() as conn:
            rows = conn.execute(select(AgentWorker.node_id).where(key, or_(
                AgentWorker.stop_deadline.is_(None), AgentWorker.stop_deadline > deadline)))
            nodes = [r.node_id for r in rows]
            if not nodes:
                return False
            conn.execute(update(AgentWorker).where(key, AgentWorker.stop_deadline.is_(None))
                         .values(stop_reason=reason))
            conn.execute(update(AgentWorker).where(key, or_(
                AgentWorker.stop_deadline.is_(None), AgentWorker.stop_deadline > deadline))
                .values(stop_deadline=deadline))
            _bump(conn, nodes)
        return True

    def fence(self, node_id: str, now: float, why: str) -> list[AssignedWorker]:
        with self.store.write() as conn:
            return fence(conn, node_id, now, why)

    def release(self, workload_id: str, attempt: int) -> None:
        key = and_(AgentWorker.workload_id == workload_id, AgentWorker.attempt == attempt)
        with self.store.write() as conn:
            nodes = [r.node_id for r in conn.execute(select(AgentWorker.node_id).where(key))]
            conn.execute(update(AgentWorker).where(key).values(released=True))
            _bump(conn, nodes)

    def latest_attempt(self, workload_id: str) -> int | None:
        with self.store.read() as conn:
            got = conn.execute(select(func.max(AgentWorker.attempt)).where(
                AgentWorker.workload_id == workload_id)).scalar()
        return None if got is None else int(got)

    def read_log(self, workload_id: str, attempt: int, worker: int, offset: int,
                 max_bytes: int) -> bytes:
        with self.store.read() as conn:
            return read_log(conn, workload_id, attempt, worker, offset, max_bytes)

    def log_times(self, workload_id: str, attempt: int, worker: int, start: int,
                  end: int) -> list[tuple[int, float]]:
        with self.store.read() as conn:
            return log_times(conn, workload_id, attempt, worker, start, end)

    def workers_of(self, workload_id: str, attempt: int) -> Sequence[int]:
        with self.store.read() as conn:
            return [int(w) for w in conn.execute(select(AgentWorker.worker).where(
                AgentWorker.workload_id == workload_id, AgentWorker.attempt == attempt))
                .scalars()]
