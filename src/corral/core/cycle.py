"""One scheduling cycle: snapshot in, Plan out.

    state ─> NodeTable + Capacity (arrays) ─> adopt running work ─> queue book (fair shares)
          ─> allocate (+ backfill, reservations) ─> consolidate ─> reclaim ─> preempt
          ─> reasons for everything still pending ─> Plan

Actions run least disruptive first: a workload that can start without stopping anything never
causes an eviction, and one that a move can start never causes a kill.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter

import numpy as np

from corral.core import nominations
from corral.core import reasons as R
from corral.core.actions import allocate, consolidate, preempt, reallocate, reclaim
from corral.core.actions.allocate import (
    age_reservations,
    fill_free_slots,
    keep_reservations,
    prune_reservations,
)
from corral.core.actions.heir_prospects import ElderKinds
from corral.core.close import close
from corral.core.config import SchedulerConfig
from corral.core.fit import Shape
from corral.core.model import (
    ClusterState,
    Nomination,
    Workload,
    WorkloadKind,
    pending_order,
)
from corral.core.placement import Placer, Scoring
from corral.core.plan import Plan
from corral.core.plugins.fragmentation import FRAGMENTATION_PLUGINS, TaskType, shape_mix
from corral.core.queues import QueueBook, Totals
from corral.core.snapshot import BoolArray, Capacity, NodeTable
from corral.core.spread import NodeChooser, SpreadIndex
from corral.core.statement import Statement
from corral.core.victims import VictimIndex
from corral.core.warm_adoption import KeptAdoption
from corral.core.warm_start import Opening, WarmStart, in_order, intern_shape, scan


@dataclass
class Cycle:
    """Everything an action may read or change during one cycle."""

    now: float
    config: SchedulerConfig
    seed: int
    cap: Capacity
    placer: Placer
    book: QueueBook
    stmt: Statement
    pending: dict[str, list[Workload]]  # per queue, in order
    running: dict[str, Workload]
    reasons: dict[str, R.Reason] = field(default_factory=dict)
    deferred: dict[str, Shape] = field(default_factory=dict)  # diagnose at the end
    backfilled: set[str] = field(default_factory=set)
    scorings: dict[str, Scoring] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    attempts_left: int = 0  # reclaim attempts this cycle may still make
    #: preemption attempts this cycle may still make: a budget of its own, so a reclaim that
    #: uses all of its budget does not stop preemption inside a queue
    preempt_attempts_left: int = -1
    moves_left: int = 0  # consolidation moves this cycle may still make
    moved_for: dict[str, list[str]] = field(default_factory=dict)  # `consolidate.give_back`
    _interned: dict[tuple[object, ...], Shape] = field(default_factory=dict)
    waiting: dict[str, Workload] = field(default_factory=dict)  # pending at the start, by id
    order: list[Workload] = field(default_factory=list)  # pending, by priority then age
    #: typical tasks of the snapshot's work, for fragmentation plugins given none (`_open`)
    workload_mix: tuple[TaskType, ...] = ()
    _still_pending: tuple[int, tuple[Workload, ...]] | None = None
    by_age: tuple[int, list[float], list[Workload]] | None = None  # `reservation_heirs.elders_before`
    #: the big waiting work by age as the opening found it (`warm_start.big_by_age`), and
    #: how much work waited then; None: not kept (`elders_before` sorts it out of `waiting`)
    big_at_open: tuple[int, list[Workload]] | None = None
    elder_kinds: ElderKinds | None = None  # `by_age` by kind (`heir_prospects`)
    #: queues with work waiting, and when (`allocate._waiting_queues`)
    queues_waiting: tuple[tuple[int, int, int], frozenset[str]] | None = None
    _victims: VictimIndex | None = None
    _spread: SpreadIndex | None = None
    _never_drains: BoolArray | None = None
    #: eviction requests that failed, with the statement's version then (`evict._attempt`)
    failed_evictions: dict[tuple[object, ...], tuple[int, int]] = field(default_factory=dict)
    reclaim_tried: set[str] = field(default_factory=set)  # pending work reclaim was tried for
    #: running work this cycle evicted and did not place again: it waits like `pending` from
    #: then on (`requeue`), so rules that ask "is a queue waiting?" must see it
    requeued: list[Workload] = field(default_factory=list)
    #: room earlier plans nominated (`ClusterState.nominations`), held from `decide` on
    nominated: tuple[Nomination, ...] = ()
    holds: dict[str, Nomination] = field(default_factory=dict)  # by nominee, in force now
    #: who held a reservation after the last plan (`ClusterState.reserved_for`)
    reserved_before: tuple[str, ...] = ()
    #: holders of the last plan not kept before allocation: theirs is the slot once it ends
    dropped: list[Workload] = field(default_factory=list)
    nominee_blocks: dict[tuple[Shape, str | None], list[str]] = field(default_factory=dict)

    def scoring(self, queue: str) -> Scoring:
        s = self.scorings.get(queue)
        if s is None:
            weights = self.config.scoring_for(queue)
            key = ",".join(f"{n}={w:g}" for n, w in sorted(weights.items()))
            s = next(
                (x for x in self.scorings.values() if x.key == key), None
            ) or Scoring.from_weights(weights, self._plugin_params(weights), seed=self.seed)
            self.scorings[queue] = s
        return s

    def _plugin_params(self, weights: Mapping[str, float]) -> Mapping[str, Mapping[str, object]]:
        """The configured plugin parameters; a fragmentation plugin given no workload mix gets
        this cycle's own (`workload_mix`), the work it is about to place."""
        if not self.workload_mix:
            return self.config.plugin_params
        params = {k: dict(v) for k, v in self.config.plugin_params.items()}
        for name in FRAGMENTATION_PLUGINS:
            if name in weights and "workload" not in params.get(name, {}):
                params.setdefault(name, {})["workload"] = self.workload_mix
        return params

    def shape(self, w: Workload) -> Shape:
        s = self.shapes.get(w.id)
        return s if s is not None else intern_shape(w, self.shapes, self._interned)

    def add_pending(self, workloads: Iterable[Workload]) -> None:
        """Queue `workloads` for this cycle, each queue's in the global order: higher priority,
        then earlier submission, then id. Work of an unknown queue gets its reason at once."""
        ordered = in_order(workloads)
        pending, waiting, order, book = self.pending, self.waiting, self.order, self.book
        for w in ordered:
            if w.queue not in book:
                self.reasons[w.id] = R.Reason(R.UNKNOWN_QUEUE, f"queue {w.queue!r} does not exist")
                continue
            work = pending.get(w.queue)
            if work is None:
                work = pending[w.queue] = []
            work.append(w)
            waiting[w.id] = w
            order.append(w)

    def take_order(self, order: list[Workload], pending: dict[str, list[Workload]],
                   waiting: dict[str, Workload] | None = None) -> None:
        """What `add_pending` makes of the waiting work, kept between cycles (`warm_start`):
        `order` in the global order, `pending` per queue (in order of first appearance in it),
        every queue known; `waiting`, `order` by id where kept too (only looked up in, never
        iterated in order: its insertion order may differ)."""
        self.order, self.pending = order, pending
        self.waiting = (waiting if waiting is not None
                        else dict(zip(map(_ID, order), order, strict=True)))

    def queue_up(self, seen: Opening) -> None:
        """The opening's waiting work as this cycle's: taken as kept where it was (the order,
        the lists per queue, the big work by age), else sorted now (`add_pending`)."""
        if seen.pending is None:
            self.add_pending(seen.waiting)
            return
        self.take_order(seen.waiting, seen.pending, seen.by_id)
        if seen.big is not None:
            self.big_at_open = (len(self.waiting), seen.big)

    def is_pending(self, w: Workload) -> bool:
        return w.id not in self.stmt.where

    def requeue(self, w: Workload) -> None:
        """`w` was running and an action of this cycle evicted it: from now on it waits like
        pending work, so later rounds may give it free room or let it preempt lower work of its
        queue, and the next cycle on this plan finds nothing left to do."""
        if w.id not in self.deferred:
            self.deferred[w.id] = self.shape(w)
            insort(self.order, w, key=pending_order)
            self.requeued.append(w)

    def still_pending(self) -> tuple[Workload, ...]:
        """Workloads that failed to fit on free capacity or were stopped by a queue limit (an
        eviction may lift either), and this cycle's victims, in priority order (`pending_order`;
        sorted once in `add_pending`, victims inserted in place).

        With a large backlog the scan is not free, so the answer is kept until a workload is
        set aside (`deferred` only grows); some of it may have been placed since: callers
        skip what `is_pending` says is placed."""
        deferred, where = self.deferred, self.stmt.where
        if self._still_pending is None or self._still_pending[0] != len(deferred):
            # The same filter as `w.id in deferred and w.id not in where` per workload, in C:
            # one set difference, then the order kept by `compress` (about 10x faster over a
            # backlog of 100,000 than a generator with two lookups a workload).
            wanted = deferred.keys() - where.keys()
            found = tuple(compress(self.order, map(wanted.__contains__,
                                                   map(_ID, self.order))))
            self._still_pending = (len(deferred), found)
        return self._still_pending[1]

    def victim_index(self) -> VictimIndex:
        """Displaceable work by queue and node, built on first use and kept current by the
        statement from then on."""
        if self._victims is None:
            self._victims = VictimIndex(self.cap.table, self.book.queues, self.now,
                                        self.stmt.started)
            self._victims.fill((w, self.stmt.where[w.id]) for w in self.stmt.live.values())
            self.stmt.listeners.append(self._victims.changed)
        return self._victims

    def chooser(self, w: Workload) -> NodeChooser | None:
        """How `w` picks its node among those it fits on, when it belongs to a spread group
        with workers placed (`spread.py`); None otherwise. The group index is built on first
        use (one pass over what runs) and kept current by the statement from then on, so
        replicas placed earlier in this cycle count."""
        if w.spread_group is None:
            return None
        if self._spread is None:
            self._spread = SpreadIndex(self.cap.table)
            self._spread.fill((x, self.stmt.where[x.id]) for x in self.stmt.live.values())
            self.stmt.listeners.append(self._spread.changed)
        return self._spread.chooser(w.spread_group)

    def never_drains(self) -> BoolArray:
        """Nodes running a non-preemptible service: it never ends, so the node never drains
        (a reservation there could not succeed). Computed once per cycle, when first asked."""
        if self._never_drains is None:
            mask = np.zeros(len(self.cap.table), dtype=np.bool_)
            index = self.cap.table.index
            for w in self.running.values():
                if w.kind is WorkloadKind.SERVICE and not w.preemptible:
                    mask[[index[a.node_id] for a in w.assignments if a.node_id in index]] = True
            self._never_drains = mask
        return self._never_drains

    def started_at(self, w: Workload) -> float:
        """When `w` started, or +inf when it was placed in this cycle (nothing started)."""
        if w.id in self.stmt.started and w.started_at is not None:
            return w.started_at
        return float("inf")

    def model_of(self, w: Workload) -> str:
        """The GPU model `w` runs on now (its first worker's node), or "" if it holds nothing."""
        where = self.stmt.where.get(w.id)
        if not where:
            return ""
        return self.cap.table.nodes[self.cap.table.index[where[0].node_id]].gpu_model

    def kind_of(self, w: Workload) -> str:
        """The capacity kind of the node `w` runs on now (its first worker's), or ""."""
        where = self.stmt.where.get(w.id)
        if not where:
            return ""
        table = self.cap.table
        return str(table.kind_names[int(table.kind[table.index[where[0].node_id]])])

    def held_milli(self, w: Workload) -> int:
        """GPU share `w` holds now in this cycle's view (0 if it holds nothing)."""
        return sum(a.milli_per_device * len(a.devices) for a in self.stmt.where.get(w.id, ()))

    def past_min_runtime(self, w: Workload) -> bool:
        return w.started_at is None or self.now - w.started_at >= w.min_runtime_s


