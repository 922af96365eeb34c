"""The cycle's bookkeeping shortcuts (issue 10, speed) give what the plain computation gives:

- `reservation_heirs.heirs` reads a prefix of the big waiting work sorted by age
  (`reservation_heirs.elders_before`, rebuilt when work is added) instead of scanning every waiting workload;
- `VictimIndex.fill` sums its arrays in numpy instead of one element update per workload;
- the close tells big waiting work that it yields to reservations in its one pass over the
  backlog (`_Behind.told`), reasons written during the cycle included.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import pytest
from tests.core.bench_snapshots import schedule_cycle_bench

from builders import job, node, queue, state
from corral.core import SchedulerConfig, Workload, schedule
from corral.core import reasons as R
from corral.core.actions.reservation_heirs import heirs, may_inherit, reservation_window
from corral.core.cycle import Cycle, _open
from corral.core.victims import VictimIndex

CFG = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=1800.0,
                      reservation_cooldown_s=600.0)
NOW = 10_000.0


def _scan(cycle: Cycle, holder: Workload) -> list[Workload]:
    """`heirs` as it was: every waiting workload and every victim of the cycle, filtered."""
    cfg, now = cycle.config, cycle.now
    held = set(cycle.reserved_before) | cycle.cap.reservations.keys()
    out = [w for w in chain(cycle.waiting.values(), cycle.requeued)
           if may_inherit(cfg, holder, w) and (w.workers > 1 or w.resources.gpus > 1)
           and w.id not in held and reservation_window(cfg, w.submitted_at, now)[0]
           and cycle.placer.never_fits(cycle.shape(w)) is None]
    return sorted(out, key=lambda w: (w.submitted_at, w.id))


def _gangs_cycle() -> Cycle:
    # Submission times around each holder's bound (submitted_at - max_reservation_s, strict),
    # outside their window (in the cooldown: 1800-2400 s after a window opens), in two queues
    # and three priorities, and 1-GPU work (never an heir).
    times = [0.0, 100.0, 3_199.0, 3_200.0, 3_201.0, 5_000.0, 7_500.0, 8_000.0, 9_000.0]
    work = [job(f"{q}{p}-{k}").queue(q).gpus(8).gang(2).priority(p).submitted(t)
            for k, t in enumerate(times) for q, p in (("a", 0), ("b", 10), ("a", 50))]
    work += [job(f"s{k}").queue("a").gpus(1).submitted(t) for k, t in enumerate(times)]
    # and gangs of a model the pool has not: they never fit, so they are no one's heirs
    work += [job(f"z{k}").queue("b").gpus(8).gang(2).models("Z").submitted(t)
             for k, t in enumerate(times)]
    snapshot = state([node(f"n{i}") for i in range(2)], [queue("a"), queue("b")], work)
    return _open(snapshot, NOW, CFG, 0)[0]


def test_heirs_are_those_of_a_scan_of_all_waiting_work() -> None:
    cycle = _gangs_cycle()
    holders = [w for w in cycle.waiting.values() if w.workers > 1]
    assert sum(bool(heirs(cycle, h)) for h in holders) > len(holders) // 2
    for holder in holders:
        assert heirs(cycle, holder) == _scan(cycle, holder), holder.id


def test_heirs_see_work_added_and_victims_after_the_first_call() -> None:
    cycle = _gangs_cycle()
    holder = cycle.waiting["a0-8"]  # submitted at 9,000
    before = heirs(cycle, holder)
    late = job("late").queue("b").gpus(8).gang(2).submitted(50.0).build()
    cycle.add_pending([late])
    victim = job("victim").queue("b").gpus(4).submitted(60.0).running(("n0", (0, 1, 2, 3)))
    cycle.requeued.append(victim.build())
    after = heirs(cycle, holder)
    assert after == _scan(cycle, holder)
    assert [w.id for w in after] == [w.id for w in before if w.submitted_at < 50.0] + [
        "late", "victim"] + [w.id for w in before if w.submitted_at >= 50.0]


@pytest.mark.parametrize("seed", [2, 5])
def test_victim_index_fill_equals_one_update_per_workload(seed: int) -> None:
    bench = schedule_cycle_bench()
    cycle = _open(bench.contended_state(400, 4_000, seed), bench.NOW, SchedulerConfig(), seed)[0]
    live = [(w, cycle.stmt.where[w.id]) for w in cycle.stmt.live.values()]

    def index() -> VictimIndex:
        return VictimIndex(cycle.cap.table, cycle.book.queues, cycle.now, cycle.stmt.started)

    filled, one_by_one = index(), index()
    filled.fill(live)
    for w, assignments in live:
        one_by_one.changed(w, assignments, +1)
    assert filled.held.any() and filled.young.any() and filled.movable.any()
    for name in ("held", "young", "movable"):
        assert np.array_equal(getattr(filled, name), getattr(one_by_one, name)), name
    assert filled.node_version == one_by_one.node_version
    assert {n: list(there) for n, there in filled.on_node.items()} == {
        n: list(there) for n, there in one_by_one.on_node.items()}


@pytest.mark.parametrize("seed", [2, 3])
def test_big_waiting_work_is_told_it_yields_to_reservations(seed: int) -> None:
    bench = schedule_cycle_bench()
    snapshot = bench.contended_state(400, 4_000, seed)
    plan = schedule(snapshot, now=bench.NOW, config=SchedulerConfig(), seed=seed)
    waiting = {w.id: w for w in snapshot.workloads if w.id in plan.pending}
    holders = {r.workload_id for r in plan.reservations}
    big = [wid for wid, w in waiting.items() if wid not in holders
           and (w.workers > 1 or w.resources.gpus > 1) and not plan.pending[wid].unresolvable]
    told = [wid for wid in big
            if dict(plan.pending[wid].details).get(R.YIELDS_TO_RESERVATIONS)]
    assert big and told == big
    small = [wid for wid, w in waiting.items() if w.workers == 1 and w.resources.gpus <= 1]
    assert small and not any(
        dict(plan.pending[wid].details).get(R.YIELDS_TO_RESERVATIONS) for wid in small)
