"""The close of a cycle: the Plan from the statement's outcome, and a reason for every workload
still pending.

Reasons, most decisive first: unresolvable (`diagnosis.never_fits`), stopped by a queue limit,
else the capacity diagnosis of the end state (`Placer.diagnose`, per shape) made specific by
`explain.refine` (price cap, over quota, reclaim blocked or not reached) and by the room held
for nominees (`nominations.explain`). A reservation's holder hears its nodes and until when;
other big waiting work yields to reservations (`_Behind`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from corral.core import nominations
from corral.core import reasons as R
from corral.core.actions.allocate import limit_reason
from corral.core.actions.reservation_heirs import may_inherit, reservation_window
from corral.core.explain import refine
from corral.core.fit import Shape
from corral.core.model import MILLI_PER_GPU, Workload
from corral.core.plan import Eviction, Placement, Plan, Reservation

if TYPE_CHECKING:
    from corral.core.cycle import Cycle


def close(cycle: Cycle, orphans: int) -> Plan:
    placed, evicted = cycle.stmt.outcome()
    placements = [Placement(op.workload.id, op.workload.queue, op.assignments,
                            op.workload.id in cycle.backfilled) for op in placed.values()]
    evictions = [Eviction(op.workload.id, op.workload.queue, op.rule, op.for_workload,
                          R.eviction_message(op.rule, op.for_workload)) for op in evicted]
    pending = pending_reasons(cycle)
    reservations = tuple(
        Reservation(owner, tuple(cycle.cap.table.nodes[i].id for i in nodes),
                    _held_until(cycle, owner))
        for owner, nodes in sorted(cycle.cap.reservations.items())
    )
    stats = {
        "placed": float(len(placements)),
        "evicted": float(len(evictions)),
        "pending": float(len(pending)),
        "orphaned": float(orphans),
        "free_gpus": float(np.clip(cycle.cap.free_milli, 0, None).sum()) / 1000,
    }
    return Plan(cycle.now, tuple(placements), tuple(evictions), pending, reservations, stats,
                nominations.in_force(cycle, placed, evicted))


def pending_reasons(cycle: Cycle) -> dict[str, R.Reason]:
    """The plan's reasons, in the order the cycle considered the work: those written during the
    cycle (in the order written), then one for every workload the cycle set aside (`deferred`)
    that is neither placed, explained already nor evicted (the eviction says why).

    A waiting workload that holds no reservation gets the reason of its class: its queue, its
    shape and whether reclaim was tried for it (each step of `_Judge` is cached by no more than
    that). Each class is judged at its first member, so the memos fill in the order judging
    one by one would fill them; big work old enough to be a holder's heir is told apart
    (`_Behind.heir_cutoff`). One pass over the set-aside work with as few lookups per workload
    as that allows: at 10,000 nodes the ~93,000 waiting workloads and the dictionaries keyed by
    their ids are far larger than the CPU's caches, so each lookup is a memory access."""
    reasons, where, waiting = cycle.reasons, cycle.stmt.where, cycle.waiting
    reserved_for, victims = cycle.cap.reservations, cycle.stmt.started
    behind = _Behind(cycle)
    pending = {wid: behind.told(waiting.get(wid), found) if wid not in reserved_for else found
               for wid, found in reasons.items() if wid not in where and wid not in victims}
    skip = reasons.keys() | where.keys() | victims  # one lookup a workload, not three
    judge = _Judge(cycle)
    # per class: its reason as told to a member that is no heir, and what it was judged
    # (found) where a member may be an heir, else None
    classes: dict[tuple[str, int, bool], tuple[R.Reason, R.Reason | None]] = {}
    tried_all, tried_ids = cycle.attempts_left > 0, cycle.reclaim_tried
    cutoff = behind.heir_cutoff()
    for wid, shape in cycle.deferred.items():
        if wid in skip:
            continue
        w = waiting.get(wid)
        if w is None or wid in reserved_for:  # a victim of this cycle, or a holder: alone
            pending[wid] = judge.reason(w, wid, shape)
            continue
        # keyed by the shape's identity (the cycle's interned shapes, alive all cycle): an
        # int hashes in C, a Shape calls `Shape.__hash__`
        key = (w.queue, id(shape), tried_all or wid in tried_ids)
        known = classes.get(key)
        if known is None:
            found = judge.reason(w, wid, shape)
            heirs_may = cutoff is not None and behind.is_big(w, found)
            known = classes[key] = (behind.plain(w, found), found if heirs_may else None)
        told, found_if_heir = known
        if found_if_heir is not None and w.submitted_at < cutoff:  # type: ignore[operator]
            told = behind.reason(w, found_if_heir)
        pending[wid] = told
    return pending


