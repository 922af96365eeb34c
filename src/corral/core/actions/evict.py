"""Reclaim and preempt: start pending work by stopping running work, by two different rules.

- **Reclaim** (between queues): a queue that would still be within its quota takes GPUs back
  from queues running above theirs, siblings included. GPUs move between the two branches of
  the queue tree below their common ancestor: on the requester's side every queue must stay
  within its quota afterwards, on the victim's side every queue must stay at or above its quota
  (the common ancestors lose nothing and are not checked), so the two cannot take GPUs back and
  forth. "Above quota" is judged as the cycle's actions begin: when this cycle's allocation
  lifted a queue above its quota, reclaim takes back that new placement (nothing has started),
  never its running work.
- **Preempt** (inside a queue): higher priority stops strictly lower priority.

**Which victims**: the eviction set is chosen for the request, not by a fixed victim order.
From the index of displaceable work (`corral.core.victims`), the nodes (for a gang: the
topology domain) where evicting allowed work could make room are ranked by how much must go
(least first); on each candidate, its victims go cheapest first (lowest priority, most
recently started), the requester is tried after each, and the first candidate where it fits
wins. So one node's worth owed is taken from one node, not one GPU from every node. Where a
cheaper value class would do (an elastic job's extras, below every user priority), a gang's
domain is emptied where those are first (`victim_value.by_value`), and a single worker's node
is not judged by a gang's worker its one-worker victims make room without (`_loss`). Victims
whose exact devices are still free afterwards are put back (the eviction was not needed).
If no candidate works, everything rolls back. Work inside its minimum runtime is never a
victim; when only such work stands in the way, the reason names it and says until when.

A failed attempt is remembered per (rule, queue, priority, shape) until capacity changes hands,
so a backlog of alike requests costs one attempt, and attempts per cycle are capped
(`max_eviction_attempts`): the cost follows the candidates, not pending x running.
Inside an attempt, once the placer has found no room for the request, a trial eviction
searches again only when what the evictions freed could hold it (`_FitGate`), and the ranking
of candidate nodes reads each node's worst loss from a memo kept until its victims change;
both are exact (tests/core/test_eviction_shortcuts.py compares plans without them).

Victims of a preemption are themselves pending afterwards and may preempt still lower work in
the same cycle, so that running the next cycle on the result causes no further evictions.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from corral.core import reasons as R
from corral.core.actions.victim_value import Group, by_value, victims_of
from corral.core.fit import device_need, worker_slots, worker_slots_one
from corral.core.model import MILLI_PER_GPU, Workload, pending_order
from corral.core.snapshot import IntArray

if TYPE_CHECKING:
    from corral.core.cycle import Cycle
    from corral.core.queues import QueueBook

Accept = Callable[[Workload], bool]

_NODE_TRIES = 8  # candidate nodes tried for one single-worker request
_DOMAIN_TRIES = 2  # candidate domains tried for one gang
# Exact shortcuts, switchable so tests can check that plans do not change without them
# (tests/core/test_eviction_shortcuts.py): `_FitGate` and `_loss`'s memo.
_GATED = True
_LOSS_MEMO = True
_BY_VALUE = True  # a gang's nodes by their victims' value (switch for tests' deliberate breaks)
_GANG_LOSS = True  # one worker's `_loss` leaves out a gang's worker where others make room


def reclaim(cycle: Cycle) -> None:
    index = cycle.victim_index()
    if not index.held.any():
        return
    book = cycle.book
    holders = [q for q, row in index.queue_row.items() if index.held[row].any()]
    # Who may give to whom depends on the queue, the request's size and who holds what: a
    # backlog of alike requests asks once per change of the statement.
    known: dict[tuple[str, int, tuple[str, ...]], frozenset[str]] = {}
    branches: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    version = -1
    owed_queues = {q for q in book.queues if book.milli[q] < book.quota_milli(q)
                   or book.has_model_quota(q)}
    where = cycle.stmt.where
    for w in cycle.still_pending():
        if w.queue not in owed_queues or w.id in where:
            continue  # its queue is at its quota (and was as reclaim began): nothing is owed
        if cycle.attempts_left <= 0:
            return
        if version != cycle.stmt.applied:
            known.clear()
            version = cycle.stmt.applied
        total = w.total_milli()
        key = (w.queue, total, w.gpu_models)
        donors = known.get(key)
        if donors is None:
            owed = book.within_guarantee_after(w, total, upto=w.queue)
            donors = known[key] = frozenset(
                q for q, side in _other_branches(book, w.queue, holders, branches)
                if owed and _may_take_from(book, w, q, side, total))
        if not donors:
            continue  # nothing is owed to it, or nobody borrows what it is owed

        def accept(v: Workload, w: Workload = w) -> bool:
            return _reclaimable(cycle, v, w.queue)

        cycle.reclaim_tried.add(w.id)
        _attempt(cycle, w, donors, accept, R.RULE_RECLAIM)


def _other_branches(book: QueueBook, queue: str, holders: list[str],
                    known: dict[str, list[tuple[str, tuple[str, ...]]]]
                    ) -> list[tuple[str, tuple[str, ...]]]:
    """The holders in another branch of the tree than `queue` (neither an ancestor nor a
    descendant: GPUs would not change branches), each with its side of the tree below what it
    shares with `queue`. The tree does not change in a cycle: once per queue."""
    found = known.get(queue)
    if found is None:
        chain = book.chain
        found = known[queue] = [
            (q, book.below_common(q, queue)) for q in holders
            if q not in chain.get(queue, ()) and queue not in chain.get(q, ())]
    return found


def _may_take_from(book: QueueBook, w: Workload, donor: str, side: tuple[str, ...],
                   total: int) -> bool:
    """Queue-level test: `donor` (another branch, `side` its part below what it shares with
    `w`'s queue) is borrowing there, and `w`'s side of the tree stays within quota with
    `total` more."""
    return (all(book.milli[q] > book.quota_milli(q) for q in side)
            and book.within_guarantee_after(w, total, upto=donor))


def preempt(cycle: Cycle) -> None:
    lowest: dict[str, int] = {}  # per queue, the lowest priority of anything it could preempt
    for v in cycle.stmt.live.values():
        if v.preemptible:
            lowest[v.queue] = min(lowest.get(v.queue, v.priority), v.priority)
    if not lowest:
        return
    # Pending work in priority order, merged with the victims this action evicts (they wait
    # too and may preempt still lower work): the backlog is not heaped, only the victims.
    work = (w for w in cycle.still_pending() if w.priority > lowest.get(w.queue, w.priority))
    victims: list[tuple[tuple[int, float, str], str, Workload]] = []
    where, failed, reserved = cycle.stmt.where, cycle.failed_evictions, cycle.cap.reservations
    for w in _merged(work, victims):
        if w.id in where:
            continue
        # Most of a backlog repeats a request that failed while nothing changed hands: the
        # memo of `_attempt`, read here without the call (it is the same test, in the loop).
        key = (R.RULE_PREEMPT, w.queue, w.priority, cycle.shape(w),
               w.id if w.id in reserved else "")
        if failed.get(key) == (cycle.stmt.applied, cycle.cap.freed):
            continue
        if cycle.preempt_attempts_left == 0:
            break  # no attempt is left: `_attempt` would refuse every one (nothing changes)

        def accept(v: Workload, w: Workload = w) -> bool:
            return v.queue == w.queue and v.priority < w.priority

        before = len(cycle.stmt.ops)
        if _attempt(cycle, w, frozenset((w.queue,)), accept, R.RULE_PREEMPT):
            for op in cycle.stmt.ops[before:]:
                if op.kind == "evict":
                    heapq.heappush(victims, (pending_order(op.workload), op.workload.id,
                                             op.workload))


def _merged(work: Iterator[Workload],
            heap: list[tuple[tuple[int, float, str], str, Workload]]) -> Iterator[Workload]:
    """`work` (in `pending_order`) and whatever is pushed on `heap` while iterating, in one
    order."""
    nxt = next(work, None)
    while nxt is not None or heap:
        if heap and (nxt is None or heap[0][0] < pending_order(nxt)):
            yield heapq.heappop(heap)[2]
        else:
            assert nxt is not None
            yield nxt
            nxt = next(work, None)


def _attempt(cycle: Cycle, w: Workload, donors: frozenset[str], accept: Accept, rule: str
             ) -> bool:
    shape = cycle.shape(w)
    key = (rule, w.queue, w.priority if rule == R.RULE_PREEMPT else 0, shape,
           w.id if w.id in cycle.cap.reservations else "")
    version = (cycle.stmt.applied, cycle.cap.freed)  # who holds what, and reservations
    if cycle.failed_evictions.get(key) == version:
        return False  # the same request failed and nothing has changed hands since
    if cycle.book.limit_blocking(w.queue, w.total_milli()) is not None:
        return False
    if rule == R.RULE_PREEMPT and cycle.preempt_attempts_left < 0:
        cycle.preempt_attempts_left = cycle.config.max_eviction_attempts  # a caller's own Cycle
    left = cycle.preempt_attempts_left if rule == R.RULE_PREEMPT else cycle.attempts_left
    if left <= 0:
        return False
    index = cycle.victim_index()
    rows = index.rows(donors)

    def allowed(v: Workload) -> bool:
        return v.queue in donors and accept(v)

    groups = _candidates(cycle, w, index.evictable(rows), donors, allowed)
    fails = _Fails()
    if groups:
        if rule == R.RULE_PREEMPT:
            cycle.preempt_attempts_left -= 1
        else:
            cycle.attempts_left -= 1

        def on(nodes: list[int], accept: Accept) -> Iterator[Workload]:
            return _victims_on(cycle, nodes, accept)

        for group in groups:
            if _evict_until_fits(cycle, w, victims_of(group, allowed, on), rule, fails):
                return True
    if index.young[rows].any():
        _explain_protected(cycle, w, index.evictable(rows, young=True), donors, allowed,
                           rule, fails)
    cycle.failed_evictions[key] = (cycle.stmt.applied, cycle.cap.freed)
    return False


def _candidates(cycle: Cycle, w: Workload, evictable: IntArray, donors: frozenset[str],
                allowed: Accept | None = None) -> list[Group]:
    """Groups of nodes to empty for `w`, most promising first: for one worker, single nodes
    where free room plus what may be evicted holds it, least to evict first, then where the
    victims are cheapest to lose (lowest priority, most recently started); for a gang, the
    nodes of one topology domain of its level that could hold every worker that way, ordered
    by the value of the victims `allowed` there (`victim_value.by_value`; without `allowed`,
    by deficit and node order)."""
    shape, cap = cycle.shape(w), cycle.cap
    r = shape.resources
    usable = cycle.placer.usable(shape, w.id)
    if usable.size == 0:
        return []
    ev = evictable[usable]
    if r.gpus:
        per = np.full(usable.shape, r.gpus * MILLI_PER_GPU, dtype=np.int64)
        free = cap.whole_free[usable] * MILLI_PER_GPU
    elif r.fractional:
        per = device_need(cap.table, r, usable)[0]
        free = np.clip(cap.free_milli[usable], 0, None).sum(axis=1)
    else:
        return []  # needs no GPU: evicting GPU work is not what it waits for
    could = (free + ev) // np.maximum(per, 1)
    deficit = np.maximum(per - free, 0)
    if shape.workers == 1:
        ok = np.flatnonzero((could >= 1) & (ev > 0))
        if ok.size == 0 and r.gpus:
            # Whole free devices alone leave no candidate: count every free share too, since
            # evicting the shares on a device makes it whole with what was free beside them
            # (two 0.25-GPU jobs hold 0.5 of a device and leave 0.5 free; a lent pool in
            # tests/core/test_progress.py waited for ever on it). An over-estimate where other
            # work stays on that device: the trial eviction decides. Only as a fallback, so
            # that victims placed in this very cycle (free to take back) still rank first.
            free = cap.free_sum[usable]
            could = (free + ev) // np.maximum(per, 1)
            deficit = np.maximum(per - free, 0)
            ok = np.flatnonzero((could >= 1) & (ev > 0))
        order = ok[np.lexsort((usable[ok], deficit[ok]))][:3 * _NODE_TRIES]
        nodes = usable[order].tolist()
        need = deficit[order].tolist()
        ranked = sorted(zip(need, [_loss(cycle, n, donors, d) for n, d in zip(nodes, need,
                                                                               strict=True)],
                            nodes, strict=True))
        return [Group([n]) for *_, n in ranked[:_NODE_TRIES]]
    have = worker_slots(cap, r, usable)
    dom = cap.table.domain(shape.required_level)[usable]
    per_dom = np.bincount(dom, weights=np.maximum(could, have))
    missing = shape.workers - np.bincount(dom, weights=have, minlength=per_dom.size)
    fits = np.flatnonzero((per_dom >= shape.workers) & (missing > 0))
    # Only nodes where the evictions could make room for a worker: evicting on a node that
    # cannot hold one frees nothing the gang can use and spends what the donors may give
    # (issue 10, tests/core/test_rerun_own_victims.py).
    room = (cap.free_sum[usable] if r.gpus else free) + ev >= per
    groups: list[Group] = []
    for d in fits[np.lexsort((fits, missing[fits]))][:_DOMAIN_TRIES]:
        inside = np.flatnonzero((dom == d) & (ev > 0) & room)
        inside = inside[np.lexsort((usable[inside], deficit[inside]))]
        nodes = [int(usable[i]) for i in inside]
        if allowed is None or not _BY_VALUE:
            groups.append(Group(nodes))
            continue
        groups.append(by_value(cycle, nodes, per[inside].tolist(), free[inside].tolist(),
                               have[inside].tolist(), int(missing[d]), allowed))
    return groups


def _loss(cycle: Cycle, node: int, donors: frozenset[str], need: int) -> tuple[int, float]:
    """What evicting on `node` would cost at worst, a tie-break between nodes that need as
    much evicted (`need`, milli-GPUs): the highest priority among the donors' displaceable work
    there, then how long the longest-running of it has run (a restart loses more). A gang's
    worker is left out where the node's one-worker victims alone free `need`: victims go
    cheapest first, so it would not be taken, and its priority says nothing of the node's real
    cost (an elastic job's core gang beside its extras, priority below every user priority:
    tests/cli/test_plan_elastic.py).

    Memoised per (node, donors, need) until what is on the node changes: a backlog's requests
    rank the same few nodes again and again (8,322 calls at 2,000 x 20,000, seed 1)."""
    index = cycle.victim_index()
    version = index.node_version.get(node, 0)
    known = index.loss_memo.get((node, donors, need))
    if known is not None and known[0] == version and _LOSS_MEMO:
        return known[1]
    there = [v for v in index.on_node.get(node, {}).values() if v.queue in donors]
    singles = [v for v in there if v.workers == 1]
    if _GANG_LOSS and len(singles) < len(there) and sum(
            cycle.held_milli(v) for v in singles if index.past_min_runtime(v)) >= need > 0:
        there = singles
    loss = ((max(v.priority for v in there), -min(cycle.started_at(v) for v in there))
            if there else (0, 0.0))
    index.loss_memo[(node, donors, need)] = (version, loss)
    return loss


def _victims_on(cycle: Cycle, nodes: Iterable[int], accept: Accept,
                young: bool = False) -> Iterator[Workload]:
    """The workloads `accept` allows on `nodes`, node by node, cheapest to lose first on each:
    lowest priority, then placed in this very cycle (nothing started, nothing lost), then most
    recently started, then id. Work inside its minimum runtime only with `young`.

    Lazy, a node at a time: a gang's candidate is a whole domain, and the request usually fits
    after the first few nodes. Reading a node later, after evictions on the nodes before it,
    yields the same victims: evicting only lowers what queues hold, so `accept` (reclaim's
    quota test) and `where` only turn false, and `_evict_until_fits` tests both again anyway."""
    index, where = cycle.victim_index(), cycle.stmt.where
    seen: set[str] = set()
    for n in nodes:
        there = [v for v in index.on_node.get(n, {}).values()
                 if v.id in where and v.id not in seen and accept(v)
                 and (young or index.past_min_runtime(v))]
        there.sort(key=lambda v: (v.priority, -cycle.started_at(v), v.id))
        seen.update(v.id for v in there)
        yield from there


def _explain_protected(cycle: Cycle, w: Workload, evictable: IntArray,
                       donors: frozenset[str], accept: Accept, rule: str, fails: _Fails
                       ) -> None:
    """When only work inside its minimum runtime stands in the way: a trial eviction that
    includes it (rolled back) finds which workloads, and the reason names them and when the
    first of them may be evicted."""
    for group in _candidates(cycle, w, evictable, donors):
        checkpoint = cycle.stmt.checkpoint()
        fits = _evict_until_fits(cycle, w, _victims_on(cycle, group.nodes, accept, young=True),
                                 rule,
                                 fails, trial=True)
        needed = [op.workload for op in cycle.stmt.removed_since(checkpoint)
                  if not cycle.victim_index().past_min_runtime(op.workload)]
        cycle.stmt.rollback(checkpoint)
        if fits and needed:
            cycle.reasons[w.id] = protected_reason(needed, cycle.now)
            return


def protected_reason(young: list[Workload], now: float) -> R.Reason:
    ends = sorted(((v.started_at or 0.0) + v.min_runtime_s, v.id) for v in young)
    names = ", ".join(v for _, v in ends[:3]) + (f" and {len(ends) - 3} more" if len(ends) > 3 else "")
    first, last = ends[0][0], ends[-1][0]
    return R.Reason(
        R.PROTECTED_BY_MIN_RUNTIME,
        f"fits only by evicting {names}, inside {'their' if len(ends) > 1 else 'its'} minimum "
        f"runtime for another {_duration(first - now)}"
        + (f" (all of them for {_duration(last - now)})" if last > first else ""),
        (("protected", tuple(v for _, v in ends)), ("evictable_at", first),
         ("all_evictable_at", last)),
    )


def _duration(seconds: float) -> str:
    s = max(0, int(-(-seconds // 1)))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{-(-s // 60)} min"
    return f"{s / 3600:.1f} h"


class _Fails:
    """Whether the request is known not to fit in the state an attempt began in (each failed
    try rolls back to it): shared by the tries of one attempt."""

    def __init__(self) -> None:
        self.now = False


def _evict_until_fits(cycle: Cycle, w: Workload, victims: Iterable[Workload], rule: str,
                      fails: _Fails, trial: bool = False) -> bool:
    stmt, shape, scoring = cycle.stmt, cycle.shape(w), cycle.scoring(w.queue)
    checkpoint = stmt.checkpoint()
    placed = None
    # Once it is known not to fit (the placer said so here, or before: `fails`), only what
    # the evictions freed can change that: `_FitGate` says when a search may succeed.
    gate = _FitGate(cycle, w) if _GATED and (fails.now or cycle.placer.known_to_fail(
        shape, scoring, w.id)) else None
    for v in victims:
        if v.id not in stmt.where or not _still_acceptable(cycle, v, w, rule):
            continue
        if gate is None:
            stmt.remove(v, rule, w.id)
        elif not gate.remove(v, rule, w.id):
            continue  # what the evictions freed cannot hold it yet: no search
        placed = cycle.placer.place(shape, scoring, w.id)
        if placed is not None:
            break
        # It does not fit with these victims gone, so not with them back either (fitting only
        # gets easier as capacity is freed): after the rollback below it still does not fit.
        fails.now = True
        gate = _FitGate(cycle, w) if _GATED else None
    if placed is None:
        stmt.rollback(checkpoint)
        return False
    if trial:
        return True
    stmt.place(w, placed)
    if rule == R.RULE_RECLAIM and not cycle.book.within_guarantee_after(w, 0, upto=w.queue):
        stmt.rollback(checkpoint)  # its real share (a GPU-memory request) exceeds its quota
        return False
    _undo_needless(cycle, checkpoint)
    cycle.reasons.pop(w.id, None)
    return True


class _FitGate:
    """Whether the request may fit since the placer last could not place it, without a search:
    only the evicted victims' nodes changed since (evictions only free), so it can fit now
    only on one of them (one worker), or in a domain of the gang's level that holds one of them
    and now has slots for every worker. Exact as a filter: whenever this says no, the placer
    would return None, so skipping the search changes no plan (the placer's own failure memo
    cannot skip it: every eviction returns capacity). Without it a gang's trial eviction over
    a domain searched after every victim (814 searches for 24 gangs at 2,000 x 20,000, seed 1).

    Domains are nested (each code qualified by its parents): a fit at a tighter level is a fit
    at the gang's own level too."""

    def __init__(self, cycle: Cycle, w: Workload) -> None:
        self.cycle, shape = cycle, cycle.shape(w)
        self.r, self.workers = shape.resources, shape.workers
        self.static, self.blocked = cycle.placer.static(shape), cycle.cap.blocked_for(w.id)
        self.dom = cycle.cap.table.domain(shape.required_level)
        self.sums: list[float] | None = None  # a gang's slots per domain, built on first use
        self.slots: dict[int, int] = {}  # per node touched: its slots as counted in `sums`

    def remove(self, v: Workload, rule: str, for_workload: str) -> bool:
        """Evict `v`; say whether the request may fit now."""
        cycle, cap = self.cycle, self.cycle.cap
        index = cap.table.index
        nodes = [n for n in {index[a.node_id] for a in cycle.stmt.where[v.id]}
                 if self.static[n] and not self.blocked[n]]
        if self.workers == 1:
            cycle.stmt.remove(v, rule, for_workload)
            return any(worker_slots_one(cap, self.r, n) >= 1 for n in nodes)
        if self.sums is None:
            usable = np.flatnonzero(self.static & ~self.blocked)
            self.sums = np.bincount(self.dom[usable], weights=cycle.placer.slots(self.r)[
                usable]).tolist()
        for n in nodes:
            if n not in self.slots:
                self.slots[n] = worker_slots_one(cap, self.r, n)
        cycle.stmt.remove(v, rule, for_workload)
        may = False
        for n in nodes:
            now = worker_slots_one(cap, self.r, n)
            d = int(self.dom[n])
            self.sums[d] += now - self.slots[n]
            self.slots[n] = now
            may = may or self.sums[d] >= self.workers
        return may


def _still_acceptable(cycle: Cycle, v: Workload, w: Workload, rule: str) -> bool:
    # Quota protection must hold after each eviction, not only for the first victim.
    return rule != R.RULE_RECLAIM or _reclaimable(cycle, v, w.queue)


def _reclaimable(cycle: Cycle, v: Workload, to: str) -> bool:
    """May reclaim take `v` for work of queue `to`: its side of the tree (below what it shares
    with `to`) keeps its quota and guaranteed models, and running work is taken only from
    queues that were borrowing as the cycle began (`QueueBook.may_give_up`)."""
    held = cycle.held_milli(v)
    return (cycle.book.may_give_up(v.queue, held, started=v.id in cycle.stmt.started, to=to)
            and cycle.book.keeps_model_quota_without(v.queue, cycle.model_of(v), held, to=to))


def _undo_needless(cycle: Cycle, checkpoint: int) -> None:
    """Put back victims whose exact devices are still free after the requester was placed;
    the rest, if they had only been placed in this cycle, wait again with a reason."""
    for op in reversed(cycle.stmt.removed_since(checkpoint)):
        if cycle.stmt.fits(op.assignments, op.workload):
            cycle.stmt.unremove(op.workload.id, checkpoint)
        elif op.kind == "unplace":
            cycle.deferred[op.workload.id] = cycle.shape(op.workload)
