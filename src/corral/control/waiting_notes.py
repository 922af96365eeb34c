"""What the autoscaler did for work the pool's nodes can never run, told on the workload.

The core's sentence for work that no node of the pool can run (no node of a capacity kind it
may use, none carrying its labels or running images, no GPU large enough) names a fix for a
static pool ("add on-demand to capacity"); in an autoscaled pool the truth is the
autoscaler's: an offer is being rented for it (named), or no offer may serve it and what to
change (`corral.autoscale.sentences.no_offer`). Each pass, the decision's note for each such
workload (its code in `R.UNRESOLVABLE`, one the autoscaler acts on) is written as an info event
on it when it changed, its reason the note's kind (`WaitKind`: `Renting`, `NoOfferServes`, or
`NotRenting` when its room is held or was emptied), its message the sentence: at once when it goes from one kind
to the other or names other offers, at most every `repeat_s` when only its details changed (a
backoff's next try, a spend), so a long wait adds a bounded number of events. Memory: one
sentence per such workload still waiting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from corral.autoscale.pool import CAPACITY_CODES, Waiting
from corral.autoscale.sentences import WaitKind, WaitNote
from corral.core import reasons as R
from corral.store import Store
from corral.store import workloads as W

__all__ = ["NO_OFFER_SERVES", "RENTING", "WaitingNotes"]

RENTING: Final = str(WaitKind.RENTING)  # capacity planned or launching for it (the offer named)
NO_OFFER_SERVES: Final = str(WaitKind.NO_OFFER_SERVES)  # no offer may serve it (why, the fix)
#: the codes whose core sentence speaks of the pool's nodes only
TOLD: Final = CAPACITY_CODES & R.UNRESOLVABLE


@dataclass
class WaitingNotes:
    repeat_s: float = 600.0
    #: workload id -> (event reason, sentence, when written)
    told: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    def tell(self, store: Store, now: float, waiting: Sequence[Waiting],
             notes: Mapping[str, WaitNote]) -> list[tuple[str, str, str]]:
        """Write an event for each such workload whose sentence changed; returns
        (workload id, reason, sentence) of each written."""
        ours = {x.workload.id for x in waiting if x.reason in TOLD}
        for gone in [wid for wid in self.told if wid not in ours]:
            del self.told[gone]
        out = []
        for wid in sorted(ours):
            said = notes.get(wid)
            if said is None:
                continue
            reason, note = str(said.kind), said.sentence  # the decision's kind, never a prefix
            last = self.told.get(wid)
            if last is not None and (last[1] == note or (
                    last[0] == reason and _gist(last[1]) == _gist(note)
                    and now - last[2] < self.repeat_s)):
                continue
            self.told[wid] = (reason, note, now)
            out.append((wid, reason, note))
        if out:
            with store.write() as conn:
                attempts = {r.id: r.attempt for r in W.get_workloads(conn, [x[0] for x in out])}
                W.append_events(conn, [
                    {"at": now, "kind": "info", "reason": reason, "workload_id": wid,
                     "attempt": attempts.get(wid, 0), "message": note}
                    for wid, reason, note in out if wid in attempts])
        return out


def _gist(note: str) -> str:
    """The sentence without its figures: a backoff's next try or a spend changes only these."""
    return "".join(c for c in note if not c.isdigit())
