"""What one cycle's opening leaves for the next: the workloads' shapes, the queue order of the
waiting work and the demand counts, kept by the CALLER between cycles (`WarmStart`) and brought
up to date from what changed, so that opening a cycle costs what changed, not the backlog.

    schedule(state, now, config, seed, warm)   # warm: a WarmStart the caller keeps

Why: at 10,000 nodes and 100,000 waiting workloads, opening a cycle interned 121,000 shapes
and sorted the backlog three times (about a quarter of the cycle), although between two cycles
of the live loop a few hundred workloads arrive, start or end.

Kept is a value, not a cache behind the caller's back: the core stays pure (no clock, no
globals). It is never trusted stale. A workload is a frozen object, and the kept state holds
every object of the last state, so an object seen again (the same identity) is the same
workload: only new objects and objects no longer there are looked at. Anything it cannot
account for is rebuilt from the state (`rebuild`): other queues, a workload id twice, a waiting
workload of an unknown queue, or a change touching more than a quarter of the workloads.

What is kept gives the cycle exactly what the plain pass (`scan`) gives: the same shapes
(values), the same waiting order (higher priority, then earlier, then id: a total order, ids
being unique), the same per-queue lists and demand totals (integers, so order-free sums), and
the same shape counts (the workload mix sums them per task type, integers again).
`tests/core/test_warm_start.py` compares whole plans, warm against cold, after random changes.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter, is_, not_
from typing import Any, TypeVar

from corral.core.fit import Shape
from corral.core.model import Queue, Workload, WorkloadState, pending_order
from corral.core.warm_adoption import KeptAdoption

K = TypeVar("K")
_ID = attrgetter("id")
#: arrivals past this share of the waiting work: one sort instead of an insertion each
_RESORT_SHARE = 0.25
AGE_THEN_ID = attrgetter("submitted_at", "id")
#: `without` bisects while fewer than 1 in this many of a list left, else filters
_BISECT_SHARE = 64


def is_big(w: Workload) -> bool:
    """More than one worker or GPU: the work reservations are made for and held from."""
    return w.workers > 1 or w.resources.gpus > 1


def big_by_age(waiting: Iterable[Workload]) -> list[Workload]:
    """The big work of `waiting`, by age then id (what `reservation_heirs.elders_before` filters)."""
    return sorted(filter(is_big, waiting), key=AGE_THEN_ID)


def intern_shape(w: Workload, shapes: dict[str, Shape], interned: dict[tuple[object, ...], Shape]
                 ) -> Shape:
    """`w`'s shape, one object per distinct shape (keyed by plain values, cheap to hash), so
    that every cache keyed by shape hits on identity; remembered in `shapes` by workload id."""
    r = w.resources
    key = (r.gpus, r.gpu_milli, r.gpu_memory_mib, r.cpu_milli, r.memory_mib, w.workers,
           w.gpu_models, w.max_price_per_gpu_hour, w.topology, w.allow_cross_region,
           w.capacity_kinds, w.preemptible, w.node_selector, w.min_gpu_memory_mib, w.throughput)
    s = interned.get(key)
    if s is None:
        s = interned[key] = Shape.of(w)
    shapes[w.id] = s
    return s


def in_order(workloads: Iterable[Workload]) -> list[Workload]:
    """`workloads` in the order waiting work is considered (`pending_order`)."""
    # Three stable sorts on C-level keys order 100,000 workloads in a third of the time
    # of one sort on a (-priority, submitted_at, id) tuple built per workload.
    ordered = sorted(workloads, key=_ID)
    ordered.sort(key=attrgetter("submitted_at"))
    ordered.sort(key=attrgetter("priority"), reverse=True)  # stays stable
    return ordered


def without(ordered: list[Workload], gone: Sequence[Workload],
            key: Callable[[Workload], Any]) -> list[Workload]:
    """`ordered` (sorted by `key`, a total order) without the workloads `gone` (objects in it).

    A few leave between two cycles of a 100,000-long backlog: each is found by bisection and
    the list is joined from the slices between them (copies in C), instead of a test per
    workload; where many left, one filter."""
    if len(gone) * _BISECT_SHARE > len(ordered):
        left = set(map(id, gone))
        return list(compress(ordered, map(not_, map(left.__contains__, map(id, ordered)))))
    at = [bisect_left(ordered, key(w), key=key) for w in gone]
    if not all(map(is_, map(ordered.__getitem__, at), gone)):  # not in it: never expected
        raise ValueError("without: a workload that left is not in the list")
    at.sort()
    out: list[Workload] = []
    start = 0
    for i in at:
        out += ordered[start:i]
        start = i + 1
    out += ordered[start:]
    return out


@dataclass
class Opening:
    """What a cycle's opening needs from the workloads of a state."""

    shapes: dict[str, Shape]  # by workload id
    interned: dict[tuple[object, ...], Shape]
    per_shape: dict[Shape, int]  # workloads per shape (the workload mix)
    active: list[Workload]  # running, in the state's order
    demand: dict[str, int]  # milli-GPUs per queue: running, plus waiting
    waiting: list[Workload]  # in the state's order, or (with `pending`) in queue order
    #: the waiting work per queue, in order, every queue known (None: not sorted yet)
    pending: dict[str, list[Workload]] | None = None
    big: list[Workload] | None = None  # `big_by_age` of the waiting work (None: not made)
    #: the waiting work by id (`Cycle.waiting`; None: made from `waiting`); its insertion
    #: order is not the waiting order (the cycle only looks workloads up in it). The kept
    #: dict itself, not a copy: the next `open` changes it, so a cycle must not be used
    #: past its caller's next opening (none is: `schedule` returns a plan, not the cycle)
    by_id: dict[str, Workload] | None = None


