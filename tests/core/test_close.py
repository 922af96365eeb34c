"""The close's reasons by class (`close.pending_reasons`) are those judged one workload at a
time: the same reasons, in the same order, on cycles with reservation holders and their heirs,
big and small work, victims of the cycle and an eviction budget spent (issue 10, speed)."""

from __future__ import annotations

import pytest
from tests.core.bench_snapshots import schedule_cycle_bench

from builders import job, node, queue, state
from corral.core import SchedulerConfig, nominations
from corral.core import reasons as R
from corral.core.close import _Behind, _capacity_reason, _limit_now, pending_reasons
from corral.core.cycle import Cycle, _open, decide

CFG = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=1800.0,
                      reservation_cooldown_s=600.0)


def _one_by_one(cycle: Cycle) -> dict[str, R.Reason]:
    """The close's loop before reasons were shared by class: every set-aside workload judged
    (limit, capacity, nominations) and told (`_Behind.told`) on its own, memos per shape only."""
    reasons, where, waiting = cycle.reasons, cycle.stmt.where, cycle.waiting
    reserved_for, victims = cycle.cap.reservations, cycle.stmt.started
    behind = _Behind(cycle)
    diagnosis: dict[object, R.Reason] = {}
    refinements: dict[object, R.Reason] = {}
    pending = {wid: behind.told(waiting.get(wid), found) if wid not in reserved_for else found
               for wid, found in reasons.items() if wid not in where and wid not in victims}
    for wid, shape in cycle.deferred.items():
        if wid in reasons or wid in where or wid in victims:
            continue
        w = waiting.get(wid)
        found = _limit_now(cycle, w, shape)
        if found is None:
            found = _capacity_reason(cycle, w, wid, shape, diagnosis, refinements)  # type: ignore[arg-type]
            if cycle.holds and w is not None:
                found = nominations.explain(cycle, w, shape, found)
        pending[wid] = found if w is None or wid in reserved_for else behind.told(w, found)
    return pending


def _decided(snapshot: object, now: float, cfg: SchedulerConfig, seed: int) -> Cycle:
    cycle = _open(snapshot, now, cfg, seed)[0]  # type: ignore[arg-type]
    decide(cycle)
    return cycle


def _gangs(budget: int) -> Cycle:
    # gangs of two queues and three priorities submitted around one another's heir bound
    # (max_reservation_s), on a pool too small for most, with 1-GPU work beside them
    times = [0.0, 100.0, 3_199.0, 3_200.0, 3_201.0, 5_000.0, 7_500.0, 8_000.0, 9_000.0]
    work = [job(f"{q}{p}-{k}").queue(q).gpus(8).gang(2).priority(p).submitted(t)
            for k, t in enumerate(times) for q, p in (("a", 0), ("b", 10), ("a", 50))]
    work += [job(f"s{k}").queue("a").gpus(1).submitted(t) for k, t in enumerate(times)]
    work += [job(f"r{k}").queue("b").gpus(4).submitted(t) for k, t in enumerate(times)]
    # older than every holder by more than a window, and in their cooldown (no holders
    # themselves): heirs, told so in their reasons
    work += [job(f"old{k}").queue(q).gpus(8).gang(2).submitted(-4_000.0 - k)
             for k, q in enumerate("abab")]
    snapshot = state([node(f"n{i}") for i in range(3)],
                     [queue("a", quota=8), queue("b", quota=16)], work)
    cfg = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=1800.0,
                          reservation_cooldown_s=600.0, max_eviction_attempts=budget)
    return _decided(snapshot, 10_000.0, cfg, 0)


def _same(cycle: Cycle) -> dict[str, R.Reason]:
    got = pending_reasons(cycle)
    want = _one_by_one(cycle)
    assert list(got) == list(want)  # the same workloads, in the same order
    assert [repr(r) for r in got.values()] == [repr(r) for r in want.values()]
    return got


@pytest.mark.parametrize("budget", [0, 8])
def test_gangs_with_holders_and_heirs(budget: int) -> None:
    got = _same(_gangs(budget))
    codes = {r.code for r in got.values()}
    heirs = [wid for wid, r in got.items() if dict(r.details).get("heir_of")]
    assert heirs and len(heirs) < len(got)  # some big work is a holder's heir, some not
    assert any("reserved_nodes" in dict(r.details) for r in got.values())  # a holder
    assert budget > 0 or {R.NOT_CONSIDERED, R.OVER_QUOTA} <= codes


def test_reclaim_tried_for_one_of_a_class() -> None:
    # the budget is spent; reclaim was tried for the first of a class it never reached
    # (as when it ran out in the middle of a queue): that one is blocked, the rest not reached
    cycle = _gangs(0)
    first = next(wid for wid, r in pending_reasons(cycle).items()
                 if r.code == R.NOT_CONSIDERED and wid not in cycle.cap.reservations)
    cycle.reclaim_tried.add(first)
    got = _same(cycle)
    assert got[first].code == R.RECLAIM_BLOCKED
    assert R.NOT_CONSIDERED in {r.code for r in got.values()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_contended_bench_snapshot(seed: int) -> None:
    bench = schedule_cycle_bench()
    cycle = _decided(bench.contended_state(400, 4_000, seed), bench.NOW, SchedulerConfig(), seed)
    got = _same(cycle)
    assert len(got) > 1_000 and cycle.cap.reservations