class _Judge:
    """One workload's reason as the cycle ends, with the cycle's memos: unresolvable or
    stopped by a queue limit first, else the capacity diagnosis made specific."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self.diagnosis: dict[tuple[Shape, str | None], R.Reason] = {}
        self.limits: dict[tuple[str, Shape], R.Reason | None] = {}
        self.refinements: dict[tuple[str, Shape, bool, R.Reason], R.Reason] = {}

    def reason(self, w: Workload | None, wid: str, shape: Shape) -> R.Reason:
        # The same for every waiting workload of this queue and shape (a waiting workload's
        # total is its shape's); a victim of this cycle (not waiting) only gets `never_fits`.
        cycle = self.cycle
        limit_key = (w.queue if w else "", shape)
        if limit_key not in self.limits:
            self.limits[limit_key] = _limit_now(cycle, w, shape)
        limit = self.limits[limit_key]
        if limit is not None:
            return limit
        found = _capacity_reason(cycle, w, wid, shape, self.diagnosis, self.refinements)
        if cycle.holds and w is not None:
            found = nominations.explain(cycle, w, shape, found)
        return found


def _capacity_reason(cycle: Cycle, w: Workload | None, wid: str, shape: Shape,
                     diagnosis: dict[tuple[Shape, str | None], R.Reason],
                     refinements: dict[tuple[str, Shape, bool, R.Reason], R.Reason]) -> R.Reason:
    """Why `wid` (waiting workload `w`, or a victim of this cycle when None) does not fit as
    the cycle ends: the capacity diagnosis (cached per shape), made specific by `refine`."""
    reserved_for = cycle.cap.reservations
    key = (shape, wid if wid in reserved_for else None)
    found = diagnosis.get(key)
    if found is None:
        found = diagnosis[key] = cycle.placer.diagnose(shape, wid)
    if w is not None and not found.unresolvable:
        # the same for every waiting workload of this queue and shape, reclaim tried or not
        tried = wid in cycle.reclaim_tried or cycle.attempts_left > 0
        refined_key = (w.queue, shape, tried, found)
        refined = refinements.get(refined_key)
        if refined is None:
            refined = refinements[refined_key] = refine(cycle, w, shape, found)
        found = refined
        if wid in reserved_for:
            found = _waiting_for_reservation(cycle, w, found)
    return found


def _waiting_for_reservation(cycle: Cycle, w: Workload, found: R.Reason) -> R.Reason:
    """The reason of a workload that holds a reservation: why it does not fit now, then which
    nodes drain towards it, what they still run, and until when the reservation lasts
    (`reservation_window`)."""
    table = cycle.cap.table
    nodes = cycle.cap.reservations[w.id]
    ids = {table.nodes[i].id for i in nodes}
    # one flat pass over what runs (20,000 workloads at 10,000 nodes), no generator per one
    occupants = sorted({wid for wid, held in cycle.stmt.where.items()
                        for a in held if a.node_id in ids})
    until = reservation_window(cycle.config, w.submitted_at, cycle.now)[1]
    names = ", ".join(occupants[:4]) + (f" and {len(occupants) - 4} more"
                                        if len(occupants) > 4 else "")
    return R.Reason(
        found.code,
        f"{found.message}; nodes {', '.join(sorted(ids))} are reserved for it and drain as "
        f"their work ends (waiting for {names or 'nothing: it fits next cycle'}); the "
        f"reservation holds for another {_seconds(until - cycle.now)}",
        (*found.details, ("reserved_nodes", tuple(sorted(ids))),
         ("waiting_for", tuple(occupants)), ("reserved_until", until)),
    )


def _held_until(cycle: Cycle, owner: str) -> float | None:
    """When `owner`'s reservation ends at the latest: the end of its window."""
    w = cycle.waiting.get(owner)
    return None if w is None else reservation_window(cycle.config, w.submitted_at, cycle.now)[1]