def scan(workloads: Sequence[Workload]) -> Opening:
    """The plain pass: every workload once."""
    demand: dict[str, int] = {}
    shapes: dict[str, Shape] = {}
    interned: dict[tuple[object, ...], Shape] = {}
    per_shape: dict[Shape, int] = {}
    active: list[Workload] = []
    waiting: list[Workload] = []
    alike: dict[tuple[str, Shape], int] = {}  # waiting work by queue and shape
    running_now = WorkloadState.RUNNING
    for w in workloads:
        # a waiting workload's total is its shape's: interned now, used all cycle
        shape = intern_shape(w, shapes, interned)
        per_shape[shape] = per_shape.get(shape, 0) + 1
        if w.state is running_now:
            active.append(w)
            demand[w.queue] = demand.get(w.queue, 0) + w.total_milli()
        else:
            waiting.append(w)
            alike[(w.queue, shape)] = alike.get((w.queue, shape), 0) + 1
    # Waiting demand counted per (queue, shape) above, summed here: the same integer totals,
    # one addition per kind of waiting work instead of one per workload.
    for (queue, shape), count in alike.items():
        demand[queue] = demand.get(queue, 0) + count * shape.milli
    return Opening(shapes, interned, per_shape, active, demand, waiting)


def _count(counts: dict[K, int], key: K, by: int) -> None:
    left = counts[key] + by
    if left:
        counts[key] = left
    else:
        del counts[key]  # as if never seen: the plain pass has no entry either


