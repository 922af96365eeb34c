"""The Plan: what one scheduling cycle decided.

The core returns a Plan and changes nothing; the control plane (or the simulator) applies it.
A workload can appear both in `evictions` and `placements` in one plan: that is a move
(consolidation) and it restarts from its checkpoint at the new place. The control plane applies
a move as its eviction only, so the plan also nominates the moved workload to the room it was
placed in (`nominations`): the next cycles hold that room for it (`corral.core.nominations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.model import Nomination, WorkerAssignment
from corral.core.reasons import Reason


@dataclass(frozen=True, slots=True)
class Placement:
    workload_id: str
    queue: str
    assignments: tuple[WorkerAssignment, ...]
    backfilled: bool = False  # placed ahead of a blocked, higher-ordered gang


@dataclass(frozen=True, slots=True)
class Eviction:
    """A running workload to stop, the rule that decided it, and who it made room for."""

    workload_id: str
    queue: str
    rule: str
    for_workload: str
    message: str


@dataclass(frozen=True, slots=True)
class Reservation:
    """Nodes held back from backfill so that a blocked gang is not starved forever, until
    `until` (the end of its holder's window, `actions.allocate.reservation_window`; None from
    a caller that does not say)."""

    workload_id: str
    node_ids: tuple[str, ...]
    until: float | None = None


@dataclass(frozen=True)
class Plan:
    now: float
    placements: tuple[Placement, ...] = ()
    evictions: tuple[Eviction, ...] = ()
    pending: dict[str, Reason] = field(default_factory=dict)
    reservations: tuple[Reservation, ...] = ()
    stats: dict[str, float] = field(default_factory=dict)
    #: the nominations in force after this plan: those of the input still held (their `until`
    #: kept) and one per move (`until` None: the caller bounds it), in workload id order. A
    #: caller stores exactly these (a nomination left out was placed or dropped).
    nominations: tuple[Nomination, ...] = ()

    @property
    def moves(self) -> frozenset[str]:
        placed = {p.workload_id for p in self.placements}
        return frozenset(e.workload_id for e in self.evictions if e.workload_id in placed)

    def placement_of(self, workload_id: str) -> Placement | None:
        for p in self.placements:
            if p.workload_id == workload_id:
                return p
        return None
