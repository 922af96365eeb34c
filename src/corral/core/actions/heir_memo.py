"""What a hand-over walk knows of its heirs' kinds (`allocate._hand_over`, `heir_chain`): a
kind of heir (shape, queue) whose `_keep` failed on a state nobody changed fails again, so
its later heirs are not judged (issue 10, speed: one walk at 10,000 x 100,000 tried ~12,300
heirs of a few hundred kinds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.core.actions.reservation_heirs import reservation_window

if TYPE_CHECKING:
    from corral.core.cycle import Cycle
    from corral.core.fit import Shape
    from corral.core.model import Workload

__all__ = ["keep_by_kind"]


def keep_by_kind(cycle: Cycle, plain: Callable[[Workload], bool]) -> Callable[[Workload], bool]:
    """`plain` (`allocate._keep` on `cycle`) for a walk's heirs, that knows a kind which
    failed on this state fails again.

    What `_keep` reads of an heir that holds no slot and is in its window (every heir of a
    walk: `chain_from`, `HeirChain.held`) is its shape (fit, GPU models, size) and its queue
    (scoring, limit, `_may_succeed`), and the state: placements and queue use (`applied`),
    free capacity (`freed`), the slots held, the waiting work. So a `_keep` that failed and
    changed none of these proves that every later heir of its (shape, queue) fails too,
    until one of them changes; only an heir that starts (a placement) or takes the slot (the
    walk ends) changes them. A failure that wrote the heir's reason or set it aside
    (`_same`) is not remembered: the next heir of its kind must write its own.
    (tests/core/test_heir_chain.py compares with the plain `_keep`.)"""
    failed: dict[tuple[Shape, str], tuple[int, ...]] = {}
    stmt, cap = cycle.stmt, cycle.cap

    def state() -> tuple[int, ...]:
        return (stmt.applied, cap.freed, len(cap.reservations), len(cycle.requeued),
                len(cycle.order))

    def keep(w: Workload) -> bool:
        if w.id in cap.reservations or not reservation_window(cycle.config, w.submitted_at,
                                                              cycle.now)[0]:
            return plain(w)  # (never in a walk; judged by `_keep` alone all the same)
        kind, before = (cycle.shape(w), w.queue), state()
        if failed.get(kind) == before:
            return False
        wrote = cycle.reasons.get(w.id), cycle.deferred.get(w.id)
        if plain(w):
            return True
        if state() == before and _same(wrote, (cycle.reasons.get(w.id),
                                                cycle.deferred.get(w.id))):
            failed[kind] = before
        return False

    return keep


def _same(before: tuple[object, object], after: tuple[object, object]) -> bool:
    """Whether `_keep` left an heir's reason and set-aside as they were (the same objects).
    A failed `_keep` is not always free of effects: an heir that fits is tried, and
    `try_place` refuses a GPU-memory share at its queue's limit only once placed, writing its
    reason and setting it aside. Every heir of that kind must be judged to have its own
    (review R, must-fix on 9ce64f3), so such a failure proves nothing for the next."""
    return all(a is b for a, b in zip(before, after, strict=True))
