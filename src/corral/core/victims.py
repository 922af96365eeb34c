"""Which running work an eviction may take, indexed by queue and node, kept current.

Reclaim and preempt ask, for one pending workload, "on which nodes could evicting work of
these queues make room, and who is there?". Filtering every live workload per request is
O(pending x running); this index answers from a (queue x node) array of the GPU share held by
displaceable work, updated by each change of the cycle's statement (a listener), so a request
costs O(queues x nodes) in numpy plus the few nodes it then tries.

Two kinds of displaceable work are kept apart: `held` (preemptible and past its minimum
runtime: may be evicted now) and `young` (preemptible but inside its minimum runtime: only
named in a reason, never evicted).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import numpy as np

from corral.core.model import WorkerAssignment, Workload
from corral.core.snapshot import BoolArray, IntArray, NodeTable


class VictimIndex:
    def __init__(self, table: NodeTable, queues: Iterable[str], now: float,
                 started: Collection[str] = frozenset()) -> None:
        self.table, self.now = table, now
        self.started = started  # running when the cycle began (the statement's set)
        self.queue_row = {q: i for i, q in enumerate(sorted(queues))}
        shape = (len(self.queue_row), len(table))
        self.held: IntArray = np.zeros(shape, dtype=np.int64)
        self.young: IntArray = np.zeros(shape, dtype=np.int64)
        #: per node, GPU share of work consolidation may move (`may_move`): moving a gang
        #: would restart every worker
        self.movable: IntArray = np.zeros(len(table), dtype=np.int64)
        #: per node, the displaceable workloads on it now (old and young), by id
        self.on_node: dict[int, dict[str, Workload]] = {}
        #: per node, the running work that may not be evicted (not preemptible, or of a queue
        #: with no row here), by id: with
        #: `on_node`, every workload a reservation there waits for (`actions/slot_nodes.py`)
        self.fixed_on_node: dict[int, set[str]] = {}
        #: per node, how many times what is on it changed: a key for memos of a node's victims
        self.node_version: dict[int, int] = {}
        #: `evict._loss` per (node, donor queues, share to free): (the node's version, the loss)
        self.loss_memo: dict[tuple[int, frozenset[str], int], tuple[int, tuple[int, float]]] = {}

    def fill(self, live: Iterable[tuple[Workload, tuple[WorkerAssignment, ...]]]) -> None:
        """`changed(w, assignments, +1)` for each of `live`, each array summed in one numpy
        call: an element update of a numpy array costs about as much as the rest of a
        workload's bookkeeping (29,000 running workloads at 10,000 nodes). Integer sums, so
        the arrays equal those of the one-by-one updates; the dictionaries fill in the same
        order."""
        index, on_node, version = self.table.index, self.on_node, self.node_version
        # (queue rows, nodes, milli) for `held`, for `young`; (nodes, milli) for `movable`
        held: tuple[list[int], list[int], list[int]] = ([], [], [])
        young: tuple[list[int], list[int], list[int]] = ([], [], [])
        movable: tuple[list[int], list[int]] = ([], [])
        for w, assignments in live:
            row = self.queue_row.get(w.queue)
            if not w.preemptible or row is None:  # not evictable: a reservation waits for it
                self._fixed(w, assignments, 1)
                continue
            old = self.past_min_runtime(w)
            cells = held if old else young
            moves = old and w.workers == 1 and self._moves_next_cycle(w)
            for a in assignments:
                node = index[a.node_id]
                milli = a.milli_per_device * len(a.devices)
                cells[0].append(row)
                cells[1].append(node)
                cells[2].append(milli)
                if moves:
                    movable[0].append(node)
                    movable[1].append(milli)
                on_node.setdefault(node, {})[w.id] = w
                version[node] = version.get(node, 0) + 1
        np.add.at(self.held, (held[0], held[1]), held[2])
        np.add.at(self.young, (young[0], young[1]), young[2])
        np.add.at(self.movable, movable[0], movable[1])

    def changed(self, w: Workload, assignments: tuple[WorkerAssignment, ...], sign: int) -> None:
        """A statement listener: `w` now holds (+1) or no longer holds (-1) `assignments`."""
        row = self.queue_row.get(w.queue)
        if not w.preemptible or row is None:  # not evictable: a reservation waits for it
            self._fixed(w, assignments, sign)
            return
        old = self.past_min_runtime(w)
        target = self.held if old else self.young
        index = self.table.index
        for a in assignments:
            node = index[a.node_id]
            milli = sign * a.milli_per_device * len(a.devices)
            target[row, node] += milli
            if old and w.workers == 1 and self._moves_next_cycle(w):
                self.movable[node] += milli
            there = self.on_node.setdefault(node, {})
            self.node_version[node] = self.node_version.get(node, 0) + 1
            if sign > 0:
                there[w.id] = w
            else:
                there.pop(w.id, None)

    def _fixed(self, w: Workload, assignments: tuple[WorkerAssignment, ...], sign: int) -> None:
        for a in assignments:
            there = self.fixed_on_node.setdefault(self.table.index[a.node_id], set())
            if sign > 0:
                there.add(w.id)
            else:
                there.discard(w.id)

    def past_min_runtime(self, w: Workload) -> bool:
        return w.started_at is None or self.now - w.started_at >= w.min_runtime_s

    def may_move(self, w: Workload) -> bool:
        """Whether consolidation may move `w`: one worker, past its minimum runtime, and not
        a placement of this cycle that has a minimum runtime."""
        return w.workers == 1 and self.past_min_runtime(w) and self._moves_next_cycle(w)

    def _moves_next_cycle(self, w: Workload) -> bool:
        # A placement of this cycle with a minimum runtime is inside it from the moment it
        # starts: the next cycle may not move it, so this one neither moves it nor counts it
        # when it ranks nodes by what could move (the first `_MAX_NODES` are tried). Counted,
        # it pushed the node a rerun on the applied result then emptied for a waiting
        # preemption victim out of the tried nodes (issue 10, bench/contention.py seed 4).
        # Unplacing it for reclaim or preemption stays allowed (`held`): that is free.
        return w.id in self.started or w.min_runtime_s <= 0

    def rows(self, queues: Iterable[str]) -> BoolArray:
        mask = np.zeros(len(self.queue_row), dtype=np.bool_)
        for q in queues:
            row = self.queue_row.get(q)
            if row is not None:
                mask[row] = True
        return mask

    def evictable(self, rows: BoolArray, young: bool = False) -> IntArray:
        """GPU share (milli) per node that work of the queues in `rows` could give up now
        (with `young`, also work inside its minimum runtime)."""
        total = self.held[rows].sum(axis=0)
        if young:
            total = total + self.young[rows].sum(axis=0)
        return np.asarray(total, dtype=np.int64)
