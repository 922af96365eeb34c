"""Reclaim and preempt: start pending work by stopping running work, by two different rules.

- **Reclaim** (between queues): a queue that would still be within its quota takes GPUs back
  from queues running above theirs. A victim's queue (and its ancestors) must stay at or above
  quota afterwards, so a queue at or below its quota is never reclaimed from, and the requester
  never ends above its own quota: the two cannot take GPUs back and forth. "At or below" is
  judged as the cycle's actions begin: when this cycle's allocation lifted a queue above its
  quota, reclaim takes back that new placement (nothing has started), never its running work.
- **Preempt** (inside a queue): higher priority stops strictly lower priority.

Both evict the cheapest victims first (lowest priority, most recently started), try to place
the requester after each eviction, and stop as soon as it fits; then victims whose exact devices
are still free are put back (the eviction was not needed after all). If the requester never
fits, everything rolls back. Work inside its minimum runtime is never a victim; when only such
work stands in the way, the reason says so.

Victims of a preemption are themselves pending afterwards and may preempt still lower work in
the same cycle, so that running the next cycle on the result causes no further evictions.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.core import reasons as R
from corral.core.model import Workload, pending_order

if TYPE_CHECKING:
    from corral.core.cycle import Cycle

Accept = Callable[[Workload], bool]


def reclaim(cycle: Cycle) -> None:
    if not cycle.victims(lambda v: True):
        return
    book = cycle.book
    below = {q for q in book.queues if book.within_quota_after(q, 1) or book.has_model_quota(q)}
    for w in cycle.still_pending():
        if w.queue not in below or not book.within_guarantee_after(w, w.total_milli()):
            continue
        own = set(cycle.book.chain.get(w.queue, ()))

        def accept(v: Workload, own: set[str] = own, w: Workload = w) -> bool:
            return (
                v.queue not in own
                and w.queue not in cycle.book.chain.get(v.queue, ())
                and _reclaimable(cycle, v)
            )

        _attempt(cycle, w, accept, R.RULE_RECLAIM)


def preempt(cycle: Cycle) -> None:
    lowest: dict[str, int] = {}  # per queue, the lowest priority of anything it could preempt
    for v in cycle.victims(lambda v: True):
        lowest[v.queue] = min(lowest.get(v.queue, v.priority), v.priority)
    if not lowest:
        return
    work = [w for w in cycle.still_pending() if w.priority > lowest.get(w.queue, w.priority)]
    heapq.heapify(heap := [(pending_order(w), w.id, w) for w in work])
    while heap:
        _, _, w = heapq.heappop(heap)
        if not cycle.is_pending(w):
            continue

        def accept(v: Workload, w: Workload = w) -> bool:
            return v.queue == w.queue and v.priority < w.priority

        before = len(cycle.stmt.ops)
        if _attempt(cycle, w, accept, R.RULE_PREEMPT):
            for op in cycle.stmt.ops[before:]:
                if op.kind == "evict":
                    heapq.heappush(heap, (pending_order(op.workload), op.workload.id, op.workload))


def _attempt(cycle: Cycle, w: Workload, accept: Accept, rule: str) -> bool:
    if cycle.book.limit_blocking(w.queue, w.total_milli()) is not None:
        return False
    candidates = cycle.victims(accept)
    if not candidates:
        return False
    if cycle.attempts_left <= 0:
        return False
    cycle.attempts_left -= 1
    eligible = [v for v in candidates if cycle.past_min_runtime(v)]
    if _evict_until_fits(cycle, w, eligible, rule):
        return True
    young = [v for v in candidates if not cycle.past_min_runtime(v)]
    if young:
        checkpoint = cycle.stmt.checkpoint()
        if _evict_until_fits(cycle, w, candidates, rule):
            needed = sum(
                1
                for op in cycle.stmt.removed_since(checkpoint)
                if not cycle.past_min_runtime(op.workload)
            )
            cycle.reasons[w.id] = R.Reason(
                R.PROTECTED_BY_MIN_RUNTIME,
                f"would fit after preempting {needed} workload{'s' * (needed != 1)} that "
                f"{'are' if needed != 1 else 'is'} inside {'their' if needed != 1 else 'its'} "
                "minimum runtime",
                (("protected", needed),),
            )
        cycle.stmt.rollback(checkpoint)
    return False


def _evict_until_fits(cycle: Cycle, w: Workload, victims: list[Workload], rule: str) -> bool:
    stmt, shape, scoring = cycle.stmt, cycle.shape(w), cycle.scoring(w.queue)
    checkpoint = stmt.checkpoint()
    placed = None
    for v in victims:
        if v.id not in stmt.where or not _still_acceptable(cycle, v, rule):
            continue
        stmt.remove(v, rule, w.id)
        placed = cycle.placer.place(shape, scoring, w.id)
        if placed is not None:
            break
    if placed is None:
        stmt.rollback(checkpoint)
        return False
    stmt.place(w, placed)
    if rule == R.RULE_RECLAIM and not cycle.book.within_guarantee_after(w, 0):
        stmt.rollback(checkpoint)  # its real share (a GPU-memory request) exceeds its quota
        return False
    _undo_needless(cycle, checkpoint)
    cycle.reasons.pop(w.id, None)
    return True


def _still_acceptable(cycle: Cycle, v: Workload, rule: str) -> bool:
    # Quota protection must hold after each eviction, not only for the first victim.
    return rule != R.RULE_RECLAIM or _reclaimable(cycle, v)


def _reclaimable(cycle: Cycle, v: Workload) -> bool:
    """May reclaim take `v`: its queue (and theirs above) keeps its quota and guaranteed
    models, and running work is taken only from queues that were borrowing as the cycle began
    (`QueueBook.may_give_up`)."""
    held = cycle.held_milli(v)
    return (cycle.book.may_give_up(v.queue, held, started=v.id in cycle.stmt.started)
            and cycle.book.keeps_model_quota_without(v.queue, cycle.model_of(v), held))


def _undo_needless(cycle: Cycle, checkpoint: int) -> None:
    """Put back victims whose exact devices are still free after the requester was placed;
    the rest, if they had only been placed in this cycle, wait again with a reason."""
    for op in reversed(cycle.stmt.removed_since(checkpoint)):
        if cycle.stmt.fits(op.assignments, op.workload):
            cycle.stmt.unremove(op.workload.id, checkpoint)
        elif op.kind == "unplace":
            cycle.deferred[op.workload.id] = cycle.shape(op.workload)
