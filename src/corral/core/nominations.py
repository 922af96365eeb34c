"""Nominations: room an earlier plan freed for a workload is held for it until it arrives.

Why: a plan may evict work for a workload X and place X in the room made, while X itself
was running elsewhere and is evicted by the same plan (a move). The control plane applies a
move as its eviction only (two attempts of one workload never hold GPUs at once), so for a
cycle or more X is stopping or waiting, and the room its victims freed looks free: small work
of another queue takes it, and X then evicts again (seen in bench/contention.py: a reclaimed
4-GPU job preempted lower-priority work of its own queue; the rerun of the cycle moved work
for it). After Kubernetes' `nominatedNodeName` (the preemptor is nominated to the node, and
pods of lower priority cannot take the room its victims free), the plan nominates X to the
exact devices it was placed on, and the cycles after it:

- `hold`: as the cycle opens, take each nomination's devices (and CPU, RAM) out of the free
  capacity, so no other workload is placed there, evicts for it, or counts it as free;
  dropped instead when it no longer helps: the nominee runs (it was placed elsewhere), or the
  room is not free any more (a node left, or work runs there);
- `place_nominees`: before allocation, a waiting nominee is placed on its held room first,
  unless a queue limit stops it (then the hold is dropped: it would wait anyway);
- `in_force`: what the plan says is still nominated: holds whose nominee has not arrived
  (stopping), with the `until` they came with, and one new nomination per move;
- `explain`: a workload that would fit if the holds were given back is told so, naming the
  nominees (`RoomNominated`), not that the pool is full.

The bound in time is the caller's: it passes only nominations whose `until` has not passed
(the control plane: the victims' stop grace plus a margin; tests and benchmarks: a few cycles),
and forgets one when its nominee ends or is cancelled. Nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from corral.core import reasons as R
from corral.core.fit import Shape, worker_slots
from corral.core.model import Nomination, WorkerResources, Workload

if TYPE_CHECKING:
    from corral.core.cycle import Cycle
    from corral.core.statement import Op


def hold(cycle: Cycle, nominations: tuple[Nomination, ...]) -> None:
    """Take the room of every nomination that still helps out of the free capacity."""
    index, where = cycle.cap.table.index, cycle.stmt.where
    for n in sorted(nominations, key=lambda n: n.workload_id):
        if n.workload_id in where or n.workload_id in cycle.holds or not n.assignments:
            continue  # it runs: placed elsewhere, nothing to hold for it
        if any(a.node_id not in index for a in n.assignments):
            continue  # a node of it left the pool
        if not cycle.stmt.fits(n.assignments, _stand_in(n)):
            continue  # the room is no longer free (or a node is out of service)
        _take(cycle, n, +1)
        cycle.holds[n.workload_id] = n


def place_nominees(cycle: Cycle) -> None:
    """Place each waiting nominee on its held room, before any other work is placed."""
    for wid in sorted(cycle.holds):
        w = cycle.waiting.get(wid)
        if w is None:
            continue  # not waiting yet (stopping): the room stays held for it
        n = cycle.holds.pop(wid)
        _take(cycle, n, -1)
        if cycle.book.limit_blocking(w.queue, w.total_milli()) is not None:
            continue  # it would not start there: the room is let go
        nodes = [cycle.cap.table.index[a.node_id] for a in n.assignments]
        if not cycle.stmt.fits(n.assignments, w) or not cycle.placer.static(cycle.shape(w))[
                nodes].all():
            continue  # it changed (or its node did): it waits like any other work
        cycle.stmt.place(w, n.assignments)
        cycle.reasons.pop(wid, None)
        cycle.pending[w.queue].remove(w)  # placed: allocation must not place it again


def release(cycle: Cycle) -> None:
    """Give the held room back (a caller that keeps its capacity between cycles)."""
    for wid in sorted(cycle.holds):
        _take(cycle, cycle.holds.pop(wid), -1)


def in_force(cycle: Cycle, placed: Mapping[str, Op], evicted: list[Op]
             ) -> tuple[Nomination, ...]:
    """The nominations after this cycle: holds still waiting for their nominee, and one for
    every move (evicted and placed again in this plan, applied as its eviction only)."""
    out = {wid: n for wid, n in cycle.holds.items() if wid not in placed}
    for op in evicted:
        moved = placed.get(op.workload.id)
        if moved is not None:
            r = op.workload.resources
            out[op.workload.id] = Nomination(op.workload.id, moved.assignments, r.cpu_milli,
                                             r.memory_mib)
    return tuple(out[wid] for wid in sorted(out))


def explain(cycle: Cycle, w: Workload, shape: Shape, found: R.Reason) -> R.Reason:
    """`found` (a capacity reason), or `RoomNominated` when the room held for nominees is what
    stands in the way: with the holds given back, `w` would fit."""
    if not cycle.holds or found.unresolvable:
        return found
    nominees = _blocking(cycle, shape, w.id)
    if not nominees:
        return found
    names = ", ".join(nominees[:3]) + (f" and {len(nominees) - 3} more"
                                       if len(nominees) > 3 else "")
    untils = [u for u in (cycle.holds[x].until for x in nominees) if u is not None]
    until = min(untils) if untils else None
    held = f" until t={until:.0f} at the latest" if until is not None else ""
    return R.Reason(
        R.ROOM_NOMINATED,
        f"needs {shape.describe()}; the room that fits it is held for {names}, which an "
        f"earlier plan evicted work for and which starts there once it waits{held}",
        (("nominated_for", tuple(nominees)), ("held_until", until)),
    )


def _blocking(cycle: Cycle, shape: Shape, owner: str) -> list[str]:
    """The nominees whose held room would let `shape` fit, if any would (per shape)."""
    key = (shape, owner if owner in cycle.cap.reservations else None)
    known = cycle.nominee_blocks.get(key)
    if known is not None:
        return known
    cap, table = cycle.cap, cycle.cap.table
    usable = cycle.placer.usable(shape, owner)
    held = sorted({table.index[a.node_id] for n in cycle.holds.values() for a in n.assignments})
    found: list[str] = []
    if usable.size and held:
        before = worker_slots(cap, shape.resources, usable)
        with cap.scratch(held):  # columns restored, change log untouched, on exit
            for n in cycle.holds.values():
                _take(cycle, n, -1)
            after = worker_slots(cap, shape.resources, usable)
        dom = table.domain(shape.required_level)[usable]
        if np.bincount(dom, weights=after).max() >= shape.workers:
            gained = {int(usable[i]) for i in np.flatnonzero(after > before)}
            found = sorted(wid for wid, n in cycle.holds.items()
                           if any(table.index[a.node_id] in gained for a in n.assignments))
    cycle.nominee_blocks[key] = found
    return found


def _stand_in(n: Nomination) -> Workload:
    """What the fit test of the held room needs of the nominee: its id and per-worker CPU and
    RAM (its GPU share is in the assignments)."""
    return Workload(n.workload_id, "", WorkerResources(cpu_milli=n.cpu_milli,
                                                       memory_mib=n.memory_mib))


def _take(cycle: Cycle, n: Nomination, sign: int) -> None:
    index = cycle.cap.table.index
    for a in n.assignments:
        if sign > 0:
            cycle.cap.take(index[a.node_id], a, n.cpu_milli, n.memory_mib)
        else:
            cycle.cap.give(index[a.node_id], a, n.cpu_milli, n.memory_mib)
