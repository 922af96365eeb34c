"""Who may hold a reservation, and who may take one over: a workload's reservation windows
(`reservation_window`), and a holder's heirs (`heirs`: big waiting work old enough to take its
kept slot), read from the big waiting work sorted by age (`elders`, built once a cycle from
the list `WarmStart` keeps). Split out of `allocate`, which reserves and hands over."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from corral.core.actions.heir_prospects import ElderKinds
from corral.core.model import Workload
from corral.core.warm_start import big_by_age

if TYPE_CHECKING:
    from corral.core import reasons as R
    from corral.core.config import SchedulerConfig
    from corral.core.cycle import Cycle
    from corral.core.fit import Shape


def reservation_window(cfg: SchedulerConfig, submitted_at: float, now: float
                       ) -> tuple[bool, float]:
    """Whether work submitted at `submitted_at` may hold a reservation at `now`, and when that
    changes (the end of the current window, or the start of the next one)."""
    start = submitted_at + cfg.reserve_after_s
    if now < start:
        return False, start
    hold = max(cfg.max_reservation_s, 1.0)
    period = hold + max(cfg.reservation_cooldown_s, 0.0)
    k, into = divmod(now - start, period)
    window = start + k * period
    return (True, window + hold) if into < hold else (False, window + period)


def heirs(cycle: Cycle, holder: Workload, among: Iterable[Workload] | None = None
          ) -> list[Workload]:
    """Who may take `holder`'s kept slot, oldest first (then by id): big waiting workloads
    submitted more than `max_reservation_s` before it, in their own reservation window, not
    holding one already and able to fit the pool; in the holder's queue only work of at least
    its priority (priority orders a queue). All of it is fixed for a given `now`: submission
    times, shapes, the pool (see `keep_reservations`). `among`: only these (default: all
    waiting work, this cycle's victims included)."""
    cfg, now = cycle.config, cycle.now
    held = set(cycle.reserved_before) | cycle.cap.reservations.keys()
    elders: list[Workload] = []
    if among is None:  # the elders, then this cycle's victims: they wait too
        # The elders are old enough, big, in their window and able to fit the pool
        # (`elders_before`), in the order wanted: only queue, priority and holding are left to test.
        queue, priority = holder.queue, holder.priority
        elders = [w for w in elders_before(cycle, holder.submitted_at - cfg.max_reservation_s)
                  if (w.queue != queue or w.priority >= priority) and w.id not in held]
        among = cycle.requeued
    out = [w for w in among
           if may_inherit(cfg, holder, w) and (w.workers > 1 or w.resources.gpus > 1)
           and w.id not in held
           and reservation_window(cfg, w.submitted_at, now)[0]
           and cycle.placer.never_fits(cycle.shape(w)) is None]
    if not out:
        return elders
    out = elders + out
    out.sort(key=lambda w: (w.submitted_at, w.id))
    return out


def _fits_ever(shape: Shape, fits: dict[int, bool],
               never_fits: Callable[[Shape], R.Reason | None]) -> bool:
    known = fits.get(id(shape))
    if known is None:
        known = fits[id(shape)] = never_fits(shape) is None
    return known


def elders_before(cycle: Cycle, before: float) -> list[Workload]:
    """The big waiting work in its reservation window submitted before `before`: what of
    `cycle.waiting` may be an heir, as a prefix of one list sorted by age. Built when first
    asked and again only if work was added (`waiting` only grows), so a hand-over reads the
    few old enough, not the whole backlog: a scan of 100,000 waiting workloads per call of
    `heirs`, and the hand-over chain calls it once per heir it tries (10,000 x 100,000 seed
    1 of bench/schedule_cycle.py: ~0.8 s of a cycle, for 299 heirs)."""
    cfg, now, never_fits, shape = cycle.config, cycle.now, cycle.placer.never_fits, cycle.shape
    if cycle.by_age is None or cycle.by_age[0] != len(cycle.waiting):
        # in the order `heirs` gives (age, then id), and only what could ever fit the pool
        # (fixed all cycle): a hand-over chain reads this prefix once per heir it tries; the
        # big work by age is kept between cycles (`WarmStart`) while nothing was added since
        kept = cycle.big_at_open
        by_age = (kept[1] if kept is not None and kept[0] == len(cycle.waiting)
                  else big_by_age(cycle.waiting.values()))
        fits: dict[int, bool] = {}  # by shape identity (interned: a handful a cycle)
        big = [w for w in by_age if reservation_window(cfg, w.submitted_at, now)[0]
               and _fits_ever(shape(w), fits, never_fits)]
        cycle.by_age = (len(cycle.waiting), [w.submitted_at for w in big], big)
        cycle.elder_kinds = ElderKinds(big, shape, lambda q: cycle.scoring(q).key)
    _, ages, big = cycle.by_age
    return big[:bisect_left(ages, before)]


def may_inherit(cfg: SchedulerConfig, holder: Workload, w: Workload) -> bool:
    """Whether `w` is old enough to take `holder`'s kept slot: submitted more than a window
    (`max_reservation_s`) before it, and in the holder's own queue only at its priority or
    higher (priority orders a queue). The part of being an heir that the reason repeats."""
    return (w.submitted_at < holder.submitted_at - cfg.max_reservation_s
            and (w.queue != holder.queue or w.priority >= holder.priority))
