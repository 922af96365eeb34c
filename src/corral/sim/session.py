"""The core, driven on capacity that persists between cycles.

`corral.core.schedule(state, now)` rebuilds the node table, re-adopts every running workload and
re-scores every node for every shape on each call: right for a control loop that runs every few
seconds, far too slow for a replay that runs a cycle at each of tens of thousands of events.

A `CoreSession` keeps what does not change between cycles (the node table, the capacity arrays,
the placer and its per-shape score caches, the scoring plugins) and opens each cycle on it: a
fresh `QueueBook` (deserved shares follow demand) carrying the usage of the last one, a fresh
`Statement` over the running workloads, and the pending workloads in the core's order, taken
from a `WarmStart` kept between cycles as the control plane keeps one (`schedule(..., warm=)`:
the waiting order and shapes follow what changed; tests/sim/test_warm_replay.py shows a replay's
results equal to sorting afresh each cycle). Then it runs `corral.core.cycle.decide`, the very
actions `schedule` runs. tests/sim/test_session.py
checks that a session and `schedule` decide the same on the same state.

Every reliance on the core's internals (Cycle's fields, Statement's and QueueBook's maps) is in
this module, so that a change in the core breaks one place, and the equivalence test says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain

from corral.core import nominations as N
from corral.core.config import SchedulerConfig
from corral.core.cycle import Cycle, decide, workload_mix
from corral.core.model import (
    MILLI_PER_GPU,
    Node,
    Nomination,
    Queue,
    WorkerAssignment,
    Workload,
    WorkloadState,
)
from corral.core.placement import Placer, Scoring
from corral.core.plugins import TaskType
from corral.core.queues import QueueBook, Totals
from corral.core.snapshot import Capacity, NodeTable
from corral.core.statement import Statement
from corral.core.warm_start import Opening, WarmStart

#: Reservation owners that mark a node out of service (failed, or a reclaimed spot node).
DOWN_PREFIX = "\x00down:"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one cycle changed: placements (id -> assignments) and evictions (id, rule)."""

    placed: dict[str, tuple[WorkerAssignment, ...]]
    evicted: list[tuple[str, str]]
    deserved: dict[str, float]  # deserved share of each queue, in GPUs, for this cycle
    #: the nominations in force after the cycle (`Plan.nominations`)
    nominations: tuple[Nomination, ...] = ()
    #: the workloads holding a reservation after the cycle (`Plan.reservations`' owners)
    reserved_for: tuple[str, ...] = ()


