"""How a worker's end becomes a WorkerStatus: one mapping for every backend that runs the runner.

The Ray and Slurm backends start each worker under `corral.backends.local_runner`, which records
``exit.json`` (exit code, whether a stop was requested, a reason). This module turns that record,
or the absence of one, into the (state, reason, exit_code, message, finished_at) of a
`WorkerStatus`, so that "stopped", "failed" and "lost" mean the same under every engine. Pure.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from corral.backends import base
from corral.backends.base import WorkerState, WorkerStatus

__all__ = ["WorkerEnd", "ended_from_record", "load_status", "lost", "save_status"]


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerEnd:
    """What is known about one worker's end (or that it has not ended: state not ended)."""

    state: WorkerState
    reason: str
    exit_code: int | None = None
    finished_at: float | None = None
    message: str = ""

    def status(self, workload_id: str, attempt: int, worker: int, node_id: str, now: float
               ) -> WorkerStatus:
        finished = self.finished_at
        if self.state.ended:
            finished = now if finished is None else min(finished, now)
        return WorkerStatus(workload_id=workload_id, attempt=attempt, worker=worker,
                            node_id=node_id, state=self.state, reason=self.reason,
                            observed_at=now, exit_code=self.exit_code, finished_at=finished,
                            message=self.message)


def ended_from_record(record: dict[str, Any], stop_reason: str) -> WorkerEnd:
    """The end a runner recorded. `stop_reason`: why corral asked it to stop ("" if it did not).

    A stopped worker is STOPPED whatever its exit code (exit 0 after SIGTERM means "checkpointed
    in time", not "done"); exit 0 without a stop is SUCCEEDED; anything else FAILED.
    """
    code = record.get("exit_code")
    reason = record.get("reason") or ""
    finished = record.get("finished_at")
    detail = record.get("message") or ""
    if record.get("stopped"):
        message = f"{stop_reason} ({detail})" if stop_reason and detail else (stop_reason or detail)
        return WorkerEnd(WorkerState.STOPPED, reason or base.STOPPED_IN_TIME, code, finished,
                         message)
    if reason in (base.COMMAND_NOT_FOUND, base.SETUP_FAILED):
        return WorkerEnd(WorkerState.FAILED, reason, code, finished, detail)
    if code == 0:
        return WorkerEnd(WorkerState.SUCCEEDED, base.EXITED, 0, finished, detail)
    signalled = code is not None and code < 0
    return WorkerEnd(WorkerState.FAILED, base.KILLED_BY_SIGNAL if signalled else base.EXITED,
                     code, finished, detail)


def lost(reason: str, message: str, finished_at: float | None = None) -> WorkerEnd:
    return WorkerEnd(WorkerState.LOST, reason, None, finished_at, message)


def save_status(path: Path, end: WorkerEnd) -> None:
    """Persist an end, so a later backend instance (after a control-plane restart) reports the
    same end even when the engine has forgotten the worker."""
    from corral.backends.local_runner import write_json_atomic

    write_json_atomic(path, {**dataclasses.asdict(end), "state": str(end.state)})


def load_status(path: Path) -> WorkerEnd | None:
    try:
        data = json.loads(path.read_text())
        return WorkerEnd(WorkerState(data["state"]), data["reason"], data.get("exit_code"),
                         data.get("finished_at"), data.get("message", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
