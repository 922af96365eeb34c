"""Retry policy: why an attempt ended without being asked to, and whether `restart_on` retries it.

    cause               what happened                                   retried by default
    node_failure        a worker was lost (its node or process vanished    yes
                        without an exit status), its node was drained as
                        unhealthy, or the backend forgot the attempt
    spot_interruption   a worker was lost on a spot node                   yes
    preemption          corral evicted it (preempt, reclaim, move) or      yes
                        moved it to faster devices (`Migrated`)
    exit code N         the program exited N != 0, was killed by a         no: only codes
                        signal (-N), or could not be executed              listed in restart_on

Why application errors are not retried by default: a program that exits 3 on a bad config exits
3 again; three restarts "from its checkpoint" (which it never wrote) only burn GPU-hours and hide
the error. Infrastructure failures are not the program's fault and a restart usually succeeds.
Like Kubernetes' Job podFailurePolicy (`onExitCodes`, `DisruptionTarget`) and Slurm's
`--requeue` (node failures only), the policy is per workload; `max_restarts` still bounds the
failures that are retried. A preemption retried does not use up a restart (corral chose it).
A migration (`corral.control.migration`) is corral's choice too, never the node's fault: it is a
preemption here, so it neither spends a restart nor reads as a node failure (a `restart_on`
without node_failure must not fail a job corral moved, nor keep it from being moved).

Services keep their own rule (`corral.control.replicas`: a replica is always restarted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, select

from corral.backends.base import SETUP_FAILED, WorkerState, WorkerStatus
from corral.core import reasons as R
from corral.core.migration import MIGRATED
from corral.core.model import CapacityKind
from corral.spec import WorkloadSpec
from corral.store.schema import NodeRow

__all__ = [
    "NODE_FAILURE",
    "NOT_RETRIED",
    "PREEMPTION",
    "SPOT_INTERRUPTION",
    "Cause",
    "allows",
    "cause_of_stop",
    "failure_cause",
    "not_retried_message",
]

NODE_FAILURE: Final = "node_failure"
PREEMPTION: Final = "preemption"
SPOT_INTERRUPTION: Final = "spot_interruption"
#: stop reasons of evictions (corral.core.reasons RULE_*), a move to faster devices included,
#: and of a spot node taken back
EVICTIONS: Final = frozenset({R.RULE_PREEMPT, R.RULE_RECLAIM, R.RULE_CONSOLIDATE, MIGRATED})
SPOT_INTERRUPTED: Final = "SpotInterrupted"
#: the reason code of a workload failed because its policy does not retry what happened
NOT_RETRIED: Final = "NotRetried"


@dataclass(frozen=True, slots=True)
class Cause:
    """Why an attempt ended: an infrastructure `kind`, or "exit_code" with the code."""

    kind: str
    exit_code: int | None = None
    setup: bool = False  # the spec's setup exited non-zero: the command never started

    def __str__(self) -> str:
        if self.kind != "exit_code":
            return self.kind.replace("_", " ")
        what = "a setup failure" if self.setup else "an application error"
        return what + (f" (exit code {self.exit_code})" if self.exit_code is not None else "")


def failure_cause(conn: Connection, statuses: Sequence[WorkerStatus]) -> Cause:
    """The cause of an attempt that failed without a stop request (or whose gang was stopped
    because one worker failed). A lost worker is an infrastructure failure whatever the others
    did (they were stopped because of it); no status at all: the backend forgot the attempt."""
    lost = [s for s in statuses if s.state == WorkerState.LOST]
    if lost or not statuses:
        if lost and _on_spot(conn, {s.node_id for s in lost}):
            return Cause(SPOT_INTERRUPTION)
        return Cause(NODE_FAILURE)
    failed = [s for s in statuses if s.state == WorkerState.FAILED]
    first = failed[0] if failed else statuses[0]
    return Cause("exit_code", first.exit_code, setup=first.reason == SETUP_FAILED)


def cause_of_stop(stop_reason: str) -> str:
    """The cause of a stop corral requested that is not the workload's doing: an eviction (or a
    migration) is a preemption; a drain off an unhealthy node or a node the pool gives back is a node failure,
    unless the provider took a spot node back (`SpotInterrupted`, corral.control.autoscale)."""
    if stop_reason in EVICTIONS:
        return PREEMPTION
    return SPOT_INTERRUPTION if stop_reason == SPOT_INTERRUPTED else NODE_FAILURE


def allows(spec: WorkloadSpec, cause: Cause) -> bool:
    """Whether `spec`'s restart_on retries `cause` (max_restarts is checked by the caller)."""
    if cause.kind == "exit_code":
        return cause.exit_code is not None and cause.exit_code in spec.restart_exit_codes()
    return cause.kind in spec.restart_causes()


def not_retried_message(spec: WorkloadSpec, cause: Cause, what: str) -> str:
    """The sentence of a failure the policy does not retry: what happened and the fix."""
    if cause.kind == "exit_code":
        code = cause.exit_code
        fix = (f"add {{exit_code: [{code}]}} to restart_on to retry it" if code is not None
               else "it could not be executed; fix the command")
        return f"{what}; not restarted: {cause} is not retried by default ({fix})"
    return f"{what}; not restarted: restart_on does not list {cause.kind}"


def _on_spot(conn: Connection, node_ids: set[str]) -> bool:
    kinds = conn.execute(select(NodeRow.capacity_kind).where(NodeRow.id.in_(sorted(node_ids))))
    return any(k == CapacityKind.SPOT.value for (k,) in kinds)