class WarmStart:
    """Kept between cycles by the caller (the live loop); `schedule` reads and updates it."""

    def __init__(self, rebuild_share: float = 0.25) -> None:
        #: past this share of the workloads changed (new or gone objects), rebuild: about as
        #: cheap as the update then (tests set it high to exercise the update on small states)
        self.rebuild_share = rebuild_share
        self.queues: tuple[Queue, ...] | None = None  # None: nothing kept
        self.seen: dict[int, Workload] = {}  # every workload of the last state, by identity
        self.ids: set[str] = set()
        self.shapes: dict[str, Shape] = {}
        self.interned: dict[tuple[object, ...], Shape] = {}
        self.per_shape: dict[Shape, int] = {}
        self.running: dict[int, Workload] = {}
        #: running work per queue: GPU milli and how many (a queue whose running work holds no
        #: GPU, CPU-only jobs, still has an entry of 0 in the plain pass's demand)
        self.run_milli: dict[str, int] = {}
        self.run_count: dict[str, int] = {}
        self.alike: dict[tuple[str, Shape], int] = {}
        self.order: list[Workload] = []
        self.by_queue: dict[str, list[Workload]] = {}
        self.waiting: dict[str, Workload] = {}  # the waiting work by id
        self.big: list[Workload] = []  # `big_by_age` of the waiting work
        self.rebuilds = 0  # how many openings rebuilt it (tests, the bench)
        #: the running work adoption left (`warm_adoption`; kept by the cycle, None: adopt
        #: everything), and the running work that stopped and started since the last opening
        self.adoption: KeptAdoption | None = None
        self.ran_out: list[Workload] = []
        self.ran_in: list[Workload] = []
        #: an opening's ran_out/ran_in not yet taken by adoption (`take_adoption`)
        self._changes_open = False

    def open(self, state_queues: tuple[Queue, ...], workloads: Sequence[Workload]) -> Opening:
        """The opening of a cycle on these queues and workloads; the kept state follows. An
        update that raises leaves the kept state half moved: it is dropped before the error
        goes on, so the next opening rebuilds instead of failing the same way every cycle."""
        try:
            opening = self._update(state_queues, workloads)
        except BaseException:
            self.queues, self.adoption = None, None
            raise
        return opening if opening is not None else self._rebuild(state_queues, workloads)

    def take_adoption(self) -> KeptAdoption | None:
        """The kept adoption, for this opening's `ran_out`/`ran_in` to advance (it is kept
        again only by the cycle that matched it); each opening's changes are taken once."""
        kept, self.adoption, self._changes_open = self.adoption, None, False
        return kept

    def _rebuild(self, queues: tuple[Queue, ...], workloads: Sequence[Workload]) -> Opening:
        self.rebuilds += 1
        self.queues, self.adoption = None, None
        opening = scan(workloads)
        known = {q.name for q in queues}
        seen = dict(zip(map(id, workloads), workloads, strict=True))
        ids = set(map(_ID, workloads))
        if len(seen) != len(workloads) or len(ids) != len(workloads) or any(
                w.queue not in known for w in opening.waiting):
            return opening  # nothing kept: the next cycle rebuilds again
        self.queues, self.seen, self.ids = queues, seen, ids
        self.shapes, self.interned = dict(opening.shapes), dict(opening.interned)
        self.per_shape = dict(opening.per_shape)
        self.running = {id(w): w for w in opening.active}
        self.run_milli, self.run_count, self.alike = {}, {}, {}
        for w in opening.active:
            self._count_running(w, 1)
        shapes = opening.shapes
        for w in opening.waiting:
            key = (w.queue, shapes[w.id])
            self.alike[key] = self.alike.get(key, 0) + 1
        self.order = in_order(opening.waiting)
        self.waiting = dict(zip(map(_ID, self.order), self.order, strict=True))
        self.by_queue = {}
        for w in self.order:
            self.by_queue.setdefault(w.queue, []).append(w)
        self.big = big_by_age(self.order)
        return self._opening()

    def _update(self, queues: tuple[Queue, ...], workloads: Sequence[Workload]
                ) -> Opening | None:
        """The kept state moved to `workloads`, or None where it cannot account for them."""
        if self.queues is None or queues != self.queues:
            return None
        prev = self.seen
        now = dict(zip(map(id, workloads), workloads, strict=True))
        if len(now) != len(workloads):
            return None
        # new objects in the state's order, gone ones in the last state's: deterministic
        # (passes in C: a set of the new keys is not needed, `prev` answers for them)
        added = list(compress(workloads, map(not_, map(prev.__contains__, now.keys()))))
        gone_keys = prev.keys() - now.keys()
        if len(added) + len(gone_keys) > self.rebuild_share * max(len(now), len(prev)):
            return None
        gone = (list(compress(prev.values(), map(gone_keys.__contains__, prev.keys())))
                if gone_keys else [])
        for w in gone:
            self._forget(w)
        known = {q.name for q in queues}
        arrived: list[Workload] = []
        for w in added:
            if w.id in self.ids or (w.state is not WorkloadState.RUNNING and w.queue not in known):
                self.queues = None
                return None  # a second workload of one id, or an unknown queue: rebuild
            self._learn(w, arrived)
        self.seen = now
        if self._changes_open:
            # the last opening's starts and stops never reached adoption (its cycle raised
            # before it): the kept adoption would miss them, so it is adopted afresh
            self.adoption = None
        self.ran_out = [w for w in gone if w.state is WorkloadState.RUNNING]
        self.ran_in = [w for w in added if w.state is WorkloadState.RUNNING]
        self._changes_open = True
        self._reorder(gone, arrived)
        return self._opening()

    def _forget(self, w: Workload) -> None:
        shape = self.shapes.pop(w.id)
        self.ids.discard(w.id)
        _count(self.per_shape, shape, -1)
        if w.state is WorkloadState.RUNNING:
            del self.running[id(w)]
            self._count_running(w, -1)
        else:
            _count(self.alike, (w.queue, shape), -1)
            del self.waiting[w.id]

    def _learn(self, w: Workload, arrived: list[Workload]) -> None:
        shape = intern_shape(w, self.shapes, self.interned)
        self.ids.add(w.id)
        self.per_shape[shape] = self.per_shape.get(shape, 0) + 1
        if w.state is WorkloadState.RUNNING:
            self.running[id(w)] = w
            self._count_running(w, 1)
        else:
            self.alike[(w.queue, shape)] = self.alike.get((w.queue, shape), 0) + 1
            self.waiting[w.id] = w
            arrived.append(w)

    def _count_running(self, w: Workload, sign: int) -> None:
        """A running workload counted in (+1) or out (-1) of its queue's running use: the
        entry lives while the queue runs anything, as in `scan`, even at 0 milli."""
        q = w.queue
        left = self.run_count.get(q, 0) + sign
        if left:
            self.run_count[q] = left
            self.run_milli[q] = self.run_milli.get(q, 0) + sign * w.total_milli()
        else:
            del self.run_count[q], self.run_milli[q]

    def _reorder(self, gone: list[Workload], arrived: list[Workload]) -> None:
        """The waiting order without what left and with what arrived: a filter over the queues
        that lost work, one insertion per arrival (the rest stays sorted)."""
        left = [w for w in gone if w.state is not WorkloadState.RUNNING]
        if left:
            self.order = without(self.order, left, pending_order)
            big = [w for w in left if is_big(w)]
            if big:
                self.big = without(self.big, big, AGE_THEN_ID)
            per_queue: dict[str, list[Workload]] = {}
            for w in left:
                per_queue.setdefault(w.queue, []).append(w)
            for queue, lost in per_queue.items():
                kept = without(self.by_queue[queue], lost, pending_order)
                if kept:
                    self.by_queue[queue] = kept
                else:
                    del self.by_queue[queue]
        if len(arrived) > _RESORT_SHARE * len(self.order):
            self.order = in_order([*self.order, *arrived])
            self.by_queue = {}
            for w in self.order:
                self.by_queue.setdefault(w.queue, []).append(w)
            self.big = big_by_age(self.order)
            return
        for w in in_order(arrived):
            insort(self.order, w, key=pending_order)
            insort(self.by_queue.setdefault(w.queue, []), w, key=pending_order)
            if is_big(w):
                insort(self.big, w, key=AGE_THEN_ID)

    def _opening(self) -> Opening:
        """Copies of what the cycle may change (it adds shapes, inserts its victims into the
        order, takes a placed nominee off its queue's list): list and dict copies, in C (~3 ms
        at 100,000 waiting). The waiting work by id is handed over as kept: the cycle only
        reads it."""
        demand = dict(self.run_milli)
        for (queue, shape), count in self.alike.items():
            demand[queue] = demand.get(queue, 0) + count * shape.milli
        # the queues in the order their first waiting workload comes, as `Cycle.add_pending`
        # fills them: each list's head is its first (the lists are the order, split by queue)
        by_queue = self.by_queue
        pending = {q: list(by_queue[q])
                   for q in sorted(by_queue, key=lambda q: pending_order(by_queue[q][0]))}
        return Opening(dict(self.shapes), dict(self.interned), dict(self.per_shape),
                       list(self.running.values()), demand, list(self.order), pending,
                       self.big, self.waiting)