def schedule(
    state: ClusterState, now: float, config: SchedulerConfig | None = None, seed: int = 0,
    warm: WarmStart | None = None,
) -> Plan:
    """Decide one cycle. Pure: the same state, `now`, config and seed give the same Plan.
    `warm`, kept by the caller between cycles, opens the cycle from what changed since the
    last one (`warm_start`); the plan is the same with it or without."""
    cycle, orphans = _open(state, now, config or SchedulerConfig(), seed, warm)
    decide(cycle)
    return close(cycle, orphans)


def decide(cycle: Cycle) -> None:
    """Run the actions on an opened cycle; the statement holds the outcome. `schedule` opens a
    cycle from a snapshot; the simulator opens one on capacity it keeps between cycles."""
    cycle.book.mark_start()  # what each queue held before any action: reclaim reads it
    if cycle.nominated:  # room freed for a workload earlier: held for it, and it goes first
        nominations.hold(cycle, cycle.nominated)
        nominations.place_nominees(cycle)
    if cycle.reserved_before:  # before any placement can reorder the queues (see there)
        keep_reservations(cycle)
    allocate(cycle)
    fill_free_slots(cycle)  # a slot no one in the order could take: the oldest may
    if not cycle.still_pending():
        return  # everything fitted (or is stopped by a limit): no action below has work
    # Evictions reshape free space: what could not move or start before may now. Repeat the
    # disruptive actions until a round removes nothing, so that rerunning the cycle on its own
    # result finds nothing left to do (no preemption loops across cycles). Bounded: each round
    # that continues has used eviction attempts or moves, which are capped per cycle.
    for _ in range(_MAX_ROUNDS):
        before = len(cycle.stmt.ops)
        if cycle.config.consolidate:
            consolidate(cycle)
        if cycle.config.reclaim:
            reclaim(cycle)
        if cycle.config.preempt:
            preempt(cycle)
        removed = cycle.stmt.removed_since(before)
        pruned = prune_reservations(cycle)
        if not removed and not pruned:
            break
        for op in removed:
            if op.kind == "evict" and op.workload.id not in cycle.stmt.where:
                cycle.requeue(op.workload)
        age_reservations(cycle)  # victims are heirs too: a rerun would hand them the slot
        reallocate(cycle)
        fill_free_slots(cycle)  # a slot the evictions made possible: a rerun would fill it