class _Behind:
    """The reason of a big waiting workload that holds no reservation (more than one worker or
    GPU: the work a reservation's nodes are held from).

    Its sentence does not say whether reservations are held, nor by whom: that changes when a
    reservation is made, passes on or ends, and a stored sentence that said so was rewritten
    for every big waiting workload each time (13,835 rows a place step at 10,000 nodes, issue
    16). Its details say it yields to reservations (`reasons.YIELDS_TO_RESERVATIONS`, stored
    with the sentence: `reasons.stored_refs`) and name the holders of this cycle and until
    when (`reservation_held_by`, `held_until`); the API adds those in force at read time
    (`corral.api.views.reason_now`). Only a holder's heir (`reservation_heirs.heirs`: submitted more
    than a window before it, in its queue only at its priority or higher) is told in words
    when it takes that slot, naming no holder. Built once a cycle; the reasons are shared by
    every workload with the same found reason and heir's slot, as the found reasons are."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self.holders: list[tuple[Workload, float]] = []
        for holder in sorted(cycle.cap.reservations):
            h = cycle.waiting.get(holder)
            if h is not None:
                self.holders.append(
                    (h, reservation_window(cycle.config, h.submitted_at, cycle.now)[1]))
        self.details: tuple[tuple[str, object], ...] = ((R.YIELDS_TO_RESERVATIONS, True), *(
            d for h, until in self.holders
            for d in ((R.RESERVATION_HELD_BY, h.id), ("held_until", until))))
        self.made: dict[tuple[int, str | None, float | None], R.Reason] = {}

    def told(self, w: Workload | None, found: R.Reason) -> R.Reason:
        """`found` as waiting `w` (holding no reservation) hears it: big work yields."""
        if not self.is_big(w, found):
            return found
        return self.reason(w, found)  # type: ignore[arg-type]

    @staticmethod
    def is_big(w: Workload | None, found: R.Reason) -> bool:
        """Whether waiting `w` is told it yields: big (by its shape) and able to fit."""
        return w is not None and not found.unresolvable and (w.workers > 1 or w.resources.gpus > 1)

    def plain(self, w: Workload | None, found: R.Reason) -> R.Reason:
        """What `told` gives every waiting workload of `w`'s class that is no holder's heir."""
        if not self.is_big(w, found):
            return found
        key = (id(found), None, None)
        made = self.made.get(key)
        if made is None:
            made = self.made[key] = self._make(found, None)
        return made

    def heir_cutoff(self) -> float | None:
        """Work submitted at or after this is no holder's heir (`may_inherit`: submitted more
        than `max_reservation_s` before some holder); None: no holders, so no heirs."""
        if not self.holders:
            return None
        return max(h.submitted_at for h, _ in self.holders) - self.cycle.config.max_reservation_s

    def reason(self, w: Workload, found: R.Reason) -> R.Reason:
        cfg, now = self.cycle.config, self.cycle.now
        heir_of: tuple[str, float] | None = None
        for h, _ in self.holders:
            if may_inherit(cfg, h, w):
                open_now, change = reservation_window(cfg, w.submitted_at, now)
                heir_of = (h.id, now if open_now else change)
                break
        key = (id(found), *(heir_of or (None, None)))
        made = self.made.get(key)
        if made is None:
            made = self.made[key] = self._make(found, heir_of)
        return made

    def _make(self, found: R.Reason, heir_of: tuple[str, float] | None) -> R.Reason:
        if heir_of is None:
            return R.Reason(found.code, found.message, (*found.details, *self.details))
        holder, at = heir_of
        when = ("from the next cycle on (its own reservation window is open)"
                if at == self.cycle.now else f"at t={at:.0f}, when its own reservation window opens")
        text = (f"; submitted more than {_seconds(self.cycle.config.max_reservation_s)} before "
                f"the holder of nodes reserved ahead of it, it takes that slot {when}, unless a "
                "queue limit or an owed queue stops it")
        return R.Reason(found.code, found.message + text,
                        (*found.details, *self.details, ("heir_of", holder), ("takes_slot_at", at)))


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def _limit_now(cycle: Cycle, w: Workload | None, shape: Shape) -> R.Reason | None:
    """Unresolvable, or stopped by a queue limit, as the cycle ends: these come first."""
    never = cycle.placer.never_fits(shape)
    if never is not None or w is None:
        return never
    blocking = cycle.book.limit_blocking(w.queue, w.total_milli())
    if blocking is None:
        return None
    used = cycle.book.milli[blocking.name] / MILLI_PER_GPU
    return limit_reason(w, blocking.name, blocking.limit_gpus or 0.0, w.total_milli(), used)
