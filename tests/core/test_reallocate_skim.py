"""`reallocate`'s walk over the still-pending work, and the kept waiting order's removals, take
shortcuts past a size (`allocate._SKIM_FROM`, `warm_start._BISECT_SHARE`) that the small states
of the other tests never reach: here they are forced on, and the outcome compared with the
plain path's over churn histories (plans) and sorted lists (removals)."""

from __future__ import annotations

import importlib
import random
from collections.abc import Iterator
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
from corral.core.model import pending_order
from corral.core.warm_start import AGE_THEN_ID, in_order, without

pytestmark = pytest.mark.slow
#: the module (the package's `allocate` is the function of that name)
allocate_module = importlib.import_module("corral.core.actions.allocate")


def test_the_skimmed_walk_plans_what_the_plain_walk_plans(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Every cycle of 200 seeded churn histories planned with the skim (from one workload on)
    and without: the same plans, to the order of their reasons."""
    skipped = _count_skips(monkeypatch)
    for seed in range(200):
        state, cycles = history(SeededChooser(seed))
        now = 10_000.0
        for k, c in enumerate(cycles):
            now += DT
            state = unexpired(between_cycles(state, c, now), now)
            monkeypatch.setattr(allocate_module, "_SKIM_FROM", 10**9)
            plain = schedule(state, now, CONFIG, seed=k)
            monkeypatch.setattr(allocate_module, "_SKIM_FROM", 1)
            skimmed = schedule(state, now, CONFIG, seed=k)
            assert skimmed == plain, (seed, k)
            assert list(skimmed.pending.items()) == list(plain.pending.items()), (seed, k)
            state = apply_like_control_plane(state, plain, now)
    assert len(skipped) > 40  # walks taken (small states: little to skip; see below)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_skim_on_the_benchmarks_snapshot_plans_what_the_plain_walk_plans(
        monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """The benchmark's contended snapshot (400 nodes, 4,000 waiting) and the live loop's next
    two cycles on it (`bench/live_delta.py`): the skim leaves out most of each walk, and the
    plans are the plain walk's."""
    bench = schedule_cycle_bench()
    next_state = importlib.import_module("live_delta").next_state  # beside the bench script
    state, now = bench.REGIMES["contended"](400, 4_000, seed), bench.NOW
    skipped = _count_skips(monkeypatch)
    for step in range(3):
        monkeypatch.setattr(allocate_module, "_SKIM_FROM", 10**9)
        plain = schedule(state, now, SchedulerConfig(), seed=seed + step)
        monkeypatch.setattr(allocate_module, "_SKIM_FROM", 1)
        skimmed = schedule(state, now, SchedulerConfig(), seed=seed + step)
        assert plan_facts(skimmed) == plan_facts(plain), step
        assert list(skimmed.pending) == list(plain.pending), step
        state, now, _ = next_state(state, plain, now, seed + step + 1)
    assert sum(skipped) > 100  # the skim did leave work out


def _count_skips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many of the still-pending each skimmed walk leaves out, from now on."""
    skipped: list[int] = []
    worth_trying = allocate_module._worth_trying

    def counted(cycle: object, still: tuple[Workload, ...]) -> Iterator[int]:
        given = 0  # lazily, as `reallocate` reads it: each decision after the last try
        for i in worth_trying(cycle, still):
            given += 1
            yield i
        skipped.append(len(still) - given)

    monkeypatch.setattr(allocate_module, "_worth_trying", counted)
    return skipped


def _work(i: int, rng: random.Random) -> Workload:
    return Workload(id=f"w{i:04d}", queue="a", resources=WorkerResources(gpus=rng.choice((1, 2))),
                    priority=rng.choice((0, 10)), submitted_at=float(rng.randrange(50)))


@pytest.mark.parametrize("leaving", [0, 1, 3, 20, 400])
def test_without_removes_exactly_what_left(leaving: int) -> None:
    """A few leaving: found by bisection; many: one filter. Either way, the filter's answer."""
    rng = random.Random(leaving)
    work = [_work(i, rng) for i in range(1_000)]
    for key, ordered in ((pending_order, in_order(work)),
                         (AGE_THEN_ID, sorted(work, key=AGE_THEN_ID))):
        gone = rng.sample(ordered, leaving)
        left = {id(w) for w in gone}
        assert without(ordered, gone, key) == [w for w in ordered if id(w) not in left]


def _fake_cycle(shapes: dict[str, object], owners: tuple[str, ...]) -> SimpleNamespace:
    """What `_worth_trying` reads of a cycle: shapes by id, the failure memo, `freed`, the
    reservations, one scoring key."""
    cap = SimpleNamespace(freed=0, reservations={wid: [0] for wid in owners})
    return SimpleNamespace(
        cap=cap, shapes=shapes, shape=lambda w: shapes[w.id],
        scoring=lambda queue: SimpleNamespace(key="k"), placer=SimpleNamespace(failed={}))


def test_worth_trying_drops_a_failing_shape_and_gives_everything_after_a_release() -> None:
    """Lazily, as `_walk` consumes it: of a shape known to fail, only the first workload is
    given (`_walk` skips it) and the rest left out, whether it failed before the walk or
    during it; a reservation owner is given whatever its shape; once a try returns capacity
    (`freed` moves), every later position is given, the left-out ones included."""
    rng = random.Random(0)
    work = [_work(i, rng) for i in range(8)]
    a, b, owner = object(), object(), object()  # three shapes
    kinds = [a, b, a, owner, b, a, b, a]
    shapes = {w.id: k for w, k in zip(work, kinds, strict=True)}
    cycle = _fake_cycle(shapes, owners=(work[3].id,))
    failed = cycle.placer.failed
    failed[(a, "k", None)] = 0  # a failed since capacity was last returned
    given = []
    for i in allocate_module._worth_trying(cycle, tuple(work)):
        given.append(i)
        if i == 1:
            failed[(b, "k", None)] = 0  # b's first try fails: b's later ones are left out
        if i == 3:
            cycle.cap.freed = 1  # the owner is placed: its reservation released
    assert given == [0, 1, 3, 4, 5, 6, 7]
    cycle.cap.freed, given = 0, []
    for i in allocate_module._worth_trying(cycle, tuple(work)):
        given.append(i)  # nothing returned: a and b stay left out after their failures
    assert given == [0, 1, 3]
