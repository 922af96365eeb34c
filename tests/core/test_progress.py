"""Progress, counted in cycles: work a queue is owed starts as soon as the room for it may be
taken back, under churn, with plans applied the way the control plane applies them.

The claim (issue 10, "a job within its queue's guarantee starts within a bounded time once
running work ends or is evictable"), checked at the end of every cycle of seeded and
Hypothesis-generated histories (`test_churn`'s generator, then a drain with no arrivals and no
departures): no single-worker workload is left waiting while

- it is within its guarantee (its queue and every ancestor stay within quota with it),
- no queue limit stops it, and
- it would fit on the free room its reservations allow, or on that room plus what one running
  workload gives back that reclaim may take: preemptible, past its minimum runtime, in another
  branch of the queue tree whose queues all stay at or above quota without it.

So owed work waits for no cycle once one evictable workload would start it; what may hold it
back is bounded by the config: victims inside their minimum runtime (at most
ceil(min_runtime_s / cycle) cycles: here ceil(300 / 120) = 3) and nodes reserved for another
workload (at most `max_reservation_s` = 900 s, 8 cycles, per window). After the history, the
drain runs that bound plus one cycle. Gangs, and rooms only several victims together make,
are left out: the core tries at most 8 nodes (2 domains) per request, a bound of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from tests.core.test_churn import CONFIG, DT, Cycle, apply_like_control_plane, histories, history
from tests.core.test_contention import SeededChooser
from tests.core.test_invariants import apply as apply_moves_placed
from tests.core.test_invariants import chain, usage

from corral.core import ClusterState, Plan, Workload, schedule
from corral.core import reasons as R
from corral.core.fit import Shape
from corral.core.placement import Placer, Scoring
from corral.core.queues import effective_quotas
from corral.core.snapshot import Capacity, NodeTable

MIN_RUNTIME_S = 300.0  # the longest minimum runtime `test_churn`'s generator draws
#: cycles of the drain: young victims age out, then one more cycle to take them
DRAIN = math.ceil(MIN_RUNTIME_S / DT) + 1
ANY_FIT = Scoring.from_weights({"bestfit": 1.0})


def _capacity(table: NodeTable, state: ClusterState, plan: Plan, without: str = "") -> Placer:
    """The room as the cycle ended (its reservations held), less the workload `without`."""
    cap = Capacity(table)
    for w in state.workloads:
        if w.running and w.id != without:
            for a in w.assignments:
                cap.take(table.index[a.node_id], a, w.resources.cpu_milli, w.resources.memory_mib)
    for r in plan.reservations:
        cap.reserve(r.workload_id, [table.index[n] for n in r.node_ids])
    return Placer(cap)


def _owed(state: ClusterState, w: Workload, used: dict[str, int],
          quota: dict[str, float]) -> bool:
    queues = {q.name: q for q in state.queues}
    total = w.total_milli()
    for q in chain(state, w.queue):
        limit = queues[q].limit_gpus
        if used[q] + total > round(quota[q] * 1000):
            return False
        if limit is not None and used[q] + total > round(limit * 1000):
            return False
    return True


def _reclaimable(state: ClusterState, v: Workload, to: str, now: float, used: dict[str, int],
                 quota: dict[str, float]) -> bool:
    if not v.preemptible or (v.started_at is not None and now - v.started_at < v.min_runtime_s):
        return False
    mine, theirs = chain(state, to), chain(state, v.queue)
    if v.queue in mine or to in theirs:
        return False  # an ancestor or a descendant: the GPUs would not change branches
    side = [q for q in theirs if q not in mine]
    return all(used[q] - v.total_milli() >= round(quota[q] * 1000) for q in side)


def owed_but_waiting(state: ClusterState, plan: Plan, now: float) -> Iterator[str]:
    """Sentences for every single-worker workload the plan leaves waiting although it is owed
    and free room, or free room plus one reclaimable workload, would start it."""
    end = apply_moves_placed(state, plan, now)
    table = NodeTable.build(end.nodes)
    used, quota = usage(end), effective_quotas(end.queues)
    work = {w.id: w for w in end.workloads}
    running = [w for w in end.workloads if w.running]
    free = _capacity(table, end, plan)
    for wid, reason in plan.pending.items():
        w = work[wid]
        if w.workers != 1 or reason.unresolvable or not _owed(end, w, used, quota):
            continue
        shape = Shape.of(w)
        if free.place(shape, ANY_FIT, wid) is not None:
            yield f"{wid} is owed and fits free room, but waits: {reason.code}"
            continue
        for v in running:
            if (_reclaimable(end, v, w.queue, now, used, quota)
                    and _capacity(table, end, plan, without=v.id).place(shape, ANY_FIT, wid)):
                yield f"{wid} is owed and evicting {v.id} alone would start it: {reason.code}"
                break


def run_with_drain(start: ClusterState, cycles: tuple[Cycle, ...]) -> dict[str, int]:
    """`test_churn.run_history`'s cycles, then `DRAIN` cycles with nothing arriving or ending;
    the claim checked after every one. Returns how often reclaim started owed work."""
    state, now = start, 10_000.0
    stats = {"reclaimed": 0, "cycles": 0}
    for c in (*cycles, *(Cycle((), ()),) * DRAIN):
        now += DT
        running = [w for w in state.workloads if w.running]
        ending = {running[i % len(running)].id for i in c.ends} if running else set()
        arrivals = tuple(replace(w, submitted_at=now) for w in c.arrivals)
        state = replace(state, workloads=tuple(w for w in state.workloads
                                               if w.id not in ending) + arrivals)
        plan = schedule(state, now, CONFIG)
        late = list(owed_but_waiting(state, plan, now))
        assert not late, f"at {now}: {late}"
        stats["reclaimed"] += any(e.rule == R.RULE_RECLAIM for e in plan.evictions)
        stats["cycles"] += 1
        state = apply_like_control_plane(state, plan, now)
    return stats


def test_owed_work_starts_once_one_evictable_workload_would_start_it() -> None:
    """Seeded histories; they must take capacity back somewhere (the claim is not met only
    by histories in which nothing is owed)."""
    total = {"reclaimed": 0, "cycles": 0}
    for seed in range(120):
        for k, v in run_with_drain(*history(SeededChooser(seed))).items():
            total[k] += v
    assert total["reclaimed"] > 0, total


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_owed_work_starts_once_room_may_be_taken_back_in_any_history(
        history: tuple[ClusterState, tuple[Cycle, ...]]) -> None:
    run_with_drain(*history)
