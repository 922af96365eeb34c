"""The queues as a board: quota, limit, use, borrowing and fair share, nested, with pending work.

Pure. Use counts a queue's subtree (a parent holds what its children hold), because quotas and
limits are checked against subtree use (`corral.core.queues`). Fair share is the core's own
deserved share (`corral.core.fairshare.hierarchical_shares`) for the current demand, so "fair
share vs use" on the dashboard is exactly what the scheduler works towards.

Rows come in tree order (a parent, then its children by name), each with its depth among the
rows returned, so a user who sees only a child queue gets it at depth 0.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from corral.core.fairshare import QueueNode, hierarchical_shares
from corral.core.model import MILLI_PER_GPU, Queue
from corral.store.workloads import HOLDING_STATES, Held, WorkloadRecord
from corral.web.models import QueueBoard, QueueRow

__all__ = ["queue_board", "tree_order"]


def _ancestors(name: str, parent: Mapping[str, str | None]) -> list[str]:
    chain, seen, current = [], {name}, parent.get(name)
    while current is not None and current in parent and current not in seen:
        chain.append(current)
        seen.add(current)
        current = parent.get(current)
    return chain


def tree_order(queues: Sequence[Queue]) -> list[Queue]:
    """Parents before their children, siblings by name; queues in a parent cycle come last."""
    names = {q.name for q in queues}
    children: dict[str | None, list[Queue]] = defaultdict(list)
    for q in queues:
        children[q.parent if q.parent in names and q.parent != q.name else None].append(q)
    out: list[Queue] = []
    seen: set[str] = set()

    def visit(q: Queue) -> None:
        if q.name in seen:
            return
        seen.add(q.name)
        out.append(q)
        for c in sorted(children[q.name], key=lambda c: c.name):
            visit(c)

    for root in sorted(children[None], key=lambda q: q.name):
        visit(root)
    out += sorted((q for q in queues if q.name not in seen), key=lambda q: q.name)
    return out


def _subtree(own: Mapping[str, float], parent: Mapping[str, str | None]) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for name, value in own.items():
        for q in [name, *_ancestors(name, parent)]:
            total[q] += value
    return total


def queue_board(
    queues: Sequence[Queue], held: Iterable[Held], demand_milli: Mapping[str, int],
    records: Iterable[WorkloadRecord], capacity_gpus: float, visible: Callable[[str], bool],
) -> QueueBoard:
    """`demand_milli`: per queue, the GPU share of its own schedulable work (running and
    pending), as the core counts it; `records`: the active workloads (for counts and reasons)."""
    parent = {q.name: q.parent for q in queues}
    used_own: dict[str, float] = defaultdict(float)
    for h in held:
        used_own[h.queue] += h.milli_per_device * len(h.devices) / MILLI_PER_GPU
    used = _subtree(used_own, parent)
    demand = _subtree({q: m / MILLI_PER_GPU for q, m in demand_milli.items()}, parent)
    shares = hierarchical_shares(capacity_gpus, [
        QueueNode(q.name, q.parent, demand_milli.get(q.name, 0) / MILLI_PER_GPU, q.quota_gpus,
                  q.limit_gpus, q.weight) for q in queues])
    running: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        if r.state in HOLDING_STATES:
            running[r.queue] += 1
        elif r.state == "pending":
            reasons[r.queue][r.reason_code or "Waiting"] += 1
    rows = []
    shown = [q for q in tree_order(queues) if visible(q.name)]
    shown_names = {q.name for q in shown}
    for q in shown:
        depth = sum(1 for a in _ancestors(q.name, parent) if a in shown_names)
        u = round(used.get(q.name, 0.0), 3)
        rows.append(QueueRow(
            name=q.name, parent=q.parent, depth=depth, quota_gpus=q.quota_gpus,
            limit_gpus=q.limit_gpus, weight=q.weight, priority=q.priority, used_gpus=u,
            borrowed_gpus=round(max(u - q.quota_gpus, 0.0), 3),
            fair_share_gpus=round(shares.get(q.name, 0.0), 3),
            demand_gpus=round(demand.get(q.name, 0.0), 3), running=running[q.name],
            pending=sum(reasons[q.name].values()), pending_reasons=dict(reasons[q.name])))
    return QueueBoard(capacity_gpus=capacity_gpus, queues=rows)
