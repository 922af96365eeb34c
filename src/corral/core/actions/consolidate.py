"""Consolidate: move running work so that a pending workload can start.

Only when the pool has room for the pending workload in total but not in one piece (its
shape is fragmented across nodes or domains). Movable work: preemptible, past its minimum
runtime, single-worker (moving a gang costs every worker a restart). Nodes are emptied in the
order that needs the fewest moves; after each move the pending workload is tried; once it fits,
every moved workload must find a new place or nothing happens at all. A move is an eviction
plus a placement of the same workload in one plan: it restarts from its checkpoint elsewhere.
"""

from __future__ import annotations

import heapq
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import chain, compress
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np

from corral.core import reasons as R
from corral.core.fit import Shape
from corral.core.model import STABLE_CAPACITY, WorkerAssignment, Workload, pending_order

if TYPE_CHECKING:
    from corral.core.cycle import Cycle

STABLE = tuple(str(k) for k in STABLE_CAPACITY)
_ID = attrgetter("id")


def consolidate(cycle: Cycle) -> None:
    if cycle.moved_for:
        give_back(cycle)
    if not cycle.victim_index().movable.any():
        return  # nothing may move: skip the per-workload checks entirely
    walk, still = _Walk(cycle), cycle.still_pending()
    # The first `_SKIM_FROM` are read one by one, the rest skimmed in spans of doubling
    # length, each grouped when the pass reaches it: a pass that runs out of moves early
    # (the first cycle on a fresh snapshot ends after ~10,000 of 93,000) groups little.
    spans = (_skim(walk, still, a, b) for a, b in _doubling(_SKIM_FROM, len(still)))
    for i in chain(range(min(_SKIM_FROM, len(still))), chain.from_iterable(spans)):
        if not walk.visit(still[i]):
            return


#: read one by one before `_skim` groups the rest (as cheap as its passes below this)
_SKIM_FROM = 2_000


def _doubling(start: int, end: int) -> Iterator[tuple[int, int]]:
    """[start, 2 start), [2 start, 4 start), ... up to `end`."""
    while start < end:
        yield start, min(2 * start, end)
        start *= 2


