"""Allocate: place pending work on free capacity, queues in fair-share order, gangs whole.

Order: the queue that is furthest below its fair share goes next (see `QueueBook.order_key`);
inside a queue, higher priority, then earlier submission. One workload per turn, then the
queue's key is recomputed: a queue that just got GPUs drops back in line.

Backfill with reservations (a conservative variant of EASY backfill, without runtime
estimates, which ML jobs rarely give): when a big workload (a gang, or one worker of several
GPUs, which a stream of one-GPU work would otherwise starve) cannot start and has waited
`reserve_after_s`, the nodes of the topology domain that comes closest to holding it are
reserved. Nobody else is placed there, so as their running work ends they drain towards it;
smaller work keeps backfilling everywhere else. At most `max_reservations` workloads hold
reservations at once, so the pool is never frozen by many waiting gangs.

A reservation is only taken where it can succeed, and it is bounded:
- the workload's queue must be within its guarantee once it starts (every level of the tree
  within quota), or no queue below its quota may be waiting (this cycle's victims wait too):
  otherwise the drained nodes would start a workload that reclaim then takes back for the
  queue that is owed;
- nodes that run a non-preemptible service are never reserved (a service never ends, so they
  would never drain);
- it holds its nodes for at most `max_reservation_s` at a time, then lets them go for
  `reservation_cooldown_s` (windows counted from when the workload was submitted, so the rule
  needs no memory between cycles): the capacity a reservation keeps idle is at most its nodes'
  GPUs x `max_reservation_s` per window.

A reservation stays with its holder from one cycle to the next while it may (the caller passes
the last plan's holders back, `ClusterState.reserved_for`, as it passes nominations): the
holder takes its slot before allocation starts (`keep_reservations`). Without this the holder
was whoever failed first in this cycle's fair-share order, and a backfill placement that
raised the holder's queue use could pass the one slot (`max_reservations` 1) to another
queue's gang on the next cycle, whose preemption then evicted what the previous plan had just
placed (issue 10, bench/contention.py seed 4). Slurm's backfill keeps the same top job's
reservation from one pass to the next for the same reason (its priorities do not move with
each start: the fair-share factor is recomputed every `PriorityCalcPeriod`). The bounds above
hold for a kept reservation too: its window, its chance of success, its queue's limit. A
holder whose chance of success fails before allocation (a queue below its quota has work not
placed yet, often a new arrival that allocation is about to place elsewhere) is judged again
once allocation ends, its slot left free for it meanwhile (`_restore`): read before, the slot
alternated between two gangs cycle after cycle (issue 10).
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from itertools import compress
from operator import attrgetter
from typing import TYPE_CHECKING, cast

import numpy as np

from corral.core import reasons as R
from corral.core.actions.heir_chain import HeirChain
from corral.core.actions.heir_memo import keep_by_kind
from corral.core.actions.reservation_heirs import elders_before, heirs, reservation_window
from corral.core.actions.slot_nodes import drain_first
from corral.core.fit import Shape, empty_slots, worker_slots
from corral.core.model import MILLI_PER_GPU, Workload
from corral.core.warm_start import AGE_THEN_ID

if TYPE_CHECKING:
    from corral.core.cycle import Cycle

_ID = attrgetter("id")


def allocate(cycle: Cycle) -> None:
    heap = [(cycle.book.order_key(q), q) for q in sorted(cycle.pending)]
    heapq.heapify(heap)
    cursor = dict.fromkeys(cycle.pending, 0)
    skip = cycle.placer.skip_known_failures
    while heap:
        _, queue = heapq.heappop(heap)
        work, i = cycle.pending[queue], cursor[queue]
        scoring = cycle.scoring(queue)
        # A failure changes no queue's key, so this queue stays first in line: keep going
        # without touching the heap until something is placed (then its key grows).
        while i < len(work):
            if cycle.config.backfill:  # without backfill the first failure stops the queue
                i = skip(work, i, scoring, cycle.shape, cycle.deferred, cycle.shapes)
                if i == len(work):
                    break
            i += 1
            if try_place(cycle, work[i - 1], reserve=True):
                break
            if not cycle.config.backfill:
                hold_back(cycle, work[i:], work[i - 1])
                i = len(work)
        cursor[queue] = i
        if i < len(work):
            heapq.heappush(heap, (cycle.book.order_key(queue), queue))


def reallocate(cycle: Cycle) -> None:
    """Second chance on free capacity for work still waiting after evictions (victims of this
    cycle included): priority order, no new reservations."""
    still = cycle.still_pending()
    if cycle.config.backfill and not cycle.config.queue_scoring and len(still) >= _SKIM_FROM:
        _walk(cycle, map(still.__getitem__, _worth_trying(cycle, still)))
    else:
        _walk(cycle, still)


#: below this many, the plain walk is as cheap as `_worth_trying`'s passes
_SKIM_FROM = 2_000


def _worth_trying(cycle: Cycle, still: tuple[Workload, ...]) -> Iterator[int]:
    """The positions in `still`, in order, that `_walk` would not skip as known to fail: a
    workload's shape is known to fail once one of its kind failed since capacity was last
    returned, and then every later one of that shape is skipped too. So the positions are
    grouped by shape (a reservation's owner on its own: it fails on its own), the groups
    merged by their next position, and a group whose next workload is known to fail is left
    out whole. Once a placement returns capacity (it releases a reservation), every position
    after it is given. For one scoring key (no `queue_scoring`) and backfill on (off, the
    first known failure ends the walk).

    Why: after evictions ~90,000 of 93,000 still-pending workloads are of shapes that fail;
    reading each one was ~0.1 s of the 10,000-node cycle. The grouping is a few passes in C."""
    cap, n = cycle.cap, len(still)
    ids = list(map(_ID, still))
    known: list[Shape | None] = list(map(cycle.shapes.get, ids))
    for i in compress(range(n), map(operator.not_, known)):
        known[i] = cycle.shape(still[i])  # not interned yet
    found = cast("list[Shape]", known)
    kinds = np.fromiter(map(id, found), dtype=np.int64, count=n)
    owners = [i for i in compress(range(n), map(cap.reservations.__contains__, ids))]
    kinds[owners] = -1 - np.asarray(owners, dtype=np.int64)  # each owner a group of its own
    by_kind = np.argsort(kinds, kind="stable")  # positions of a kind stay in order
    cuts = np.flatnonzero(kinds[by_kind][1:] != kinds[by_kind][:-1]) + 1
    groups = [g.tolist() for g in np.split(by_kind, cuts)]
    heap = [(g[0], k, 0) for k, g in enumerate(groups)]
    heapq.heapify(heap)
    seen, key, failed = cap.freed, cycle.scoring(still[0].queue).key, cycle.placer.failed
    while heap:
        i, k, at = heapq.heappop(heap)
        yield i  # `_walk` tries it (or skips it: placed, or known to fail)
        if cap.freed != seen:  # returned by this placement: what was skipped may fit now
            yield from range(i + 1, n)
            return
        group = groups[k]
        if at + 1 < len(group) and failed.get((found[i], key, None)) != seen:
            heapq.heappush(heap, (group[at + 1], k, at + 1))


def _walk(cycle: Cycle, still: Iterable[Workload]) -> None:
    """`reallocate`'s walk over `still`, in order."""
    where, placer, cap = cycle.stmt.where, cycle.placer, cycle.cap
    failed, reserved, shapes = placer.failed, cap.reservations, cycle.shapes
    scoring_keys: dict[str, str] = {}
    # (id(shape), scoring key) known to fail while `cap.freed` is `seen`: a memo entry equal
    # to `freed` only changes when `freed` does, and an int and a str hash in C, where a Shape
    # key calls `Shape.__hash__` once per workload.
    failing: set[tuple[int, str]] = set()
    seen = cap.freed
    for w in still:
        wid = w.id
        if wid in where:
            continue
        # Most of a backlog is known to fail: `Placer.known_to_fail`, inlined (one dictionary
        # lookup per workload instead of three calls).
        key = scoring_keys.get(w.queue)
        if key is None:
            key = scoring_keys[w.queue] = cycle.scoring(w.queue).key
        shape = shapes.get(wid) or cycle.shape(w)
        if cap.freed != seen:
            failing.clear()
            seen = cap.freed
        if wid in reserved:
            known = failed.get((shape, key, wid)) == seen
        else:
            known = (id(shape), key) in failing
            if not known and failed.get((shape, key, None)) == seen:
                known = True
                failing.add((id(shape), key))
        if known:
            if not cycle.config.backfill:
                return
            continue
        if not try_place(cycle, w) and not cycle.config.backfill:
            return


def hold_back(cycle: Cycle, behind: list[Workload], head: Workload) -> None:
    """Backfill off (strict FIFO): nothing behind a workload that does not fit may start."""
    reason = R.Reason(
        R.NOT_CONSIDERED,
        f"waiting behind {head.id}, which does not fit yet (backfill is off: the queue starts "
        "in order)",
        (("behind", head.id),),
    )
    for w in behind:
        cycle.reasons.setdefault(w.id, reason)


def try_place(cycle: Cycle, w: Workload, reserve: bool = False) -> bool:
    """Place `w` on free capacity if its queue's limits allow. Records why not, otherwise.

    Most of a large backlog does not fit: those whose shape already failed since capacity was
    last freed are set aside at once, and explained when the cycle closes (queue limit first,
    then the capacity diagnosis, from the state the cycle ends in). True if `w` is placed (an
    heir started out of turn by a hand-over, `_hand_over`, is placed already)."""
    if w.id in cycle.stmt.where:
        return True
    shape = cycle.shape(w)
    scoring = cycle.scoring(w.queue)
    if cycle.placer.known_to_fail(shape, scoring, w.id):
        cycle.deferred[w.id] = shape
        return False
    milli = w.total_milli()
    never = cycle.placer.never_fits(shape)
    if never is not None:
        cycle.reasons[w.id] = never
        return False
    if cycle.book.limit_blocking(w.queue, milli) is not None:
        # Set aside like work that does not fit: evictions later in the cycle may lower the
        # queue's use; the limit's reason is written when the cycle closes, from its final use.
        cycle.deferred[w.id] = shape
        return False
    assignments = cycle.placer.place(shape, scoring, w.id, cycle.chooser(w))
    if assignments is None:
        cycle.deferred[w.id] = shape
        if reserve and (w.workers > 1 or w.resources.gpus > 1):
            _reserve(cycle, w)
        return False
    placed_milli = sum(a.milli_per_device * len(a.devices) for a in assignments)
    blocking = cycle.book.limit_blocking(w.queue, placed_milli)
    if blocking is not None:
        # A GPU-memory share is only known in milli once placed, so the reason is written now
        # (the close could not tell); set aside as above, and a later success clears it.
        used = cycle.book.milli[blocking.name] / MILLI_PER_GPU
        cycle.reasons[w.id] = limit_reason(
            w, blocking.name, blocking.limit_gpus or 0.0, placed_milli, used)
        cycle.deferred[w.id] = shape
        return False
    if cycle.cap.reservations and w.id not in cycle.cap.reservations:
        cycle.backfilled.add(w.id)
    cycle.stmt.place(w, assignments)  # releases what was reserved for w
    cycle.reasons.pop(w.id, None)
    return True


def limit_reason(w: Workload, queue: str, limit: float, milli: int, used: float) -> R.Reason:
    gpus = milli / MILLI_PER_GPU
    who = f"queue {queue}" if queue == w.queue else f"queue {queue} (parent of {w.queue})"
    if gpus > limit:
        return R.Reason(
            R.QUEUE_LIMIT_TOO_LOW, f"needs {gpus:g} GPUs, more than the limit of {limit:g} of {who}"
        )
    # stored: the queue's use is left out of the sentence (it moves at every start and end,
    # issue 16); the details keep it and the API adds it at read time
    return R.Reason(
        R.QUEUE_LIMIT,
        f"{who} would go above its limit of {limit:g} GPUs with the {gpus:g} this needs",
        (("queue", queue), ("limit_gpus", limit), ("used_gpus", used)),
    )


def prune_reservations(cycle: Cycle) -> bool:
    """Release reservations that can no longer succeed: their owner is now stopped by a queue
    limit or would be reclaimed once placed (evictions earlier in the cycle changed queue
    use). True if any was released: the freed nodes may now serve other work."""
    released = False
    for owner in sorted(cycle.cap.reservations):
        w = cycle.waiting.get(owner)
        if w is None:
            continue
        if (cycle.book.limit_blocking(w.queue, w.total_milli()) is not None
                or not _may_succeed(cycle, w)):
            cycle.cap.release(owner)
            released = True
    return released


def keep_reservations(cycle: Cycle) -> None:
    """Reserve again for each workload that held a reservation after the last plan, before
    any placement: it keeps its slot while it still waits, does not fit now (if it fits, it
    starts in its turn, as before) and `_maybe_reserve` allows it (window, chance of success,
    `max_reservations`). Its queue's place in the fair-share order no longer decides it.

    Aging (`heirs`): a holder hands its slot to the oldest workload that was submitted more
    than a window (`max_reservation_s`) before it, is in its own window and may hold one.
    Without it a kept slot passed, window after window, among the gangs of the queues first
    in the fair-share order, and an older gang of a queue later in that order waited behind
    them for ever (issue 10). Slurm's multifactor priority grows with age
    (`PriorityWeightAge`) so that the job its backfill reserves for is eventually the one that
    waited longest; KAI-Scheduler lets a starving job's queue go first the same way.

    Safe on a rerun: who is an heir is decided on what the plan cannot move (submission
    times, the window, which workloads wait and their shapes), never on this cycle's
    placements or queue use, and the plan names the new holder (`Plan.reservations`, passed
    back as `ClusterState.reserved_for`). The rerun's holder is then the heir, and an heir of
    the heir must be older than it by another window: anyone that old came first in this
    cycle's list, so it was started here, or could not hold (below). An heir that fits now
    starts here (in its turn the room could go to the queues ahead of it, and a rerun would
    then find it not fitting and hand it the slot); the next heir is tried after it."""
    for wid in sorted(cycle.reserved_before):
        w = cycle.waiting.get(wid)
        if w is None or wid in cycle.stmt.where or not (w.workers > 1 or w.resources.gpus > 1):
            continue  # it runs (or ended), or could never have held one
        if not _hand_over(cycle, w) and not _keep(cycle, w) and _may_hold(cycle, w):
            cycle.dropped.append(w)  # `_may_succeed` failed: judged again after allocation


def _keep(cycle: Cycle, w: Workload) -> bool:
    """Reserve for `w` in keep_reservations if it may hold and does not fit now; True if it
    holds a reservation then. If it fits now it starts here: its nodes have drained, and in
    its turn they would already have gone to the queues ahead of it in the order (the
    reservation drained them for nothing, window after window). Slurm starts its reserved
    top job first for the same reason."""
    shape = cycle.shape(w)
    if (cycle.placer.never_fits(shape) is not None
            or cycle.book.limit_blocking(w.queue, w.total_milli()) is not None):
        return False
    if _fits_now(cycle, w):
        try_place(cycle, w)  # (allocation then skips it: `try_place` sees it placed)
        return False
    _maybe_reserve(cycle, w)
    return w.id in cycle.cap.reservations


def _may_hold(cycle: Cycle, w: Workload) -> bool:
    """Whether `w`, still waiting, could hold a slot but for `_may_succeed` (its window open,
    no queue limit stopping it, able to fit the pool)."""
    return (w.id not in cycle.stmt.where
            and reservation_window(cycle.config, w.submitted_at, cycle.now)[0]
            and cycle.placer.never_fits(cycle.shape(w)) is None
            and cycle.book.limit_blocking(w.queue, w.total_milli()) is None)


def _awaited(cycle: Cycle) -> int:
    """Slots waiting for a holder of the last plan that was not kept before allocation
    (`keep_reservations`): until allocation ends (`fill_free_slots`) only work whose queue
    stays within its guarantee takes them (it would pass `_may_succeed` at any time)."""
    where, held = cycle.stmt.where, cycle.cap.reservations
    return sum(w.id not in where and w.id not in held for w in cycle.dropped)


def _fits_now(cycle: Cycle, w: Workload) -> bool:
    return cycle.placer.place(cycle.shape(w), cycle.scoring(w.queue), w.id) is not None


def _reserve(cycle: Cycle, w: Workload) -> None:
    """`w` failed in its turn and would take a free slot: its oldest heir takes it instead, as
    the next cycle (or a rerun of this plan) would hand it over at once (`keep_reservations`)."""
    if (len(cycle.cap.reservations) >= cycle.config.max_reservations
            or w.id in cycle.cap.reservations
            or not reservation_window(cycle.config, w.submitted_at, cycle.now)[0]):
        return
    if (len(cycle.cap.reservations) + _awaited(cycle) >= cycle.config.max_reservations
            and not cycle.book.within_guarantee_after(w, w.total_milli())):
        return  # the slot waits for the last plan's holder; owed work may take it, as before
    if not _hand_over(cycle, w):
        _maybe_reserve(cycle, w)


def _hand_over(cycle: Cycle, holder: Workload) -> bool:
    """Give `holder`'s slot to its first heir that can take it (fitting heirs start on the
    way), that heir's own heirs first; True if an heir took it.

    The chain: the plan names the heir as the holder, and a rerun's `keep_reservations` hands
    the heir's slot on to the heir's heir (older than the heir by another window, and not
    always the holder's: in the holder's queue only work of at least its priority is), so
    the holder changed on a rerun (issue 10, bench/contention.py seed 4, t = 118,740 s).
    Heirs are strictly older at each step, so the chain ends; each workload is tried once in
    one hand-over. The walk (`heir_chain`) is a loop that reads the sorted elders once, not
    each heir's list again (thousands of heirs x thousands of elders at 10,000 nodes), and
    only when some kind of elder or victim could take the slot (`heir_prospects`): most
    walks of a full pool find nobody, and it is known without trying every heir. The walk
    asks again after heirs started on the way and stops when none may act any more."""
    chain = chain_from(cycle)
    before = holder.submitted_at - cycle.config.max_reservation_s
    if not _some_may_act(cycle, before, chain.lists[1]):
        return False  # every heir would fail in `_keep`, changing nothing
    return chain.hand_over(holder, lambda: _some_may_act(cycle, before, chain.lists[1]))


def _some_may_act(cycle: Cycle, before: float, victims: list[Workload]) -> bool:
    """Whether any elder submitted before `before` (`elders_before`), or any of `victims` so old,
    could start or take a slot in `_keep` now, judged by kinds (`heir_prospects`); False
    only when every one would fail."""
    kinds, placer = cycle.elder_kinds, cycle.placer
    assert kinds is not None  # (built with `cycle.by_age`, `chain_from`)
    for shape, queue in kinds.shapes_before(before):
        # "" holds no reservation: the nodes any heir not holding one may use
        if placer.place(shape, cycle.scoring(queue), "") is not None:
            return True
    if (len(cycle.cap.reservations) < cycle.config.max_reservations
            and any(_may_succeed(cycle, w, milli) for w, milli in kinds.least_before(before))):
        return True
    return any(_may_act(cycle, v) for v in victims if v.submitted_at < before)


def _may_act(cycle: Cycle, w: Workload) -> bool:
    """Whether `_keep(cycle, w)` could start `w` or reserve for it now (what it reads, in its
    order; the reservation window is `chain_from`'s filter)."""
    shape = cycle.shape(w)
    if (cycle.placer.never_fits(shape) is not None
            or cycle.book.limit_blocking(w.queue, w.total_milli()) is not None):
        return False
    if cycle.placer.place(shape, cycle.scoring(w.queue), "") is not None:
        return True
    return (len(cycle.cap.reservations) < cycle.config.max_reservations
            and _may_succeed(cycle, w))


def chain_from(cycle: Cycle) -> HeirChain:
    """A hand-over walk over the elders (`elders_before`) and this cycle's victims that may be
    heirs of someone (big, in their window, able to fit the pool), sorted as `heirs` sorts."""
    cfg, now = cycle.config, cycle.now
    elders_before(cycle, 0.0)  # (built, or rebuilt if work was added)
    assert cycle.by_age is not None
    _, ages, big = cycle.by_age
    victims = sorted((w for w in cycle.requeued
                      if (w.workers > 1 or w.resources.gpus > 1)
                      and reservation_window(cfg, w.submitted_at, now)[0]
                      and cycle.placer.never_fits(cycle.shape(w)) is None),
                     key=AGE_THEN_ID)
    return HeirChain(cycle, (ages, big), victims, _keep_by_kind(cycle))


def _keep_by_kind(cycle: Cycle) -> Callable[[Workload], bool]:
    """`_keep` for a walk's heirs, knowing which kinds failed (`heir_memo.keep_by_kind`);
    `_keep` is looked up at each call (the tests count its calls)."""
    return keep_by_kind(cycle, lambda w: _keep(cycle, w))


def fill_free_slots(cycle: Cycle) -> None:
    """After allocation, a free slot (fewer than `max_reservations` held) goes to the oldest
    big waiting workload that may hold one. In allocation only the first of a shape to fail
    in the fair-share order may reserve (alike work behind it is set aside as known to fail),
    so when that one was outside its window the slot stayed free while an older gang of a
    queue later in the order waited in its own (the bound in tests/core/
    test_reservation_bound.py needs this). Oldest first, as the aging (`heirs`) orders, and a
    rerun keeps the holder this names (`keep_reservations`)."""
    cfg, where, held = cycle.config, cycle.stmt.where, cycle.cap.reservations
    _restore(cycle)
    if len(held) >= cfg.max_reservations:
        return
    # The elders (`elders_before`: big, in their window, able to fit the pool, oldest first) are
    # the candidates (`_keep` refuses work that can never fit at once). In a full pool every
    # one is refused, and asking by kind first (`heir_prospects`) says so without a `_keep`
    # per elder (13,000 at 10,000 x 100,000; they were sorted out of the whole backlog).
    elders = elders_before(cycle, math.inf)
    if not _some_may_act(cycle, math.inf, []):
        return
    for w in elders:
        if len(held) >= cfg.max_reservations:
            return
        if w.id not in where and w.id not in held:
            _keep(cycle, w)


def _restore(cycle: Cycle) -> None:
    """A holder of the last plan that was not kept before allocation is judged again now,
    heirs first as in `keep_reservations`, on what allocation left waiting; its slot was kept
    free for it meanwhile (`_reserve`).

    Why: before allocation every queue with a new arrival waits, so a holder failed
    `_may_succeed` for an owed queue's 1-GPU arrival that allocation then placed off its nodes,
    and a younger gang that failed later in the fair-share order (the arrival placed by then)
    took the free slot; the next cycle handed it back to the older one, its heir: the slot
    alternated x, y, x, y (issue 10, bench/contention.py seed 3, t = 98,820 s;
    tests/core/test_reservation_flip.py). Read here, the test sees what the plan leaves
    waiting, which is what a rerun on the applied plan reads when it keeps the plan's holder
    (and the holder's nodes served the arrivals meanwhile, as they did before)."""
    dropped, cycle.dropped = cycle.dropped, []
    for w in dropped:
        if w.id in cycle.stmt.where or w.id in cycle.cap.reservations:
            continue
        if len(cycle.cap.reservations) >= cycle.config.max_reservations:
            return
        if not _hand_over(cycle, w):
            _keep(cycle, w)


def age_reservations(cycle: Cycle) -> bool:
    """After evictions: a holder whose heir is one of this cycle's victims hands its slot
    over now, as a rerun of this plan would (the victim waits there, older than the holder
    by a window); True if a slot changed hands. Without it, a gang preempted for higher work
    took a younger holder's slot on the rerun and preempted lower work of its queue there
    (bench/contention.py seed 4, t = 101,580 s)."""
    victims = [v for v in cycle.requeued if cycle.is_pending(v)]
    changed = False
    for owner in sorted(cycle.cap.reservations):
        holder = cycle.waiting.get(owner)
        if holder is None or not heirs(cycle, holder, victims):  # (a few victims, not all)
            continue
        nodes = cycle.cap.reservations[owner]
        cycle.cap.release(owner)
        since = len(cycle.stmt.ops)
        if _hand_over(cycle, holder):
            changed = True
        elif _started_on(cycle, since, nodes):
            _keep(cycle, holder)  # chosen again, as a rerun's `keep_reservations` chooses
        else:
            cycle.cap.reserve(owner, nodes)  # nobody could take it: the holder keeps its nodes
    return changed


def _started_on(cycle: Cycle, since: int, nodes: Iterable[int]) -> bool:
    """Whether a placement made since op `since` uses any of `nodes`.

    Why: an heir that fits starts on the holder's released nodes (`_hand_over`), and when no
    heir takes the slot the holder got those nodes back, under the heir. A rerun of the plan
    reserves for the holder afresh (`keep_reservations`), elsewhere, and work of the heir's
    queue of higher priority preempted the heir where the plan's reservation had kept it out
    (issue 10, bench/contention.py seed 2 with the gang filter, t = 129,540 s;
    tests/core/test_rerun_own_victims.py)."""
    ids = {cycle.cap.table.nodes[n].id for n in nodes}
    return any(op.kind == "place" and any(a.node_id in ids for a in op.assignments)
               for op in cycle.stmt.ops[since:])


def _may_succeed(cycle: Cycle, w: Workload, milli: int | None = None) -> bool:
    """Would `w`, once its nodes drain, keep what it gets? Yes when its queue stays within
    its guarantee, or when no queue below its quota is waiting to reclaim it. `milli`: its
    size, if not `w`'s own (the answer only depends on `w`'s queue and GPU models besides)."""
    book = cycle.book
    if book.within_guarantee_after(w, w.total_milli() if milli is None else milli):
        return True
    return not any(book.milli[q] < book.quota_milli(q)
                   for q in _waiting_queues(cycle) if q != w.queue)


def _waiting_queues(cycle: Cycle) -> frozenset[str]:
    """The queues with work waiting. This cycle's victims wait too: a queue that an eviction
    took below its quota with its victim waiting is what the next cycle sees (and refuses the
    reservation for), so a reservation kept here would be dropped by a rerun, and the room it
    frees taken by moves.

    Kept until the statement changes (`applied` counts every change of placements) or work is
    added: a hand-over chain asks for every heir it tries, and the scan passes each queue's
    placed work (~40% of the cycle after a big plan at 10,000 x 100,000, py-spy)."""
    key = (cycle.stmt.applied, len(cycle.requeued), len(cycle.order))
    if cycle.queues_waiting is None or cycle.queues_waiting[0] != key:
        waiting = {q for q, work in cycle.pending.items()
                   if any(cycle.is_pending(x) for x in work)}
        waiting.update(v.queue for v in cycle.requeued if cycle.is_pending(v))
        cycle.queues_waiting = (key, frozenset(waiting))
    return cycle.queues_waiting[1]


def _maybe_reserve(cycle: Cycle, w: Workload) -> None:
    cfg = cycle.config
    if len(cycle.cap.reservations) >= cfg.max_reservations or w.id in cycle.cap.reservations:
        return  # (a kept reservation's holder fails again in its turn: it holds one already)
    if not reservation_window(cfg, w.submitted_at, cycle.now)[0] or not _may_succeed(cycle, w):
        return
    shape = cycle.shape(w)
    table, cap = cycle.cap.table, cycle.cap
    nodes = np.flatnonzero(cycle.placer.static(shape) & ~cap.reserved & ~cycle.never_drains())
    if nodes.size == 0:
        return
    full = empty_slots(table, shape.resources, nodes)
    nodes, full = nodes[full > 0], full[full > 0]
    dom = table.domain(shape.required_level)[nodes]
    can_hold = np.bincount(dom, weights=full)
    free_now = np.bincount(dom, weights=worker_slots(cap, shape.resources, nodes))
    candidates = np.flatnonzero(can_hold >= shape.workers)
    if candidates.size == 0:
        return
    # The domain that is closest to fitting: most free workers now, then lowest code.
    best = candidates[np.lexsort((candidates, -free_now[candidates]))[0]]
    cap.reserve(w.id, drain_first(cycle, shape.resources, shape.workers, nodes[dom == best]))
