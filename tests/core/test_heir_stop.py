"""A hand-over walk stops once no heir left in it may act (`HeirChain.hand_over`'s
`some_may_act`, issue 10, speed): heirs that start fill the pool on the way, and every later
heir would fail in `_keep` and change nothing. It must not stop while one may still start or
take the slot. (tests/core/test_heir_chain.py compares walks with and without the stop over
random cycles.)"""

from __future__ import annotations

import importlib

import pytest
from tests.core.test_heir_prospects import CFG, NOW, PERIOD
from tests.core.test_heir_prospects import _counting_keep as _judged  # each heir through _keep

from builders import job, node, queue, state
from corral.core.cycle import Cycle, _open

allocate = importlib.import_module("corral.core.actions.allocate")  # (the package exports
# a function of that name)


def _cycle(later: list[object]) -> Cycle:
    # n0 is free, n1 has one GPU taken (queue "c"): the oldest heir (8 GPUs, queue "a")
    # starts on n0 and the pool is full for 8 GPUs; queue "b" waits below its quota, so no
    # heir of queue "a" (no quota) may reserve (`_may_succeed`). `later`: younger heirs.
    work = [job("start").queue("a").gpus(8).submitted(NOW - 100.0 - 400 * PERIOD),
            job("h").queue("x").gpus(8).gang(2).submitted(NOW - 100.0),
            job("b1").queue("b").gpus(8).gang(2).submitted(NOW),
            job("c1").queue("c").gpus(1).running(("n1", (0,))), *later]
    snapshot = state([node(f"n{i}").gpus(8) for i in range(2)],
                     [queue("a"), queue("b", quota=16.0), queue("c"), queue("x"),
                      queue("y", quota=16.0)], work)
    return _open(snapshot, NOW, CFG, 0)[0]


def test_a_walk_stops_once_the_heirs_that_start_fill_the_pool(
        monkeypatch: pytest.MonkeyPatch) -> None:
    n = 300
    cycle = _cycle([job(f"g{k:05d}").queue("a").gpus(8).gang(2)
                    .submitted(NOW - 100.0 - (n + 1 - k) * PERIOD) for k in range(n)])
    judged = _judged(monkeypatch)
    assert not allocate._hand_over(cycle, cycle.waiting["h"])
    assert "start" in cycle.stmt.where and not cycle.cap.reservations
    # the heir that started, and the first that failed after it (then it asked): not all 301
    assert judged == ["start", "g00000"]
    judged.clear()
    walked = _cycle([job(f"g{k:05d}").queue("a").gpus(8).gang(2)
                     .submitted(NOW - 100.0 - (n + 1 - k) * PERIOD) for k in range(n)])
    assert not allocate.chain_from(walked).hand_over(walked.waiting["h"])  # never stopping
    assert len(judged) == n + 1
    assert walked.stmt.where == cycle.stmt.where and walked.reasons == cycle.reasons


def test_a_walk_does_not_stop_while_a_later_heir_may_take_the_slot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # After "start" starts and "fail" (queue "a") fails, "take" (queue "y", within its
    # quota) may reserve: the walk asks, and goes on to it.
    cycle = _cycle([job("fail").queue("a").gpus(8).gang(2).submitted(NOW - 100.0 - 3 * PERIOD),
                    job("take").queue("y").gpus(8).gang(2).submitted(NOW - 100.0 - PERIOD)])
    judged = _judged(monkeypatch)
    assert allocate._hand_over(cycle, cycle.waiting["h"])
    assert judged == ["start", "fail", "take"]
    assert "start" in cycle.stmt.where and set(cycle.cap.reservations) == {"take"}


def test_a_walk_does_not_stop_while_a_later_heir_may_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # After "start" and "fail", a 4-GPU heir still fits on n1 (7 GPUs free): it starts.
    cycle = _cycle([job("fail").queue("a").gpus(8).gang(2).submitted(NOW - 100.0 - 3 * PERIOD),
                    job("fits").queue("a").gpus(4).submitted(NOW - 100.0 - PERIOD)])
    judged = _judged(monkeypatch)
    assert not allocate._hand_over(cycle, cycle.waiting["h"])
    assert judged == ["start", "fail", "fits"]
    assert {"start", "fits"} <= cycle.stmt.where.keys()
