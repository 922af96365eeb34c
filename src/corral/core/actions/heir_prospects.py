"""Whether a hand-over walk (`allocate._hand_over`) can find any heir at all, read from the
kinds of elders there are, not from each elder.

A walk tries its heirs one by one and each heir's `_keep` either starts it (it fits now) or
reserves for it (`_maybe_reserve`, which needs a free slot and `_may_succeed`). In the cycle
after a big plan at 10,000 x 100,000 (bench/schedule_cycle.py, issue 10) 13 walks each tried
3,000-12,000 of the ~13,900 elders, and 109,539 of the 109,567 tries failed on `_may_succeed`:
every queue with old big work was above its guarantee while an owed queue waited. The walk read
each elder to learn what a few dozen kinds of elders already said.

What `_keep` reads of a waiting workload not holding a slot is its shape, its queue (the
scoring, the book), its GPU models and its size, so the elders are summarised once per build
of `reservation_heirs.elders_before`:
- each (shape, scoring key) with the age of its oldest member: no heir can start unless one
  of these fits now;
- per (queue, GPU models), the least size among the members up to each age: `_may_succeed`
  only gets harder as the size grows (a queue's use plus the size against its quota, at every
  level; the waiting queues do not depend on it), so no heir of that kind can reserve unless
  the least one can.
A walk whose elders (those older than its holder by a window) and victims pass neither test
would try every heir and take nothing, changing nothing but memos: it is not walked. Queue
limits, the frame's queue and priority filter, holders and placed work are left out of the
test: they only stop heirs, so leaving them out can only make a walk run that finds nobody,
never skip one that finds somebody. The plans are the same (bench --digest, tests/core/
test_heir_chain.py compares walked and skipped outcomes)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.core.fit import Shape
    from corral.core.model import Workload


class ElderKinds:
    """The elders (sorted by age, then id) by what `_keep` reads of them."""

    def __init__(self, elders: list[Workload], shape_of: Callable[[Workload], Shape],
                 scoring_key_of: Callable[[str], str]) -> None:
        first: dict[tuple[Shape, str], tuple[float, Shape, str]] = {}
        #: (queue, GPU models) -> (a member, ages where the least size drops, the sizes)
        self.stairs: dict[tuple[str, tuple[str, ...]], tuple[Workload, list[float], list[int]]] = {}
        for w in elders:
            shape = shape_of(w)
            key = (shape, scoring_key_of(w.queue))
            if key not in first:
                first[key] = (w.submitted_at, shape, w.queue)
            milli = w.total_milli()
            stair = self.stairs.get((w.queue, w.gpu_models))
            if stair is None:
                self.stairs[(w.queue, w.gpu_models)] = (w, [w.submitted_at], [milli])
            elif milli < stair[2][-1]:
                stair[1].append(w.submitted_at)
                stair[2].append(milli)
        #: (age of the oldest member, shape, a member's queue), oldest first
        self.shapes = sorted(first.values(), key=lambda t: t[0])

    def shapes_before(self, before: float) -> Iterator[tuple[Shape, str]]:
        """(shape, queue) of each kind with a member submitted before `before`."""
        for age, shape, queue in self.shapes:
            if age >= before:
                return
            yield shape, queue

    def least_before(self, before: float) -> Iterator[tuple[Workload, int]]:
        """For each (queue, GPU models) with a member submitted before `before`: a member
        (for its queue and models) and the least size among those members."""
        for member, ages, sizes in self.stairs.values():
            k = bisect_left(ages, before)
            if k:
                yield member, sizes[k - 1]
