"""Consolidation's pass over the still-pending work skims past what its memo already proves
(`consolidate._skim`, from `_SKIM_FROM` still pending, which the small states of the other
tests never reach): here it is forced on and off and the plans compared, and the dependency it
rests on is checked directly: a failed try proves every later workload of its key fails while
no move is made; a move (and only a move) voids that."""

from __future__ import annotations

import importlib
import random
from types import SimpleNamespace

import pytest
from tests.core.bench_snapshots import plan_facts, schedule_cycle_bench
from tests.core.test_churn import (
    CONFIG,
    DT,
    apply_like_control_plane,
    between_cycles,
    history,
    unexpired,
)
from tests.core.test_contention import SeededChooser

from corral.core import SchedulerConfig, WorkerResources, Workload, schedule

#: the module (the package's `consolidate` is the function of that name)
consolidate_module = importlib.import_module("corral.core.actions.consolidate")


class _FakeWalk:
    """What `_skim` reads of a walk: the memo and its version, whether a move was made, and
    (for the grouping) each workload's key, from a stand-in cycle."""

    def __init__(self, work: list[Workload], kinds: dict[str, object],
                 owners: tuple[str, ...], victims: tuple[str, ...] = ()) -> None:
        self.failed: dict[object, int] = {}
        self.version, self.moved = 0, False
        self.limited: dict[str, object] = {}
        self.kinds = kinds
        self.cycle = SimpleNamespace(
            shapes=kinds, shape=lambda w: kinds[w.id],
            waiting={w.id: w for w in work if w.id not in victims},
            requeued=[w for w in work if w.id in victims],
            book=SimpleNamespace(queues={"a": None}),
            cap=SimpleNamespace(reservations={wid: [0] for wid in owners}))

    def key(self, w: Workload) -> tuple[object, object, str]:
        owner = w.id if w.id in self.cycle.cap.reservations else ""
        return (self.kinds[w.id], w.queue, owner)

    def moved_since_look(self) -> bool:
        return self.moved


def _work(i: int) -> Workload:
    return Workload(id=f"w{i:02d}", queue="a", resources=WorkerResources(gpus=1),
                    submitted_at=float(i))