_MAX_ROUNDS = 4
_ID = attrgetter("id")
_close = close  # the close's name here before it moved to `close.py` (tests open cycles by hand)


def _open(state: ClusterState, now: float, config: SchedulerConfig, seed: int,
          warm: WarmStart | None = None) -> tuple[Cycle, int]:
    table = NodeTable.build(state.nodes)
    cap = Capacity(table)
    sched = table.schedulable
    totals = Totals(
        int(table.gpu_count[sched].sum()) * 1000,
        int(table.cpu[sched].sum()),
        int(table.ram[sched].sum()),
    )
    seen = scan(state.workloads) if warm is None else warm.open(state.queues, state.workloads)
    history = {u.queue: u.decayed_gpu_seconds for u in state.usage}
    book = QueueBook(
        state.queues, totals, seen.demand, history, config.usage_weight,
        config.usage_half_life_s, config.share_units,
    )
    stmt = Statement(cap, book)
    adopted = _adopt(stmt, seen.active, warm)
    running = {w.id: w for w in adopted}
    orphans = len(seen.active) - len(adopted)
    cycle = Cycle(
        now,
        config,
        seed,
        cap,
        Placer(cap),
        book,
        stmt,
        {},
        running,
        attempts_left=config.max_eviction_attempts,
        preempt_attempts_left=config.max_eviction_attempts,
        moves_left=config.max_moves,
        shapes=seen.shapes,
        _interned=seen.interned,
        workload_mix=_mix_of(seen.per_shape, table) if _wants_mix(config) else (),
    )
    cycle.nominated = state.nominations
    cycle.reserved_before = state.reserved_for
    cycle.queue_up(seen)
    return cycle, orphans


