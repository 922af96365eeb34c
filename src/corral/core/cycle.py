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
    limit_reason,
    prune_reservations,
)
from corral.core.actions.heir_prospects import ElderKinds
from corral.core.actions.reservation_heirs import may_inherit, reservation_window
from corral.core.config import SchedulerConfig
from corral.core.explain import refine
from corral.core.fit import Shape
from corral.core.model import (
    MILLI_PER_GPU,
    ClusterState,
    Nomination,
    Workload,
    WorkloadKind,
    pending_order,
)
from corral.core.placement import Placer, Scoring
from corral.core.plan import Eviction, Placement, Plan, Reservation
from corral.core.plugins.fragmentation import FRAGMENTATION_PLUGINS, TaskType, shape_mix
from corral.core.queues import QueueBook, Totals
from corral.core.snapshot import BoolArray, Capacity, NodeTable
from corral.core.spread import NodeChooser, SpreadIndex
from corral.core.statement import Statement
from corral.core.victims import VictimIndex
from corral.core.warm_adoption import KeptAdoption
from corral.core.warm_start import WarmStart, in_order, intern_shape, scan


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

    def take_order(self, order: list[Workload], pending: dict[str, list[Workload]]) -> None:
        """What `add_pending` makes of the waiting work, kept between cycles (`warm_start`):
        `order` in the global order, `pending` per queue (in order of first appearance in it),
        every queue known."""
        self.order, self.pending = order, pending
        self.waiting = dict(zip(map(_ID, order), order, strict=True))

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
    return _close(cycle, orphans)


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
    if seen.pending is not None:
        cycle.take_order(seen.waiting, seen.pending)
        if seen.big is not None:
            cycle.big_at_open = (len(cycle.waiting), seen.big)
    else:
        cycle.add_pending(seen.waiting)
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


def _close(cycle: Cycle, orphans: int) -> Plan:
    placed, evicted = cycle.stmt.outcome()
    placements = [Placement(op.workload.id, op.workload.queue, op.assignments,
                            op.workload.id in cycle.backfilled) for op in placed.values()]
    evictions = [Eviction(op.workload.id, op.workload.queue, op.rule, op.for_workload,
                          R.eviction_message(op.rule, op.for_workload)) for op in evicted]
    diagnosis: dict[tuple[Shape, str | None], R.Reason] = {}
    limits: dict[tuple[str, Shape], R.Reason | None] = {}
    refinements: dict[tuple[str, Shape, bool, R.Reason], R.Reason] = {}
    reasons, where, waiting = cycle.reasons, cycle.stmt.where, cycle.waiting
    reserved_for, victims = cycle.cap.reservations, cycle.stmt.started
    # Below, a waiting workload's reason depends only on its queue, its shape and whether
    # reclaim was tried for it (each step is cached by no more than that), unless it holds a
    # reservation: a backlog of 100,000 gets its reasons from one lookup each.
    # keyed by the shape's identity (the cycle's interned shapes, alive all cycle): an int
    # hashes in C, a Shape calls `Shape.__hash__`, once per waiting workload
    alike: dict[tuple[str, int, bool], R.Reason] = {}
    tried_all, tried_ids = cycle.attempts_left > 0, cycle.reclaim_tried
    behind = _Behind(cycle)
    # The plan's reasons: those written during the cycle (in the order written), then those
    # written here; one pass over the backlog, not a second one to filter what was placed
    # or to tell big work it yields to reservations (`_Behind.told`).
    pending = {wid: behind.told(waiting.get(wid), found) if wid not in reserved_for else found
               for wid, found in reasons.items() if wid not in where and wid not in victims}
    for wid, shape in cycle.deferred.items():
        if wid in reasons or wid in where or wid in victims:
            continue  # placed, explained already, or evicted (the eviction says why)
        w = waiting.get(wid)
        if w is not None and wid not in reserved_for:
            known = alike.get((w.queue, id(shape), tried_all or wid in tried_ids))
            if known is not None:
                pending[wid] = behind.told(w, known)
                continue
        # The same for every waiting workload of this queue and shape (a waiting workload's
        # total is its shape's); a victim of this cycle (not waiting) only gets `never_fits`.
        limit_key = (w.queue if w else "", shape)
        if limit_key not in limits:
            limits[limit_key] = _limit_now(cycle, w, shape)
        limit = limits[limit_key]
        if limit is not None:
            found = limit
        else:
            found = _capacity_reason(cycle, w, wid, shape, diagnosis, refinements)
            if cycle.holds and w is not None:
                found = nominations.explain(cycle, w, shape, found)
        if w is not None and wid not in reserved_for:
            alike[(w.queue, id(shape), tried_all or wid in tried_ids)] = found
            found = behind.told(w, found)
        pending[wid] = found
    # insertion order is already deterministic (the order the cycle considered them)
    reservations = tuple(
        Reservation(owner, tuple(cycle.cap.table.nodes[i].id for i in nodes),
                    _held_until(cycle, owner))
        for owner, nodes in sorted(cycle.cap.reservations.items())
    )
    stats = {
        "placed": float(len(placements)),
        "evicted": float(len(evictions)),
        "pending": float(len(pending)),
        "orphaned": float(orphans),
        "free_gpus": float(np.clip(cycle.cap.free_milli, 0, None).sum()) / 1000,
    }
    return Plan(cycle.now, tuple(placements), tuple(evictions), pending, reservations, stats,
                nominations.in_force(cycle, placed, evicted))