class CoreSession:
    def __init__(
        self, nodes: Sequence[Node], queues: Sequence[Queue], config: SchedulerConfig, seed: int = 0,
        warm: bool = True,
    ) -> None:
        self.table = NodeTable.build(nodes)
        self.cap = Capacity(self.table)
        self.placer = Placer(self.cap)
        self.queues = tuple(queues)
        self.config = config
        self.seed = seed
        sched = self.table.schedulable
        self.totals = Totals(
            int(self.table.gpu_count[sched].sum()) * MILLI_PER_GPU,
            int(self.table.cpu[sched].sum()),
            int(self.table.ram[sched].sum()),
        )
        self.book = QueueBook(self.queues, self.totals, {})
        self.scorings: dict[str, Scoring] = {}
        self.mix: tuple[TaskType, ...] = ()  # the workload mix the scorings were built with
        self.where: dict[str, tuple[WorkerAssignment, ...]] = {}  # running: assignments
        self.live: dict[str, Workload] = {}  # running: workloads (state RUNNING)
        self.started: set[str] = set()  # running when the current cycle began (= live between)
        #: the opening kept between cycles, as the control plane keeps it (`schedule(...,
        #: warm=)`): shapes, the waiting order, the shape counts follow what changed; None:
        #: every cycle sorts and shapes its work afresh (the cold path, the same decisions)
        self.warm = WarmStart() if warm else None
        #: node id -> the running workloads with a worker there (id -> how many workers), kept
        #: by a listener on every statement: a node's work without a pass over all that runs
        self.on_node: dict[str, dict[str, int]] = {}

    # -- one cycle --------------------------------------------------------------------------
    def cycle(self, now: float, pending: Iterable[Workload], demand: Mapping[str, int],
              usage: Mapping[str, float] | None = None,
              nominations: tuple[Nomination, ...] = (),
              reserved_for: tuple[str, ...] = ()) -> Outcome:
        """Run one scheduling cycle at `now` over `pending`; `demand` is each queue's requested
        milli-GPU (pending and running), from which deserved shares are divided; `usage` each
        queue's decayed GPU-seconds (`ClusterState.usage` of `schedule`; read only when the
        config's `usage_weight` > 0); `nominations` the room earlier cycles nominated and that
        has not expired (`ClusterState.nominations`): held during this cycle only;
        `reserved_for` who held a reservation after the last cycle (`ClusterState.reserved_for`,
        the last outcome's `reserved_for`)."""
        self._release_gang_reservations()
        book = QueueBook(self.queues, self.totals, demand, usage, self.config.usage_weight,
                         self.config.usage_half_life_s, self.config.share_units)
        for mine, last in ((book.milli, self.book.milli), (book.cpu, self.book.cpu),
                           (book.ram, self.book.ram)):
            mine.update(last)
        book.by_model.update(self.book.by_model)
        book.units_used.update(self.book.units_used)
        self.book = book
        pending = list(pending)
        # The kept opening is of the waiting work only: the running work lives in the
        # session's own capacity (never adopted anew), and the caller gives the demand.
        opening = self.warm.open(self.queues, pending) if self.warm is not None else None
        # the workload mix where a scoring asks for one (chained: no list of all the running
        # work is built for a config that asks for none)
        mix = workload_mix(self.config, chain(pending, self.live.values()), self.table)
        if mix != self.mix:  # scores for another mix: start the caches afresh, as `schedule` does
            self.mix, self.placer = mix, Placer(self.cap)
            self.scorings.clear()
        # The failure memo says "fails again until capacity is next returned"; but a failure
        # does more than fail: a big workload's first failure in a cycle is where it may take a
        # reservation (`try_place` -> `_maybe_reserve`), and whether it may changes between
        # cycles without capacity being returned (its reservation window opens, queue demand
        # moves). `schedule` starts each cycle with no memo; a memo carried from the last cycle
        # skipped that try, so the session reserved nothing where `schedule` reserved nodes,
        # and placed other work there (issue 10: bench/contention.py seed 4 diverged from
        # cycle 50,880 s on; its rerun evictions followed). The score caches stay: they are
        # keyed by node state, which is the same whatever came before.
        self.placer.failed.clear()
        stmt = self._statement(book)
        # `running` is what `schedule` adopted; the actions read the statement's maps instead,
        # so the session's own map serves (a change that iterated it while the statement
        # mutates it would fail loudly, in tests/sim/test_session.py).
        cycle = Cycle(now, self.config, self.seed, self.cap, self.placer, book, stmt, {},
                      self.live, attempts_left=self.config.max_eviction_attempts,
                      preempt_attempts_left=self.config.max_eviction_attempts,
                      moves_left=self.config.max_moves, scorings=self.scorings, workload_mix=mix)
        self._queue_up(cycle, pending, opening)
        cycle.nominated = nominations
        cycle.reserved_before = reserved_for
        decide(cycle)
        placed, evicted = stmt.outcome()
        holders = tuple(sorted(o for o in self.cap.reservations if not o.startswith(DOWN_PREFIX)))
        nominated = N.in_force(cycle, placed, evicted)
        N.release(cycle)  # the session's capacity outlives the cycle: held room goes back
        for op in evicted:
            self.started.discard(op.workload.id)
        for op in placed.values():
            self.live[op.workload.id] = replace(op.workload, state=WorkloadState.RUNNING,
                                                started_at=now, assignments=op.assignments)
            self.started.add(op.workload.id)
        return Outcome({wid: op.assignments for wid, op in placed.items()},
                       [(op.workload.id, op.rule) for op in evicted], dict(book.deserved),
                       nominated, holders)

    @staticmethod
    def _queue_up(cycle: Cycle, pending: list[Workload], opening: Opening | None) -> None:
        """The cycle's waiting work in order: from the kept opening, as `schedule`'s `_open`
        takes it (its shapes too), else sorted afresh (`add_pending`)."""
        if opening is None:
            cycle.add_pending(pending)
            return
        cycle.shapes, cycle._interned = opening.shapes, opening.interned
        cycle.queue_up(opening)  # sorted now where not kept (an unknown queue, an id twice)

    def _statement(self, book: QueueBook, in_cycle: bool = True) -> Statement:
        stmt = Statement(self.cap, book)
        # The statement works on the session's own maps: what it places or removes stays so.
        stmt.where, stmt.live = self.where, self.live
        if in_cycle:  # outside a cycle nobody asks who was running before it
            stmt.started = self.started
        stmt.listeners.append(self._moved)
        return stmt

    def _moved(self, w: Workload, assignments: tuple[WorkerAssignment, ...], sign: int) -> None:
        """A statement listener: `w` now holds (+1) or no longer holds (-1) `assignments`.
        Workers are counted, so a move that places before it removes on one node stays right."""
        for a in assignments:
            there = self.on_node.setdefault(a.node_id, {})
            left = there.get(w.id, 0) + sign
            if left:
                there[w.id] = left
            else:
                del there[w.id]

    def running_on(self, node_ids: Iterable[str]) -> list[Workload]:
        """The running workloads with a worker on any of `node_ids` (each once, by id)."""
        ids = {wid for n in node_ids for wid in self.on_node.get(n, ())}
        return [self.live[wid] for wid in sorted(ids)]

    def _release_gang_reservations(self) -> None:
        # `schedule` starts every cycle without reservations and makes them afresh; so does this.
        for owner in [o for o in self.cap.reservations if not o.startswith(DOWN_PREFIX)]:
            self.cap.release(owner)

    # -- outside a cycle --------------------------------------------------------------------
    def finish(self, workload_id: str) -> Workload:
        """A running workload ended (done, failed, or its node went away): free its capacity."""
        w = self.live[workload_id]
        self._statement(self.book, in_cycle=False).remove(w, "Finished", "")
        self.started.discard(workload_id)
        return w

    def node_down(self, node_id: str) -> list[str]:
        """Take a node out of service; returns the running workloads that were on it (still
        running: the caller stops them with `finish`)."""
        self.cap.reserve(DOWN_PREFIX + node_id, [self.table.index[node_id]])
        return sorted(self.on_node.get(node_id, ()))

    def node_up(self, node_id: str) -> None:
        self.cap.release(DOWN_PREFIX + node_id)

    def allocated_milli(self) -> int:
        return sum(a.milli_per_device * len(a.devices)
                   for assignments in self.where.values() for a in assignments)
