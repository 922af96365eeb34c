"""Store records as wire models."""

from __future__ import annotations

from typing import Any

from corral.sdk import models as M
from corral.store.workloads import EventRecord, WorkloadRecord

__all__ = ["event_view", "placement_view", "workload_view"]


def workload_view(r: WorkloadRecord, placements: list[Any] | None = None) -> M.Workload:
    return M.Workload(
        id=r.id, group_id=r.group_id, name=r.name, queue=r.queue, user=r.user, kind=r.kind,
        state=r.state, reason_code=r.reason_code, reason_message=r.reason_message,
        attempt=r.attempt, restart_count=r.restart_count, version=r.version,
        submitted_at=r.submitted_at, started_at=r.started_at, finished_at=r.finished_at,
        exit_code=r.exit_code, stopping=r.stop_reason, spec=r.spec,
        placements=[placement_view(p) for p in placements or []])


def placement_view(p: Any) -> M.WorkerPlacement:
    return M.WorkerPlacement(worker=p.worker, node_id=p.node_id, devices=list(p.devices),
                             milli_per_device=p.milli_per_device, state=p.state,
                             exit_code=p.exit_code, reason=p.reason)


def event_view(e: EventRecord) -> M.Event:
    return M.Event(id=e.id, at=e.at, kind=e.kind, workload_id=e.workload_id, subject=e.subject,
                   from_state=e.from_state, to_state=e.to_state, attempt=e.attempt,
                   reason=e.reason, message=e.message, data=e.data)