def _capacity_reason(cycle: Cycle, w: Workload | None, wid: str, shape: Shape,
                     diagnosis: dict[tuple[Shape, str | None], R.Reason],
                     refinements: dict[tuple[str, Shape, bool, R.Reason], R.Reason]) -> R.Reason:
    """Why `wid` (waiting workload `w`, or a victim of this cycle when None) does not fit as
    the cycle ends: the capacity diagnosis (cached per shape), made specific by `refine`."""
    reserved_for = cycle.cap.reservations
    key = (shape, wid if wid in reserved_for else None)
    found = diagnosis.get(key)
    if found is None:
        found = diagnosis[key] = cycle.placer.diagnose(shape, wid)
    if w is not None and not found.unresolvable:
        # the same for every waiting workload of this queue and shape, reclaim tried or not
        tried = wid in cycle.reclaim_tried or cycle.attempts_left > 0
        refined_key = (w.queue, shape, tried, found)
        refined = refinements.get(refined_key)
        if refined is None:
            refined = refinements[refined_key] = refine(cycle, w, shape, found)
        found = refined
        if wid in reserved_for:
            found = _waiting_for_reservation(cycle, w, found)
    return found


def _waiting_for_reservation(cycle: Cycle, w: Workload, found: R.Reason) -> R.Reason:
    """The reason of a workload that holds a reservation: why it does not fit now, then which
    nodes drain towards it, what they still run, and until when the reservation lasts
    (`reservation_window`)."""
    table = cycle.cap.table
    nodes = cycle.cap.reservations[w.id]
    ids = {table.nodes[i].id for i in nodes}
    # one flat pass over what runs (20,000 workloads at 10,000 nodes), no generator per one
    occupants = sorted({wid for wid, held in cycle.stmt.where.items()
                        for a in held if a.node_id in ids})
    until = reservation_window(cycle.config, w.submitted_at, cycle.now)[1]
    names = ", ".join(occupants[:4]) + (f" and {len(occupants) - 4} more"
                                        if len(occupants) > 4 else "")
    return R.Reason(
        found.code,
        f"{found.message}; nodes {', '.join(sorted(ids))} are reserved for it and drain as "
        f"their work ends (waiting for {names or 'nothing: it fits next cycle'}); the "
        f"reservation holds for another {_seconds(until - cycle.now)}",
        (*found.details, ("reserved_nodes", tuple(sorted(ids))),
         ("waiting_for", tuple(occupants)), ("reserved_until", until)),
    )


