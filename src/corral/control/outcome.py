"""Outcome: what an attempt whose workers have all ended means for its workload.

    every worker succeeded                 -> succeeded (whatever stop was requested meanwhile)
    stop requested: Cancelled, ScaledDown, -> cancelled
      Replaced, RolledBack (a service's)
    stop requested: Preempt/Reclaim/Move   -> preempted, then pending with attempt + 1
    stop requested: NodeUnhealthy (drain)  -> the same: the node failed, not the workload, and
      SpotInterrupted, ProviderRemoved,       it had its grace to checkpoint, so no restart is
      NodeReplaced, NodeConsolidated          used up (a worker *lost* with its node still is)
    stop requested: Migrated (moved to     -> the same: corral chose to move it
      faster devices, control/migration.py)
    stop requested: MaxRuntimeExceeded     -> failed
    a worker failed or was lost            -> pending with attempt + 1 and restart_count + 1
                                              after a backoff, while restarts are left;
                                              else failed (RestartsExhausted); only when its
                                              restart_on covers the cause, else failed
                                              (NotRetried): `corral.control.retry`
    a service replica ended on its own     -> pending again, whatever its exit code and however
                                              many times (`corral.control.replicas`)

A restart relaunches the whole gang (workers of one attempt rendezvous together) with its
checkpoint directory, from which it resumes (see `corral.control.act.launch_spec`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from sqlalchemy import Connection

from corral.backends.base import SETUP_FAILED, WorkerState, WorkerStatus
from corral.control import lifecycle as L
from corral.control import replicas, retry
from corral.control.elastic import RESIZED
from corral.control.lifecycle import State
from corral.core import reasons as R
from corral.core.migration import MIGRATED
from corral.core.model import WorkloadKind
from corral.spec import WorkloadSpec
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = ["EVICTION_RULES", "MAX_BACKOFF_S", "backoff_s", "finalize", "restart_or_fail"]

EVICTION_RULES: Final = frozenset({R.RULE_PREEMPT, R.RULE_RECLAIM, R.RULE_CONSOLIDATE})
#: the stop reason of work drained off an unhealthy node (corral.control.health.NODE_UNHEALTHY)
DRAINED: Final = "NodeUnhealthy"
#: stop reasons of work drained by the pool autoscaler (corral.control.autoscale): a spot
#: interruption, a provider being removed, a node replaced by a cheaper one
#: (corral.autoscale.replace) or emptied into others' free room (corral.autoscale.consolidate).
#: Like a drain: requeued, no restart used up
NODE_LEAVING: Final = frozenset({DRAINED, "SpotInterrupted", "ProviderRemoved", "NodeReplaced",
                                 "NodeConsolidated"})
MAX_BACKOFF_S: Final = 600.0


def backoff_s(spec: WorkloadSpec, restart_count: int) -> float:
    """Exponential: restart_backoff, then x2 per earlier restart, capped at MAX_BACKOFF_S."""
    return float(min(MAX_BACKOFF_S, spec.restart_backoff * 2 ** restart_count))


def finalize(
    conn: Connection, rec: WorkloadRecord, statuses: Sequence[WorkerStatus], spec: WorkloadSpec,
    now: float,
) -> bool:
    """Record the end of `rec`'s current attempt (all workers ended, or none ever launched)."""
    _record_workers(conn, rec, statuses)
    codes = [s.exit_code for s in statuses]
    exit_code = next((c for c in codes if c not in (0, None)), codes[0] if codes else None)
    if spec.kind == WorkloadKind.SERVICE and rec.stop_reason in (
            None, L.WORKER_FAILED, L.LIVENESS_FAILED):
        # a service never "succeeds": exit 0 is as much an outage as a crash
        return replicas.restart(conn, rec, spec, now, statuses, exit_code)
    if statuses and all(s.state == WorkerState.SUCCEEDED for s in statuses):
        return L.transition(conn, rec, State.SUCCEEDED, reason=L.COMPLETED,
                            message="every worker exited 0", now=now, exit_code=0,
                            stop_reason=None)
    stop = rec.stop_reason
    if stop in L.DRAINS:
        return L.transition(conn, rec, State.CANCELLED, reason=stop,
                            message=rec.stop_message or "cancelled", now=now,
                            exit_code=exit_code, stop_reason=None)
    if stop == RESIZED:  # an elastic job's resize (elastic.py): back to its devices, as it was
        return _requeue_after_eviction(conn, rec, stop, now)
    if stop in EVICTION_RULES or stop in NODE_LEAVING or stop == MIGRATED:
        cause = retry.Cause(retry.cause_of_stop(stop))
        if statuses and not retry.allows(spec, cause):  # it ran, and restart_on leaves it out
            return _not_retried(conn, rec, spec, now, cause, rec.stop_message or stop, exit_code)
        return _requeue_after_eviction(conn, rec, stop, now)
    if stop == L.MAX_RUNTIME:
        return L.transition(conn, rec, State.FAILED, reason=L.MAX_RUNTIME,
                            message=rec.stop_message, now=now, exit_code=exit_code,
                            stop_reason=None)
    message = rec.stop_message or _failure_message(statuses)
    reason = L.WORKER_LOST if any(s.state == WorkerState.LOST for s in statuses) else L.WORKER_FAILED
    return restart_or_fail(conn, rec, spec, now, reason=reason, message=message,
                           exit_code=exit_code, cause=retry.failure_cause(conn, statuses))