class _Walk:
    """One consolidation pass over the still-pending work, one workload at a time (`visit`),
    with its memos.

    Which capacity the memos were made on: a failed try is rolled back to the very capacity
    it started from, yet it moves the statement's counters: `looked` maps the counters after
    a rollback to the capacity before it, so one failed shape does not void the memo of
    another. Without it, in the cycle after a plan is applied (2,000 x 20,000,
    bench/schedule_cycle.py's next cycle) 21 shapes tried one after another voided each
    other: 5,204 tries of up to 8 moves each, 4-5 s of a cycle. `version` names that
    capacity: it changes only when capacity changed hands since the last look (a move made)."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self.failed: dict[tuple[object, object, str], int] = {}
        self.fragmented: dict[tuple[object, object, str], tuple[int, bool]] = {}
        self.limited: dict[str, object] = {}
        stmt, cap = cycle.stmt, cycle.cap
        self.version, self.looked = 0, (stmt.applied, cap.freed)
        self.free = (self.version, cap.total_free_milli())

    def key(self, w: Workload) -> tuple[object, object, str]:
        """What a try for `w` depends on besides capacity (`version`)."""
        cycle = self.cycle
        return (cycle.shape(w), _alike(cycle, w.queue, self.limited),
                w.id if w.id in cycle.cap.reservations else "")

    def moved_since_look(self) -> bool:
        """Whether capacity changed hands since the last look: the next visit starts a new
        `version`, and no memo holds any more."""
        stmt, cap = self.cycle.stmt, self.cycle.cap
        return (stmt.applied, cap.freed) != self.looked

    def visit(self, w: Workload) -> bool:
        """Try to start `w` by moves (or learn it fails); False once no move is left."""
        cycle = self.cycle
        stmt, cap = cycle.stmt, cycle.cap
        if w.id in stmt.where:
            return True  # placed since the list was made
        if cycle.moves_left <= 0:
            return False
        if self.moved_since_look():
            self.version, self.looked = self.version + 1, (stmt.applied, cap.freed)
        version, failed = self.version, self.failed
        # A try that failed fails again for the same shape, scoring and queue limits until
        # capacity changes hands: most of a backlog stops here, before the tests below (each
        # of them only skips, too).
        key = self.key(w)
        if failed.get(key) == version:
            return True
        if self.free[0] != version:
            self.free = (version, cap.total_free_milli())
        # The three tests below read only the key (a waiting workload's total is its shape's,
        # a queue limit is in the key where one applies) and what `version` stands for: a
        # workload they skip is remembered like a failed try, so the rest of its kind stops at
        # the memo above (10,000 x 100,000 seed 2: ~93,000 still pending read per round).
        milli = w.total_milli()
        if milli > self.free[1] or cycle.book.limit_blocking(w.queue, milli) is not None:
            failed[key] = version  # no room in the whole pool's free share, or a limit
            return True
        # Whether a shape is fragmented only changes when capacity does: cache per shape.
        seen = self.fragmented.get(key)
        if seen is None or seen[0] != version:
            seen = self.fragmented[key] = (version, _fragmented(cycle, w))
        if not seen[1]:
            failed[key] = version
            return True
        moved = _consolidate_for(cycle, w, cycle.moves_left)
        if moved:
            cycle.moves_left -= moved
        else:  # rolled back (`_try_moves`): the capacity of `version` again
            failed[key] = version
            self.looked = (stmt.applied, cap.freed)
        return True


def _skim(walk: _Walk, still: tuple[Workload, ...], start: int, end: int) -> Iterator[int]:
    """The positions in `still` from `start` to `end`, in order, that `walk.visit` would not pass
    over as known to fail (its memo: `failed[key] == version`).

    What a failed try proves: every later workload of the same key (shape, scoring and
    limits; a reservation's owner on its own) fails too while `version` holds, i.e. until a
    move is made (`moved_since_look`; a rolled-back try is no move). So the positions are
    grouped by key, the groups merged by their next position, and a group whose key is
    known to fail sleeps; when a move is made every sleeping group wakes at its first
    position after the move. What voids a memo is exactly what changes `version`: nothing
    else a visit reads changes while no move is made (free capacity and queue use change
    only with placements; a key's parts are fixed for the pass).

    Why: the pass read each of ~93,000 still-pending workloads twice a cycle (10,000 x
    100,000 seed 2, ~0.25-0.3 s of the warm cycle) to find the few hundred that could try.
    Here each workload costs a few passes in C (grouping) and each key a visit per
    `version`: tests/core/test_consolidate_skim.py compares the plans with the plain pass."""
    groups, keys = _groups(walk, still, start, end)
    failed = walk.failed
    asleep: list[int] = []
    heap: list[tuple[int, int, int]] = []
    for k, g in enumerate(groups):  # the memo of what was read before `start` holds
        if not walk.moved_since_look() and failed.get(keys[k]) == walk.version:
            asleep.append(k)
        else:
            heap.append((g[0], k, 0))
    heapq.heapify(heap)
    while heap:
        i, k, at = heapq.heappop(heap)
        yield i
        if walk.moved_since_look():  # the next visit starts a new version: wake every group
            for s in asleep:
                j = bisect_right(groups[s], i)
                if j < len(groups[s]):
                    heapq.heappush(heap, (groups[s][j], s, j))
            asleep = []
        elif failed.get(keys[k]) == walk.version:
            asleep.append(k)
            continue
        if at + 1 < len(groups[k]):
            heapq.heappush(heap, (groups[k][at + 1], k, at + 1))


def _groups(walk: _Walk, still: tuple[Workload, ...], start: int, end: int
            ) -> tuple[list[list[int]], list[tuple[object, object, str]]]:
    """The positions of `still` from `start` to `end` grouped by `walk.key` (each group in order),
    and each group's key. Shapes are interned (`Cycle.shape`), so a shape's identity stands
    for it (were one shape split in two groups, it would only cost a visit)."""
    cycle, tail = walk.cycle, still[start:end]
    n = len(tail)
    shapes: list[Shape | None] = list(map(cycle.shapes.get, map(_ID, tail)))
    for i in compress(range(n), map(operator.not_, shapes)):
        shapes[i] = cycle.shape(tail[i])  # not interned yet
    kinds = np.fromiter(map(id, shapes), dtype=np.int64, count=n)
    alike = {q: _alike(cycle, q, walk.limited) for q in cycle.book.queues}
    if len(set(alike.values())) > 1:  # (one kind of scoring and no limit: shapes say it all)
        number = {a: k for k, a in enumerate(dict.fromkeys(alike.values()))}
        scoring = np.fromiter((number[alike[w.queue]] if w.queue in alike else -1
                               for w in tail), dtype=np.int64, count=n)
        by_kind = np.lexsort((scoring, kinds))
        sorted_kinds = np.stack((kinds[by_kind], scoring[by_kind]))
    else:
        by_kind = np.argsort(kinds, kind="stable")
        sorted_kinds = kinds[by_kind][np.newaxis]
    owners = _owners(cycle, tail)
    if owners:  # each owner a group of its own
        keep = ~np.isin(by_kind, owners)
        by_kind, sorted_kinds = by_kind[keep], sorted_kinds[:, keep]
    cuts = (np.flatnonzero((sorted_kinds[:, 1:] != sorted_kinds[:, :-1]).any(axis=0))
            + 1).tolist()
    order = (by_kind + start).tolist()
    groups = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)
              if b > a]
    groups += [[start + i] for i in owners]
    return groups, [walk.key(still[g[0]]) for g in groups]


def _owners(cycle: Cycle, tail: tuple[Workload, ...]) -> list[int]:
    """Where in `tail` (in `pending_order`, as `still_pending` keeps it) the holders of a
    reservation are, found by bisection: there are few of them and ~90,000 others. A holder
    is waiting work or one of this cycle's victims (an heir, `age_reservations`): the
    still-pending work is drawn from both."""
    found = []
    victims: dict[str, Workload] | None = None
    for owner in cycle.cap.reservations:
        w = cycle.waiting.get(owner)
        if w is None:
            victims = {v.id: v for v in cycle.requeued} if victims is None else victims
            w = victims.get(owner)
        if w is None:
            continue
        i = bisect_left(tail, pending_order(w), key=pending_order)
        if i < len(tail) and tail[i].id == owner:
            found.append(i)
    return sorted(found)


def _alike(cycle: Cycle, queue: str, known: dict[str, object]) -> object:
    """What a try for work of `queue` depends on besides shape and capacity: the queue's
    scoring (queues with the same weights share one), and the queue itself where it or an
    ancestor has a limit (`_try_moves` checks it on what was placed). Cached in `known`."""
    found = known.get(queue)
    if found is None:
        book = cycle.book
        capped = any(book.queues[n].limit_gpus is not None for n in book.chain.get(queue, ()))
        found = known[queue] = (id(cycle.scoring(queue)), queue if capped else "")
    return found


def give_back(cycle: Cycle) -> None:
    """Moves made for work that a preemption then unplaced serve the preemptor: a move whose
    old devices the preemptor took, of work it may preempt (its queue, lower priority), is
    its eviction now, and the move goes back to the budget.

    Why: consolidation moved m for p, then q (higher, same queue) took p's room; p waited
    with the budget spent, and a rerun on the applied plan (its own budget) moved again for
    p (issue 10, bench/contention.py seed 4, t = 163,620 s). A move given back while its
    eviction stayed a consolidation's let a plan evict rounds x `max_moves` for
    consolidation (reverted in review, 97ce9e5); here the plan's consolidation evictions stay
    within `max_moves`, and the preemptor is charged what it took (without the move, it
    would have preempted m itself)."""
    stmt = cycle.stmt
    for wid in [p for p in cycle.moved_for if p not in stmt.where]:
        moved = set(cycle.moved_for.pop(wid))
        taken = next((op for op in reversed(stmt.ops)
                      if op.kind == "unplace" and op.workload.id == wid), None)
        q = stmt.live.get(taken.for_workload) if taken is not None else None
        if taken is None or q is None or taken.rule != R.RULE_PREEMPT:
            continue
        took = {(a.node_id, d) for a in stmt.where[q.id] for d in a.devices}
        for i, op in enumerate(stmt.ops):
            v = op.workload
            if (op.kind != "place" and op.rule == R.RULE_CONSOLIDATE and op.for_workload == wid
                    and v.id in moved and v.id in stmt.where
                    and v.queue == q.queue and v.priority < q.priority
                    and any((a.node_id, d) in took for a in op.assignments for d in a.devices)):
                stmt.retag(i, R.RULE_PREEMPT, q.id)
                cycle.moves_left += 1


def _fragmented(cycle: Cycle, w: Workload) -> bool:
    """Room for `w` exists in total on nodes it may use, just not in one piece."""
    shape, cap = cycle.shape(w), cycle.cap
    usable = cycle.placer.usable(shape, w.id)
    r = shape.resources
    if r.gpus:
        return int(cap.whole_free[usable].sum()) >= r.gpus * shape.workers
    return int(np.clip(cap.free_milli[usable], 0, None).sum()) >= w.total_milli()


def _movable_on(cycle: Cycle, node: int) -> list[Workload]:
    """Single-worker work on `node` that may move, smallest first. Work placed earlier in this
    cycle counts too (it has not started, so moving it costs nothing), unless it has a minimum
    runtime: the next cycle could not move it (`VictimIndex.may_move`)."""
    index, where = cycle.victim_index(), cycle.stmt.where
    found = [(cycle.held_milli(v), v.priority, v.id, v)
             for v in index.on_node.get(node, {}).values()
             if v.id in where and index.may_move(v)]
    return [v for *_, v in sorted(found)]


def _consolidate_for(cycle: Cycle, w: Workload, budget: int) -> int:
    """Try to start `w` with at most `budget` moves; returns the moves made (0 if none).

    Candidate nodes are tried one at a time, fewest movable GPUs first; a gang that needs
    several nodes emptied then tries growing sets of them. A try whose displaced work finds
    no new home is rolled back and the next one is tried.
    """
    usable = cycle.placer.usable(cycle.shape(w), w.id)
    movable = cycle.victim_index().movable[usable]
    some = np.flatnonzero(movable > 0)
    order = some[np.lexsort((usable[some], movable[some]))][:_MAX_NODES]
    nodes = [int(usable[i]) for i in order]
    work = {n: _movable_on(cycle, n) for n in nodes}
    tries = [[n] for n in nodes]
    if w.workers > 1:
        tries += [nodes[:k] for k in range(2, len(nodes) + 1)]
    for group in tries:
        moved = _try_moves(cycle, w, [v for n in group for v in work[n]], budget)
        if moved:
            return moved
    return 0


_MAX_NODES = 8  # candidate nodes per pending workload: bounds the work of one cycle


def _home_shape(cycle: Cycle, v: Workload) -> Shape:
    """Where a moved workload may go: anywhere it may run, but never from stable capacity
    (owned, on-demand) to spot: a move must not add a risk of interruption it did not have."""
    shape = cycle.shape(v)
    if not shape.allows_spot or cycle.kind_of(v) == "spot":
        return shape
    return shape.restricted_to(STABLE)


def _try_moves(cycle: Cycle, w: Workload, candidates: list[Workload], budget: int) -> int:
    stmt, shape = cycle.stmt, cycle.shape(w)
    checkpoint = stmt.checkpoint()
    moved: list[Workload] = []
    placed = None
    for v in candidates:
        if len(moved) >= budget or v.id not in stmt.where:
            break
        stmt.remove(v, R.RULE_CONSOLIDATE, w.id)
        moved.append(v)
        placed = cycle.placer.place(shape, cycle.scoring(w.queue), w.id)
        if placed is not None:
            break
    if placed is None or cycle.book.limit_blocking(w.queue, _milli(placed)) is not None:
        # (a GPU-memory share is only known in milli once placed: its queue's limit is checked
        # on what it takes, as `allocate.try_place` does)
        stmt.rollback(checkpoint)
        return 0
    stmt.place(w, placed)
    for v in moved:
        home = cycle.placer.place(_home_shape(cycle, v), cycle.scoring(v.queue), v.id,
                                  cycle.chooser(v))
        if home is None or cycle.book.limit_blocking(v.queue, _milli(home)) is not None:
            # (a GPU-memory share takes more milli on a smaller device: a move must not take
            # its queue over its limit)
            stmt.rollback(checkpoint)
            return 0
        stmt.place(v, home)
    cycle.reasons.pop(w.id, None)
    cycle.moved_for[w.id] = [v.id for v in moved]
    return len(moved)


def _milli(assignments: tuple[WorkerAssignment, ...]) -> int:
    return sum(a.milli_per_device * len(a.devices) for a in assignments)
