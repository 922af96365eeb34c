"""Store records as wire models.

A pending reason is stored as the scheduler wrote it, and the scheduler writes only sentences
that stay true while their code does: they name a queue and its quota or limit, never the
queue's current use, which moves at every start and end (issue 16: quoting it rewrote ~42,000
rows a step at 10,000 nodes). That use is what a user wants to see beside it, so it is added
here, at read time, from what the queues hold now (`reason_now`): "queue a would be above its
quota of 8 GPUs with it, so this would borrow: ... (now: a uses 12 GPUs)". Whether a big
workload waits behind nodes reserved for other work, whose and until when, moves as
reservations are made, pass on and end, so its stored sentence does not say it; it is added
here from the last applied plan's (`corral.store.reservations`): "(now: it waits behind nodes
reserved for w-7 until t=5400)".

What to add is read from what the scheduler stored with the sentence (`reason_refs`, from the
reason's details: `core.reasons.stored_refs`), never from the sentence's words.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from corral.core import reasons as R
from corral.core.model import MILLI_PER_GPU
from corral.sdk import models as M
from corral.store import pool as P
from corral.store import queue_use as QU
from corral.store.reservations import load_reservations
from corral.store.workloads import EventRecord, WorkloadRecord

__all__ = ["QUEUE_CODES", "QueueUse", "event_view", "placement_view", "reason_now",
           "workload_view"]

#: pending codes whose sentence may name a queue's quota or limit, and so its use
QUEUE_CODES = R.NAMES_QUEUES


@dataclass(frozen=True)
class QueueUse:
    """What moves under a stored pending sentence, read now: the GPUs each queue holds, its
    children's included (what the scheduler counts against its quota and limit), each
    queue's parent, and the reservations in force (holder, until when)."""

    gpus: Mapping[str, float]
    parent: Mapping[str, str | None]
    reservations: tuple[tuple[str, float | None], ...] = ()

    @staticmethod
    def wanted(records: Iterable[WorkloadRecord]) -> bool:
        """Whether any of `records` has a reason that `reason_now` completes (the read of
        every placement that holds GPUs is made only then)."""
        return any(r.state == "pending" and r.reason_refs for r in records)

    @classmethod
    def load(cls, conn: Connection) -> QueueUse:
        parent = {q.name: q.parent for q in P.list_queues(conn)}
        gpus: dict[str, float] = defaultdict(float)
        for queue, m in QU.milli_held_by_queue(conn).items():
            for q in _chain(queue, parent):
                gpus[q] += m / MILLI_PER_GPU
        held = tuple((r.workload_id, r.until) for r in load_reservations(conn))
        return cls(dict(gpus), parent, held)

    @classmethod
    def read(cls, conn: Connection, records: Iterable[WorkloadRecord]) -> QueueUse | None:
        records = list(records)
        return cls.load(conn) if cls.wanted(records) else None


def _chain(queue: str, parent: Mapping[str, str | None]) -> list[str]:
    out: list[str] = []
    q: str | None = queue
    while q is not None and q not in out:  # (a cycle in stored parents would not end)
        out.append(q)
        q = parent.get(q)
    return out


def reason_now(r: WorkloadRecord, use: QueueUse | None) -> str:
    """The stored sentence, with what moves under it added after it: the current use of each
    queue of the workload's chain that it names ("queue a ...", "its parent org ..."), and
    the reservations in force it yields to (not its own), as `r.reason_refs` says."""
    message = r.reason_message
    if use is None or r.state != "pending" or not r.reason_refs:
        return message
    refs = R.read_refs(r.reason_refs)
    now: list[str] = []
    if r.reason_code in QUEUE_CODES:
        named = set(refs.get("queues", ()))
        now += [f"{q} uses {round(use.gpus.get(q, 0.0), 3):g} GPUs"
                for q in _chain(r.queue, use.parent) if q in named]
    # (refs are written with the core's reasons only: under another writer's code, such as a
    # workflow hold or BudgetExceeded, the last core reason's refs say nothing; waits_behind
    # asks for a may-fit code. The words are the core's, shared with `corral plan` and the
    # dry run, which tell a plan's reasons before anything is stored)
    behind = R.waits_behind(r.reason_code, bool(refs.get("reserved")), use.reservations, r.id)
    return R.with_now(message, now if behind is None else [*now, behind])


def workload_view(r: WorkloadRecord, placements: list[Any] | None = None,
                  use: QueueUse | None = None) -> M.Workload:
    """`use`: the queues' current use, to complete the reason (`reason_now`); None leaves
    the stored sentence as it is."""
    return M.Workload(
        id=r.id, group_id=r.group_id, name=r.name, queue=r.queue, user=r.user, kind=r.kind,
        state=r.state, reason_code=r.reason_code, reason_message=reason_now(r, use),
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