def restart_or_fail(
    conn: Connection, rec: WorkloadRecord, spec: WorkloadSpec, now: float, *, reason: str,
    message: str, exit_code: int | None = None, cause: retry.Cause | None = None,
) -> bool:
    """Restart `rec` after a failure when its retry policy (`corral.control.retry`) covers
    `cause` (None: an infrastructure failure, the backend lost or could not launch it) and
    restarts are left; else fail it."""
    if spec.kind == WorkloadKind.SERVICE:  # replicas are kept serving, never given up on
        return replicas.restart_after(conn, rec, spec, now, cause=reason, message=message,
                                      exit_code=exit_code)
    cause = cause or retry.Cause(retry.NODE_FAILURE)
    if not retry.allows(spec, cause):
        return _not_retried(conn, rec, spec, now, cause, message, exit_code)
    if rec.restart_count >= spec.max_restarts:
        return L.transition(
            conn, rec, State.FAILED, reason=L.RESTARTS_EXHAUSTED,
            message=f"{message}; no restarts left (max_restarts: {spec.max_restarts})",
            now=now, exit_code=exit_code, stop_reason=None)
    delay = backoff_s(spec, rec.restart_count)
    return L.transition(
        conn, rec, State.PENDING, reason=L.RESTARTING,
        message=f"{message}; restart {rec.restart_count + 1} of {spec.max_restarts} "
                f"in {delay:g}s ({cause}; it finds its newest checkpoint, if it saved one, "
                "in CORRAL_RESUME_FROM)",
        now=now, data={"cause": reason, "retry_cause": cause.kind}, attempt=rec.attempt + 1,
        restart_count=rec.restart_count + 1, not_before=now + delay, stop_reason=None,
        stop_message="", started_at=None, exit_code=exit_code)


def _not_retried(conn: Connection, rec: WorkloadRecord, spec: WorkloadSpec, now: float,
                 cause: retry.Cause, what: str, exit_code: int | None) -> bool:
    # a failed setup keeps its own reason (SetupFailed): the command never ran
    return L.transition(conn, rec, State.FAILED,
                        reason=SETUP_FAILED if cause.setup else retry.NOT_RETRIED,
                        message=retry.not_retried_message(spec, cause, what), now=now,
                        data={"retry_cause": cause.kind}, exit_code=exit_code, stop_reason=None)


def _requeue_after_eviction(conn: Connection, rec: WorkloadRecord, rule: str, now: float) -> bool:
    if not L.transition(conn, rec, State.PREEMPTED, reason=rule, message=rec.stop_message,
                        now=now, stop_reason=None):
        return False
    moved = dataclasses.replace(rec, state=str(State.PREEMPTED), version=rec.version + 1)
    return L.transition(
        conn, moved, State.PENDING, reason=L.REQUEUED,
        message=f"requeued after {rule.lower()}; it resumes from its checkpoint",
        now=now, attempt=rec.attempt + 1, started_at=None, stop_message="")


def _record_workers(conn: Connection, rec: WorkloadRecord, statuses: Sequence[WorkerStatus]) -> None:
    W.set_placement_states(conn, rec.id, rec.attempt, {
        s.worker: ("ended", s.exit_code, s.reason) for s in statuses})


def _failure_message(statuses: Sequence[WorkerStatus]) -> str:
    bad = [s for s in statuses if s.state in (WorkerState.FAILED, WorkerState.LOST)]
    if not bad:
        return "the attempt ended before it started"
    s = bad[0]
    what = f"exit code {s.exit_code}" if s.exit_code is not None else s.reason
    extra = f": {s.message}" if s.message else ""
    return f"worker {s.worker} {s.state} ({s.reason}, {what}){extra}"