def _adopt(stmt: Statement, active: list[Workload], warm: WarmStart | None) -> list[Workload]:
    """Adopt the running work: from what the last cycle adopted and what started and stopped
    since, where `warm` kept it for this pool (`warm_adoption`), else all of it."""
    kept = warm.take_adoption() if warm is not None else None
    # kept again only once it matches this state
    if warm is not None and kept is not None and kept.fits(stmt.cap.table):
        kept.advance(warm.ran_out, warm.ran_in, stmt.cap.table)
        adopted = kept.give(stmt)
        if adopted is not None:
            warm.adoption = kept
            return adopted
    adopted = stmt.adopt_all(sorted(active, key=_ID))
    if warm is not None and warm.queues is not None:  # kept state in force (not rebuilt away)
        warm.adoption = KeptAdoption.of(stmt, adopted)
    return adopted


def workload_mix(config: SchedulerConfig, workloads: Iterable[Workload], table: NodeTable
                 ) -> tuple[TaskType, ...]:
    """The typical tasks of `workloads` (a cycle's work, pending and running, weighted by
    workers), where some scoring uses a fragmentation plugin without a mix of its own; else ()."""
    if not _wants_mix(config):
        return ()
    per_shape: dict[Shape, int] = {}
    for w in workloads:
        shape = Shape.of(w)
        per_shape[shape] = per_shape.get(shape, 0) + 1
    return _mix_of(per_shape, table)


def _wants_mix(config: SchedulerConfig) -> bool:
    scorings = [config.scoring, *config.queue_scoring.values()]
    return any(name in w and "workload" not in config.plugin_params.get(name, {})
               for w in scorings for name in FRAGMENTATION_PLUGINS)


def _mix_of(per_shape: Mapping[Shape, int], table: NodeTable) -> tuple[TaskType, ...]:
    gpu_nodes = table.gpu_memory[table.gpu_count > 0]
    typical_memory = int(np.median(gpu_nodes)) if gpu_nodes.size else 0
    return shape_mix(per_shape, typical_memory)
