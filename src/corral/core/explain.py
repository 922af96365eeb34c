"""Why a workload that fits the pool still waits: the capacity diagnosis, made specific.

`Placer.diagnose` says what the free capacity lacks (`InsufficientCapacity`,
`TopologyFragmented`). That alone hides what a user or the autoscaler must act on, so the
close of a cycle refines it, most specific first:

1. `PriceCapBlocks`: free room exists, but only on nodes above the workload's price cap.
2. `OverQuota`: its queue (or an ancestor) has a quota and would go above it: it may only
   borrow idle capacity, and reclaim never works for it. It starts when capacity it may use is
   idle. (A queue with no quota anywhere up its chain has no guarantee to exceed: its work
   simply waits for capacity, and so does one whose quota is the whole pool.)
3. Its queue is owed the GPUs (within its own quota with it; an ancestor above its quota is
   named, since then only the ancestor's other children may give), yet it waits:
   `NotConsidered` when the cycle's eviction budget ran out before reclaim reached it,
   else `ReclaimBlocked`: no running work it may reclaim would make room.

Only what is left after these (reclaim turned off) stays `InsufficientCapacity`. An autoscaler
buys capacity for `InsufficientCapacity` and `ReclaimBlocked`, never for `OverQuota` or a
price cap.

The sentences are stored, and rewritten only when they change: they say what stays true as
long as the code does (the queue named, its quota, the kind of blocker), never a queue's
current use (issue 16: quoting it rewrote ~42,000 rows a step at 10,000 nodes). The API adds
the live use at read time (`corral.api.views.reason_now`) for each queue the details name
(`reasons.QUEUES_NAMED`, stored with the sentence: `reasons.stored_refs`); the details keep
the use for callers of the core.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from corral.core import reasons as R
from corral.core.fit import Shape
from corral.core.model import MILLI_PER_GPU, Workload

if TYPE_CHECKING:
    from corral.core.cycle import Cycle


def refine(cycle: Cycle, w: Workload, shape: Shape, found: R.Reason) -> R.Reason:
    if found.code != R.INSUFFICIENT_CAPACITY:
        return found
    if shape.max_price is not None:
        _, usable, _ = cycle.placer.room(replace(shape, max_price=None), w.id)
        if usable >= shape.workers:
            return R.Reason(
                R.PRICE_CAP_BLOCKS,
                f"{found.message}; free room for it exists only on nodes above its price cap of "
                f"{shape.max_price:g}/GPU-hour: raise max_price_per_gpu_hour to start now",
                (*found.details, ("max_price", shape.max_price)),
            )
    if not cycle.config.reclaim:
        return found
    book, total = cycle.book, w.total_milli()
    chain = book.chain.get(w.queue, ())
    if not any(book.quota_milli(q) for q in chain):
        return found  # no guarantee anywhere above it: it waits for capacity like any work
    for q in chain:
        used, quota = book.milli[q], book.quota_milli(q)
        if used + total > quota and quota >= book.totals.milli:
            return found  # a quota of the whole pool: above it, the pool is simply full
        if used + total > quota and q != w.queue and book.within_quota_after(w.queue, total):
            # only an ancestor is over: its own queue is still owed by its siblings above
            # their quotas (reclaim between siblings), so it waits on them, not on borrowing
            return _blocked(cycle, w, found, f"; its parent {q} is above its quota of "
                            f"{quota / MILLI_PER_GPU:g} GPUs, so only queues under {q} that "
                            "are above theirs may give", q)
        if used + total > quota:
            who = f"queue {q}" if q == w.queue else f"queue {q} (parent of {w.queue})"
            # The sentence is stored and only rewritten when it changes, so it names what
            # stays true while the code does (the queue, its quota), never the queue's use,
            # which moves at every placement and end (issue 16): the views add that at read
            # time, and the details carry it for the autoscaler and tests.
            return R.Reason(
                R.OVER_QUOTA,
                f"{found.message}; {who} would be above its quota of "
                f"{quota / MILLI_PER_GPU:g} GPUs with it, so this would borrow: it may only use "
                "idle capacity and starts when some that fits is free",
                (*found.details, ("queue", q), ("used_gpus", used / MILLI_PER_GPU),
                 ("quota_gpus", quota / MILLI_PER_GPU), (R.QUEUES_NAMED, (q,))),
            )
    return _blocked(cycle, w, found, "")


def _blocked(cycle: Cycle, w: Workload, found: R.Reason, note: str,
             parent: str | None = None) -> R.Reason:
    """Owed by its own queue's quota, yet waiting: the budget ran out, or nothing it may
    reclaim makes room. `note` names `parent` when an ancestor is over its quota."""
    book = cycle.book
    named = (R.QUEUES_NAMED, (w.queue,) if parent is None else (w.queue, parent))
    owed = (f"queue {w.queue} is owed it (within its quota of "
            f"{book.quota_milli(w.queue) / MILLI_PER_GPU:g} GPUs with it{note})")
    if w.id not in cycle.reclaim_tried and cycle.attempts_left <= 0:  # (cached on this test)
        return R.Reason(
            R.NOT_CONSIDERED,
            f"{found.message}; {owed}, but this cycle's eviction budget (max_eviction_attempts) "
            "ran out before reclaim reached it: it is tried again next cycle",
            (*found.details, named),
        )
    return R.Reason(
        R.RECLAIM_BLOCKED,
        f"{found.message}; {owed}, but no running work it may reclaim would make room: what "
        "holds the capacity it could use is not preemptible, inside its minimum runtime, or "
        "within its own queue's quota",
        (*found.details, ("queue", w.queue), named),
    )