def _held_until(cycle: Cycle, owner: str) -> float | None:
    """When `owner`'s reservation ends at the latest: the end of its window."""
    w = cycle.waiting.get(owner)
    return None if w is None else reservation_window(cycle.config, w.submitted_at, cycle.now)[1]


class _Behind:
    """The reason of a big waiting workload that holds no reservation (more than one worker or
    GPU: the work a reservation's nodes are held from).

    Its sentence does not say whether reservations are held, nor by whom: that changes when a
    reservation is made, passes on or ends, and a stored sentence that said so was rewritten
    for every big waiting workload each time (13,835 rows a place step at 10,000 nodes, issue
    16). Its details say it yields to reservations (`reasons.YIELDS_TO_RESERVATIONS`, stored
    with the sentence: `reasons.stored_refs`) and name the holders of this cycle and until
    when (`reservation_held_by`, `held_until`); the API adds those in force at read time
    (`corral.api.views.reason_now`). Only a holder's heir (`reservation_heirs.heirs`: submitted more
    than a window before it, in its queue only at its priority or higher) is told in words
    when it takes that slot, naming no holder. Built once a cycle; the reasons are shared by
    every workload with the same found reason and heir's slot, as the found reasons are."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self.holders: list[tuple[Workload, float]] = []
        for holder in sorted(cycle.cap.reservations):
            h = cycle.waiting.get(holder)
            if h is not None:
                self.holders.append(
                    (h, reservation_window(cycle.config, h.submitted_at, cycle.now)[1]))
        self.details: tuple[tuple[str, object], ...] = ((R.YIELDS_TO_RESERVATIONS, True), *(
            d for h, until in self.holders
            for d in ((R.RESERVATION_HELD_BY, h.id), ("held_until", until))))
        self.made: dict[tuple[int, str | None, float | None], R.Reason] = {}

    def told(self, w: Workload | None, found: R.Reason) -> R.Reason:
        """`found` as waiting `w` (holding no reservation) hears it: big work yields."""
        if w is None or found.unresolvable or not (w.workers > 1 or w.resources.gpus > 1):
            return found
        return self.reason(w, found)

    def reason(self, w: Workload, found: R.Reason) -> R.Reason:
        cfg, now = self.cycle.config, self.cycle.now
        heir_of: tuple[str, float] | None = None
        for h, _ in self.holders:
            if may_inherit(cfg, h, w):
                open_now, change = reservation_window(cfg, w.submitted_at, now)
                heir_of = (h.id, now if open_now else change)
                break
        key = (id(found), *(heir_of or (None, None)))
        made = self.made.get(key)
        if made is None:
            made = self.made[key] = self._make(found, heir_of)
        return made

    def _make(self, found: R.Reason, heir_of: tuple[str, float] | None) -> R.Reason:
        if heir_of is None:
            return R.Reason(found.code, found.message, (*found.details, *self.details))
        holder, at = heir_of
        when = ("from the next cycle on (its own reservation window is open)"
                if at == self.cycle.now else f"at t={at:.0f}, when its own reservation window opens")
        text = (f"; submitted more than {_seconds(self.cycle.config.max_reservation_s)} before "
                f"the holder of nodes reserved ahead of it, it takes that slot {when}, unless a "
                "queue limit or an owed queue stops it")
        return R.Reason(found.code, found.message + text,
                        (*found.details, *self.details, ("heir_of", holder), ("takes_slot_at", at)))


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def _limit_now(cycle: Cycle, w: Workload | None, shape: Shape) -> R.Reason | None:
    """Unresolvable, or stopped by a queue limit, as the cycle ends: these come first."""
    never = cycle.placer.never_fits(shape)
    if never is not None or w is None:
        return never
    blocking = cycle.book.limit_blocking(w.queue, w.total_milli())
    if blocking is None:
        return None
    used = cycle.book.milli[blocking.name] / MILLI_PER_GPU
    return limit_reason(w, blocking.name, blocking.limit_gpus or 0.0, w.total_milli(), used)