def test_a_failed_key_sleeps_until_a_move_and_wakes_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Of a key that failed, later workloads are not given while no move is made (and a
    rolled-back try is no move: the version stays); a move wakes every sleeping key at its
    first workload after the move, never at one before it; an owner of a reservation is its
    own key."""
    monkeypatch.setattr(consolidate_module, "_alike", lambda _cycle, queue, _known: queue)
    work = [_work(i) for i in range(10)]
    a, b, owner = object(), object(), object()
    kinds = [a, b, a, owner, b, a, b, a, b, a]
    walk = _FakeWalk(work, {w.id: k for w, k in zip(work, kinds, strict=True)},
                     owners=("w03",))
    given = []
    for i in consolidate_module._skim(walk, tuple(work), 0, len(work)):
        given.append(i)
        if i in (0, 1):  # a's and b's first tries fail on this capacity
            walk.failed[(kinds[i], "a", "")] = walk.version
        if i == 3:  # the owner's try moves work: capacity changed hands
            walk.moved = True
        if i == 4:  # the next visit saw the move and started a new version
            walk.moved, walk.version = False, 1
            walk.failed[(b, "a", "")] = 1  # b fails again on the new capacity
    # a sleeps after 0 (2 left out), b after 1; the owner at 3 moves: a wakes at 5 (not 2),
    # b at 4; b fails again at 4 (6, 8 left out); a was not tried again: 5, 7, 9 given
    assert given == [0, 1, 3, 4, 5, 7, 9]


@pytest.mark.parametrize("victim", [False, True])
def test_an_owner_is_its_own_key_waiting_or_a_victim(monkeypatch: pytest.MonkeyPatch,
                                                    victim: bool) -> None:
    """A reservation's holder fails on its own, whether it waited from the start or is one
    of this cycle's victims that took a slot (`age_reservations`): its shape failing for the
    others does not leave it out, nor does its failing leave them out."""
    monkeypatch.setattr(consolidate_module, "_alike", lambda _cycle, queue, _known: queue)
    work = [_work(i) for i in range(6)]
    a = object()
    walk = _FakeWalk(work, {w.id: a for w in work}, owners=("w03",),
                     victims=("w03",) if victim else ())
    given = []
    for i in consolidate_module._skim(walk, tuple(work), 0, len(work)):
        given.append(i)
        walk.failed[walk.key(work[i])] = 0  # every try fails
    assert given == [0, 3]  # the others' key sleeps after 0; the holder is tried on its own


def test_without_a_move_nothing_of_a_failed_key_is_given_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consolidate_module, "_alike", lambda _cycle, queue, _known: queue)
    rng = random.Random(3)
    work = [_work(i) for i in range(60)]
    shapes = [object() for _ in range(4)]
    kinds = {w.id: rng.choice(shapes) for w in work}
    walk = _FakeWalk(work, kinds, owners=())
    given = []
    for i in consolidate_module._skim(walk, tuple(work), 0, len(work)):
        given.append(i)
        walk.failed[(kinds[work[i].id], "a", "")] = 0
    first = {}
    for i, w in enumerate(work):
        first.setdefault(kinds[w.id], i)
    assert given == sorted(first.values())


def _force(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    monkeypatch.setattr(consolidate_module, "_SKIM_FROM", 1 if on else 10**9)


def _count_visits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    visits = [0]
    real = consolidate_module._Walk.visit

    def counted(self: object, w: Workload) -> bool:
        visits[0] += 1
        return bool(real(self, w))

    monkeypatch.setattr(consolidate_module._Walk, "visit", counted)
    return visits


@pytest.mark.slow
def test_the_skimmed_pass_plans_what_the_plain_pass_plans(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Every cycle of 150 seeded churn histories planned with the skim (from one workload on)
    and without: the same plans, to the order of their reasons."""
    visits = _count_visits(monkeypatch)
    skimmed_visits = plain_visits = 0
    for seed in range(150):
        state, cycles = history(SeededChooser(seed))
        now = 10_000.0
        for k, c in enumerate(cycles):
            now += DT
            state = unexpired(between_cycles(state, c, now), now)
            _force(monkeypatch, on=False)
            visits[0] = 0
            plain = schedule(state, now, CONFIG, seed=k)
            plain_visits += visits[0]
            _force(monkeypatch, on=True)
            visits[0] = 0
            skimmed = schedule(state, now, CONFIG, seed=k)
            skimmed_visits += visits[0]
            assert skimmed == plain, (seed, k)
            assert list(skimmed.pending.items()) == list(plain.pending.items()), (seed, k)
            state = apply_like_control_plane(state, plain, now)
    assert skimmed_visits < plain_visits, (skimmed_visits, plain_visits)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_skim_on_the_benchmarks_snapshot_plans_what_the_plain_pass_plans(
        monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """The benchmark's contended snapshot (400 nodes, 4,000 waiting) and the live loop's next
    two cycles on it (`bench/live_delta.py`), where consolidation moves work: the skim visits
    a fraction of what the plain pass reads, and the plans are the plain pass's."""
    bench = schedule_cycle_bench()
    next_state = importlib.import_module("live_delta").next_state  # beside the bench script
    state, now = bench.REGIMES["contended"](400, 4_000, seed), bench.NOW
    visits = _count_visits(monkeypatch)
    moved = 0
    for step in range(3):
        _force(monkeypatch, on=False)
        visits[0] = 0
        plain = schedule(state, now, SchedulerConfig(), seed=seed + step)
        plain_visits = visits[0]
        _force(monkeypatch, on=True)
        visits[0] = 0
        skimmed = schedule(state, now, SchedulerConfig(), seed=seed + step)
        assert plan_facts(skimmed) == plan_facts(plain), step
        assert list(skimmed.pending) == list(plain.pending), step
        assert visits[0] * 4 < plain_visits, (step, visits[0], plain_visits)
        moved += len(plain.moves)
        state, now, _ = next_state(state, plain, now, seed + step + 1)
    assert moved  # consolidation did move work here
