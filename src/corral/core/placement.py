"""Where one workload goes: filters, scores, topology domains, devices.

Two paths, because they have different costs:

- **One worker** (most workloads): the placer keeps, per shape and scoring policy, the score of
  every node (-inf where it does not fit). Between two workloads only a few nodes change, so it
  re-scores just those (read from `Capacity.changes`) and takes the argmax: no loop over every
  (workload, node) pair.
- **A gang**: count how many workers fit on each node, add them up per topology domain from the
  tightest level the gang allows (NVLink domain, rack, zone, region) and pick the domain that
  fits with the least left over (best fit, then cheaper); fill its best-scoring nodes first.

Placement never changes capacity; the caller applies the result through a `Statement`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from corral.core import diagnosis
from corral.core import reasons as R
from corral.core.fit import Shape, static_mask, worker_slots, worker_slots_one
from corral.core.model import (
    MILLI_PER_GPU,
    TopologyLevel,
    WorkerAssignment,
    WorkerResources,
    Workload,
)
from corral.core.scoring import Scoring as Scoring  # re-exported: callers import it with Placer
from corral.core.snapshot import BoolArray, Capacity, FloatArray, IntArray
from corral.core.spread import NodeChooser


class _DynamicScores:
    """The changing part of every node's score (fit and the dynamic plugins; -inf where one
    worker does not fit now or the node is reserved) for one worker's resources under one
    state-local scoring (`Scoring.state_local`).

    Those plugins read nothing of a shape but its per-worker resources, so every shape with
    these resources (models, price caps, capacity kinds, gang sizes differ) shares this array:
    a node that changed is re-scored once here, not once per shape that looks at it next, and a
    shape seen for the first time needs no scoring at all (`_ShapeCache` adds its fixed scores
    under its static mask). Exact: a node's score never depends on the other nodes scored with
    it, nor on which sibling shape asked first."""

    def __init__(self, placer: Placer, shape: Shape, scoring: Scoring) -> None:
        self.shape, self.scoring, self.placer = shape, scoring, placer
        self.by_state = placer.state_memo(shape, scoring)
        self.values = np.full(len(placer.cap.table), -np.inf)
        self.nodes = np.flatnonzero(placer.cap.table.schedulable)  # a superset of every mask
        self.schedulable: list[bool] = placer.cap.table.schedulable.tolist()
        self.pos = len(placer.cap.changes)
        if self.nodes.size:
            self.values[self.nodes] = _dynamic(placer.cap, shape, scoring, self.nodes)

    def refresh(self, cap: Capacity) -> None:
        pending = len(cap.changes) - self.pos
        if not pending:
            return
        if pending > len(self.values) // 8:
            nodes = self.nodes
        else:
            ok = self.schedulable
            changed = [n for n in set(cap.changes[self.pos :]) if ok[n]]
            if self.by_state is not None and len(changed) <= _BY_STATE:
                self.pos = len(cap.changes)
                self._refresh_by_state(cap, changed)
                return
            nodes = np.array(sorted(changed), dtype=np.int64)
        self.pos = len(cap.changes)
        if nodes.size:
            self.values[nodes] = _dynamic(cap, self.shape, self.scoring, nodes)

    def _refresh_by_state(self, cap: Capacity, nodes: list[int]) -> None:
        assert self.by_state is not None
        memo, state_key, values = self.by_state, self.placer.state_key, self.values
        missing: list[int] = []
        keys: list[tuple[object, ...]] = []
        reserved = cap.reserved
        for n in nodes:
            if reserved[n]:  # not part of the state: never memoised
                values[n] = -np.inf
                continue
            key = state_key(n)
            value = memo.get(key)
            if value is None:
                missing.append(n)
                keys.append(key)
            else:
                values[n] = value
        if missing:
            found = _dynamic_rows(cap, self.shape, self.scoring, missing)
            values[missing] = found
            if len(memo) + len(keys) > _STATES:  # bounded: start over rather than grow
                memo.clear()
            memo.update(zip(keys, found, strict=True))


def _dynamic_rows(cap: Capacity, shape: Shape, scoring: Scoring, nodes: list[int]
                  ) -> list[float]:
    """`_dynamic` of a few nodes: in plain Python where the scoring can (`Scoring.dynamic_one`;
    a numpy call costs microseconds however few nodes it reads), else through numpy."""
    if scoring.dynamic_one is None or len(nodes) > _PLAIN or not _ONE_NODE:
        return list(_dynamic(cap, shape, scoring, np.array(nodes, dtype=np.int64)).tolist())
    r, reserved = shape.resources, cap.reserved
    return [scoring.score_one(cap, shape, n)
            if not reserved[n] and worker_slots_one(cap, r, n) >= 1 else -np.inf
            for n in nodes]


def _dynamic(cap: Capacity, shape: Shape, scoring: Scoring, nodes: IntArray) -> FloatArray:
    """The changing part of the score of `nodes`: -inf where one worker of `shape` does not fit
    now (or the node is reserved)."""
    ok = worker_slots(cap, shape.resources, nodes) >= 1
    ok &= ~cap.reserved[nodes]
    out = np.full(nodes.shape, -np.inf)
    if ok.any():
        out[ok] = scoring.score(cap, shape, nodes[ok], local=True, static=False)
    return out


class _ShapeCache:
    """Scores of every node for one (shape, scoring); -inf where the shape does not fit.

    A score is the shape's fixed part (plugins that read only a node's fixed attributes, such
    as price and model: computed once) plus its changing part. Under a state-local scoring the
    changing part comes from the `_DynamicScores` this shape shares with every shape of the same
    worker resources: a refresh copies the nodes that changed since this shape last looked, and
    scores nothing itself. Otherwise the shape re-scores the nodes that changed (`_dynamic`).
    Exact: a node's score never depends on the other nodes scored with it."""

    def __init__(self, placer: Placer, shape: Shape, scoring: Scoring) -> None:
        self.shape, self.scoring = shape, scoring
        self.placer = placer
        self.static = placer.static(shape)
        self.static_list: list[bool] = self.static.tolist()  # read node by node: no numpy scalars
        self.shared = placer.dynamic_scores(shape, scoring)
        self.scores = np.full(len(placer.cap.table), -np.inf)
        # Scores of plugins that read only a node's fixed attributes (price, model) never
        # change during the cycle: computed once here, added on every refresh.
        self.fixed = np.zeros(len(placer.cap.table))
        self.nodes = np.flatnonzero(self.static)
        self.fixed[self.nodes] = scoring.score(placer.cap, shape, self.nodes, local=True,
                                               static=True)
        self.pos = 0
        self.refresh(placer.cap, full=True)

    def refresh(self, cap: Capacity, full: bool = False) -> None:
        if self.shared is not None:
            self.shared.refresh(cap)
        pending = len(cap.changes) - self.pos
        if full or pending > len(self.scores) // 8:
            nodes = self.nodes
        elif pending:
            static = self.static_list
            changed = [n for n in set(cap.changes[self.pos :]) if static[n]]
            nodes = np.array(sorted(changed), dtype=np.int64)
        else:
            return
        self.pos = len(cap.changes)
        if not nodes.size:
            return
        if self.shared is not None:
            self.scores[nodes] = self.shared.values[nodes] + self.fixed[nodes]
        else:
            self.scores[nodes] = _dynamic(cap, self.shape, self.scoring, nodes) + self.fixed[nodes]


