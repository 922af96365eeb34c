"""The workload lifecycle: eight states, the legal moves between them, and the one way to move.

                 ┌──────────── cancelled <──────────────┐ (from any live state)
                 │                                      │
    pending ─> scheduled ─> starting ─> running ─> succeeded
       ^            │           │          │
       │            └───────────┴──────────┴─> failed       (restarts exhausted, or fatal)
       │                        │          │
       ├──── preempted <────────┴──────────┘                (evicted: preempt, reclaim, move)
       └──── (restart: a failed gang with restarts left goes back to pending, attempt + 1)

- scheduled: placed by a plan, not launched yet (it may wait for evicted work to leave its GPUs).
- starting: launch handed to the backend (recorded *before* the call, so a crash in between is
  repaired by relaunching the same attempt, which backends treat idempotently).
- A stop (cancel, eviction, a failed worker of a gang, max runtime) is a *request* held in
  `stop_reason` while the state stays put; the final transition happens when every worker has
  ended, so the GPUs are never counted free while a process may still hold them.

Every transition writes one event with a stable reason code and a sentence, in the same
transaction as the state change, and is guarded by the row's version.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Connection

from corral.control import webhooks
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "IllegalTransition",
    "State",
    "is_legal",
    "transition",
    "transition_many",
]


class State(enum.StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"


S = State
TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    S.PENDING: frozenset({S.SCHEDULED, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.STARTING, S.PENDING, S.PREEMPTED, S.CANCELLED}),
    S.STARTING: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.PENDING, S.PREEMPTED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.PENDING, S.PREEMPTED, S.CANCELLED}),
    S.PREEMPTED: frozenset({S.PENDING}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
TERMINAL: Final = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

# Reason codes of transitions (stable; users and dashboards match on them).
SUBMITTED: Final = "Submitted"
SCHEDULED: Final = "Scheduled"
LAUNCHED: Final = "Launched"
STARTED: Final = "Started"
COMPLETED: Final = "Completed"
WORKER_FAILED: Final = "WorkerFailed"
RESTARTING: Final = "Restarting"
RESTARTS_EXHAUSTED: Final = "RestartsExhausted"
LAUNCH_FAILED: Final = "LaunchFailed"
REQUEUED: Final = "Requeued"
CANCELLED: Final = "Cancelled"
CANCEL_REQUESTED: Final = "CancelRequested"
MAX_RUNTIME: Final = "MaxRuntimeExceeded"
WORKER_LOST: Final = "WorkerLost"
WAITING_FOR_DEVICES: Final = "WaitingForDevices"
RESTART_BACKOFF: Final = "RestartBackoff"
#: a service replica drained by a scale down (a stop request, then its end: cancelled)
SCALED_DOWN: Final = "ScaledDown"
#: a service replica of the previous spec, drained once the new spec's replicas are ready
REPLACED: Final = "Replaced"
#: a service replica of a new spec that did not become ready in time, drained (rollback)
ROLLED_BACK: Final = "RolledBack"
#: a service replica whose liveness probe kept failing: stopped, then restarted
LIVENESS_FAILED: Final = "LivenessFailed"
#: stop reasons that end a replica for good (cancelled) rather than move or restart it
DRAINS: Final = frozenset({CANCELLED, SCALED_DOWN, REPLACED, ROLLED_BACK})


class IllegalTransition(ValueError):
    """A move the state machine does not allow (a bug in the caller, or a user asking to
    cancel work that already ended: the API shows the message as a 409)."""

    def __init__(self, workload_id: str, current: str, target: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[State(current)])) or "none: it has ended"
        super().__init__(f"workload {workload_id} is {current}; it cannot become {target} "
                         f"(allowed next: {allowed})")
        self.current, self.target = current, target


def is_legal(current: str, target: str) -> bool:
    return State(target) in TRANSITIONS[State(current)]


def transition(
    conn: Connection, record: WorkloadRecord, target: State, *, reason: str, message: str,
    now: float, data: dict[str, Any] | None = None, **values: Any,
) -> bool:
    """Move `record` to `target` and write its event, guarded by the record's version.

    Returns False (and writes nothing) when the row changed since `record` was read; raises
    IllegalTransition when the state machine forbids the move. `values` are further columns
    to set in the same update (attempt, started_at, stop_reason...).
    """
    if not is_legal(record.state, target):
        raise IllegalTransition(record.id, record.state, target)
    if target in TERMINAL:
        values.setdefault("finished_at", now)
    values.setdefault("reason_code", reason)
    values.setdefault("reason_message", message)
    if not W.update_versioned(conn, record.id, record.version, state=str(target), **values):
        return False
    W.append_event(
        conn, at=now, kind="transition", reason=reason, message=message, workload_id=record.id,
        from_state=record.state, to_state=str(target),
        attempt=values.get("attempt", record.attempt), data=data)
    if record.spec.get("notify"):  # webhooks owed, committed with the change (issue 13)
        webhooks.owe(conn, [(record, message)], str(target), reason=reason, now=now)
    return True


def transition_many(
    conn: Connection, moves: Sequence[tuple[WorkloadRecord, str, dict[str, Any] | None]],
    target: State, *, reason: str, now: float, values: dict[str, Any] | None = None,
) -> bool:
    """`transition` of many records to one `target` with one reason, in two statements (an
    executemany UPDATE and one INSERT of the events). `moves`: (record, message, event data).

    True when every record was still at its version and moved; False when at least one was not
    (or the driver cannot count), in which case the caller must roll the transaction back: what
    was written is not known row by row. Raises IllegalTransition as `transition` does.
    `values`: further columns, the same for every record."""
    if not moves:
        return True
    for record, _, _ in moves:
        if not is_legal(record.state, target):
            raise IllegalTransition(record.id, record.state, target)
    extra = {"finished_at": now} if target in TERMINAL else {}
    extra.update(values or {})
    written = W.update_many_versioned(conn, [
        {"id": r.id, "version": r.version, "state": str(target), "reason_code": reason,
         "reason_message": message, **extra} for r, message, _ in moves])
    if written != len(moves):
        return False
    # the events a chunk of moves at a time (the same rows, in the same order): 48,000
    # gangs starting in one step made 48,000 event dicts alive at once beside the update's
    # rows (which the change feed's notes keep until the next refresh)
    state = str(target)
    for i in range(0, len(moves), W.BULK_CHUNK):
        W.append_events(conn, [
            {"at": now, "kind": "transition", "reason": reason, "message": message,
             "workload_id": r.id, "from_state": r.state, "to_state": state,
             "attempt": r.attempt, "data": data or {}}
            for r, message, data in moves[i:i + W.BULK_CHUNK]])
    notified = [(r, message) for r, message, _ in moves if r.spec.get("notify")]
    if notified:  # webhooks owed, committed with the changes (issue 13)
        webhooks.owe(conn, notified, str(target), reason=reason, now=now)
    return True
