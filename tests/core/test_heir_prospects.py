"""A hand-over walk is skipped when no kind of heir could take the slot (`heir_prospects`,
issue 10, speed): it tries no heir then, and it still finds the heir that a kind allows
(the smallest of its queue, a victim)."""

from __future__ import annotations

import importlib

import pytest

from builders import job, node, queue, state
from corral.core import SchedulerConfig
from corral.core.actions.heir_prospects import ElderKinds
from corral.core.cycle import Cycle, _open
from corral.core.fit import Shape

allocate = importlib.import_module("corral.core.actions.allocate")  # (the package exports
# a function of that name)

CFG = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=1800.0,
                      reservation_cooldown_s=600.0)
PERIOD = 2_400.0  # a window and its cooldown
NOW = 10_000_000.0


def _counting_keep(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the heirs tried: each through `_keep` itself (a walk's `_keep_by_kind` would
    leave out the `_keep` of kinds it knows fail: tests/core/test_heir_chain.py)."""
    kept: list[str] = []
    keep = allocate._keep
    monkeypatch.setattr(allocate, "_keep", lambda c, w: kept.append(w.id) or keep(c, w))
    monkeypatch.setattr(allocate, "_keep_by_kind", lambda c: lambda w: allocate._keep(c, w))
    return kept


def _no_heir_may_act(n: int) -> Cycle:
    # n chained gangs of queue "a" that do not fit now (queue "c" runs on both nodes) and may
    # not hold (queue "b" waits below its quota, "a" has none: `_may_succeed`); b1 is small
    work = [job(f"g{k:05d}").queue("a").gpus(8).gang(2).submitted(NOW - 100.0 - k * PERIOD)
            for k in range(n)]
    work += [job("b1").queue("b").gpus(1).submitted(NOW),
             job("c1").queue("c").gpus(1).running(("n0", (0,))),
             job("c2").queue("c").gpus(1).running(("n1", (0,)))]
    snapshot = state([node(f"n{i}").gpus(8) for i in range(2)],
                     [queue("a"), queue("b", quota=16.0), queue("c")], work)
    return _open(snapshot, NOW, CFG, 0)[0]


def test_a_walk_where_no_heir_may_act_tries_none(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 500
    cycle = _no_heir_may_act(n)
    kept = _counting_keep(monkeypatch)
    assert not allocate._hand_over(cycle, cycle.waiting["g00000"])
    assert kept == []  # the walk itself tries all 499 (below): every one fails
    assert not cycle.cap.reservations and not cycle.stmt.where.keys() - {"c1", "c2"}
    assert not allocate.chain_from(cycle).hand_over(cycle.waiting["g00000"])
    assert len(kept) == n - 1


def _smaller_heir() -> Cycle:
    # Queue "a" (quota 8) has an old 16-GPU gang and a younger 8-GPU job, neither fits now
    # (queue "c" runs on both nodes) and queue "b" waits below its quota: only the 8-GPU job
    # keeps "a" within its guarantee, so only it may take holder h's slot.
    work = [job("old").queue("a").gpus(8).gang(2).submitted(NOW - 100.0 - 2 * PERIOD),
            job("small").queue("a").gpus(8).submitted(NOW - 100.0 - PERIOD),
            job("h").queue("x").gpus(8).gang(2).submitted(NOW - 100.0),
            job("b1").queue("b").gpus(8).gang(2).submitted(NOW),
            job("c1").queue("c").gpus(1).running(("n0", (0,))),
            job("c2").queue("c").gpus(1).running(("n1", (0,)))]
    snapshot = state([node(f"n{i}").gpus(8) for i in range(2)],
                     [queue("a", quota=8.0), queue("b", quota=16.0), queue("c"), queue("x")],
                     work)
    return _open(snapshot, NOW, CFG, 0)[0]


def test_the_least_size_of_a_kind_is_what_may_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    cycle = _smaller_heir()
    kept = _counting_keep(monkeypatch)
    assert allocate._hand_over(cycle, cycle.waiting["h"])
    assert kept == ["old", "small"]  # (judged by the oldest's size alone it is skipped)
    assert list(cycle.cap.reservations) == ["small"]


def test_a_victim_that_fits_now_is_started_by_the_walk(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    # No elder: only this cycle's victim r (a gang evicted from n0 and n1) is an heir of h,
    # and it fits again where it ran: the walk starts it (`_keep`), as the recursive one did.
    work = [job("r").queue("a").gpus(8).gang(2).submitted(NOW - 100.0 - PERIOD)
            .running(("n0", tuple(range(8))), ("n1", tuple(range(8)))),
            job("h").queue("x").gpus(8).gang(2).submitted(NOW - 100.0)]
    snapshot = state([node(f"n{i}").gpus(8) for i in range(2)], [queue("a"), queue("x")], work)
    cycle = _open(snapshot, NOW, CFG, 0)[0]
    r = next(w for w in snapshot.workloads if w.id == "r")
    cycle.stmt.remove(r, "preempt", "h")
    cycle.requeue(r)
    kept = _counting_keep(monkeypatch)
    assert not allocate._hand_over(cycle, cycle.waiting["h"])
    assert kept == ["r"]
    assert "r" in cycle.stmt.where


def test_elder_kinds_keep_the_least_size_up_to_each_age() -> None:
    sizes = [16, 8, 16, 2, 4]
    elders = [job(f"w{k}").queue("a").gpus(8).gang(m // 8 or 1).submitted(float(k)).build()
              if m >= 8 else job(f"w{k}").queue("a").gpus(m).submitted(float(k)).build()
              for k, m in enumerate(sizes)]

    def least(before: float) -> list[int]:
        return [m // 1000 for _, m in kinds.least_before(before)]

    kinds = ElderKinds(elders, lambda w: Shape(w.resources, w.workers), lambda q: "s")
    assert least(0.0) == []
    assert least(0.5) == [16]
    assert least(1.5) == [8]
    assert least(3.0) == [8]
    assert least(3.5) == [2]
    assert least(99.0) == [2]
    assert [s.workers for s, _ in kinds.shapes_before(2.5)] == [2, 1]


def test_free_slots_are_not_offered_to_elders_none_of_which_may_act(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # After allocation a free slot goes to the oldest big waiting work that may hold one
    # (`fill_free_slots`): here none may, and it is known by kind, not by 501 `_keep`s.
    cycle = _no_heir_may_act(500)
    kept = _counting_keep(monkeypatch)
    allocate.fill_free_slots(cycle)
    assert kept == [] and not cycle.cap.reservations


def test_a_free_slot_still_goes_to_the_oldest_that_may_hold(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    cycle = _smaller_heir()
    kept = _counting_keep(monkeypatch)
    allocate.fill_free_slots(cycle)
    assert kept == ["old", "small"]
    assert list(cycle.cap.reservations) == ["small"]