#: share the changing part of scores (`_DynamicScores`) and free worker slots
#: (`Placer.slots`) between shapes of the same worker resources; tests turn it off to check
#: that the plans are those of scores and slots computed per shape and per call
_SHARE_ACROSS_SHAPES = True
_BY_STATE = 64  # at most this many changed nodes are re-scored through the state memo
#: score memo misses one node at a time in plain Python (`_dynamic_rows`); tests turn it off
#: to check that the plans are those of numpy's scores
_ONE_NODE = True
_PLAIN = 64  # at most this many memo misses are scored in plain Python at once
_STATES = 1 << 16  # states remembered per shape cache


class Placer:
    """Finds placements on a `Capacity`; caches per shape. One per scheduling cycle."""

    def __init__(self, cap: Capacity) -> None:
        self.cap = cap
        # Nodes alike in everything a state-local score reads that never changes (model, GPU
        # count and memory, CPU, RAM) share a class; see `state_key`.
        t = cap.table
        fixed = np.stack([t.model, t.gpu_count, t.gpu_memory, t.cpu, t.ram]) if len(t) else None
        self._node_class: list[int] = (
            np.unique(fixed, axis=1, return_inverse=True)[1].reshape(-1).tolist()
            if fixed is not None else []
        )
        self._static: dict[Shape, BoolArray] = {}
        self._caches: dict[tuple[Shape, str], _ShapeCache] = {}
        #: (shape, scoring key, owner if it holds a reservation) -> `Capacity.freed` when it
        #: last failed: it fails again until capacity is next returned (`known_to_fail`)
        self.failed: dict[tuple[Shape, str, str | None], int] = {}
        self._never: dict[Shape, R.Reason | None] = {}
        self._offered: frozenset[str] | None = None
        self._by_state: dict[tuple[WorkerResources, str], dict[tuple[object, ...], float]] = {}
        self._dynamic: dict[tuple[WorkerResources, str], _DynamicScores] = {}
        self._slots: dict[WorkerResources, tuple[IntArray, int]] = {}  # see `slots`
        self._rooms: dict[tuple[object, ...], tuple[tuple[int, int], tuple[int, int, int]]] = {}
        self._picks: dict[tuple[WorkerResources, str], dict[tuple[object, ...], tuple[int, ...] | None]] = {}

    def state_memo(self, shape: Shape, scoring: Scoring) -> dict[tuple[object, ...], float] | None:
        """Changing part of the score by node state, for `shape`'s worker resources under
        `scoring`, or None where the scoring is not state-local. Shapes that differ only in what
        the static filters and scores decide (models, price cap, gang size, topology) share it:
        state-local plugins read nothing of a shape but its per-worker resources."""
        if not scoring.state_local:
            return None
        return self._by_state.setdefault((shape.resources, scoring.key), {})

    def dynamic_scores(self, shape: Shape, scoring: Scoring) -> _DynamicScores | None:
        """The changing part of node scores shared by every shape with `shape`'s worker
        resources under `scoring` (see `_DynamicScores`), or None where the scoring is not
        state-local (each shape then scores its own nodes)."""
        if not scoring.state_local or not _SHARE_ACROSS_SHAPES:
            return None
        key = (shape.resources, scoring.key)
        found = self._dynamic.get(key)
        if found is None:
            found = self._dynamic[key] = _DynamicScores(self, shape, scoring)
        return found

    def pick(self, shape: Shape, scoring: Scoring, node: int) -> tuple[int, ...] | None:
        """Devices for one worker of `shape` on `node` (the scoring's picker), memoised by node
        state where the scoring is state-local: the pickers read nothing else."""
        if not scoring.state_local:
            return scoring.picker.pick(self.cap, shape, node)
        memo = self._picks.setdefault((shape.resources, scoring.key), {})
        key = self.state_key(node)
        if key in memo:
            return memo[key]
        if len(memo) >= _STATES:
            memo.clear()
        devices = memo[key] = scoring.picker.pick(self.cap, shape, node)
        return devices

    def state_key(self, node: int) -> tuple[object, ...]:
        """Everything a fit test or a state-local score reads of `node`: its class and its free
        CPU, RAM, and share and memory per device. Reservations are not part of it."""
        return (self._node_class[node], *self.cap.state_of(node))

    def offered_models(self) -> frozenset[str]:
        """GPU models some schedulable node offers (the same for every shape: found once)."""
        if self._offered is None:
            t = self.cap.table
            self._offered = frozenset(
                t.model_names[c] for c in np.unique(t.model[t.schedulable]).tolist())
        return self._offered

    def never_fits(self, shape: Shape) -> R.Reason | None:
        """The unresolvable reason why `shape` can never fit this pool, if there is one."""
        if shape not in self._never:
            self._never[shape] = diagnosis.never_fits(self, shape)
        return self._never[shape]

    def static(self, shape: Shape) -> BoolArray:
        mask = self._static.get(shape)
        if mask is None:
            key = shape.single
            mask = self._static.get(key)
            if mask is None:
                mask = self._static[key] = static_mask(self.cap.table, shape)
            self._static[shape] = mask
        return mask

    def known_to_fail(self, shape: Shape, scoring: Scoring, owner: str) -> bool:
        """True when this shape failed since capacity was last returned: it fails again."""
        key = (shape, scoring.key, owner if owner in self.cap.reservations else None)
        return self.failed.get(key) == self.cap.freed

    def skip_known_failures(
        self, work: Sequence[Workload], i: int, scoring: Scoring,
        shape_of: Callable[[Workload], Shape], set_aside: dict[str, Shape],
        shapes: Mapping[str, Shape] | None = None,
    ) -> int:
        """Set aside `work[i:]` up to the first workload not `known_to_fail`; return its index.

        Once the pool is full, nearly all of a large backlog is known to fail: this is the same
        test as `known_to_fail`, in one loop instead of a few calls per workload. `shapes`: the
        shapes already known by workload id (read directly; `shape_of` for the others)."""
        shapes = shapes if shapes is not None else {}
        failed, freed, reserved = self.failed, self.cap.freed, self.cap.reservations
        key = scoring.key
        n = len(work)
        # Shapes seen failing in this call, by object identity: nothing fails or is freed
        # while it runs, and an int is hashed in C where a Shape key calls `Shape.__hash__`.
        failing: set[int] = set()
        while i < n:
            w = work[i]
            wid = w.id
            shape = shapes.get(wid) or shape_of(w)
            if wid in reserved:  # a reservation's owner fails on its own
                if failed.get((shape, key, wid)) != freed:
                    break
            elif id(shape) not in failing:
                if failed.get((shape, key, None)) != freed:
                    break
                failing.add(id(shape))
            set_aside[wid] = shape
            i += 1
        return i

    def place(
        self, shape: Shape, scoring: Scoring, owner: str, choose: NodeChooser | None = None
    ) -> tuple[WorkerAssignment, ...] | None:
        """Assignments for every worker of `owner`, or None if it does not fit now.

        A failure is remembered until capacity is next returned (`Capacity.freed`): in an
        allocate pass capacity only shrinks, so the same shape fails again without a search.
        `choose` (a spread group's, `SpreadIndex.chooser`) picks a one-worker placement's node
        among those it fits on instead of the best score; it never decides whether it fits.
        """
        fail_key = (shape, scoring.key, owner if owner in self.cap.reservations else None)
        if self.failed.get(fail_key) == self.cap.freed:
            return None
        if shape.workers == 1 and fail_key[2] is None:
            result = self._place_one(shape, scoring, choose)
        else:
            result = self._place_gang(shape, scoring, owner, choose)
        if result is None:
            self.failed[fail_key] = self.cap.freed
        return result

    def _place_one(self, shape: Shape, scoring: Scoring, choose: NodeChooser | None
                   ) -> tuple[WorkerAssignment, ...] | None:
        key = (shape, scoring.key)
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = _ShapeCache(self, shape, scoring)
        else:
            cache.refresh(self.cap)
        scores = cache.scores
        if choose is not None or not scoring.node_local:
            feasible = np.flatnonzero(np.isfinite(scores))
            if feasible.size == 0:
                return None
            total = scores[feasible]
            if not scoring.node_local:
                total = total + scoring.score(self.cap, shape, feasible, local=False)
            node = choose(feasible, total) if choose else int(feasible[np.argmax(total)])
        else:
            node = int(np.argmax(scores))
            if not np.isfinite(scores[node]):
                return None
        return self._assign(shape, scoring, [(node, 1)])

    def _place_gang(
        self, shape: Shape, scoring: Scoring, owner: str, choose: NodeChooser | None = None
    ) -> tuple[WorkerAssignment, ...] | None:
        nodes = self.usable(shape, owner)
        slots = (self.slots(shape.resources)[nodes] if _SHARE_ACROSS_SHAPES
                 else worker_slots(self.cap, shape.resources, nodes))
        keep = slots > 0
        nodes, slots = nodes[keep], slots[keep]
        if int(slots.sum()) < shape.workers:
            return None
        if choose is not None and shape.workers == 1:
            # one worker (here because it holds a reservation): every node it fits on is a
            # domain of its own, so the spread group's choice is the whole decision
            node = choose(nodes, scoring.score(self.cap, shape, nodes))
            return self._assign(shape, scoring, [(node, 1)])
        for level in range(int(shape.required_level) + 1):
            chosen = self._best_domain(nodes, slots, TopologyLevel(level), shape.workers,
                                       self._domain_scores(shape, scoring, nodes))
            if chosen is not None:
                picks = self._fill(shape, scoring, nodes[chosen], slots[chosen])
                return self._assign(shape, scoring, picks)
        return None

    def slots(self, r: WorkerResources) -> IntArray:
        """`worker_slots` of every node for workers of `r` now, kept per resources and updated
        only for the nodes that changed since it was last asked (a gang's search then reads
        the nodes it may use instead of recounting them all). Read it, never write it."""
        found = self._slots.get(r)
        cap = self.cap
        # (a log shorter than where it was read: counted inside `Capacity.scratch`, undone)
        if found is None or found[1] > len(cap.changes):
            slots = worker_slots(cap, r, np.arange(len(cap.table)))
            self._slots[r] = (slots, len(cap.changes))
            return slots
        slots, pos = found
        if pos != len(cap.changes):
            changed = np.array(sorted(set(cap.changes[pos:])), dtype=np.int64)
            slots[changed] = worker_slots(cap, r, changed)
            self._slots[r] = (slots, len(cap.changes))
        return slots

    def usable(self, shape: Shape, owner: str) -> IntArray:
        return np.flatnonzero(self.static(shape) & ~self.cap.blocked_for(owner))

    def _domain_scores(self, shape: Shape, scoring: Scoring, nodes: IntArray
                       ) -> FloatArray | None:
        """Node scores that must steer a gang's choice of domain, or None. Only for a shape that
        states its throughput per model: a gang confined to one domain (a region of one GPU
        model, say) gains or loses its speed with the domain, so the throughput plugin's
        preference must pick the domain, not only the nodes inside it."""
        if not shape.throughput:
            return None
        return scoring.score(self.cap, shape, nodes, static=True)

    def _best_domain(
        self, nodes: IntArray, slots: IntArray, level: TopologyLevel, workers: int,
        scores: FloatArray | None = None,
    ) -> BoolArray | None:
        dom = self.cap.table.domain(level)[nodes]
        per_dom = np.bincount(dom, weights=slots)
        fits = np.flatnonzero(per_dom >= workers)
        if fits.size == 0:
            return None
        price = np.bincount(dom, weights=self.cap.table.price[nodes]) / np.maximum(
            np.bincount(dom), 1
        )
        # Best fit first (least left over keeps big domains whole for big gangs), then cheaper,
        # then the lowest code, which is deterministic. With `scores`, the domain whose best
        # node scores highest comes before all of that.
        keys = [fits, price[fits], per_dom[fits] - workers]
        if scores is not None:
            best = np.full(per_dom.shape, -np.inf)
            np.maximum.at(best, dom, scores)
            keys.append(-np.round(best[fits], 9))
        order = np.lexsort(keys)
        return np.asarray(dom == fits[order[0]], dtype=np.bool_)

    def _fill(
        self, shape: Shape, scoring: Scoring, nodes: IntArray, slots: IntArray
    ) -> list[tuple[int, int]]:
        scores = scoring.score(self.cap, shape, nodes)
        order = np.lexsort((nodes, -scores))
        picks: list[tuple[int, int]] = []
        remaining = shape.workers
        for i in order:
            take = int(min(slots[i], remaining))
            picks.append((int(nodes[i]), take))
            remaining -= take
            if remaining == 0:
                break
        return picks

    def _assign(
        self, shape: Shape, scoring: Scoring, picks: Sequence[tuple[int, int]]
    ) -> tuple[WorkerAssignment, ...] | None:
        r, table = shape.resources, self.cap.table
        if len(picks) == 1 and picks[0][1] == 1:  # one worker: nothing to try on a scratch copy
            node = picks[0][0]
            devices = self.pick(shape, scoring, node)
            if devices is None:
                return None
            return (_assignment(0, table.nodes[node].id, devices, r, int(table.gpu_memory[node])),)
        if r.gpus and getattr(scoring.picker, "whole_lowest_first", False):
            return self._assign_whole(shape, picks)
        out: list[WorkerAssignment] = []
        with self.cap.scratch([n for n, _ in picks]):
            for node, count in picks:
                for _ in range(count):
                    devices = self.pick(shape, scoring, node)
                    if devices is None:
                        return None
                    a = _assignment(
                        len(out), table.nodes[node].id, devices, r, int(table.gpu_memory[node])
                    )
                    self.cap.take(node, a, r.cpu_milli, r.memory_mib)
                    out.append(a)
        return tuple(out)

    def _assign_whole(
        self, shape: Shape, picks: Sequence[tuple[int, int]]
    ) -> tuple[WorkerAssignment, ...] | None:
        """Whole-GPU workers under a picker that takes the lowest-index untouched devices: the
        `count` workers on a node take its untouched devices in order, `gpus` each, which is
        what picking them one at a time on a scratch copy gives, without the copy. `count`
        came from `worker_slots`, which has checked CPU and RAM for all of them."""
        r, table, cap = shape.resources, self.cap.table, self.cap
        out: list[WorkerAssignment] = []
        for node, count in picks:
            free = np.flatnonzero(cap.free_milli[node] == MILLI_PER_GPU).tolist()
            if len(free) < count * r.gpus:
                return None
            node_id, mem = table.nodes[node].id, int(table.gpu_memory[node])
            for k in range(count):
                devices = tuple(free[k * r.gpus : (k + 1) * r.gpus])
                out.append(WorkerAssignment(len(out), node_id, devices, MILLI_PER_GPU, mem))
        return tuple(out)

    # -- explanations (corral.core.diagnosis) ---------------------------------------------------
    def diagnose(self, shape: Shape, owner: str) -> R.Reason:
        """Why `shape` does not fit now: the most specific reason, unresolvable ones first."""
        return diagnosis.diagnose(self, shape, owner)

    def room(self, shape: Shape, owner: str) -> tuple[int, int, int]:
        """Free room for one worker of `shape` now, in workers: the largest free domain of its
        level (all nodes it may use; those not reserved for others), and the total not reserved
        for others. The same for every gang size, so kept per capacity state: a backlog of
        gangs of 2-32 workers is diagnosed with one count per worker shape."""
        cap = self.cap
        key = (shape.single, shape.required_level, owner if owner in cap.reservations else None)
        state = (len(cap.changes), cap.freed)
        found = self._rooms.get(key)
        if found is None or found[0] != state:
            found = self._rooms[key] = (state, diagnosis.free_room(self, shape, owner))
        return found[1]


def _assignment(
    index: int, node_id: str, devices: tuple[int, ...], r: WorkerResources, device_mem: int
) -> WorkerAssignment:
    if r.gpus:
        return WorkerAssignment(index, node_id, devices, MILLI_PER_GPU, device_mem)
    if r.fractional:
        milli = r.nominal_milli(device_mem)
        mem = max(r.gpu_memory_mib, device_mem * r.gpu_milli // MILLI_PER_GPU)
        return WorkerAssignment(index, node_id, devices, milli, mem)
    return WorkerAssignment(index, node_id, (), 0, 0)
